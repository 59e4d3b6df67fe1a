INSERT INTO access_log (time, name, method, endpoint, path, parameters, status, rows, duration_ms, auth)
VALUES (get_current_timestamp(), ?, 'CLI', 'tokentrail evidence', ?, ?::JSON, 200, ?, ?, 'none')
