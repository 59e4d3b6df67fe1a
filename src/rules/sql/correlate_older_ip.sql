-- For requests of `pending_context` with no sign-in from their own address in the 6 hours
-- before $plo: the latest one from it in the 7 days before $plo (older ones do not count).

CREATE OR REPLACE TEMP TABLE older_ip_signins AS
SELECT s.principal_id, s.ip_address, max(s.time) AS time
FROM signins s
SEMI JOIN (SELECT DISTINCT principal_id, client_ip FROM pending_context WHERE ip_signin_time IS NULL) u
  ON s.principal_id = u.principal_id AND s.ip_address = u.client_ip
WHERE s.time >= utc_add($plo, - INTERVAL 7 DAY) AND s.time < utc_add($plo, - INTERVAL 6 HOUR)
  AND coalesce(s.error_code, 0) = 0
GROUP BY s.principal_id, s.ip_address;
