-- CC7.3/CC7.4: every status change of the findings of cc7_3_response.sql, oldest first.
WITH chosen AS (
    SELECT id FROM findings WHERE created_at >= $from AND created_at < $to
    UNION
    SELECT f.id FROM findings f JOIN finding_evidence e ON e.fingerprint = f.fingerprint
    WHERE e.time >= $from AND e.time < $to
)
SELECT h.finding_id, h.changed_at, h.changed_by, h.from_status, h.to_status, h.comment
FROM finding_history h
JOIN chosen c ON c.id = h.finding_id
ORDER BY h.finding_id, h.changed_at, h.rowid
