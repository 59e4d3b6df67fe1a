-- Every batch and table whose rows were evicted to the lake.
SELECT batch_id, table_name FROM lake_evictions ORDER BY batch_id
