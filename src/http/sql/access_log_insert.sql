INSERT INTO access_log (time, oid, tid, name, role, method, endpoint, path, parameters, status, rows,
                        duration_ms, client_ip, user_agent, auth, request_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
