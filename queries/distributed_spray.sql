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
--   Trusted networks do not count, nor a failure from a source someone signed in from
--   successfully within success_minutes of it (a typo before getting in; an office or a VPN on a
--   Monday morning): proxies rented for a spray fail and never get in. One finding a day.
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
--   Minutes before or after a failure in which a success from its source explains it (at most 30).
-- param: guess_codes = '50126,50053,50055,50056,50034,50064'
--   Comma-separated error codes of a wrong guess: bad password, locked, user not found.
-- param: surge = 3.0
--   The span's failing users must also be this many times the tenant's usual number: the
--   median span of the 7 days before its day (quiet spans count as 0; the first day of the
--   data, with no day before it, is not judged).
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
failing AS (
    -- users failing a guess per span, from the 7 days before the period on
    SELECT epoch_us(s.time) // ($minutes * 60000000) AS span,
           count(DISTINCT coalesce(s.principal_id, lower(s.principal_name))) AS users
    FROM signins s
    WHERE s.time >= utc_add($from, - INTERVAL 8 DAY) AND s.time < $to
      AND s.kind IN ('user_interactive', 'user_noninteractive')
      AND list_contains(string_split($guess_codes, ','), s.error_code::VARCHAR)
    GROUP BY 1
),
background AS (
    -- the tenant's usual number of users failing in a span, for each day: the median span of
    -- the 7 days before it (quiet spans count as 0); a tenant whose thousands of users mistype
    -- all day long is not sprayed every quarter hour
    SELECT d.day, d.covered, coalesce(list_aggregate(list_concat(
               coalesce(list(f.users) FILTER (WHERE f.users IS NOT NULL), []),
               list_resize([]::BIGINT[], greatest(d.covered - count(f.users), 0)::INTEGER, 0)
           ), 'median'), 0) AS users
    FROM (
        -- the spans of the 7 days before each day that the stored history covers
        SELECT day, (day * 86400000000 - greatest((day - 7) * 86400000000, h.start)) // ($minutes * 60000000) AS covered
        FROM (SELECT DISTINCT epoch_us(time) // 86400000000 AS day FROM signins
              WHERE time >= utc_add($from, - INTERVAL 1 DAY) AND time < utc_add($to, INTERVAL 1 DAY))
        CROSS JOIN (SELECT epoch_us(history_start) AS start FROM data_clock) h
    ) d
    LEFT JOIN failing f
      ON f.span * $minutes * 60000000 >= (d.day - 7) * 86400000000
     AND f.span * $minutes * 60000000 < d.day * 86400000000
    GROUP BY d.day, d.covered
),
explained AS (
    -- a failure from a source someone signed in from successfully around it: a typo before
    -- getting in, an office or a VPN on a bad morning; not a guess of a spray
    SELECT DISTINCT f.row_id
    FROM attempts f
    JOIN attempts o
      ON o.ok AND o.source = f.source
     AND o.time >= utc_add(f.time, - to_minutes($success_minutes))
     AND o.time <= utc_add(f.time, to_minutes($success_minutes))
    WHERE NOT f.ok
),
guesses AS (
    SELECT a.* FROM attempts a ANTI JOIN explained e ON e.row_id = a.row_id WHERE NOT a.ok
),
spans AS (
    -- tenant-wide, over the unexplained failures (a distinct count over a window is costly)
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
),
scored AS MATERIALIZED (
    SELECT x.*
    FROM spans x
    -- judged against the days before its own: the first day of the data has none and is not judged
    JOIN background b ON b.day = epoch_us(x.time) // 86400000000 AND b.covered > 0
    WHERE x.users >= $min_users AND x.sources >= $min_sources AND x.failures <= 2 * x.sources
      AND x.users >= $surge * b.users
      AND x.time >= $from AND x.time < $to
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
