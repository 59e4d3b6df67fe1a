INSERT INTO saved_queries (name, sql, created_at, created_by_oid, created_by_tid, created_by_name)
VALUES (?, ?, get_current_timestamp(), ?, ?, ?) RETURNING id
