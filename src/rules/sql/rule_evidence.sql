-- What rule $rule_id returned (the temp table rule_output) as evidence rows for [$from, $to):
-- one row per event and fingerprint (md5 of rule, principal and entity), types fixed.

CREATE OR REPLACE TEMP TABLE new_evidence AS
SELECT DISTINCT ON (fingerprint, evidence_table, row_id, time) *
FROM (
    SELECT
        md5(concat_ws(chr(31), $rule_id, coalesce(principal_id::VARCHAR, ''), coalesce(entity::VARCHAR, ''))) AS fingerprint,
        coalesce(evidence_table::VARCHAR, '') AS evidence_table,
        row_id::BIGINT AS row_id,
        time::TIMESTAMPTZ AS time,
        end_time::TIMESTAMPTZ AS end_time,
        principal_id::VARCHAR AS principal_id,
        coalesce(entity::VARCHAR, '') AS entity,
        detail::VARCHAR AS detail
    FROM rule_output
    WHERE time >= $from AND time < $to
)
ORDER BY fingerprint, evidence_table, row_id, time, detail;
