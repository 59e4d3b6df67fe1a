-- id: new_collection_for_principal
-- title: Principal touched collections it never used before
-- severity: medium
-- soc2: CC6.1, CC6.3
-- mitre: T1619 Cloud Storage Object Discovery
-- window: 0m
-- description: Principals use the same few containers day after day. Raises the first request a
--   principal sends to a collection (container) it had never sent one to, when the principal
--   has at least learning_days of history before it (a new principal is dormant_principal's
--   business). Denied requests count: trying is touching.
-- remediation: Check that the principal's role assignment should reach the collection and that
--   the owner expected it to. Unexpected reach is often the first step of an exfiltration;
--   narrow the role assignment's scope.
-- param: learning_days = 3
--   Days of the principal's own history before a collection can be new.
WITH known AS (
    SELECT subject, min(first_time) AS since
    FROM first_seen
    WHERE facet IN ('data', 'signin')
    GROUP BY subject
)
SELECT
    f.first_time AS time,
    'cosmos_requests' AS evidence_table,
    f.first_row AS row_id,
    f.subject AS principal_id,
    'account=' || split_part(f.value, '/', 1) AS entity,
    'first request to ' || f.value AS detail
FROM first_seen f
JOIN known p ON p.subject = f.subject
WHERE f.facet = 'collection'
  AND f.first_time >= $from AND f.first_time < $to
  AND f.first_time >= utc_add(p.since, to_days($learning_days))
  AND f.first_time >= utc_add((SELECT history_start FROM data_clock), to_days($learning_days))
