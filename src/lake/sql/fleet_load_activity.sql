-- Adds segments' partial activity_hours (src/lake/sql/segment_activity.sql) to
-- everyone's counts; the files are named in the session variable fleet_files.
INSERT INTO fleet_activity (
    subject, hour, requests, read_requests, read_bytes, deletes, denied, metadata_requests, first_request_time,
    first_request_row
)
SELECT
    subject, hour, sum(requests), sum(read_requests), sum(read_bytes), sum(deletes), sum(denied),
    sum(metadata_requests), min(first_request_time), arg_min(first_request_row, first_request_time)
FROM read_parquet(getvariable('fleet_files'))
GROUP BY subject, hour
ON CONFLICT DO UPDATE SET
    requests = requests + excluded.requests,
    read_requests = read_requests + excluded.read_requests,
    read_bytes = read_bytes + excluded.read_bytes,
    deletes = deletes + excluded.deletes,
    denied = denied + excluded.denied,
    metadata_requests = metadata_requests + excluded.metadata_requests,
    first_request_row = CASE
        WHEN first_request_time IS NULL OR excluded.first_request_time < first_request_time THEN excluded.first_request_row
        ELSE first_request_row END,
    first_request_time = least(first_request_time, excluded.first_request_time);
