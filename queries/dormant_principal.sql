-- id: dormant_principal
-- title: Dormant principal touched data
-- severity: medium
-- soc2: CC6.2, CC6.3
-- mitre: T1078.004 Valid Accounts: Cloud Accounts
-- window: 0m
-- description: A principal that had not sent a single data request for dormant_days (or ever,
--   since history began) starts to. Forgotten identities with standing role assignments are
--   what attackers look for; a legitimate owner should know why it woke up. Raises the first
--   request of each hour that ends such a silence, once learning_days of history are stored.
-- remediation: Ask the owner why the principal is active again. If nobody expects it, disable
--   it, remove its role assignments, and review what it read. Remove role assignments that are
--   not used.
-- param: dormant_days = 30
--   Days without data requests that make a principal dormant.
-- param: learning_days = 3
--   Days of history before any principal can be called dormant.
WITH recent AS (
    SELECT subject, hour, requests, first_request_time, first_request_row
    FROM activity_hours
    WHERE hour >= utc_hour($from) AND hour < $to AND requests > 0 AND subject NOT LIKE 'key:%'
),
candidates AS (
    -- a subject busy the hour before was not dormant
    SELECT r.*
    FROM recent r
    ANTI JOIN activity_hours b
      ON b.subject = r.subject AND b.hour = utc_add(r.hour, - INTERVAL 1 HOUR) AND b.requests > 0
),
timeline AS (
    -- the active hours of the candidates, each with the one before
    SELECT subject, hour, lag(hour) OVER (PARTITION BY subject ORDER BY hour) AS prev_hour
    FROM activity_hours
    WHERE hour >= utc_add(utc_hour($from), - to_days($dormant_days)) AND hour < $to
      AND requests > 0
      AND subject IN (SELECT subject FROM candidates)
),
active AS (
    SELECT c.*, t.prev_hour
    FROM candidates c
    JOIN timeline t ON t.subject = c.subject AND t.hour = c.hour
)
SELECT
    a.first_request_time AS time,
    'cosmos_requests' AS evidence_table,
    a.first_request_row AS row_id,
    a.subject AS principal_id,
    '' AS entity,
    'first data request since ' || $dormant_days || ' days or more (or since the data began)' AS detail
FROM active a
WHERE a.first_request_time >= $from AND a.first_request_time < $to
  AND (a.prev_hour IS NULL OR a.prev_hour < utc_add(a.hour, - to_days($dormant_days)))
  AND a.hour >= utc_add((SELECT history_start FROM data_clock), to_days($learning_days))
