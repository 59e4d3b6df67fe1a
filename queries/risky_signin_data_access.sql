-- id: risky_signin_data_access
-- title: Data accessed with a token from a risky sign-in
-- severity: high
-- soc2: CC6.1, CC7.2
-- mitre: T1078.004 Valid Accounts: Cloud Accounts
-- window: 0m
-- description: Entra ID Protection rates each sign-in. Raises requests made while a token from a
--   risky sign-in of the principal could still be in use: any successful sign-in within
--   token_minutes before the request rated at one of risk_levels (its own level or the
--   user's aggregated level), at risk or confirmed compromised, or carrying risk event types. Not
--   only the latest sign-in: a risky interactive sign-in to the portal hands out a refresh token,
--   and the silent refresh for Cosmos DB that follows it is rated on its own. The credential may
--   be in someone else's hands, and data is being read with it. A sign-in that passed multi-factor
--   authentication has remediated its sign-in risk (Entra ID's sign-in risk policy) unless it is
--   confirmed compromised; with mfa_remediates = 0 it counts too.
-- remediation: Look at the risky sign-in (risk event types, address, device). Confirm or dismiss
--   the risk in Entra ID Protection; if confirmed, revoke sessions, reset the credential, and
--   review the data accessed with the token.
-- param: risk_levels = 'medium,high'
--   Comma-separated risk levels that are raised (none, low, medium, high; as Entra writes them).
-- param: mfa_remediates = 1
--   1: a risky sign-in that passed multi-factor authentication is not raised; 0: it is.
-- param: token_minutes = 90
--   An access token's lifetime (60 to 90 minutes): how long after a risky sign-in requests are raised.
WITH risky AS MATERIALIZED (
    -- risky sign-ins are few: find them first, then the requests of their principals
    SELECT
        s.time AS risky_time, s.principal_id, s.ip_address AS risky_ip,
        coalesce(nullif(lower(s.risk_level), 'none'), nullif(lower(s.risk_level_aggregated), 'none'), s.risk_state) AS rated
    FROM signins s
    CROSS JOIN (SELECT string_split(lower($risk_levels), ',') AS levels) r
    WHERE s.time >= utc_add($from, - to_minutes($token_minutes)) AND s.time < $to
      AND coalesce(s.error_code, 0) = 0
      AND s.principal_id IS NOT NULL
      AND (
          list_contains(r.levels, lower(s.risk_level))
          OR list_contains(r.levels, lower(s.risk_level_aggregated))
          OR lower(coalesce(s.risk_state, '')) IN ('atrisk', 'confirmedcompromised')
          OR len(list_filter(coalesce(s.risk_event_types, []), lambda t: lower(t) NOT IN ('', 'none'))) > 0
      )
      AND NOT (
          $mfa_remediates = 1
          AND s.authentication_requirement = 'multiFactorAuthentication'
          AND lower(coalesce(s.risk_state, '')) <> 'confirmedcompromised'
      )
),
requests AS (
    SELECT c.*
    FROM request_signins c
    JOIN signin_clock k ON k.kind = principal_kind_of(c.signin_kind)
    WHERE c.time >= $from AND c.time < $to
      AND c.time <= k.until
      AND c.principal_id IN (SELECT principal_id FROM risky)
)
SELECT
    c.time,
    'cosmos_requests' AS evidence_table,
    c.request_row AS row_id,
    c.principal_id,
    'ip=' || coalesce(k.risky_ip, '') AS entity,
    coalesce(c.operation, 'request') || ' on ' || coalesce(c.account, '?') || ' while a token of a sign-in at '
        || strftime(k.risky_time::TIMESTAMP, '%Y-%m-%d %H:%M') || ' UTC from ' || coalesce(k.risky_ip, '?')
        || ' rated ' || coalesce(k.rated, '?') || ' could be in use' AS detail
FROM requests c
ASOF JOIN risky k ON k.principal_id = c.principal_id AND c.time >= k.risky_time
WHERE k.risky_time >= utc_add(c.time, - to_minutes($token_minutes))
