-- id: ip_not_in_signins
-- title: Data accessed from an address the principal never signed in from
-- severity: high
-- soc2: CC6.1, CC6.6, CC7.2
-- mitre: T1550.001 Use Alternate Authentication Material: Application Access Token
-- window: 0m
-- description: A token is used from the network it was issued to. Raises requests whose source
--   address does not appear in any successful sign-in of the same principal in the 7 days
--   before, a sign of a stolen token replayed elsewhere. Addresses in the trusted networks
--   (configuration `trusted_networks`, by default the private ranges used by private endpoints
--   and virtual networks) are never raised, nor are principals whose sign-ins carry no address
--   (managed identities). Requests newer than the latest stored sign-in wait for the sign-in
--   logs to catch up.
-- remediation: Confirm with the owner whether the address is theirs (a new VPN or proxy egress
--   belongs in trusted_networks). If not, revoke the principal's refresh tokens and sessions,
--   rotate its credentials and review what it read from that address.
-- param: learning_hours = 24
--   Hours at the start of the history not judged: their tokens came from sign-ins before it.
SELECT
    c.time,
    'cosmos_requests' AS evidence_table,
    c.request_row AS row_id,
    c.principal_id,
    'ip=' || c.client_ip AS entity,
    coalesce(c.operation, 'request') || ' on ' || coalesce(c.account, '?') || ' from ' || c.client_ip
        || '; the token came from a sign-in at ' || strftime(c.signin_time::TIMESTAMP, '%Y-%m-%d %H:%M') || ' UTC from '
        || c.signin_ip || coalesce(' (' || c.signin_country || ')', '') AS detail
FROM request_signins c
LEFT JOIN ip_addresses a ON a.ip = c.client_ip
WHERE c.time >= $from AND c.time < $to
  AND c.time <= (SELECT signins_until FROM data_clock)
  AND c.time >= utc_add((SELECT history_start FROM data_clock), to_hours($learning_hours))
  AND c.client_ip IS NOT NULL
  AND c.signin_time IS NOT NULL
  AND c.signin_ip IS NOT NULL
  -- no successful sign-in from this address in the 7 days before (request_context's ip_signin_time)
  AND c.ip_signin_time IS NULL
  AND NOT EXISTS (
      SELECT 1 FROM network_lists t
      WHERE t.list = 'trusted' AND a.ip_hex >= t.lo_hex AND a.ip_hex <= t.hi_hex
  )
