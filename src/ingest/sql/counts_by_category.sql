-- Rows stored by the ingest batches first..last ($1..$2), by table and category.
SELECT 'cosmos_requests' AS table_name, 'DataPlaneRequests' AS category, count(*) AS rows
FROM cosmos_requests WHERE batch_id BETWEEN $1 AND $2
HAVING count(*) > 0
UNION ALL
SELECT 'signins', category, count(*) FROM signins WHERE batch_id BETWEEN $1 AND $2 GROUP BY category
UNION ALL
SELECT 'raw_events', category, count(*) FROM raw_events WHERE batch_id BETWEEN $1 AND $2 GROUP BY category
UNION ALL
SELECT 'quarantine', coalesce(category, '(unknown)'), count(*) FROM quarantine WHERE batch_id BETWEEN $1 AND $2 GROUP BY ALL
ORDER BY table_name, category
