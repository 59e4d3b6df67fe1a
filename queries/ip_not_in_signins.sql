-- id: ip_not_in_signins
-- title: Data accessed from an address the principal never signed in from
-- severity: high
-- soc2: CC6.1, CC6.6, CC7.2
-- mitre: T1550.001 Use Alternate Authentication Material: Application Access Token
-- window: 0m
-- description: A token is used from the network it was issued to. Raises requests from a network
--   (the /24 of an IPv4 address, the /64 of an IPv6 one) in which the principal had no successful
--   sign-in in the 7 days before and that it had not already used on the data plane for
--   known_after_days: a sign of a stolen token replayed elsewhere. A network the principal keeps
--   using (home behind a split-tunnel VPN, an App Service's address pool) becomes known after
--   known_after_days; all requests of one network are one finding. Addresses in the trusted
--   networks (configuration `trusted_networks`, by default the private ranges used by private
--   endpoints and virtual networks) are never raised, nor are principals whose sign-ins carry no
--   address (managed identities). Requests newer than the latest stored sign-in wait for the
--   sign-in logs to catch up.
-- remediation: Confirm with the owner whether the network is theirs (a new VPN or proxy egress
--   belongs in trusted_networks). If not, revoke the principal's refresh tokens and sessions,
--   rotate its credentials and review what it read from that address.
-- param: learning_days = 7
--   Days at the start of the history not judged: the networks principals use in them are theirs.
-- param: known_after_days = 7
--   Days after its first data request from a network that the network is the principal's own.
WITH candidates AS (
    SELECT c.*, network_of(a.ip_hex, a.version) AS network
    FROM request_signins c
    JOIN signin_clock k ON k.kind = principal_kind_of(c.signin_kind)
    LEFT JOIN ip_addresses a ON a.ip = c.client_ip
    WHERE c.time >= $from AND c.time < $to
      AND c.time <= k.until
      AND c.time >= utc_add((SELECT history_start FROM data_clock), to_days($learning_days))
      AND c.client_ip IS NOT NULL
      AND c.signin_time IS NOT NULL
      AND c.signin_ip IS NOT NULL
      -- no successful sign-in from this address in the 7 days before (request_context's ip_signin_time)
      AND c.ip_signin_time IS NULL
      AND NOT EXISTS (
          SELECT 1 FROM network_lists t
          WHERE t.list = 'trusted' AND a.ip_hex >= t.lo_hex AND a.ip_hex <= t.hi_hex
      )
)
SELECT
    c.time,
    'cosmos_requests' AS evidence_table,
    c.request_row AS row_id,
    c.principal_id,
    'ip=' || coalesce(c.network, c.client_ip) AS entity,
    coalesce(c.operation, 'request') || ' on ' || coalesce(c.account, '?') || ' from ' || c.client_ip
        || '; the token came from a sign-in at ' || strftime(c.signin_time::TIMESTAMP, '%Y-%m-%d %H:%M') || ' UTC from '
        || c.signin_ip || coalesce(' (' || c.signin_country || ')', '') AS detail
FROM candidates c
WHERE NOT EXISTS (
    -- a successful sign-in from the same network in the 7 days before
    SELECT 1
    FROM signins s
    JOIN ip_addresses sa ON sa.ip = s.ip_address
    WHERE s.principal_id = c.principal_id
      AND s.time <= c.time AND s.time >= utc_add(c.time, - INTERVAL 7 DAY)
      AND coalesce(s.error_code, 0) = 0
      AND network_of(sa.ip_hex, sa.version) = c.network
)
AND NOT EXISTS (
    -- a network it has used on the data plane for known_after_days, or since the learning days
    SELECT 1
    FROM first_seen n
    WHERE n.subject = c.principal_id AND n.facet = 'network' AND n.value = c.network
      AND (n.first_time <= utc_add(c.time, - to_days($known_after_days))
           OR n.first_time < utc_add((SELECT history_start FROM data_clock), to_days($learning_days)))
)
