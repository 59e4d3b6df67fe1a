-- A segment's partial activity_hours (migrations/0004_detection.sql): the request columns
-- of the rows of one partition's events ? ..= ?, as src/rules/sql/absorb.sql counts them.
-- Every instance adds these up in fleet_activity (src/rules/fleet.rs).
SELECT
    request_subject(principal_id, account, client_ip) AS subject,
    utc_hour(time) AS hour,
    count(*) AS requests,
    count(*) FILTER (WHERE operation IN ('Read', 'Query', 'ReadFeed')) AS read_requests,
    coalesce(sum(response_length) FILTER (WHERE operation IN ('Read', 'Query', 'ReadFeed')), 0) AS read_bytes,
    count(*) FILTER (WHERE operation = 'Delete') AS deletes,
    count(*) FILTER (WHERE status_code = 403) AS denied,
    count(*) FILTER (WHERE request_resource_type IN ('Database', 'Collection')) AS metadata_requests,
    min(time) AS first_request_time,
    arg_min(fleet_row_id(source, partition, sequence_number, record_index), time) AS first_request_row
FROM cosmos_requests
WHERE source = ? AND partition = ? AND sequence_number BETWEEN ? AND ?
GROUP BY 1, 2
ORDER BY 1, 2
