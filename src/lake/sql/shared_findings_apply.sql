-- Applies `takes` (shared_findings_take.sql) from instance getvariable('shared_instance'):
-- findings brought up to date or inserted (without evidence rows: those are on the
-- instance that raised them), each status change written to finding_history, and what was
-- taken in noted in shared_findings_in. The raising instance alerts a finding raised;
-- a status taken in that resolves it writes a `resolved` alert event here, as a status
-- change made here does, so the instance holding the episode's alert claim sends it
-- whichever instance resolved it.
-- finding_history is chained: the caller links it (store::append) before committing.

INSERT INTO finding_history (finding_id, changed_at, changed_by, from_status, to_status, comment)
SELECT local_id, get_current_timestamp(), coalesce(status_by, 'tokentrail'), local_status, status,
    'on instance ' || getvariable('shared_instance') || coalesce(': ' || status_comment, '')
FROM takes
WHERE take_status AND status <> local_status;

INSERT INTO alert_events (finding_id, change, created_at)
SELECT local_id, 'resolved', get_current_timestamp()
FROM takes
WHERE take_status AND status = 'resolved' AND local_status <> 'resolved';

-- Both parts in one statement: each finding is updated once.
UPDATE findings f SET
    rule_id = CASE WHEN t.take_detection THEN t.rule_id ELSE f.rule_id END,
    title = CASE WHEN t.take_detection THEN t.title ELSE f.title END,
    severity = CASE WHEN t.take_detection THEN t.severity ELSE f.severity END,
    principal_id = CASE WHEN t.take_detection THEN t.principal_id ELSE f.principal_id END,
    entity = CASE WHEN t.take_detection THEN t.entity ELSE f.entity END,
    first_seen = CASE WHEN t.take_detection THEN t.first_seen ELSE f.first_seen END,
    last_seen = CASE WHEN t.take_detection THEN t.last_seen ELSE f.last_seen END,
    count = CASE WHEN t.take_detection THEN t.count ELSE f.count END,
    summary = CASE WHEN t.take_detection THEN t.summary ELSE f.summary END,
    updated_at = CASE WHEN t.take_detection THEN t.updated_at ELSE f.updated_at END,
    status = CASE WHEN t.take_status THEN t.status ELSE f.status END,
    status_by = CASE WHEN t.take_status THEN t.status_by ELSE f.status_by END,
    status_at = CASE WHEN t.take_status THEN t.status_at ELSE f.status_at END,
    status_comment = CASE WHEN t.take_status THEN t.status_comment ELSE f.status_comment END
FROM takes t
WHERE f.id = t.local_id;

CREATE OR REPLACE TEMP TABLE taken_new AS
SELECT nextval('finding_ids') AS id, * EXCLUDE (local_id, local_status, held_status_at, take_detection, take_status)
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
    'taken in from instance ' || raised_on || ', which raised it and holds its evidence'
FROM taken_new;

-- Detection facts taken in: noted afresh, with the status as it now stands here when that
-- was taken in too (a status set here and not overtaken stays this instance's to publish).
DELETE FROM shared_findings_in WHERE fingerprint IN (SELECT fingerprint FROM takes WHERE take_detection);

INSERT INTO shared_findings_in (fingerprint, instance, taken_at, updated_at, status_at)
SELECT fingerprint, raised_on, get_current_timestamp(), updated_at,
    CASE WHEN take_status OR local_id IS NULL THEN status_at ELSE held_status_at END
FROM takes
WHERE take_detection;

-- A status alone taken in for a finding whose detection facts were taken in before.
UPDATE shared_findings_in h SET status_at = t.status_at
FROM takes t, findings f
WHERE t.take_status AND NOT t.take_detection AND h.fingerprint = t.fingerprint
    AND f.id = t.local_id AND h.updated_at = f.updated_at;

DROP TABLE taken_new;
