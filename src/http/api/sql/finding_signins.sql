SELECT s.rowid AS row_id, s.time, s.kind, s.ip_address, s.country, s.city, s.app_display_name, s.app_id,
       s.resource_display_name, s.error_code, s.risk_level, s.risk_level_aggregated, s.risk_state,
       s.conditional_access_status, s.user_agent
FROM signins s JOIN findings f ON s.principal_id = f.principal_id
WHERE f.id = ? AND s.time >= utc_add(f.last_seen, - INTERVAL 7 DAY) AND s.time <= utc_add(f.last_seen, INTERVAL 1 HOUR)
ORDER BY s.time DESC LIMIT 200
