-- The segments and tables with rows evicted, up to a batch: (first, last, table).
SELECT DISTINCT s.first_batch, s.last_batch, e.table_name
FROM lake_evictions e JOIN lake_segments s USING (first_batch)
WHERE s.first_batch <= ?
ORDER BY s.first_batch, e.table_name
