-- id: workload_identity_new_network
-- title: Workload identity's token used from a network it never used
-- severity: high
-- soc2: CC6.1, CC6.6, CC7.2
-- mitre: T1550.001 Use Alternate Authentication Material: Application Access Token
-- window: 0m
-- description: Service principals and managed identities run as code in fixed places (a region's
--   egress, an App Service's address pool, a virtual network), so the networks they reach Cosmos DB
--   from are few and stable. Their tokens are stolen from where they run (a managed identity's
--   through server-side request forgery against the instance metadata endpoint, a service
--   principal's secret from a repository) and used from elsewhere. Raises the requests of a service
--   principal or managed identity from a network (the /24 of an IPv4 address, the /64 of an IPv6
--   one) in the first first_hours after its first request from it, when the principal had been
--   using Cosmos DB for learning_days before that (a new deployment has no history to compare
--   with). Managed identities sign in without an address, so the data plane's own history is the
--   only one. Addresses in the trusted networks (private endpoints, virtual networks) are not
--   raised. Requests wait until the principal's sign-in log has caught up with them.
-- remediation: Ask the owner whether the workload moved (a new region, a scaled App Service plan
--   with new outbound addresses). If not, the token is in other hands: for a service principal
--   remove its credentials and issue new ones; for a managed identity look for server-side request
--   forgery or code execution on the resource it belongs to, and review what was read.
-- param: learning_days = 7
--   Days of a principal's data history before a network can be new to it.
-- param: first_hours = 1
--   Hours from a network's first request whose requests are raised.
WITH fresh AS MATERIALIZED (
    -- networks first used within the period's reach by principals with a history: few, unlike
    -- requests, so the requests are looked up from them
    SELECT n.subject AS principal_id, n.value AS network, n.first_time, d.first_time AS data_since
    FROM first_seen n
    JOIN first_seen d ON d.subject = n.subject AND d.facet = 'data' AND d.value = ''
    WHERE n.facet = 'network'
      AND n.first_time >= utc_add($from, - to_hours($first_hours)) AND n.first_time < $to
      -- learned: the principal used Cosmos DB for learning_days before the network's first request
      -- (so the first learning_days of the history are never judged)
      AND d.first_time <= utc_add(n.first_time, - to_days($learning_days))
),
candidates AS (
    SELECT c.*, f.network, f.first_time, f.data_since
    FROM request_signins c
    JOIN fresh f ON f.principal_id = c.principal_id
    JOIN signin_clock k ON k.kind = principal_kind_of(c.signin_kind)
    JOIN ip_addresses a ON a.ip = c.client_ip
    WHERE c.time >= $from AND c.time < $to
      AND c.time >= f.first_time AND c.time < utc_add(f.first_time, to_hours($first_hours))
      AND principal_kind_of(c.signin_kind) IN ('service_principal', 'managed_identity')
      -- the kind comes from the sign-in behind the request: judged once its log has caught up
      AND c.time <= k.until
      AND network_of(a.ip_hex, a.version) = f.network
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
    'ip=' || c.network AS entity,
    coalesce(c.operation, 'request') || ' on ' || coalesce(c.account, '?') || ' from ' || c.client_ip || ' by a '
        || replace(principal_kind_of(c.signin_kind), '_', ' ') || ' that first used ' || c.network || ' at '
        || strftime(c.first_time::TIMESTAMP, '%Y-%m-%d %H:%M') || ' UTC, after using Cosmos DB since '
        || strftime(c.data_since::TIMESTAMP, '%Y-%m-%d') AS detail
FROM candidates c
