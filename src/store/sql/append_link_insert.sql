INSERT INTO append_chain (table_name, link, first_id, last_id, rows, version, rows_digest, chain_digest, committed_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, get_current_timestamp())
