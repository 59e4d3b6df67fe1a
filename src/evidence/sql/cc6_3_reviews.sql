-- CC6.3: access reviews open during [$from, $to) (started before $to, not completed before
-- $from), each with its state as of $made_at, from the reviews' append-only log
-- (access_review_log rows at or before $made_at, migration 20): items decided, completion
-- (when and by whom), and open, overdue (past due, not completed) or completed.
WITH log AS (
    SELECT * FROM access_review_log WHERE logged_at <= $made_at
),
completed AS (
    SELECT review_id, min(logged_at) AS completed_at, arg_min(by_name, logged_at) AS completed_by,
           arg_min(by_oid, logged_at) AS completed_by_oid
    FROM log WHERE action = 'completed'
    GROUP BY review_id
)
SELECT
    r.id AS review_id,
    r.uuid AS review_uuid,
    r.name,
    r.scope,
    (SELECT string_agg(coalesce(x->>'name', x->>'oid') || ' (' || coalesce(x->>'oid', '') || ')', '; ')
     FROM unnest(CAST(r.reviewers AS JSON[])) AS t(x)) AS reviewers,
    r.usage_since,
    r.usage_until,
    r.due_at,
    r.created_by,
    r.created_at,
    (SELECT count(*) FROM access_review_items i WHERE i.review_id = r.id) AS items,
    (SELECT count(DISTINCT l.item_id) FROM log l WHERE l.review_id = r.id AND l.action = 'decided') AS decided,
    c.completed_at,
    c.completed_by,
    c.completed_by_oid,
    CASE WHEN c.completed_at IS NOT NULL THEN 'completed' WHEN r.due_at < $made_at THEN 'overdue' ELSE 'open' END
        AS state_at_pack
FROM access_reviews r
LEFT JOIN completed c ON c.review_id = r.id
WHERE r.created_at <= $made_at AND r.created_at < $to AND (c.completed_at IS NULL OR c.completed_at >= $from)
ORDER BY r.created_at, r.id
