-- id: threat_intel_ip
-- title: Traffic from an address on a threat intelligence list
-- severity: high
-- soc2: CC6.1, CC6.6, CC7.2
-- mitre: T1090.003 Proxy: Multi-hop Proxy
-- window: 0m
-- description: Raises every Cosmos DB request and every sign-in (successful or not) from an
--   address that matches an entry of a threat intelligence list: an address or CIDR range in a
--   file of the folder set by `threat_intel_dir` (for example a Tor exit node list). The lists
--   are read when TokenTrail starts; when they change, the rule is evaluated again over all
--   history.
-- remediation: Block the address. If a request or a sign-in from it succeeded, treat the
--   principal (or the account key) as compromised: revoke sessions, rotate credentials, review
--   the data touched.
WITH seen AS (
    -- the period's addresses only: ip_addresses holds every address of all history
    SELECT client_ip AS ip FROM cosmos_requests WHERE time >= $from AND time < $to AND client_ip IS NOT NULL
    UNION
    SELECT ip_address FROM signins WHERE time >= $from AND time < $to AND ip_address IS NOT NULL
),
listed AS (
    SELECT a.ip, string_agg(DISTINCT n.source, ', ' ORDER BY n.source) AS lists
    FROM seen
    JOIN ip_addresses a ON a.ip = seen.ip
    JOIN network_lists n ON n.list = 'threat_intel' AND a.ip_hex >= n.lo_hex AND a.ip_hex <= n.hi_hex
    GROUP BY a.ip
)
SELECT
    r.time,
    'cosmos_requests' AS evidence_table,
    r.rowid AS row_id,
    r.principal_id,
    'ip=' || r.client_ip AS entity,
    coalesce(r.operation, 'request') || ' on ' || coalesce(r.account, '?') || ' (status ' || coalesce(r.status_code::VARCHAR, '?')
        || ') from ' || r.client_ip || ', listed in ' || l.lists AS detail
FROM cosmos_requests r
JOIN listed l ON l.ip = r.client_ip
WHERE r.time >= $from AND r.time < $to
UNION ALL
SELECT
    s.time,
    'signins' AS evidence_table,
    s.rowid AS row_id,
    s.principal_id,
    'ip=' || s.ip_address AS entity,
    CASE WHEN coalesce(s.error_code, 0) = 0 THEN 'successful' ELSE 'failed' END || ' sign-in of '
        || coalesce(s.principal_name, s.principal_id, '?') || ' from ' || s.ip_address || ', listed in ' || l.lists AS detail
FROM signins s
JOIN listed l ON l.ip = s.ip_address
WHERE s.time >= $from AND s.time < $to
