-- id: password_spray
-- title: Password spray from one address
-- severity: high
-- soc2: CC6.1, CC7.2
-- mitre: T1110.003 Brute Force: Password Spraying
-- window: 1h
-- description: One address fails to sign in as many different users in a few minutes: someone
--   is trying a common password across the tenant. Raises each failed sign-in from an address
--   that failed for at least min_users distinct users within spray_minutes before or after it.
--   Failures that are part of normal sign-in flows (ignored_error_codes: MFA required, keep me
--   signed in, session expired) do not count.
-- remediation: Block the address (named location or conditional access), check the targeted
--   accounts for a successful sign-in from it (see spray_then_data_access), require MFA for them,
--   and consider smart lockout thresholds.
-- param: min_users = 5
--   Distinct users that must fail from the address.
-- param: spray_minutes = 10
--   Minutes before or after each failure in which they are counted.
-- param: ignored_error_codes = '50140,70043,50074,50076,50158'
--   Comma-separated error codes that are not a wrong password.
WITH failures AS (
    SELECT
        rowid AS row_id, time, ip_address,
        coalesce(principal_id, lower(principal_name)) AS who
    FROM signins
    WHERE time >= utc_add($from, - to_minutes($spray_minutes))
      AND time < utc_add($to, to_minutes($spray_minutes))
      AND coalesce(error_code, 0) <> 0
      AND ip_address IS NOT NULL
      AND NOT list_contains(string_split($ignored_error_codes, ','), error_code::VARCHAR)
),
scored AS (
    SELECT
        *,
        count(DISTINCT who) OVER (
            PARTITION BY ip_address ORDER BY time::TIMESTAMP
            RANGE BETWEEN to_minutes($spray_minutes) PRECEDING AND to_minutes($spray_minutes) FOLLOWING
        ) AS users
    FROM failures
)
SELECT
    time,
    'signins' AS evidence_table,
    row_id,
    NULL AS principal_id,
    'ip=' || ip_address AS entity,
    users || ' users failed to sign in from ' || ip_address || ' within ' || $spray_minutes || ' minutes' AS detail
FROM scored
WHERE users >= $min_users AND time >= $from AND time < $to
