-- CC6.1: requests made with an account key or resource token (no identity behind them) in
-- [$from, $to), per account, key, client address and client application.
SELECT
    account,
    coalesce(key_type, auth_token_type) AS key,
    client_ip,
    user_agent_family(user_agent) AS user_agent_family,
    count(*) AS requests,
    count(*) FILTER (WHERE operation IN ('Read', 'Query', 'ReadFeed')) AS reads,
    count(*) FILTER (WHERE operation NOT IN ('Read', 'Query', 'ReadFeed')) AS writes,
    count(*) FILTER (WHERE status_code = 403) AS denied,
    min(time) AS first_request,
    max(time) AS last_request
FROM cosmos_requests
WHERE time >= $from AND time < $to AND batch_id <= $as_of AND principal_id IS NULL
GROUP BY ALL
ORDER BY requests DESC, account, key, client_ip, user_agent_family
