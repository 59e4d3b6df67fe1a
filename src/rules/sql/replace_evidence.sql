-- Replaces rule $rule_id's evidence with event time in [$from, $to) by `new_evidence`
-- (see rule_evidence.sql), and notes in `touched` every fingerprint that changed.
--
-- Only what changed is written: the rows that went away are deleted, the rows whose detail
-- or end changed are updated in place, and the rows not stored yet inserted. An incident
-- that goes on adds a few rows a pass, and its rows' details (counts within a window) move
-- as later events come; rewriting them left DuckDB a dead copy of each, pass after pass
-- (principal_id and entity are part of the fingerprint). new_evidence has one row per
-- (fingerprint, evidence_table, row_id, time), and so has what is stored: that key
-- tells a row that changed from one that went away. The window's stored rows are read
-- once, in the join below.

CREATE OR REPLACE TEMP TABLE evidence_diff AS
SELECT
    s.stored_row,
    s.time AS stored_time,
    s.end_time AS stored_end_time,
    n.fingerprint IS NOT NULL AS returned,
    coalesce(n.fingerprint, s.fingerprint) AS fingerprint,
    n.evidence_table, n.row_id, n.time, n.end_time, n.principal_id, n.entity, n.detail,
    s.stored_row IS NOT NULL AND n.fingerprint IS NOT NULL
        AND (n.end_time IS DISTINCT FROM s.end_time OR n.detail IS DISTINCT FROM s.detail) AS changed
FROM (
    SELECT rowid AS stored_row, fingerprint, evidence_table, row_id, time, end_time, detail
    FROM finding_evidence
    WHERE rule_id = $rule_id AND time >= $from AND time < $to
) s
FULL JOIN new_evidence n
  ON n.fingerprint = s.fingerprint AND n.evidence_table = s.evidence_table
 AND n.row_id IS NOT DISTINCT FROM s.row_id AND n.time = s.time;

CREATE OR REPLACE TEMP TABLE touched AS
SELECT DISTINCT fingerprint FROM evidence_diff;

DELETE FROM finding_evidence
WHERE rowid IN (SELECT stored_row FROM evidence_diff WHERE NOT returned);

UPDATE finding_evidence e SET end_time = d.end_time, detail = d.detail
FROM evidence_diff d
WHERE e.rowid = d.stored_row AND d.changed;

INSERT INTO finding_evidence (fingerprint, rule_id, evidence_table, row_id, time, end_time, principal_id, entity, detail)
SELECT fingerprint, $rule_id, evidence_table, row_id, time, end_time, principal_id, entity, detail
FROM evidence_diff
WHERE stored_row IS NULL;
