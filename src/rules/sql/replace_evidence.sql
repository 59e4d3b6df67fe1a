-- Replaces rule $rule_id's evidence with event time in [$from, $to) by `new_evidence`
-- (see rule_evidence.sql), and notes in `touched` every fingerprint that changed.

CREATE OR REPLACE TEMP TABLE touched AS
SELECT DISTINCT fingerprint
FROM finding_evidence
WHERE rule_id = $rule_id AND time >= $from AND time < $to;

DELETE FROM finding_evidence
WHERE rule_id = $rule_id AND time >= $from AND time < $to;

INSERT INTO finding_evidence (fingerprint, rule_id, evidence_table, row_id, time, end_time, principal_id, entity, detail)
SELECT fingerprint, $rule_id, evidence_table, row_id, time, end_time, principal_id, entity, detail
FROM new_evidence;

INSERT INTO touched
SELECT DISTINCT fingerprint
FROM new_evidence
WHERE fingerprint NOT IN (SELECT fingerprint FROM touched);
