-- Absorbs the ingest batches ($lo, $hi] into the derived tables of migrations/0004_detection.sql.
-- Run by src/rules/absorb.rs inside the transaction that moves detection_state.absorbed_batch;
-- every aggregate is a sum, minimum or maximum, so the order batches arrive in does not matter.

CREATE OR REPLACE TEMP TABLE new_requests AS
SELECT
    rowid AS row_id, time, account, principal_id, client_ip, user_agent, operation, status_code,
    response_length, request_resource_type, database_name, collection_name,
    request_subject(principal_id, account, client_ip) AS subject
FROM cosmos_requests
WHERE batch_id > $lo AND batch_id <= $hi;

CREATE OR REPLACE TEMP TABLE new_signins AS
SELECT rowid AS row_id, time, category, principal_id, ip_address, country, coalesce(error_code, 0) = 0 AS succeeded
FROM signins
WHERE batch_id > $lo AND batch_id <= $hi;

CREATE OR REPLACE TEMP TABLE new_raw AS
SELECT rowid AS row_id, time, category
FROM raw_events
WHERE batch_id > $lo AND batch_id <= $hi AND time IS NOT NULL;

INSERT INTO stream_hours (stream, hour, events, first_time, first_row, last_time, last_row)
SELECT stream, utc_hour(time) AS hour, count(*), min(time), arg_min(row_id, time), max(time), arg_max(row_id, time)
FROM (
    SELECT 'cosmos:' || coalesce(account, '') AS stream, time, row_id FROM new_requests
    UNION ALL
    SELECT 'signins:' || category, time, row_id FROM new_signins
    UNION ALL
    SELECT 'raw:' || category, time, row_id FROM new_raw
)
GROUP BY stream, hour
ON CONFLICT DO UPDATE SET
    events = events + excluded.events,
    first_row = CASE WHEN excluded.first_time < first_time THEN excluded.first_row ELSE first_row END,
    first_time = least(first_time, excluded.first_time),
    last_row = CASE WHEN excluded.last_time > last_time THEN excluded.last_row ELSE last_row END,
    last_time = greatest(last_time, excluded.last_time);

INSERT INTO activity_hours (
    subject, hour, requests, read_requests, read_bytes, deletes, denied, metadata_requests, signins,
    failed_signins, first_request_time, first_request_row
)
SELECT
    subject, hour, sum(requests), sum(read_requests), sum(read_bytes), sum(deletes), sum(denied),
    sum(metadata_requests), sum(signins), sum(failed_signins), min(first_request_time),
    arg_min(first_request_row, first_request_time)
FROM (
    SELECT
        subject,
        utc_hour(time) AS hour,
        count(*) AS requests,
        count(*) FILTER (WHERE operation IN ('Read', 'Query', 'ReadFeed')) AS read_requests,
        coalesce(sum(response_length) FILTER (WHERE operation IN ('Read', 'Query', 'ReadFeed')), 0) AS read_bytes,
        count(*) FILTER (WHERE operation = 'Delete') AS deletes,
        count(*) FILTER (WHERE status_code = 403) AS denied,
        count(*) FILTER (WHERE request_resource_type IN ('Database', 'Collection')) AS metadata_requests,
        0 AS signins,
        0 AS failed_signins,
        min(time) AS first_request_time,
        arg_min(row_id, time) AS first_request_row
    FROM new_requests
    GROUP BY 1, 2
    UNION ALL
    SELECT principal_id, utc_hour(time), 0, 0, 0, 0, 0, 0, count(*), count(*) FILTER (WHERE NOT succeeded), NULL, NULL
    FROM new_signins
    WHERE principal_id IS NOT NULL
    GROUP BY 1, 2
)
GROUP BY subject, hour
ON CONFLICT DO UPDATE SET
    requests = requests + excluded.requests,
    read_requests = read_requests + excluded.read_requests,
    read_bytes = read_bytes + excluded.read_bytes,
    deletes = deletes + excluded.deletes,
    denied = denied + excluded.denied,
    metadata_requests = metadata_requests + excluded.metadata_requests,
    signins = signins + excluded.signins,
    failed_signins = failed_signins + excluded.failed_signins,
    first_request_row = CASE
        WHEN first_request_time IS NULL OR excluded.first_request_time < first_request_time THEN excluded.first_request_row
        ELSE first_request_row END,
    first_request_time = least(first_request_time, excluded.first_request_time);

INSERT INTO first_seen (subject, facet, value, first_time, first_row, last_time, events)
SELECT subject, facet, value, min(time), arg_min(row_id, time), max(time), count(*)
FROM (
    SELECT
        principal_id AS subject, 'collection' AS facet,
        coalesce(account, '') || '/' || coalesce(database_name, '') || '/' || collection_name AS value, time, row_id
    FROM new_requests
    WHERE principal_id IS NOT NULL AND coalesce(collection_name, '') <> ''
    UNION ALL
    SELECT principal_id, 'user_agent', user_agent_family(user_agent), time, row_id
    FROM new_requests
    WHERE principal_id IS NOT NULL
    UNION ALL
    SELECT coalesce(account, ''), 'key_client', coalesce(client_ip, ''), time, row_id
    FROM new_requests
    WHERE principal_id IS NULL
    UNION ALL
    SELECT principal_id, 'data', '', time, row_id
    FROM new_requests
    WHERE principal_id IS NOT NULL
    UNION ALL
    SELECT principal_id, 'country', country, time, row_id
    FROM new_signins
    WHERE principal_id IS NOT NULL AND succeeded AND coalesce(country, '') <> ''
    UNION ALL
    SELECT principal_id, 'signin', '', time, row_id
    FROM new_signins
    WHERE principal_id IS NOT NULL AND succeeded
)
GROUP BY subject, facet, value
ON CONFLICT DO UPDATE SET
    first_row = CASE WHEN excluded.first_time < first_time THEN excluded.first_row ELSE first_row END,
    first_time = least(first_time, excluded.first_time),
    last_time = greatest(last_time, excluded.last_time),
    events = events + excluded.events;

-- Principals with new successful sign-ins, from the earliest of them: requests of theirs at or
-- after it may have a different latest sign-in now (Entra logs arrive late).
CREATE OR REPLACE TEMP TABLE late_signins AS
SELECT principal_id, min(time) AS since
FROM new_signins
WHERE succeeded AND principal_id IS NOT NULL
GROUP BY principal_id;
