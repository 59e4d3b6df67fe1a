-- Replaces rule $rule_id's evidence with event time in [$from, $to) by `new_evidence`
-- (see rule_evidence.sql), and notes in `touched` every fingerprint that changed.

CREATE OR REPLACE TEMP TABLE touched AS
SELECT DISTINCT fingerprint
FROM finding_evidence
WHERE rule_id = $rule_id AND time >= $from AND time < $to;

-- Only what changed is written: the rows that went away are deleted, the rows whose detail
-- or end changed are updated in place, and the rows not stored yet inserted. An incident
-- that goes on adds a few rows a pass, and its rows' details (counts within a window) move
-- as later events come; rewriting them left DuckDB a dead copy of each, pass after pass
-- (principal_id and entity are part of the fingerprint). new_evidence has one row per
-- (fingerprint, evidence_table, row_id, time), and so has what is stored: that key
-- tells a row that changed from one that went away.
DELETE FROM finding_evidence e
WHERE e.rule_id = $rule_id AND e.time >= $from AND e.time < $to
  AND NOT EXISTS (
      SELECT 1 FROM new_evidence n
      WHERE n.fingerprint = e.fingerprint AND n.evidence_table = e.evidence_table AND n.row_id IS NOT DISTINCT FROM e.row_id
        AND n.time = e.time
  );

UPDATE finding_evidence e SET end_time = n.end_time, detail = n.detail
FROM new_evidence n
WHERE e.rule_id = $rule_id AND e.time >= $from AND e.time < $to
  AND n.fingerprint = e.fingerprint AND n.evidence_table = e.evidence_table AND n.row_id IS NOT DISTINCT FROM e.row_id
  AND n.time = e.time
  AND (n.end_time IS DISTINCT FROM e.end_time OR n.detail IS DISTINCT FROM e.detail);

INSERT INTO finding_evidence (fingerprint, rule_id, evidence_table, row_id, time, end_time, principal_id, entity, detail)
SELECT fingerprint, $rule_id, evidence_table, row_id, time, end_time, principal_id, entity, detail
FROM new_evidence n
WHERE NOT EXISTS (
    SELECT 1 FROM finding_evidence e
    WHERE e.rule_id = $rule_id AND e.time >= $from AND e.time < $to
      AND n.fingerprint = e.fingerprint AND n.evidence_table = e.evidence_table AND n.row_id IS NOT DISTINCT FROM e.row_id
      AND n.time = e.time
);

INSERT INTO touched
SELECT DISTINCT fingerprint
FROM new_evidence
WHERE fingerprint NOT IN (SELECT fingerprint FROM touched);
