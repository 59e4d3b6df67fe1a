-- id: new_user_agent
-- title: Principal used an application it never used before
-- severity: low
-- soc2: CC6.1, CC7.2
-- mitre: T1078.004 Valid Accounts: Cloud Accounts
-- window: 0m
-- description: A principal's requests come from the same client library, day after day. Raises
--   the first request from a client it never used before (compared by product, so that an SDK
--   upgrade is not new): curl, a script or Postman in the hands of someone holding its token.
--   The principal needs learning_days of history first.
-- remediation: Ask the owner whether they changed tools. If not, the token or credential is
--   used by someone else: revoke the principal's sessions and rotate its credentials.
-- param: learning_days = 3
--   Days of the principal's own history before a client can be new.
WITH known AS (
    SELECT subject, min(first_time) AS since
    FROM first_seen
    WHERE facet IN ('data', 'signin')
    GROUP BY subject
)
SELECT
    f.first_time AS time,
    'cosmos_requests' AS evidence_table,
    f.first_row AS row_id,
    f.subject AS principal_id,
    'user_agent=' || f.value AS entity,
    'first request from a ' || f.value || ' client' AS detail
FROM first_seen f
JOIN known p ON p.subject = f.subject
WHERE f.facet = 'user_agent'
  AND f.first_time >= $from AND f.first_time < $to
  AND f.first_time >= utc_add(p.since, to_days($learning_days))
  AND f.first_time >= utc_add((SELECT history_start FROM data_clock), to_days($learning_days))
