-- Copies the requests of segments' files (the session variable fleet_files) into
-- fleet_requests, each once: a row kept as evidence from an earlier copy is not copied
-- again. `here`: this instance stored the same event's row (an event position is one row
-- in cosmos_requests; DuckDB's hash join builds on the segments' rows and skips the
-- row groups of other sequence numbers).
INSERT INTO fleet_requests BY NAME
SELECT
    f.*, fleet_row_id(f.source, f.partition, f.sequence_number, f.record_index) AS fleet_id, now() AS copied_at,
    false AS kept, h.sequence_number IS NOT NULL AS here
FROM read_parquet(getvariable('fleet_files'), hive_partitioning = false, union_by_name = true) f
LEFT JOIN cosmos_requests h ON h.source = f.source AND h.partition = f.partition AND h.sequence_number = f.sequence_number
    AND h.record_index = f.record_index
WHERE fleet_row_id(f.source, f.partition, f.sequence_number, f.record_index) NOT IN (
    SELECT fleet_id FROM fleet_requests WHERE kept
);
