-- The monitoring tool itself: every API call and UI action in [$from, $to), refused ones
-- included (access_log, written by the service; no endpoint changes or deletes its rows).
SELECT id, time, oid, tid, name, role, method, endpoint, path, parameters::VARCHAR AS parameters, status, rows,
       duration_ms, client_ip, user_agent, auth
FROM access_log
WHERE time >= $from AND time < $to
ORDER BY time, id
