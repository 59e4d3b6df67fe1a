-- id: spray_then_data_access
-- title: Data accessed after a password spray succeeded
-- severity: critical
-- soc2: CC6.1, CC7.2, CC7.3
-- mitre: T1110.003 Brute Force: Password Spraying
-- window: 1h
-- description: The sign-in that issued a token came from an address that was spraying passwords
--   shortly before, and the token was then used to read or change data: the spray found a
--   password and the attacker is in the data. Raises the requests made with such tokens.
-- remediation: Treat the principal as compromised now: revoke its sessions and refresh tokens,
--   reset its password, block the address, and review everything the token touched.
-- param: min_users = 5
--   Distinct users that must fail from the address for it to count as a spray.
-- param: spray_minutes = 10
--   Minutes before or after each failure in which they are counted.
-- param: follow_minutes = 60
--   How soon after a spray failure the successful sign-in must come.
-- param: max_token_age_hours = 24
--   How long a token can be used after the sign-in that issued it.
-- param: ignored_error_codes = '50140,70043,50074,50076,50158'
--   Comma-separated error codes that are not a wrong password.
WITH failures AS (
    SELECT time, ip_address, coalesce(principal_id, lower(principal_name)) AS who
    FROM signins
    WHERE time >= utc_add($from, - to_minutes($spray_minutes + $follow_minutes + 60 * $max_token_age_hours))
      AND time < utc_add($to, to_minutes($spray_minutes))
      AND coalesce(error_code, 0) <> 0
      AND ip_address IS NOT NULL
      AND NOT list_contains(string_split($ignored_error_codes, ','), error_code::VARCHAR)
),
sprays AS MATERIALIZED (
    SELECT ip_address, time, users
    FROM (
        SELECT
            *,
            count(DISTINCT who) OVER (
                PARTITION BY ip_address ORDER BY time::TIMESTAMP
                RANGE BETWEEN to_minutes($spray_minutes) PRECEDING AND to_minutes($spray_minutes) FOLLOWING
            ) AS users
        FROM failures
    )
    WHERE users >= $min_users
),
tokens AS (
    -- requests whose token came from a spraying address (the sprays are few: filter by them first)
    SELECT c.*
    FROM request_signins c
    CROSS JOIN (SELECT coalesce(list(DISTINCT ip_address), []) AS ips FROM sprays) a
    WHERE c.time >= $from AND c.time < $to
      AND c.time <= (SELECT signins_until FROM data_clock)
      AND list_contains(a.ips, c.signin_ip)
      AND epoch_us(c.signin_time) >= epoch_us(c.time) - $max_token_age_hours * 3600000000
),
matched AS (
    -- ... and from a sign-in soon after the spray
    SELECT
        c.time, c.request_row, c.principal_id, c.signin_ip, c.signin_time, c.operation, c.account,
        max(s.users) AS users
    FROM tokens c
    JOIN sprays s
      ON s.ip_address = c.signin_ip
     AND s.time <= c.signin_time
     AND s.time >= utc_add(c.signin_time, - to_minutes($follow_minutes))
    GROUP BY ALL
)
SELECT
    time,
    'cosmos_requests' AS evidence_table,
    request_row AS row_id,
    principal_id,
    'ip=' || signin_ip AS entity,
    coalesce(operation, 'request') || ' on ' || coalesce(account, '?') || ' with a token from a sign-in at '
        || strftime(signin_time::TIMESTAMP, '%Y-%m-%d %H:%M') || ' UTC from ' || signin_ip
        || ', an address that had just failed to sign in as ' || users || ' users' AS detail
FROM matched
