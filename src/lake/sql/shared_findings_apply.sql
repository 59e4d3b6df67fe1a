-- Applies `takes` (shared_findings_take.sql) as instance getvariable('shared_instance'):
-- findings brought up to date or inserted (without evidence rows: those are on the
-- instance that raised them), each status change written to finding_history, and what was
-- taken in noted in shared_findings_in. No alert event: the raising instance alerts.
-- finding_history is chained: the caller links it (store::append) before committing.

INSERT INTO finding_history (finding_id, changed_at, changed_by, from_status, to_status, comment)
SELECT local_id, get_current_timestamp(), coalesce(status_by, 'tokentrail'), local_status, status,
    'on instance ' || getvariable('shared_instance') || coalesce(': ' || status_comment, '')
FROM takes
WHERE local_id IS NOT NULL AND status <> local_status;

UPDATE findings f SET
    rule_id = t.rule_id,
    title = t.title,
    severity = t.severity,
    principal_id = t.principal_id,
    entity = t.entity,
    first_seen = t.first_seen,
    last_seen = t.last_seen,
    count = t.count,
    evidence = [],
    summary = t.summary,
    status = t.status,
    status_by = t.status_by,
    status_at = t.status_at,
    status_comment = t.status_comment,
    updated_at = t.updated_at
FROM takes t
WHERE f.id = t.local_id;

CREATE OR REPLACE TEMP TABLE taken_new AS
SELECT nextval('finding_ids') AS id, * EXCLUDE (local_id, local_status)
FROM takes
WHERE local_id IS NULL;

INSERT INTO findings (
    id, fingerprint, rule_id, title, severity, principal_id, entity, first_seen, last_seen, count, evidence,
    summary, status, status_by, status_at, status_comment, created_at, updated_at
)
SELECT
    id, fingerprint, rule_id, title, severity, principal_id, entity, first_seen, last_seen, count, [],
    summary, status, status_by, status_at, status_comment, created_at, updated_at
FROM taken_new;

INSERT INTO finding_history (finding_id, changed_at, changed_by, from_status, to_status, comment)
SELECT id, get_current_timestamp(), 'tokentrail', NULL, status,
    'taken in from instance ' || getvariable('shared_instance') || ', which raised it and holds its evidence'
FROM taken_new;

DELETE FROM shared_findings_in WHERE fingerprint IN (SELECT fingerprint FROM takes);

INSERT INTO shared_findings_in
SELECT fingerprint, getvariable('shared_instance'), changed_at, get_current_timestamp()
FROM takes;

DROP TABLE taken_new;
