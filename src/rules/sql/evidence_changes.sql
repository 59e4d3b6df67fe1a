-- Whether rule $rule_id's stored evidence in [$from, $to) differs from `new_evidence`
-- (1) or not (0): the same count and the same sum of row hashes, in any order.
WITH stored AS (
    SELECT count(*) AS n, coalesce(sum(hash(fingerprint, evidence_table, row_id, time, end_time, detail)), 0) AS h
    FROM finding_evidence
    WHERE rule_id = $rule_id AND time >= $from AND time < $to
),
returned AS (
    SELECT count(*) AS n, coalesce(sum(hash(fingerprint, evidence_table, row_id, time, end_time, detail)), 0) AS h
    FROM new_evidence
)
SELECT CASE WHEN stored.n = returned.n AND stored.h = returned.h THEN 0 ELSE 1 END
FROM stored, returned
