-- How far detection has come: the last committed ingest batch, the last one the rules
-- have absorbed, and when they last absorbed (UTC), for the status page.
SELECT (SELECT coalesce(max(batch_id), 0) FROM ingest_batches) AS committed_batch,
       absorbed_batch,
       strftime(absorbed_at, '%Y-%m-%d %H:%M:%S UTC') AS absorbed_at
FROM detection_state
