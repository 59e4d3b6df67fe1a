SELECT changed_at, changed_by, from_status, to_status, comment FROM finding_history
WHERE finding_id = ? ORDER BY changed_at, id
