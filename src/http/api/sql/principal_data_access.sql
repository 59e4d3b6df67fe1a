-- What a principal read and wrote in a period ($1 principal, $2 from, $3 to), with each
-- account's subscription and resource group (the page's link to it in the Azure portal).
SELECT account, subscription_id, resource_group, database_name, collection_name, operation, count(*) AS requests,
       sum(response_length)::BIGINT AS bytes_out, count(*) FILTER (WHERE status_code = 403) AS denied,
       min(time) AS first, max(time) AS last
FROM cosmos_requests WHERE principal_id = $1 AND time >= $2 AND time < $3
GROUP BY ALL ORDER BY requests DESC, account, database_name, collection_name, operation LIMIT 500
