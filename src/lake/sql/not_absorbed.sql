-- Committed batches detection has not absorbed yet: archived once it has.
SELECT count(*) FROM ingest_batches
WHERE batch_id > coalesce((SELECT absorbed_batch FROM detection_state WHERE id = 1), -1)
