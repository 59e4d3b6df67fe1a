-- id: no_prior_signin
-- title: Data accessed with no sign-in behind the token
-- severity: high
-- soc2: CC6.1, CC7.2
-- mitre: T1550.001 Use Alternate Authentication Material: Application Access Token
-- window: 0m
-- description: Every Entra ID token is issued by a sign-in, and tokens live at most about a day.
--   Raises requests by a principal that has no successful sign-in on record in the
--   max_token_age_hours before the request: a token minted elsewhere (forged, or issued by
--   another tenant) or sign-in logs that never reach TokenTrail. Requests newer than the latest
--   stored sign-in are not judged until the sign-in logs catch up, so late Entra logs do not
--   raise it.
-- remediation: Check that every sign-in log category (interactive, non-interactive, service
--   principal, managed identity) is exported. If they are, treat the principal as compromised:
--   revoke its sessions and credentials and review the data it touched.
-- param: max_token_age_hours = 24
--   How long a token can be used after the sign-in that issued it.
SELECT
    c.time,
    'cosmos_requests' AS evidence_table,
    c.request_row AS row_id,
    c.principal_id,
    'account=' || coalesce(c.account, '') AS entity,
    coalesce(c.operation, 'request') || ' from ' || coalesce(c.client_ip, '?') || CASE
        WHEN c.signin_time IS NULL THEN ': the principal has no successful sign-in on record'
        ELSE ': its last successful sign-in was '
            || round((epoch_us(c.time) - epoch_us(c.signin_time)) / 3.6e9, 1) || ' h before'
    END AS detail
FROM request_signins c
WHERE c.time >= $from AND c.time < $to
  AND (c.signin_time IS NULL OR epoch_us(c.signin_time) < epoch_us(c.time) - $max_token_age_hours * 3600000000)
  -- learned: the sign-ins that could have issued the token are inside the data
  AND c.time >= utc_add((SELECT history_start FROM data_clock), to_hours($max_token_age_hours))
  -- judged only once the sign-in logs have caught up with the request
  AND c.time <= (SELECT signins_until FROM data_clock)
