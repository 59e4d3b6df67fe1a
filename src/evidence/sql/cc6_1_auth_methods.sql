-- CC6.1: how Cosmos DB requests authenticated in [$from, $to), per account: Entra ID
-- (a principal), account key, resource token or unknown, with the token type sent.
SELECT
    account,
    CASE
        WHEN principal_id IS NOT NULL THEN 'entra_id'
        WHEN auth_token_type ILIKE '%resource%' THEN 'resource_token'
        WHEN auth_token_type ILIKE '%key%' THEN 'account_key'
        ELSE 'unknown'
    END AS attribution,
    auth_token_type,
    count(*) AS requests,
    count(DISTINCT principal_id) AS principals,
    count(DISTINCT client_ip) AS client_ips,
    count(*) FILTER (WHERE status_code = 403) AS denied,
    min(time) AS first_request,
    max(time) AS last_request
FROM cosmos_requests
WHERE time >= $from AND time < $to AND batch_id <= $as_of
GROUP BY ALL
ORDER BY account, attribution, auth_token_type
