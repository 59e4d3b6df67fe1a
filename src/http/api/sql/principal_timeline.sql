-- A principal's sign-ins, data operations and findings in a period, newest first, a page
-- of 500 ($1 principal, $2 from, $3 to, $4 the rows before this page). Ties are ordered
-- by type and row so that pages neither repeat nor skip a row.
SELECT * FROM (
    SELECT time, 'signin' AS type, rowid AS row_id,
           concat_ws(' ', kind, CASE WHEN coalesce(error_code, 0) <> 0 THEN 'failed ' || error_code END,
                     'from', coalesce(ip_address, '(no address)'), country, 'to', app_display_name) AS what
    FROM signins WHERE principal_id = $1 AND time >= $2 AND time < $3
    UNION ALL
    SELECT time, 'data', rowid,
           concat_ws(' ', operation, status_code, account || '/' || database_name || '/' || collection_name,
                     'from', client_ip, response_length || ' bytes out')
    FROM cosmos_requests WHERE principal_id = $1 AND time >= $2 AND time < $3
    UNION ALL
    SELECT last_seen, 'finding', id, severity || ' ' || title || ' (' || status || ')'
    FROM findings WHERE principal_id = $1 AND last_seen >= $2 AND last_seen < $3
) ORDER BY time DESC, type, row_id LIMIT 500 OFFSET $4
