-- Per verified segment, the archived tables with rows in it (from its files) and some of
-- the segment's batches not evicted yet.
SELECT s.first_batch, s.last_batch, f.table_name
FROM lake_segments s JOIN lake_files f USING (first_batch)
WHERE s.verified_at IS NOT NULL
  AND (SELECT count(*) FROM lake_evictions e WHERE e.first_batch = s.first_batch AND e.table_name = f.table_name)
      < s.last_batch - s.first_batch + 1
GROUP BY s.first_batch, s.last_batch, f.table_name
ORDER BY s.first_batch, f.table_name
