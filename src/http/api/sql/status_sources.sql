-- Every source with its position and what it has stored, most recently active first.
SELECT source_id, kind, complete, line, sequence_number, event_time::VARCHAR AS event_time,
       updated_at::VARCHAR AS updated_at, batches, cosmos_rows, signin_rows, raw_rows, quarantined_rows
FROM ingest_status
ORDER BY updated_at DESC
LIMIT 100
