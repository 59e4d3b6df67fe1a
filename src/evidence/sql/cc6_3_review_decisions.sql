-- CC6.3: each item of the access reviews of the reviews population with its decision as of
-- $made_at: the latest `decided` row of access_review_log at or before it (a reviewer may
-- change theirs until the review ends; every decision stays in the log, chained), who made
-- it, when, the justification and the log row's id (decision_log_id) that ties it to the
-- chain. An item without a decision is NotReviewed.
WITH log AS (
    SELECT * FROM access_review_log WHERE logged_at <= $made_at
),
reviews AS (
    SELECT r.id
    FROM access_reviews r
    LEFT JOIN (SELECT review_id, min(logged_at) AS completed_at FROM log WHERE action = 'completed' GROUP BY review_id) c
        ON c.review_id = r.id
    WHERE r.created_at <= $made_at AND r.created_at < $to AND (c.completed_at IS NULL OR c.completed_at >= $from)
),
latest AS (
    SELECT review_id, item_id, max(id) AS id FROM log WHERE action = 'decided' GROUP BY ALL
)
SELECT
    i.review_id,
    i.item_id,
    i.uuid AS item_uuid,
    i.plane,
    i.account,
    i.principal_id,
    i.principal_name,
    i.principal_kind,
    i.role_definition_id,
    i.role_name,
    i.scope,
    i.assignment_id,
    i.recommendation,
    coalesce(l.decision, 'NotReviewed') AS decision,
    l.by_oid AS decided_by_oid,
    l.by_name AS decided_by_name,
    l.logged_at AS decided_at,
    l.justification,
    l.id AS decision_log_id
FROM access_review_items i
JOIN reviews r ON r.id = i.review_id
LEFT JOIN latest x ON x.review_id = i.review_id AND x.item_id = i.item_id
LEFT JOIN log l ON l.id = x.id
ORDER BY i.review_id, i.item_id
