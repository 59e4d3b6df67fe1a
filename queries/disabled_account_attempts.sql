-- id: disabled_account_attempts
-- title: Sign-in attempts on a disabled account
-- severity: medium
-- soc2: CC6.1, CC6.2, CC7.2
-- mitre: T1078.004 Valid Accounts: Cloud Accounts
-- window: 1h
-- description: Error 50057 says the account is disabled: a leaver, or an account locked down after
--   an incident. The leaver's old phone retrying mail a few times a day is noise; two things are
--   not. Raises each 50057 failure of a user when either the user had at least min_attempts of them
--   within window_minutes before or after it (a script, not a phone), or, of higher concern, other
--   users signed in successfully from the same address (an IPv6 /64) within window_minutes of it:
--   whoever is there holds working credentials too, as a credential list or an insider borrowing a
--   colleague's account would. Shared egress does not count for the second: addresses in the trusted
--   networks, and addresses where more than max_other_users users got in (an office or VPN). The
--   detail says which, and names the other accounts' count.
-- remediation: Find out who is at the address. If other accounts got in from it, treat them as
--   compromised (revoke sessions, reset credentials, review their data access) until shown otherwise.
--   For a leaver's device, have it wiped or the mail profile removed; keep the account disabled.
-- param: min_attempts = 10
--   50057 failures of one user within the window that are raised whatever the address.
-- param: window_minutes = 60
--   Minutes before or after each failure in which attempts and other users' successes are counted
--   (at most 60).
-- param: max_other_users = 3
--   More users than this signing in from the address make it shared egress, not one party.
WITH attempts AS (
    SELECT
        s.rowid AS row_id, s.time, s.principal_id, s.principal_name, s.ip_address, s.app_display_name,
        coalesce(spray_source(s.ip_address, a.ip_hex, a.version), s.ip_address) AS source,
        coalesce(s.principal_id, lower(s.principal_name)) AS who,
        a.ip_hex
    FROM signins s
    LEFT JOIN ip_addresses a ON a.ip = s.ip_address
    WHERE s.time >= utc_add($from, - to_minutes($window_minutes))
      AND s.time < utc_add($to, to_minutes($window_minutes))
      AND s.error_code = 50057
      AND s.kind IN ('user_interactive', 'user_noninteractive')
),
scored AS (
    SELECT
        *,
        count(*) OVER (
            PARTITION BY who ORDER BY time::TIMESTAMP
            RANGE BETWEEN to_minutes($window_minutes) PRECEDING AND to_minutes($window_minutes) FOLLOWING
        ) AS tries
    FROM attempts
),
candidates AS MATERIALIZED (
    SELECT
        *,
        EXISTS (
            SELECT 1 FROM network_lists t
            WHERE t.list = 'trusted' AND ip_hex >= t.lo_hex AND ip_hex <= t.hi_hex
        ) AS trusted
    FROM scored
    WHERE time >= $from AND time < $to
),
successes AS (
    -- users who got in from a candidate's address around the period (candidates are few)
    SELECT o.time, coalesce(o.principal_id, lower(o.principal_name)) AS who,
           spray_source(o.ip_address, oa.ip_hex, oa.version) AS source
    FROM signins o
    JOIN ip_addresses oa ON oa.ip = o.ip_address
    WHERE o.time >= utc_add($from, - to_minutes($window_minutes))
      AND o.time < utc_add($to, to_minutes($window_minutes))
      AND coalesce(o.error_code, 0) = 0
      AND o.kind IN ('user_interactive', 'user_noninteractive')
      AND spray_source(o.ip_address, oa.ip_hex, oa.version) IN (SELECT source FROM candidates WHERE NOT trusted)
),
others AS (
    SELECT c.row_id, count(DISTINCT o.who) AS others
    FROM candidates c
    JOIN successes o
      ON o.source = c.source
     AND o.who IS DISTINCT FROM c.who
     AND o.time >= utc_add(c.time, - to_minutes($window_minutes))
     AND o.time <= utc_add(c.time, to_minutes($window_minutes))
    WHERE NOT c.trusted
    GROUP BY c.row_id
)
SELECT
    c.time,
    'signins' AS evidence_table,
    c.row_id,
    c.principal_id,
    'ip=' || coalesce(c.source, '') AS entity,
    coalesce(c.principal_name, c.principal_id, '?') || ' (disabled) tried to sign in to '
        || coalesce(c.app_display_name, '?') || ' from ' || coalesce(c.ip_address, '?') || '; '
        || c.tries || ' such attempts within ' || $window_minutes || ' minutes'
        || CASE WHEN coalesce(o.others, 0) BETWEEN 1 AND $max_other_users
            THEN '; HIGHER CONCERN: ' || o.others || ' other user(s) signed in successfully from the same address around then'
            ELSE '' END AS detail
FROM candidates c
LEFT JOIN others o ON o.row_id = c.row_id
WHERE c.tries >= $min_attempts OR coalesce(o.others, 0) BETWEEN 1 AND $max_other_users
