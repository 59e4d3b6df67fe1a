-- id: weak_auth_token_reaches_data
-- title: Data read with a token from a weakly authenticated sign-in
-- severity: high
-- soc2: CC6.1, CC6.6, CC7.2
-- mitre: T1078.004 Valid Accounts: Cloud Accounts
-- window: 0m
-- description: A user's interactive sign-in that proved only a password, or went through a flow that
--   Conditional Access and phishing-resistant methods do not cover (device code, phished with the
--   user's own MFA; a legacy protocol such as IMAP, POP, SMTP or ActiveSync; resource owner password
--   credentials when single-factor, as they always are), is how sprayed, phished and leaked
--   passwords are used. On its own it is a weak signal (Sigma's); followed by the user's data being
--   read it is not. Raises requests of a user made within token_minutes after such a successful
--   interactive sign-in of the same user, through the silent refreshes that follow it or directly.
--   Non-interactive sign-ins (refreshes), service principals and managed identities are
--   single-factor by nature and are not judged; other single-factor sign-ins from the trusted
--   networks (where a policy may waive MFA) are not either, nor any when single_factor = 0.
--   Requests wait until the user sign-in logs (interactive and non-interactive) have caught up.
-- remediation: Look at the sign-in (flow, client app, address, device). If the user did not do it,
--   revoke their sessions, reset the password and review what was read. Block the flow tenant-wide
--   with Conditional Access (authentication flows: device code and legacy authentication) and require
--   multi-factor authentication for access to Azure Cosmos DB.
-- param: token_minutes = 90
--   How long after the weak sign-in its tokens are taken to be in use (60 to 90 minutes).
-- param: single_factor = 1
--   1: any single-factor interactive sign-in outside the trusted networks is weak; 0: only the
--   flows and protocols below are.
-- param: weak_protocols = 'devicecode'
--   Comma-separated authentication protocols (authenticationProtocol, any case) that are weak
--   whatever the factors: device code is phished with the user's own MFA.
-- param: password_flows = 'ropc'
--   Comma-separated protocols that send a password alone (resource owner password credentials):
--   weak when single-factor, from any network and whatever single_factor says.
-- param: legacy_clients = 'exchange activesync,imap4,pop3,authenticated smtp,smtp,other clients,exchange web services,mapi over http,offline address book,autodiscover,outlook anywhere (rpc over http),exchange online powershell,reporting web services,universal outlook'
--   Comma-separated client apps (clientAppUsed, any case) that are legacy protocols.
WITH weak AS MATERIALIZED (
    -- weak sign-ins are few: find them first, then the requests of their users
    SELECT
        s.rowid AS signin_row, s.time AS weak_time, s.principal_id, s.ip_address AS weak_ip,
        CASE
            WHEN list_contains(string_split(lower($weak_protocols), ','), lower(s.authentication_protocol))
                THEN 'protocol ' || s.authentication_protocol
            WHEN list_contains(string_split(lower($legacy_clients), ','), lower(s.client_app_used))
                THEN 'legacy client ' || s.client_app_used
            WHEN list_contains(string_split(lower($password_flows), ','), lower(s.authentication_protocol))
                THEN 'single factor, protocol ' || s.authentication_protocol
            ELSE 'single factor'
        END AS weakness
    FROM signins s
    LEFT JOIN ip_addresses a ON a.ip = s.ip_address
    WHERE s.time >= utc_add($from, - to_minutes($token_minutes)) AND s.time < $to
      AND s.kind = 'user_interactive'
      AND coalesce(s.error_code, 0) = 0
      AND s.principal_id IS NOT NULL
      AND (
          list_contains(string_split(lower($weak_protocols), ','), lower(s.authentication_protocol))
          OR list_contains(string_split(lower($legacy_clients), ','), lower(s.client_app_used))
          OR (lower(s.authentication_requirement) = 'singlefactorauthentication'
              AND (
                  list_contains(string_split(lower($password_flows), ','), lower(s.authentication_protocol))
                  OR ($single_factor = 1 AND NOT EXISTS (
                      SELECT 1 FROM network_lists t
                      WHERE t.list = 'trusted' AND a.ip_hex >= t.lo_hex AND a.ip_hex <= t.hi_hex
                  ))
              ))
      )
),
requests AS MATERIALIZED (
    SELECT c.*
    FROM request_signins c
    WHERE c.time >= $from AND c.time < $to
      -- only the span the weak sign-ins' tokens cover (none without one: the join below then
      -- has nothing to build on 10M requests)
      AND c.time >= (SELECT min(weak_time) FROM weak)
      AND c.time < (SELECT utc_add(max(weak_time), to_minutes($token_minutes)) FROM weak)
      AND c.principal_id IN (SELECT principal_id FROM weak)
      -- weak sign-ins are users': their requests wait for the users' clock (both user logs)
      AND c.time <= (SELECT until FROM signin_clock WHERE kind = 'user')
)
SELECT
    c.time,
    'cosmos_requests' AS evidence_table,
    c.request_row AS row_id,
    c.principal_id,
    'ip=' || coalesce(w.weak_ip, '') AS entity,
    coalesce(c.operation, 'request') || ' on ' || coalesce(c.account, '?') || ' from ' || coalesce(c.client_ip, '?')
        || ' within ' || $token_minutes || ' minutes of an interactive sign-in at '
        || strftime(w.weak_time::TIMESTAMP, '%Y-%m-%d %H:%M') || ' UTC from ' || coalesce(w.weak_ip, '?')
        || ' authenticated weakly (' || w.weakness || ')' AS detail
FROM requests c
ASOF JOIN weak w ON w.principal_id = c.principal_id AND c.time >= w.weak_time
WHERE w.weak_time >= utc_add(c.time, - to_minutes($token_minutes))
