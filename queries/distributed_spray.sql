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
WITH scored AS MATERIALIZED (
    -- the guesses, their spans and the tenant's usual span: the macro spray_spans (migrations)
    SELECT *
    FROM spray_spans(
        utc_add($from, - to_minutes($minutes + $success_minutes)), utc_add($to, to_minutes($minutes + $success_minutes)),
        $minutes, $success_minutes, $guess_codes, $min_users, $min_sources, $surge
    )
    WHERE time >= $from AND time < $to
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
