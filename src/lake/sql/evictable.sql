-- Per verified segment, the archived tables some of whose rows are still in the database
-- (archived rows more than evicted ones), with the oldest day their files hold: a segment
-- whose every table is evicted, or whose oldest day is within the retention, costs no scan.
WITH archived AS (
    SELECT first_batch, table_name, sum(rows) AS rows, min(day) AS first_day FROM lake_files GROUP BY ALL
), evicted AS (
    SELECT first_batch, table_name, sum(rows) AS rows FROM lake_evictions GROUP BY ALL
)
SELECT a.first_batch, s.last_batch, a.table_name, strftime(a.first_day, '%Y-%m-%d')
FROM archived a
JOIN lake_segments s USING (first_batch)
LEFT JOIN evicted e USING (first_batch, table_name)
WHERE s.verified_at IS NOT NULL AND a.rows > coalesce(e.rows, 0)
ORDER BY a.first_batch, a.table_name
