SELECT batch_id, epoch_us(committed_at), source_id, position, cosmos_rows, signin_rows, raw_rows, quarantined_rows
FROM ingest_batches WHERE batch_id <= ? ORDER BY batch_id
