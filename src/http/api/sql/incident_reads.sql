-- What was done to data since the incident began: the requests of its principals, or from
-- its addresses, by account, database and container. Parameters: since, principals and
-- addresses (JSON arrays of strings). Each account with its subscription and resource group
-- (the page's link to it in the Azure portal).
SELECT r.account, r.subscription_id, r.resource_group, r.database_name, r.collection_name,
       count(*) AS requests,
       sum(r.response_length)::BIGINT AS bytes_out,
       sum(r.request_length)::BIGINT AS bytes_in,
       list(DISTINCT r.operation ORDER BY r.operation) AS operations,
       count(*) FILTER (WHERE r.status_code >= 400) AS failed,
       (list(DISTINCT r.client_ip) FILTER (WHERE r.client_ip IS NOT NULL))[1:5] AS addresses,
       min(r.time) AS first,
       max(r.time) AS last
FROM cosmos_requests r
WHERE r.time >= ?::TIMESTAMPTZ
  AND (r.principal_id IN (SELECT unnest(from_json(?, '["VARCHAR"]')))
       OR r.client_ip IN (SELECT unnest(from_json(?, '["VARCHAR"]'))))
GROUP BY ALL
ORDER BY bytes_out DESC NULLS LAST, requests DESC
LIMIT 100
