SELECT logged_at, changed_by, action, finding_id, detail FROM incident_log WHERE incident_id = ? ORDER BY id
