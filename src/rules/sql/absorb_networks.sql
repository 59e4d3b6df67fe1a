-- The networks (network_of: /24, /64) each principal sent data requests from, as the
-- `network` facet of first_seen; after the new rows' addresses are in ip_addresses.
INSERT INTO first_seen (subject, facet, value, first_time, first_row, last_time, events)
SELECT r.principal_id, 'network', network_of(a.ip_hex, a.version), min(r.time), arg_min(r.row_id, r.time),
       max(r.time), count(*)
FROM new_requests r
JOIN ip_addresses a ON a.ip = r.client_ip
WHERE r.principal_id IS NOT NULL AND a.version IN (4, 6)
GROUP BY ALL
ON CONFLICT DO UPDATE SET
    first_row = CASE WHEN excluded.first_time < first_time THEN excluded.first_row ELSE first_row END,
    first_time = least(first_time, excluded.first_time),
    last_time = greatest(last_time, excluded.last_time),
    events = events + excluded.events;
