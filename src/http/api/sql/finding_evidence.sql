SELECT e.evidence_table, e.row_id, e.time, e.end_time, e.detail FROM finding_evidence e
JOIN findings f USING (fingerprint) WHERE f.id = ? ORDER BY e.time, e.row_id LIMIT ?
