-- Brings the findings of the fingerprints in `touched` up to date with their evidence's
-- totals (`finding_totals`: finding_totals.sql, whole_totals.sql; a fingerprint not in it
-- has no evidence left): new ones are raised, the others get their times, count, summary
-- and evidence list (the first 1,000 events by time; all are in finding_evidence) again.
-- The engine's own status changes go to finding_history: `withdrawn` when no evidence is
-- left (data that arrived later explained it), `open` again when a withdrawn finding has evidence again or
-- a resolved one has newer evidence. Parameters: $rule_id, $title, $severity.
-- finding_history is append-only and chained: its rows take their id from its default
-- (a sequence), and evaluate.rs links them (store::append::link_in) before committing,
-- when new_findings or finding_changes has rows: write history only from those two.
--
-- The alert outbox (alert_events, src/alerts) is written here too, in the same transaction:
-- raised, reopened, withdrawn (of a finding someone was asked to look at), and updated (new
-- evidence on an open finding).

CREATE OR REPLACE TEMP TABLE finding_changes AS
SELECT
    f.id,
    f.status AS from_status,
    CASE WHEN t.fingerprint IS NULL THEN 'withdrawn' ELSE 'open' END AS to_status,
    CASE
        WHEN t.fingerprint IS NULL THEN 'withdrawn: no evidence is left; data that arrived later explains the events'
        WHEN f.status = 'withdrawn' THEN 'raised again: the rule matches again'
        ELSE 'reopened: new evidence after it was resolved'
    END AS comment
FROM findings f
JOIN touched x ON x.fingerprint = f.fingerprint
LEFT JOIN finding_totals t ON t.fingerprint = f.fingerprint
WHERE (t.fingerprint IS NULL AND f.status <> 'withdrawn')
   OR (t.fingerprint IS NOT NULL AND f.status = 'withdrawn')
   OR (t.fingerprint IS NOT NULL AND f.status = 'resolved' AND t.last_seen > f.last_seen);

-- A finding taken in from another instance (src/lake/shared_findings.rs) that this
-- instance's evidence now raises too alerts as raised: the instance that raised it may be
-- gone before its alert went out, and the alert claims in the shared lake send one per
-- fingerprint.
CREATE OR REPLACE TEMP TABLE raised_here AS
SELECT f.id
FROM findings f
JOIN finding_totals t ON t.fingerprint = f.fingerprint
WHERE f.status = 'open' AND f.id NOT IN (SELECT id FROM finding_changes)
    AND taken_in_from(f.fingerprint, f.updated_at) IS NOT NULL;

INSERT INTO alert_events (finding_id, change, created_at)
SELECT id, 'raised', get_current_timestamp() FROM raised_here;

INSERT INTO alert_events (finding_id, change, created_at)
SELECT id, CASE WHEN to_status = 'withdrawn' THEN 'withdrawn' ELSE 'reopened' END, get_current_timestamp()
FROM finding_changes
WHERE to_status = 'open' OR from_status IN ('open', 'acknowledged');

INSERT INTO alert_events (finding_id, change, created_at)
SELECT f.id, 'updated', get_current_timestamp()
FROM findings f
JOIN finding_totals t ON t.fingerprint = f.fingerprint
WHERE f.status = 'open' AND (t.count <> f.count OR t.last_seen <> f.last_seen)
  AND f.id NOT IN (SELECT id FROM finding_changes) AND f.id NOT IN (SELECT id FROM raised_here);

INSERT INTO finding_history (finding_id, changed_at, changed_by, from_status, to_status, comment)
SELECT id, get_current_timestamp(), 'tokentrail', from_status, to_status, comment
FROM finding_changes;

-- What each touched finding becomes. Only the findings that change are written, and the
-- evidence list in a statement of its own: DuckDB updates other columns in place, but
-- rewrites a whole row to change a list, and a list rewritten pass after pass made each
-- commit's log larger than the last until the next checkpoint.
CREATE OR REPLACE TEMP TABLE finding_updates AS
SELECT
    g.id,
    coalesce(t.first_seen, g.first_seen) AS first_seen,
    coalesce(t.last_seen, g.last_seen) AS last_seen,
    coalesce(t.count, 0) AS count,
    coalesce(t.evidence, []) AS evidence,
    coalesce(t.summary, g.summary) AS summary,
    c.to_status,
    c.comment,
    g.evidence IS DISTINCT FROM coalesce(t.evidence, []) AS evidence_changed
FROM touched x
JOIN findings g ON g.fingerprint = x.fingerprint
LEFT JOIN finding_totals t ON t.fingerprint = x.fingerprint
LEFT JOIN finding_changes c ON c.id = g.id
WHERE c.id IS NOT NULL
   OR g.id IN (SELECT id FROM raised_here)
   OR g.first_seen IS DISTINCT FROM coalesce(t.first_seen, g.first_seen)
   OR g.last_seen IS DISTINCT FROM coalesce(t.last_seen, g.last_seen)
   OR g.count IS DISTINCT FROM coalesce(t.count, 0)
   OR g.summary IS DISTINCT FROM coalesce(t.summary, g.summary)
   OR g.title IS DISTINCT FROM $title
   OR g.severity IS DISTINCT FROM $severity
   OR g.evidence IS DISTINCT FROM coalesce(t.evidence, []);

UPDATE findings f SET
    first_seen = u.first_seen,
    last_seen = u.last_seen,
    count = u.count,
    summary = u.summary,
    title = $title,
    severity = $severity,
    status = coalesce(u.to_status, f.status),
    status_by = CASE WHEN u.to_status IS NULL THEN f.status_by ELSE 'tokentrail' END,
    status_at = CASE WHEN u.to_status IS NULL THEN f.status_at ELSE get_current_timestamp() END,
    status_comment = CASE WHEN u.to_status IS NULL THEN f.status_comment ELSE u.comment END,
    updated_at = get_current_timestamp()
FROM finding_updates u
WHERE f.id = u.id;

UPDATE findings f SET evidence = u.evidence
FROM finding_updates u
WHERE f.id = u.id AND u.evidence_changed;

CREATE OR REPLACE TEMP TABLE new_findings AS
SELECT nextval('finding_ids') AS id, t.*
FROM finding_totals t
ANTI JOIN findings f ON f.fingerprint = t.fingerprint;

INSERT INTO findings (
    id, fingerprint, rule_id, title, severity, principal_id, entity, first_seen, last_seen, count, evidence,
    summary, status, status_by, status_at, status_comment, created_at, updated_at
)
SELECT
    id, fingerprint, $rule_id, $title, $severity, principal_id, entity, first_seen, last_seen, count, evidence,
    summary, 'open', 'tokentrail', get_current_timestamp(), 'raised', get_current_timestamp(), get_current_timestamp()
FROM new_findings;

INSERT INTO finding_history (finding_id, changed_at, changed_by, from_status, to_status, comment)
SELECT id, get_current_timestamp(), 'tokentrail', NULL, 'open', 'raised'
FROM new_findings;

INSERT INTO alert_events (finding_id, change, created_at)
SELECT id, 'raised', get_current_timestamp() FROM new_findings;
