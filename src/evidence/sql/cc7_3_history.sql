-- CC7.3/CC7.4: every status change before $to of the findings of cc7_3_response.sql, oldest
-- first, with the id that chains it (finding_history is append-only and chained).
SELECT h.id AS change_id, h.finding_id, h.changed_at, h.changed_by, h.from_status, h.to_status, h.comment
FROM finding_history h
JOIN findings_in($from, $to, $made_at) c ON c.id = h.finding_id
WHERE h.changed_at < $to
ORDER BY h.finding_id, h.changed_at, h.id
