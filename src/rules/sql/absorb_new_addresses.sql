SELECT DISTINCT ip FROM (
    SELECT client_ip AS ip FROM new_requests
    UNION ALL SELECT ip_address FROM new_signins
) n
WHERE ip IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM ip_addresses a WHERE a.ip = n.ip)
