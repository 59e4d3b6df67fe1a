UPDATE findings SET status = ?, status_by = ?, status_at = get_current_timestamp(), status_comment = ?
WHERE id = ?
