-- id: signin_log_missing
-- title: A sign-in log was never received
-- severity: medium
-- soc2: CC7.2, CC4.1
-- mitre: T1562.008 Impair Defenses: Disable or Modify Cloud Logs
-- window: 0m
-- description: Principals reach data with no sign-in on record within their token's lifetime
--   while a sign-in log category they could sign in through (interactive, non-interactive,
--   service principal or managed identity) has never reached TokenTrail: the diagnostic setting
--   of Entra ID does not export it. Until it does, TokenTrail cannot tell a forged token from
--   an unlogged refresh, so no_prior_signin does not judge these requests; this rule raises one
--   finding per set of missing categories instead of one per principal and hour. The evidence
--   is the first such request of each principal and UTC day.
-- remediation: In Entra ID > Diagnostic settings, export every sign-in category (SignInLogs,
--   NonInteractiveUserSignInLogs, ServicePrincipalSignInLogs, ManagedIdentitySignInLogs) to the
--   Event Hub TokenTrail reads. Then review the principals in the evidence.
-- param: token_minutes = 90
--   How long a user's or service principal's token is used after the sign-in that issued it.
-- param: managed_identity_token_hours = 24
--   How long a managed identity's token is used after its sign-in.
WITH unjudged AS (
    -- the first such request of each principal and day (an aggregate, not a sort of them all)
    SELECT unnest(arg_min(
        {'time': c.time, 'request_row': c.request_row, 'principal_id': c.principal_id, 'client_ip': c.client_ip,
         'kind': k.kind, 'missing': k.missing},
        (epoch_us(c.time), c.request_row)
    ))
    FROM request_signins c
    JOIN signin_clock k ON k.kind = principal_kind_of(c.signin_kind)
    WHERE c.time >= date_trunc('day', $from::TIMESTAMP)::TIMESTAMPTZ AND c.time < $to
      AND NOT k.complete
      AND token_outlived(c.time, c.signin_time, c.signin_kind, $token_minutes, $managed_identity_token_hours)
      AND c.time >= utc_add((SELECT history_start FROM data_clock), to_hours($managed_identity_token_hours))
      -- the logs that did arrive have caught up with the request (none arrived: nothing to wait for)
      AND c.time <= coalesce(k.until, c.time)
    GROUP BY c.principal_id, epoch_us(c.time) // 86400000000
)
SELECT
    time,
    'cosmos_requests' AS evidence_table,
    request_row AS row_id,
    NULL AS principal_id,
    'missing=' || missing AS entity,
    'principal ' || principal_id || ' (' || kind || ') reached data from ' || coalesce(client_ip, '?')
        || ' with no sign-in on record; never received: ' || missing AS detail
FROM unjudged
WHERE time >= $from
