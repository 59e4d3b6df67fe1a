-- id: sp_credential_added_then_data_access
-- title: Credential added to a service principal, then used from a new network to reach data
-- severity: high
-- soc2: CC6.1, CC6.2, CC7.2
-- mitre: T1098.001 Account Manipulation: Additional Cloud Credentials
-- window: 1d
-- description: Adding a secret or certificate to an application or service principal that already
--   has access to data is the quiet way to keep that access: the new credential signs in as the
--   application, and nothing about the user who added it appears in the data logs. Raises, after a
--   credential is added (Entra ID audit log: service principal credentials, or an application's
--   certificates and secrets), a successful sign-in of that service principal within max_hours from
--   a network (the /24 of an IPv4 address, the /64 of an IPv6 one) it had not signed in from in the
--   baseline_days before, and its Cosmos DB requests from that address within max_hours of the
--   sign-in. A rotation whose new secret is used where the application runs is not raised.
-- remediation: Ask the person or automation that added the credential. If it was not planned, remove
--   the credential from the application, revoke the service principal's sessions, review what it read
--   from the new address, and find out how the initiator got the right to add credentials.
-- param: max_hours = 12
--   Hours from the credential to the sign-in, and from the sign-in to the data (at most 12).
-- param: baseline_days = 30
--   Days before the credential whose sign-in networks are the principal's usual ones.
WITH added AS MATERIALIZED (
    SELECT d.rowid AS change_row, d.time, d.operation, d.actor_id, d.actor_name, d.actor_ip, d.target_id, d.target_type,
           d.target_name, d.target_app_id
    FROM directory_changes d
    WHERE d.kind IN ('sp_credentials_changed', 'app_credentials_changed') AND change_succeeded(d.result)
      AND NOT d.operation ILIKE 'remove%'
      AND d.time >= utc_add($from, - to_hours(2 * $max_hours)) AND d.time < $to
),
signed AS MATERIALIZED (
    SELECT a.*, s.rowid AS signin_row, s.time AS signin_time, s.principal_id, s.ip_address,
           network_of(i.ip_hex, i.version) AS network
    FROM added a
    JOIN signins s ON s.kind = 'service_principal' AND coalesce(s.error_code, 0) = 0
        AND (s.principal_id = a.target_id OR s.app_id = a.target_app_id)
        AND s.time >= a.time AND s.time < utc_add(a.time, to_hours($max_hours))
    JOIN ip_addresses i ON i.ip = s.ip_address
    WHERE NOT EXISTS (
        SELECT 1 FROM signins o JOIN ip_addresses oi ON oi.ip = o.ip_address
        WHERE o.principal_id = s.principal_id AND coalesce(o.error_code, 0) = 0
          AND o.time < a.time AND o.time >= utc_add(a.time, - to_days($baseline_days))
          AND network_of(oi.ip_hex, oi.version) = network_of(i.ip_hex, i.version)
    )
),
reached AS MATERIALIZED (
    SELECT g.*, r.rowid AS request_row, r.time AS request_time, r.operation AS request_operation, r.account,
           r.database_name, r.collection_name
    FROM signed g
    JOIN cosmos_requests r ON r.principal_id = g.principal_id AND r.client_ip = g.ip_address
        AND r.time >= g.signin_time AND r.time < utc_add(g.signin_time, to_hours($max_hours))
),
described AS (
    SELECT *,
        'credential added to ' || coalesce(target_name, target_id) || ' by ' || coalesce(actor_name, actor_id, '?')
            || coalesce(' from ' || actor_ip, '') || ' at ' || strftime(time::TIMESTAMP, '%Y-%m-%d %H:%M')
            || ' UTC; sign-in from ' || ip_address || ' (' || network || ', new for the principal) at '
            || strftime(signin_time::TIMESTAMP, '%Y-%m-%d %H:%M') || ' UTC' AS story
    FROM reached
)
SELECT request_time AS time, 'cosmos_requests' AS evidence_table, request_row AS row_id, principal_id, '' AS entity,
       coalesce(request_operation, 'request') || ' on ' || coalesce(database_name || '/' || collection_name, account, '?')
           || ' after ' || story AS detail
FROM described
WHERE request_time >= $from AND request_time < $to
UNION ALL
SELECT DISTINCT signin_time, 'signins', signin_row, principal_id, '', story
FROM described
WHERE signin_time >= $from AND signin_time < $to
UNION ALL
SELECT DISTINCT time, 'directory_changes', change_row, principal_id, '', story
FROM described
WHERE time >= $from AND time < $to
