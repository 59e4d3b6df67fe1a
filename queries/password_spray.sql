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
SELECT
    c.time,
    'signins' AS evidence_table,
    c.row_id,
    NULL AS principal_id,
    'ip=' || c.source AS entity,
    c.users || ' users failed to sign in from ' || c.source || ' within ' || $spray_minutes || ' minutes ('
        || c.succeeded || ' signed in from it)' AS detail
-- the guesses, their sources' users and successes: the macro address_sprays (migrations)
FROM address_sprays(
    utc_add($from, - to_minutes(greatest($spray_minutes, $success_minutes))),
    utc_add($to, to_minutes(greatest($spray_minutes, $success_minutes))),
    $from, $to, $spray_minutes, $success_minutes, $guess_codes, $min_users
) c
