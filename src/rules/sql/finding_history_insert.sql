INSERT INTO finding_history (finding_id, changed_at, changed_by, from_status, to_status, comment)
VALUES (?, get_current_timestamp(), ?, ?, ?, ?)
