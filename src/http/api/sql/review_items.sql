-- Review $1's items with their latest decision, for caller $2 (object id, lower case):
-- whether they may decide each (a Reviewer ($3) named by the review, not completed, not
-- their own access nor one they granted) and, when not, why.
WITH review AS (
    SELECT list_contains(json_extract_string(reviewers, '$[*].oid'), $2) AS named, completed_at
    FROM access_review_status WHERE id = $1
)
SELECT
    d.item_id, d.uuid, d.plane, d.assignment_id, d.account, d.principal_id, d.principal_name, d.principal_kind,
    d.role_definition_id, d.role_name, d.data_actions, d.scope, d.granted_at, d.granted_by_oid, d.granted_by_name,
    d.requests, d.last_use, d.used_actions, d.recommendation, d.advice,
    CASE d.decision WHEN 'Approve' THEN 'approve' WHEN 'Deny' THEN 'revoke' WHEN 'DontKnow' THEN 'dont_know' END AS decision,
    d.justification, d.decided_by_name, d.decided_at,
    CASE
        WHEN NOT $3 THEN 'only Reviewers decide'
        WHEN r.completed_at IS NOT NULL THEN 'the review is completed'
        WHEN NOT r.named THEN 'you are not a reviewer of this review'
        WHEN c.own THEN 'this is your own access: another reviewer must decide it'
        WHEN c.granted IS NOT NULL THEN c.granted || ': another reviewer must decide it'
    END AS refusal,
    refusal IS NULL AS can_decide
FROM access_review_decisions d
CROSS JOIN review r
JOIN review_conflicts($1, $2) c USING (item_id)
WHERE d.review_id = $1
ORDER BY d.item_id
