-- id: no_prior_signin
-- title: Data accessed with no sign-in behind the token
-- severity: high
-- soc2: CC6.1, CC7.2
-- mitre: T1550.001 Use Alternate Authentication Material: Application Access Token
-- window: 0m
-- description: Every Entra ID token is issued by a sign-in, and tokens do not live long: an
--   access token 60 to 90 minutes (refreshing it is a sign-in too), a managed identity's token
--   up to a day (the platform caches it). Raises the first request of each hour by a principal
--   with no successful sign-in on record within its kind's token lifetime before the request: a
--   token minted elsewhere (forged, or issued by another tenant) or sign-in logs that never reach
--   TokenTrail. Requests newer than the latest stored sign-in of the principal's kind are not
--   judged until those logs catch up, so late Entra logs do not raise it; while a sign-in log
--   the principal could sign in through was never received at all, signin_log_missing raises
--   one finding instead.
-- remediation: Check that every sign-in log category (interactive, non-interactive, service
--   principal, managed identity) is exported. If they are, treat the principal as compromised:
--   revoke its sessions and credentials and review the data it touched.
-- param: token_minutes = 90
--   How long a user's or service principal's token is used after the sign-in that issued it.
-- param: managed_identity_token_hours = 24
--   How long a managed identity's token is used after its sign-in.
WITH late AS (
    -- the first of each hour (an aggregate, not a sort of them all): one request says what the
    -- hour's others would
    SELECT unnest(arg_min(
        {'time': c.time, 'request_row': c.request_row, 'principal_id': c.principal_id, 'account': c.account,
         'operation': c.operation, 'client_ip': c.client_ip, 'signin_time': c.signin_time},
        (epoch_us(c.time), c.request_row)
    ))
    FROM request_signins c
    JOIN signin_clock k ON k.kind = principal_kind_of(c.signin_kind)
    WHERE c.time >= utc_hour($from) AND c.time < $to
      -- a kind whose sign-in logs never arrived is signin_log_missing's: one finding, not one an hour
      AND k.complete
      AND token_outlived(c.time, c.signin_time, c.signin_kind, $token_minutes, $managed_identity_token_hours)
      -- learned: the sign-ins that could have issued the token are inside the data
      AND c.time >= utc_add((SELECT history_start FROM data_clock), to_hours($managed_identity_token_hours))
      -- judged only once the sign-in logs of the principal's kind have caught up with the request
      AND c.time <= k.until
    GROUP BY c.principal_id, epoch_us(c.time) // 3600000000
)
SELECT
    time,
    'cosmos_requests' AS evidence_table,
    request_row AS row_id,
    principal_id,
    'account=' || coalesce(account, '') AS entity,
    coalesce(operation, 'request') || ' from ' || coalesce(client_ip, '?') || CASE
        WHEN signin_time IS NULL THEN ': the principal has no successful sign-in on record'
        ELSE ': its last successful sign-in was '
            || round((epoch_us(time) - epoch_us(signin_time)) / 3.6e9, 1) || ' h before'
    END || ' (the first such request of the hour)' AS detail
FROM late
WHERE time >= $from
