-- The last acknowledgement of finding ? by a person, from its history (which keeps every
-- change: detection reopening the finding does not remove it).
SELECT changed_by AS acknowledged_by, changed_at AS acknowledged_at, comment
FROM finding_history
WHERE finding_id = ? AND to_status = 'acknowledged'
ORDER BY changed_at DESC, id DESC
LIMIT 1
