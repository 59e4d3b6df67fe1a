SELECT link, first_id, last_id, rows, version, rows_digest, chain_digest
FROM append_chain WHERE table_name = ? ORDER BY link
