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
-- param: success_minutes = 30
--   As password_spray: an address where at least as many users signed in successfully within
--   this many minutes of a failure as failed is shared egress, not a spray.
-- param: guess_codes = '50126,50053,50055,50056,50034,50064'
--   Comma-separated error codes of a wrong guess: bad password, locked, user not found.
WITH sprays AS MATERIALIZED (
    -- as password_spray raises them: the macro address_sprays (migrations)
    SELECT source, time, users
    FROM address_sprays(
        utc_add($from, - to_minutes($spray_minutes + $follow_minutes + 60 * $max_token_age_hours + $success_minutes)),
        utc_add($to, to_minutes(greatest($spray_minutes, $success_minutes))),
        utc_add($from, - to_minutes($spray_minutes + $follow_minutes + 60 * $max_token_age_hours + $success_minutes)),
        utc_add($to, to_minutes(greatest($spray_minutes, $success_minutes))),
        $spray_minutes, $success_minutes, $guess_codes, $min_users
    )
),
spray_addresses AS MATERIALIZED (
    -- the addresses the sprays came from (every address of an IPv6 /64); none most of the time,
    -- and then the requests are not read at all
    SELECT i.ip, spray_source(i.ip, i.ip_hex, i.version) AS source
    FROM ip_addresses i
    WHERE spray_source(i.ip, i.ip_hex, i.version) IN (SELECT source FROM sprays)
),
tokens AS (
    -- requests whose token came from a spraying address
    SELECT c.*, a.source
    FROM request_signins c
    JOIN spray_addresses a ON a.ip = c.signin_ip
    JOIN signin_clock k ON k.kind = principal_kind_of(c.signin_kind)
    WHERE c.time >= $from AND c.time < $to
      AND c.time <= k.until
      AND epoch_us(c.signin_time) >= epoch_us(c.time) - $max_token_age_hours * 3600000000
),
matched AS (
    -- ... and from a sign-in soon after the spray
    SELECT
        c.time, c.request_row, c.principal_id, c.signin_ip, c.signin_time, c.operation, c.account,
        max(s.users) AS users
    FROM tokens c
    JOIN sprays s
      ON s.source = c.source
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
