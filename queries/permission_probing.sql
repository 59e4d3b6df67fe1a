-- id: permission_probing
-- title: Principal probing for data it is not allowed to reach
-- severity: medium
-- soc2: CC6.1, CC6.3, CC7.2
-- mitre: T1580 Cloud Infrastructure Discovery
-- window: 1h
-- description: Many requests denied (403) in a short time, across several collections: the
--   caller is looking for what its role can reach. Raises each denied request of a principal (or
--   key client) that had at least min_denied denials on at least min_targets different
--   collections within window_minutes before or after it.
-- remediation: Ask the owner what the principal was trying to do. Unexpected probing means the
--   credential is in other hands: revoke its sessions and rotate its credentials. Keep role
--   assignments scoped to the collections the workload needs.
-- param: min_denied = 10
--   Denied requests within the window.
-- param: min_targets = 2
--   Distinct collections (or databases) among them.
-- param: window_minutes = 15
--   Minutes before or after each denial in which they are counted (at most 60).
WITH hours AS (
    SELECT subject, hour, denied
    FROM activity_hours
    WHERE hour >= utc_add(utc_hour($from), - INTERVAL 2 HOUR) AND hour < utc_add($to, INTERVAL 2 HOUR) AND denied > 0
),
candidates AS (
    -- hours whose neighbourhood (the hour before and after) holds enough for a burst
    SELECT subject, hour
    FROM (
        SELECT
            subject, hour,
            sum(denied) OVER (
                PARTITION BY subject ORDER BY hour::TIMESTAMP
                RANGE BETWEEN INTERVAL 1 HOUR PRECEDING AND INTERVAL 1 HOUR FOLLOWING
            ) AS around
        FROM hours
        -- three hours reach the minimum only if one of them holds a third of it
        WHERE subject IN (SELECT subject FROM hours WHERE denied * 3 >= $min_denied)
    )
    WHERE around >= $min_denied
),
support AS (
    -- the rows that can count towards a burst in a candidate hour
    SELECT DISTINCT c.subject, utc_add(c.hour, to_hours(k)) AS hour FROM candidates c, range(-1, 2) t(k)
),
denied AS (
    SELECT
        r.rowid AS row_id, r.time, r.principal_id, r.account, r.client_ip, r.operation,
        request_subject(r.principal_id, r.account, r.client_ip) AS subject,
        coalesce(r.account, '') || '/' || coalesce(r.database_name, '') || '/' || coalesce(r.collection_name, '') AS target
    FROM cosmos_requests r
    WHERE r.time >= utc_add($from, - to_minutes($window_minutes))
      AND r.time < utc_add($to, to_minutes($window_minutes))
      AND r.status_code = 403
),
scored AS (
    SELECT
        d.*,
        count(*) OVER w AS denials,
        count(DISTINCT target) OVER w AS targets
    FROM denied d
    SEMI JOIN support c ON c.subject = d.subject AND c.hour = utc_hour(d.time)
    WINDOW w AS (
        PARTITION BY d.subject ORDER BY d.time::TIMESTAMP
        RANGE BETWEEN to_minutes($window_minutes) PRECEDING AND to_minutes($window_minutes) FOLLOWING
    )
)
SELECT
    time,
    'cosmos_requests' AS evidence_table,
    row_id,
    principal_id,
    'account=' || coalesce(account, '') || CASE WHEN principal_id IS NULL THEN ' ip=' || coalesce(client_ip, '') ELSE '' END
        AS entity,
    coalesce(operation, 'request') || ' on ' || target || ' denied; ' || denials || ' denials on ' || targets
        || ' collections within ' || $window_minutes || ' minutes' AS detail
FROM scored
WHERE denials >= $min_denied AND targets >= $min_targets AND time >= $from AND time < $to
