-- Rows and time range of each public table, for the status page.
SELECT 'cosmos_requests' AS table_name, count(*) AS rows, min(time)::VARCHAR AS first_time, max(time)::VARCHAR AS last_time FROM cosmos_requests
UNION ALL SELECT 'signins', count(*), min(time)::VARCHAR, max(time)::VARCHAR FROM signins
UNION ALL SELECT 'raw_events', count(*), min(time)::VARCHAR, max(time)::VARCHAR FROM raw_events
UNION ALL SELECT 'quarantine', count(*), min(time)::VARCHAR, max(time)::VARCHAR FROM quarantine
