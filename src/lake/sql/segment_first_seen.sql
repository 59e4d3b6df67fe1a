-- A segment's partial first_seen: the request facets (collection, user_agent, key_client,
-- data) of one partition's events ? ..= ?, as src/rules/sql/absorb.sql records them.
WITH r AS (
    SELECT time, principal_id, account, client_ip, user_agent, database_name, collection_name,
           fleet_row_id(source, partition, sequence_number, record_index) AS row_id
    FROM cosmos_requests
    WHERE source = ? AND partition = ? AND sequence_number BETWEEN ? AND ?
)
SELECT subject, facet, value, min(time) AS first_time, arg_min(row_id, time) AS first_row, max(time) AS last_time,
       count(*) AS events
FROM (
    SELECT principal_id AS subject, 'collection' AS facet,
           coalesce(account, '') || '/' || coalesce(database_name, '') || '/' || collection_name AS value, time, row_id
    FROM r WHERE principal_id IS NOT NULL AND coalesce(collection_name, '') <> ''
    UNION ALL
    SELECT principal_id, 'user_agent', user_agent_family(user_agent), time, row_id FROM r WHERE principal_id IS NOT NULL
    UNION ALL
    SELECT coalesce(account, ''), 'key_client', coalesce(client_ip, ''), time, row_id FROM r WHERE principal_id IS NULL
    UNION ALL
    SELECT principal_id, 'data', '', time, row_id FROM r WHERE principal_id IS NOT NULL
)
GROUP BY ALL
ORDER BY 1, 2, 3
