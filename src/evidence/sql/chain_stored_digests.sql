SELECT batch_id, version, cosmos_digest, signin_digest, raw_digest, quarantine_digest, rows_digest, chain_digest
FROM ingest_chain WHERE batch_id <= ? ORDER BY batch_id
