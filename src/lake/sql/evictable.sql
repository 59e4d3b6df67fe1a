-- Per verified segment and archived table not evicted yet: the newest day of its rows and
-- how many there are, from the files the lake holds.
SELECT s.first_batch, s.last_batch, f.table_name, strftime(max(f.day), '%Y-%m-%d'), sum(f.rows)::BIGINT
FROM lake_segments s JOIN lake_files f USING (first_batch)
WHERE s.verified_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM lake_evictions e WHERE e.first_batch = s.first_batch AND e.table_name = f.table_name)
GROUP BY s.first_batch, s.last_batch, f.table_name
ORDER BY s.first_batch, f.table_name
