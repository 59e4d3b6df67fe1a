-- id: risky_signin_data_access
-- title: Data accessed with a token from a risky sign-in
-- severity: high
-- soc2: CC6.1, CC7.2
-- mitre: T1078.004 Valid Accounts: Cloud Accounts
-- window: 0m
-- description: Entra ID Protection rates each sign-in. Raises requests whose token came from a
--   sign-in rated at one of risk_levels (the sign-in's own level or the user's aggregated level):
--   the credential may be in someone else's hands, and data is being read with it. An
--   interactive sign-in to another resource (the portal, Azure management) issues no Cosmos DB
--   token: when it is the latest sign-in, the request's token came from an earlier one, and
--   the rule does not count it.
-- remediation: Look at the risky sign-in (risk event types, address, device). Confirm or dismiss
--   the risk in Entra ID Protection; if confirmed, revoke sessions, reset the credential, and
--   review the data accessed with the token.
-- param: risk_levels = 'medium,high'
--   Comma-separated risk levels that are raised (none, low, medium, high; as Entra writes them).
-- param: token_resources = 'a232010e-820c-4083-83bb-3ace5fc29d0b'
--   Comma-separated resource (application) ids whose tokens Cosmos DB accepts (Azure Cosmos DB).
-- param: max_token_age_hours = 24
--   How long a token can be used after the sign-in that issued it.
SELECT
    c.time,
    'cosmos_requests' AS evidence_table,
    c.request_row AS row_id,
    c.principal_id,
    'ip=' || coalesce(c.signin_ip, '') AS entity,
    coalesce(c.operation, 'request') || ' on ' || coalesce(c.account, '?') || ' with a token from a sign-in at '
        || strftime(c.signin_time::TIMESTAMP, '%Y-%m-%d %H:%M') || ' UTC from ' || coalesce(c.signin_ip, '?')
        || ' rated ' || coalesce(c.signin_risk_level, '?') || ' risk' AS detail
FROM request_signins c
CROSS JOIN (
    SELECT string_split(lower($risk_levels), ',') AS levels, string_split(lower($token_resources), ',') AS resources
) r
WHERE c.time >= $from AND c.time < $to
  AND c.time <= (SELECT signins_until FROM data_clock)
  AND epoch_us(c.signin_time) >= epoch_us(c.time) - $max_token_age_hours * 3600000000
  AND (
      list_contains(r.levels, c.signin_risk_level)
      OR list_contains(r.levels, c.signin_risk_level_aggregated)
  )
  AND NOT (
      c.signin_kind = 'user_interactive'
      AND c.signin_resource_id IS NOT NULL
      AND NOT list_contains(r.resources, lower(c.signin_resource_id))
  )
