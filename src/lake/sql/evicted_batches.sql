-- Every batch and table whose rows were evicted to the lake.
SELECT b.batch_id, e.table_name
FROM lake_evictions e
JOIN lake_segments s USING (first_batch)
JOIN ingest_batches b ON b.batch_id BETWEEN s.first_batch AND s.last_batch
ORDER BY b.batch_id
