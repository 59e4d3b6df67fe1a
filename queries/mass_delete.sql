-- id: mass_delete
-- title: Mass deletion of documents
-- severity: high
-- soc2: CC7.2, A1.2
-- mitre: T1485 Data Destruction
-- window: window_minutes
-- description: Hundreds of deletes in minutes, far beyond what applications do: a wiper script,
--   ransomware staging, or a runaway job. Raises each delete request (whatever its status) of a
--   principal or key client that sent at least min_deletes deletes within window_minutes before
--   or after it.
-- remediation: Stop the caller now (disable the principal or rotate the key), then restore the
--   collection from continuous backup to a point before the first delete.
-- param: min_deletes = 100
--   Delete requests within the window.
-- param: window_minutes = 15
--   Minutes before or after each delete in which they are counted (at most 60).
WITH hours AS (
    SELECT subject, hour, deletes
    FROM activity_hours
    WHERE hour >= utc_add(utc_hour($from), - INTERVAL 2 HOUR) AND hour < utc_add($to, INTERVAL 2 HOUR) AND deletes > 0
),
candidates AS (
    -- hours whose neighbourhood (the hour before and after) holds enough for a burst
    SELECT subject, hour
    FROM (
        SELECT
            subject, hour,
            sum(deletes) OVER (
                PARTITION BY subject ORDER BY hour::TIMESTAMP
                RANGE BETWEEN INTERVAL 1 HOUR PRECEDING AND INTERVAL 1 HOUR FOLLOWING
            ) AS around
        FROM hours
        -- three hours reach the minimum only if one of them holds a third of it
        WHERE subject IN (SELECT subject FROM hours WHERE deletes * 3 >= $min_deletes)
    )
    WHERE around >= $min_deletes
),
support AS (
    -- the rows that can count towards a burst in a candidate hour
    SELECT DISTINCT c.subject, utc_add(c.hour, to_hours(k)) AS hour FROM candidates c, range(-1, 2) t(k)
),
deletes AS (
    SELECT
        r.rowid AS row_id, r.time, r.principal_id, r.account, r.client_ip,
        request_subject(r.principal_id, r.account, r.client_ip) AS subject,
        coalesce(r.account, '') || '/' || coalesce(r.database_name, '') || '/' || coalesce(r.collection_name, '') AS target
    FROM cosmos_requests r
    SEMI JOIN (SELECT DISTINCT subject FROM support) c
      ON c.subject = request_subject(r.principal_id, r.account, r.client_ip)
    WHERE r.time >= utc_add($from, - to_minutes($window_minutes))
      AND r.time < utc_add($to, to_minutes($window_minutes))
      AND r.operation = 'Delete'
),
scored AS (
    SELECT
        d.*,
        count(*) OVER (
            PARTITION BY d.subject ORDER BY d.time::TIMESTAMP
            RANGE BETWEEN to_minutes($window_minutes) PRECEDING AND to_minutes($window_minutes) FOLLOWING
        ) AS burst
    FROM deletes d
    SEMI JOIN support c ON c.subject = d.subject AND c.hour = utc_hour(d.time)
)
SELECT
    time,
    'cosmos_requests' AS evidence_table,
    row_id,
    principal_id,
    'account=' || coalesce(account, '') || CASE WHEN principal_id IS NULL THEN ' ip=' || coalesce(client_ip, '') ELSE '' END
        AS entity,
    'delete in ' || target || '; ' || burst || ' deletes within ' || $window_minutes || ' minutes' AS detail
FROM scored
WHERE burst >= $min_deletes AND time >= $from AND time < $to
