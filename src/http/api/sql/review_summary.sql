-- Access reviews, newest first, for caller $1 (object id, lower case): every one when $2
-- (Auditors, Admins), else those naming them; one when $3 is given.
SELECT
    s.id, s.uuid, s.name, s.scope, from_json(s.reviewers, '[{"oid": "VARCHAR", "name": "VARCHAR"}]') AS reviewers, s.usage_since, s.usage_until, s.due_at, s.created_at, s.created_by,
    s.items, s.decided, s.state, s.completed_at, s.completed_by,
    list_contains(json_extract_string(s.reviewers, '$[*].oid'), $1) AS mine
FROM access_review_status s
WHERE ($2 OR list_contains(json_extract_string(s.reviewers, '$[*].oid'), $1))
  AND ($3::BIGINT IS NULL OR s.id = $3)
ORDER BY s.id DESC
