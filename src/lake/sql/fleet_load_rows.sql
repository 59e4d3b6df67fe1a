-- Copies the requests of segments' files (the session variable fleet_files) into
-- fleet_requests, each once: a row kept as evidence from an earlier copy is not copied again.
INSERT INTO fleet_requests BY NAME
SELECT *, fleet_row_id(source, partition, sequence_number, record_index) AS fleet_id, now() AS copied_at, false AS kept
FROM read_parquet(getvariable('fleet_files'), hive_partitioning = false, union_by_name = true)
WHERE fleet_row_id(source, partition, sequence_number, record_index) NOT IN (
    SELECT fleet_id FROM fleet_requests WHERE kept
);
