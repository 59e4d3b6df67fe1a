-- id: password_spray
-- title: Password spray from one address
-- severity: high
-- soc2: CC6.1, CC7.2
-- mitre: T1110.003 Brute Force: Password Spraying
-- window: 1h
-- description: One address fails to sign in as many different users in a few minutes: someone
--   is trying a common password across the tenant. Raises each failed password guess (guess_codes:
--   bad password, locked, user not found, ...; not MFA prompts, expired sessions or Conditional
--   Access) of a user from an address that failed for at least min_users distinct users within
--   spray_minutes before or after it. IPv6 addresses count by their /64. Addresses in the trusted
--   networks do not count, nor an address where at least as many users signed in successfully
--   within success_minutes as failed: that is shared egress (an office, a VPN) on a Monday
--   morning, whose people mistype and then get in.
-- remediation: Block the address (named location or conditional access), check the targeted
--   accounts for a successful sign-in from it (see spray_then_data_access), require MFA for them,
--   and consider smart lockout thresholds.
-- param: min_users = 5
--   Distinct users that must fail from the address.
-- param: spray_minutes = 10
--   Minutes before or after each failure in which they are counted (at most 25).
-- param: success_minutes = 30
--   Minutes before or after each failure in which successful users of the address are counted
--   (at most 30).
-- param: guess_codes = '50126,50053,50055,50056,50034,50064'
--   Comma-separated error codes of a wrong guess: bad password, locked, user not found.
WITH attempts AS (
    SELECT
        s.rowid AS row_id, s.time, s.ip_address,
        spray_source(s.ip_address, a.ip_hex, a.version) AS source,
        coalesce(s.principal_id, lower(s.principal_name)) AS who,
        coalesce(s.error_code, 0) = 0 AS ok
    FROM signins s
    JOIN ip_addresses a ON a.ip = s.ip_address
    WHERE s.time >= utc_add($from, - to_minutes(greatest($spray_minutes, $success_minutes)))
      AND s.time < utc_add($to, to_minutes(greatest($spray_minutes, $success_minutes)))
      AND s.kind IN ('user_interactive', 'user_noninteractive')
      AND (coalesce(s.error_code, 0) = 0 OR list_contains(string_split($guess_codes, ','), s.error_code::VARCHAR))
      AND NOT EXISTS (
          SELECT 1 FROM network_lists t
          WHERE t.list = 'trusted' AND a.ip_hex >= t.lo_hex AND a.ip_hex <= t.hi_hex
      )
),
scored AS (
    -- failures only: the distinct count over a window is costly, and successes are many
    SELECT
        *,
        count(DISTINCT who) OVER (
            PARTITION BY source ORDER BY time::TIMESTAMP
            RANGE BETWEEN to_minutes($spray_minutes) PRECEDING AND to_minutes($spray_minutes) FOLLOWING
        ) AS users
    FROM attempts
    WHERE NOT ok
),
candidates AS MATERIALIZED (
    SELECT * FROM scored WHERE users >= $min_users AND time >= $from AND time < $to
),
succeeded AS (
    -- users who got in from a candidate's source around it (candidates are few: a join)
    SELECT c.row_id, count(DISTINCT o.who) AS succeeded
    FROM candidates c
    JOIN attempts o
      ON o.ok AND o.source = c.source
     AND o.time >= utc_add(c.time, - to_minutes($success_minutes))
     AND o.time <= utc_add(c.time, to_minutes($success_minutes))
    GROUP BY c.row_id
)
SELECT
    c.time,
    'signins' AS evidence_table,
    c.row_id,
    NULL AS principal_id,
    'ip=' || c.source AS entity,
    c.users || ' users failed to sign in from ' || c.source || ' within ' || $spray_minutes || ' minutes ('
        || coalesce(s.succeeded, 0) || ' signed in from it)' AS detail
FROM candidates c
LEFT JOIN succeeded s ON s.row_id = c.row_id
WHERE coalesce(s.succeeded, 0) < c.users
