-- CC6.1: every request in [$from, $to) made with an account key or resource token (no identity
-- behind it), one by one, each with a stable id and where its record came from, so that a
-- sample of them can be traced to the original log record (`tokentrail evidence sample`).
-- event_id (macro record_event_id, migration 17): <file>:<line>[#<record_index>] for a file,
-- eventhubs:<namespace>/<hub>/<partition>@<sequence>[#<record_index>] for Event Hubs,
-- cosmos_requests batch <batch_id> row <rowid> for rows stored before positions were kept.
-- record_sha256: SHA-256 (lower-case hex) of the record's bytes as received.
SELECT
    record_event_id('cosmos_requests', source, line, record_index, partition, sequence_number, batch_id, rowid)
        AS event_id,
    time,
    account,
    database_name,
    collection_name,
    operation,
    status_code,
    client_ip,
    user_agent,
    auth_token_type,
    key_type,
    activity_id,
    source,
    partition,
    sequence_number,
    line,
    record_index,
    lower(hex(record_sha256)) AS record_sha256
FROM cosmos_requests
WHERE time >= $from AND time < $to AND batch_id <= $as_of AND principal_id IS NULL
ORDER BY time, event_id
