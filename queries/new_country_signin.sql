-- id: new_country_signin
-- title: Sign-in from a country the principal never signed in from
-- severity: medium
-- soc2: CC6.1, CC7.2
-- mitre: T1078.004 Valid Accounts: Cloud Accounts
-- window: 0m
-- description: Raises the first successful sign-in of a principal from a country it had never
--   signed in from, once it has learning_days of history. Workload identities never travel; for
--   users it is worth a look, and together with data access it is a strong signal.
-- remediation: Confirm the trip with the user. If not, revoke the sessions, reset the credential
--   and review the data accessed since.
-- param: learning_days = 3
--   Days of the principal's own history before a country can be new.
WITH known AS (
    SELECT subject, min(first_time) AS since
    FROM first_seen
    WHERE facet IN ('data', 'signin')
    GROUP BY subject
)
SELECT
    f.first_time AS time,
    'signins' AS evidence_table,
    f.first_row AS row_id,
    f.subject AS principal_id,
    'country=' || f.value AS entity,
    'first successful sign-in from ' || f.value AS detail
FROM first_seen f
JOIN known p ON p.subject = f.subject
WHERE f.facet = 'country'
  AND f.first_time >= $from AND f.first_time < $to
  AND f.first_time >= utc_add(p.since, to_days($learning_days))
  AND f.first_time >= utc_add((SELECT history_start FROM data_clock), to_days($learning_days))
