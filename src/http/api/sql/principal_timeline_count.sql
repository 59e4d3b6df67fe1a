-- How many rows the principal's timeline has in the period (principal_timeline.sql's rows,
-- all pages; $1 principal, $2 from, $3 to).
SELECT (SELECT count(*) FROM signins WHERE principal_id = $1 AND time >= $2 AND time < $3)
     + (SELECT count(*) FROM cosmos_requests WHERE principal_id = $1 AND time >= $2 AND time < $3)
     + (SELECT count(*) FROM findings WHERE principal_id = $1 AND last_seen >= $2 AND last_seen < $3) AS n
