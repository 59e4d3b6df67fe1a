-- id: distributed_spray
-- title: Password spray spread over many addresses
-- severity: high
-- soc2: CC6.1, CC7.2
-- mitre: T1110.003 Brute Force: Password Spraying
-- window: 1h
-- description: Many users fail a password guess within a quarter of an hour, each attempt from a
--   different address: one attacker behind a pool of proxies, below every per-address threshold
--   (Elastic's "distributed" password spray). Raises each failed guess (guess_codes) of a user in
--   a span of `minutes` where at least min_users users failed from at least min_sources sources
--   (an IPv4 address, an IPv6 /64), with no more than two attempts per source on average.
--   Sources where at least as many users signed in successfully within an hour as failed (an
--   office, a VPN), and trusted networks, do not count. One finding a day.
-- remediation: Find the users who then signed in successfully from a new address (see
--   distributed_spray_then_data_access) and treat them as compromised; require MFA and review
--   smart lockout; block the proxy network if one stands out.
-- param: min_users = 8
--   Distinct users that must fail within the span.
-- param: min_sources = 6
--   Distinct sources their failures must come from.
-- param: minutes = 15
--   The span, centred on each failure (at most 60).
-- param: success_minutes = 30
--   Minutes before or after a failure in which successful users of its source are counted
--   (at most 30).
-- param: guess_codes = '50126,50053,50055,50056,50034,50064'
--   Comma-separated error codes of a wrong guess: bad password, locked, user not found.
WITH attempts AS (
    SELECT
        s.rowid AS row_id, s.time,
        spray_source(s.ip_address, a.ip_hex, a.version) AS source,
        coalesce(s.principal_id, lower(s.principal_name)) AS who,
        coalesce(s.error_code, 0) = 0 AS ok
    FROM signins s
    JOIN ip_addresses a ON a.ip = s.ip_address
    WHERE s.time >= utc_add($from, - to_minutes($minutes + $success_minutes))
      AND s.time < utc_add($to, to_minutes($minutes + $success_minutes))
      AND s.kind IN ('user_interactive', 'user_noninteractive')
      AND (coalesce(s.error_code, 0) = 0 OR list_contains(string_split($guess_codes, ','), s.error_code::VARCHAR))
      AND NOT EXISTS (
          SELECT 1 FROM network_lists t
          WHERE t.list = 'trusted' AND a.ip_hex >= t.lo_hex AND a.ip_hex <= t.hi_hex
      )
),
shared AS (
    -- each attempt with how many users failed and succeeded from its source around it
    SELECT
        *,
        count(DISTINCT CASE WHEN NOT ok THEN who END) OVER (
            PARTITION BY source ORDER BY time::TIMESTAMP
            RANGE BETWEEN to_minutes($success_minutes) PRECEDING AND to_minutes($success_minutes) FOLLOWING
        ) AS failed_here,
        count(DISTINCT CASE WHEN ok THEN who END) OVER (
            PARTITION BY source ORDER BY time::TIMESTAMP
            RANGE BETWEEN to_minutes($success_minutes) PRECEDING AND to_minutes($success_minutes) FOLLOWING
        ) AS succeeded_here
    FROM attempts
),
guesses AS (
    SELECT * FROM shared WHERE NOT ok AND succeeded_here < failed_here
),
scored AS (
    SELECT
        *,
        count(DISTINCT who) OVER span AS users,
        count(DISTINCT source) OVER span AS sources,
        count(*) OVER span AS failures
    FROM guesses
    WINDOW span AS (
        ORDER BY time::TIMESTAMP
        RANGE BETWEEN to_seconds($minutes * 30) PRECEDING AND to_seconds($minutes * 30) FOLLOWING
    )
)
SELECT
    time,
    'signins' AS evidence_table,
    row_id,
    NULL AS principal_id,
    'day=' || strftime(time::TIMESTAMP, '%Y-%m-%d') AS entity,
    users || ' users failed to sign in within ' || $minutes || ' minutes from ' || sources
        || ' addresses or networks (' || failures || ' attempts), this one from ' || source AS detail
FROM scored
WHERE users >= $min_users AND sources >= $min_sources AND failures <= 2 * sources
  AND time >= $from AND time < $to
