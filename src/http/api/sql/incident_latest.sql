-- The latest event of the incident's principals or addresses, request or sign-in, since it
-- began: whether it is still going on. Parameters: since, principals, addresses (JSON
-- arrays), twice.
SELECT epoch_us(max(t)) FROM (
    SELECT max(time) AS t FROM cosmos_requests
    WHERE time >= ?::TIMESTAMPTZ
      AND (principal_id IN (SELECT unnest(from_json(?, '["VARCHAR"]'))) OR client_ip IN (SELECT unnest(from_json(?, '["VARCHAR"]'))))
    UNION ALL
    SELECT max(time) FROM signins
    WHERE time >= ?::TIMESTAMPTZ
      AND (principal_id IN (SELECT unnest(from_json(?, '["VARCHAR"]'))) OR ip_address IN (SELECT unnest(from_json(?, '["VARCHAR"]'))))
)
