-- Stores `pending_context` in request_signins, completed by older_signins and
-- older_ip_signins where the 6 hours before had no match (the address match counts only
-- within 7 days).
INSERT INTO request_signins (
    request_row, time, principal_id, account, client_ip, operation, status_code, signin_row, signin_id,
    signin_time, signin_kind, signin_ip, signin_country, signin_city, signin_app_id, signin_app_name,
    signin_risk_level, signin_risk_level_aggregated, signin_risk_state, signin_ca_status, signin_resource_id,
    signin_resource_name, ip_signin_time
)
SELECT
    c.request_row, c.time, c.principal_id, c.account, c.client_ip, c.operation, c.status_code,
    CASE WHEN c.signin_time IS NULL THEN o.s.signin_row ELSE c.signin_row END,
    CASE WHEN c.signin_time IS NULL THEN o.s.signin_id ELSE c.signin_id END,
    CASE WHEN c.signin_time IS NULL THEN o.s.time ELSE c.signin_time END,
    CASE WHEN c.signin_time IS NULL THEN o.s.kind ELSE c.signin_kind END,
    CASE WHEN c.signin_time IS NULL THEN o.s.ip_address ELSE c.signin_ip END,
    CASE WHEN c.signin_time IS NULL THEN o.s.country ELSE c.signin_country END,
    CASE WHEN c.signin_time IS NULL THEN o.s.city ELSE c.signin_city END,
    CASE WHEN c.signin_time IS NULL THEN o.s.app_id ELSE c.signin_app_id END,
    CASE WHEN c.signin_time IS NULL THEN o.s.app_display_name ELSE c.signin_app_name END,
    CASE WHEN c.signin_time IS NULL THEN o.s.risk_level ELSE c.signin_risk_level END,
    CASE WHEN c.signin_time IS NULL THEN o.s.risk_level_aggregated ELSE c.signin_risk_level_aggregated END,
    CASE WHEN c.signin_time IS NULL THEN o.s.risk_state ELSE c.signin_risk_state END,
    CASE WHEN c.signin_time IS NULL THEN o.s.conditional_access_status ELSE c.signin_ca_status END,
    CASE WHEN c.signin_time IS NULL THEN o.s.resource_id ELSE c.signin_resource_id END,
    CASE WHEN c.signin_time IS NULL THEN o.s.resource_display_name ELSE c.signin_resource_name END,
    CASE WHEN coalesce(c.ip_signin_time, i.time) >= utc_add(c.time, - INTERVAL 7 DAY)
        THEN coalesce(c.ip_signin_time, i.time) END
FROM pending_context c
LEFT JOIN older_signins o ON c.signin_time IS NULL AND o.principal_id = c.principal_id
LEFT JOIN older_ip_signins i
  ON c.ip_signin_time IS NULL AND i.principal_id = c.principal_id AND i.ip_address = c.client_ip;
