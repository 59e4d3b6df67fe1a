-- Rules compare networks, not exact addresses: a NAT, an App Service pool or an IPv6
-- client rotating its interface id changes the address within one network.
--   network_of: the /24 of an IPv4 address, the /64 of an IPv6 one (NULL if not an address)
--   spray_source: what a password spray is counted by: the IPv4 address itself, or the
--                 IPv6 /64 (one client can use any address in it)
-- Both take `ip_addresses` columns (ip_hex is 32 hex digits; IPv4 in the last 8).
CREATE MACRO network_of(ip_hex, version) AS
    CASE
        WHEN version = 6 THEN concat_ws(':', substr(ip_hex, 1, 4), substr(ip_hex, 5, 4), substr(ip_hex, 9, 4),
                                        substr(ip_hex, 13, 4)) || '::/64'
        WHEN version = 4 THEN concat_ws('.', ('0x' || substr(ip_hex, 25, 2))::INTEGER,
                                        ('0x' || substr(ip_hex, 27, 2))::INTEGER,
                                        ('0x' || substr(ip_hex, 29, 2))::INTEGER) || '.0/24'
    END;
CREATE MACRO spray_source(ip, ip_hex, version) AS
    CASE WHEN version = 6 THEN network_of(ip_hex, version) ELSE ip END;

-- The `network` facet of first_seen (src/rules/sql/absorb_networks.sql) for the requests
-- detection has already absorbed; later ones are absorbed with it.
INSERT INTO first_seen (subject, facet, value, first_time, first_row, last_time, events)
SELECT r.principal_id, 'network', network_of(a.ip_hex, a.version), min(r.time), arg_min(r.rowid, r.time),
       max(r.time), count(*)
FROM cosmos_requests r
JOIN ip_addresses a ON a.ip = r.client_ip
WHERE r.principal_id IS NOT NULL AND a.version IN (4, 6)
  AND r.batch_id <= (SELECT absorbed_batch FROM detection_state WHERE id = 1)
GROUP BY ALL;
