-- id: dormant_principal
-- title: Dormant principal touched data
-- severity: medium
-- soc2: CC6.2, CC6.3
-- mitre: T1078.004 Valid Accounts: Cloud Accounts
-- window: 0m
-- description: A principal that had used the data before, then sent not a single data request
--   for dormant_days, starts again. Forgotten identities with standing role assignments are
--   what attackers look for; a legitimate owner should know why it woke up. Raises the first
--   request of the hour that ends such a silence. The silence is proven by the principal's
--   own earlier request, stored at least dormant_days before: a principal never seen before
--   (a new hire, a new workload, or data younger than dormant_days) is not dormant.
-- remediation: Ask the owner why the principal is active again. If nobody expects it, disable
--   it, remove its role assignments, and review what it read. Remove role assignments that are
--   not used.
-- param: dormant_days = 30
--   Days without data requests that make a principal dormant.
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
active AS (
    -- each candidate hour with the principal's latest active hour before it, however old; a
    -- principal with none (never seen before) drops out here: nothing proves its silence
    SELECT c.subject, c.hour, c.first_request_time, c.first_request_row, max(b.hour) AS prev_hour
    FROM candidates c
    JOIN activity_hours b ON b.subject = c.subject AND b.hour < c.hour AND b.requests > 0
    GROUP BY ALL
)
SELECT
    a.first_request_time AS time,
    'cosmos_requests' AS evidence_table,
    a.first_request_row AS row_id,
    a.subject AS principal_id,
    '' AS entity,
    'first data request since ' || strftime(a.prev_hour::TIMESTAMP, '%Y-%m-%d %H:00') || ' UTC, '
        || ((epoch_us(a.hour) - epoch_us(a.prev_hour)) // 86400000000) || ' days of silence' AS detail
FROM active a
WHERE a.first_request_time >= $from AND a.first_request_time < $to
  AND a.prev_hour < utc_add(a.hour, - to_days($dormant_days))
