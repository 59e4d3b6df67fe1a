-- id: distributed_spray_then_data_access
-- title: Data accessed after a spread-out password spray found a password
-- severity: critical
-- soc2: CC6.1, CC7.2, CC7.3
-- mitre: T1110.003 Brute Force: Password Spraying
-- window: 1h
-- description: During a password spray spread over many addresses (as distributed_spray counts
--   it) or within follow_minutes after, a user signed in successfully from a network it had not
--   signed in from in the 7 days before (up to follow_minutes before), and the token of that
--   sign-in then read or changed data: the spray found a password and the attacker is in the
--   data. Raises the requests made with such tokens.
-- remediation: Treat the principal as compromised now: revoke its sessions and refresh tokens,
--   reset its password, and review everything the token touched; then see distributed_spray.
-- param: min_users = 8
--   As distributed_spray.
-- param: min_sources = 6
--   As distributed_spray.
-- param: minutes = 15
--   As distributed_spray (at most 60).
-- param: success_minutes = 30
--   As distributed_spray (at most 30).
-- param: guess_codes = '50126,50053,50055,50056,50034,50064'
--   As distributed_spray.
-- param: surge = 3.0
--   As distributed_spray.
-- param: follow_minutes = 60
--   How soon after a spray failure the successful sign-in must come.
-- param: max_token_age_hours = 24
--   How long a token can be used after the sign-in that issued it.
WITH scored AS MATERIALIZED (
    -- the guesses, their spans and the tenant's usual span: the macro spray_spans (migrations)
    SELECT *
    FROM spray_spans(
        utc_add($from, - to_minutes(60 * $max_token_age_hours + $follow_minutes + $minutes + $success_minutes)),
        utc_add($to, to_minutes($minutes + $success_minutes)),
        $minutes, $success_minutes, $guess_codes, $min_users, $min_sources, $surge
    )
),
sprays AS MATERIALIZED (
    SELECT time FROM scored
),
entries AS (
    -- users' successful sign-ins during or soon after a spray, from a network new to them
    SELECT s.rowid AS signin_row, s.principal_id, s.time, s.ip_address, network_of(a.ip_hex, a.version) AS network
    FROM signins s
    JOIN ip_addresses a ON a.ip = s.ip_address
    WHERE s.time >= utc_add($from, - to_minutes(60 * $max_token_age_hours)) AND s.time < $to
      AND s.kind IN ('user_interactive', 'user_noninteractive')
      AND coalesce(s.error_code, 0) = 0
      AND s.principal_id IS NOT NULL
      AND EXISTS (
          SELECT 1 FROM sprays p
          WHERE p.time <= s.time AND p.time >= utc_add(s.time, - to_minutes($follow_minutes))
      )
),
new_entries AS (
    SELECT e.*
    FROM entries e
    WHERE NOT EXISTS (
        SELECT 1
        FROM signins o
        JOIN ip_addresses oa ON oa.ip = o.ip_address
        WHERE o.principal_id = e.principal_id
          -- before the spray: the attacker's own sign-ins around it do not make the network known
          AND o.time < utc_add(e.time, - to_minutes($follow_minutes))
          AND o.time >= utc_add(e.time, - INTERVAL 7 DAY)
          AND coalesce(o.error_code, 0) = 0
          AND network_of(oa.ip_hex, oa.version) = e.network
    )
)
SELECT
    c.time,
    'cosmos_requests' AS evidence_table,
    c.request_row AS row_id,
    c.principal_id,
    'ip=' || e.network AS entity,
    coalesce(c.operation, 'request') || ' on ' || coalesce(c.account, '?') || ' with a token from a sign-in at '
        || strftime(e.time::TIMESTAMP, '%Y-%m-%d %H:%M') || ' UTC from ' || e.ip_address
        || ', a network new to the user, during a password spray over many addresses' AS detail
FROM request_signins c
JOIN signin_clock k ON k.kind = principal_kind_of(c.signin_kind)
JOIN new_entries e ON e.principal_id = c.principal_id AND e.time = c.signin_time
WHERE c.time >= $from AND c.time < $to
  AND c.time <= k.until
  AND epoch_us(c.signin_time) >= epoch_us(c.time) - $max_token_age_hours * 3600000000
