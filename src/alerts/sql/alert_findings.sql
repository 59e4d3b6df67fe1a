-- The findings alert messages and routes talk about, with the principal's latest display
-- name and the Cosmos DB account: from the entity (`account=…`, `stream=cosmos:…`), else
-- from the finding's first request in its evidence. Parameter: $ids (BIGINT[]).
WITH wanted AS (
    SELECT * FROM findings WHERE id IN (SELECT unnest($ids::BIGINT[]))
),
names AS (
    SELECT principal_id, arg_max(principal_name, time) AS principal_name
    FROM signins
    WHERE principal_id IN (SELECT principal_id FROM wanted)
    GROUP BY principal_id
),
first_request AS (
    SELECT fingerprint, min(row_id) AS row_id
    FROM finding_evidence
    WHERE evidence_table = 'cosmos_requests' AND fingerprint IN (SELECT fingerprint FROM wanted)
    GROUP BY fingerprint
),
fleet_request AS (
    -- or copied by the rules lease holder from another instance (src/lake/fleet.rs)
    SELECT fingerprint, min(row_id) AS row_id
    FROM finding_evidence
    WHERE evidence_table = 'fleet_requests' AND fingerprint IN (SELECT fingerprint FROM wanted)
    GROUP BY fingerprint
),
accounts AS (
    SELECT r.fingerprint, c.account
    FROM first_request r JOIN cosmos_requests c ON c.rowid = r.row_id
    UNION ALL
    SELECT r.fingerprint, c.account
    FROM fleet_request r JOIN fleet_requests c ON c.fleet_id = r.row_id
    WHERE r.fingerprint NOT IN (SELECT fingerprint FROM first_request)
)
SELECT
    f.id, f.fingerprint, f.rule_id, f.title, f.severity, f.status, f.principal_id, n.principal_name, f.entity,
    coalesce(
        nullif(regexp_extract(f.entity, 'account=([^ ]*)', 1), ''),
        nullif(regexp_extract(f.entity, 'stream=cosmos:([^ ]*)', 1), ''),
        a.account
    ) AS account,
    epoch_us(f.first_seen) AS first_seen, epoch_us(f.last_seen) AS last_seen, f.count, f.summary
FROM wanted f
LEFT JOIN names n USING (principal_id)
LEFT JOIN accounts a USING (fingerprint)
ORDER BY f.id;
