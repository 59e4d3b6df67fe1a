-- Materialises request_context into request_signins for the requests of `pending`
-- ($plo, $phi: their earliest and latest time). Same meaning as the view (the latest sign-in
-- to Cosmos DB within 24 hours, else the latest of any), computed in steps so that only the
-- sign-ins near the requests are sorted: those to Cosmos DB of the 24 hours before and any of
-- the 6 hours before; then, only for requests with no match in them, correlate_older.sql and
-- correlate_older_ip.sql look further back; correlate_store.sql stores the result.

CREATE OR REPLACE TEMP TABLE pending_context AS
WITH ok AS (
    SELECT
        rowid AS signin_row, signin_id, time, principal_id, kind, ip_address, country, city, app_id,
        app_display_name, risk_level, risk_level_aggregated, risk_state, conditional_access_status,
        resource_id, resource_display_name
    FROM signins
    WHERE time >= utc_add($plo, - INTERVAL 24 HOUR) AND time <= $phi
      AND coalesce(error_code, 0) = 0 AND principal_id IS NOT NULL
),
matched AS (
    SELECT
        p.*,
        CASE WHEN c.time >= utc_add(p.time, - INTERVAL 24 HOUR) THEN c.signin_row ELSE a.signin_row END AS chosen,
        i.time AS ip_signin_time
    FROM pending p
    ASOF LEFT JOIN (SELECT principal_id, time, signin_row FROM ok WHERE time >= utc_add($plo, - INTERVAL 6 HOUR)) a
      ON p.principal_id = a.principal_id AND p.time >= a.time
    ASOF LEFT JOIN (
        SELECT principal_id, time, signin_row FROM ok WHERE lower(resource_id) = cosmos_resource_app()
    ) c ON p.principal_id = c.principal_id AND p.time >= c.time
    ASOF LEFT JOIN (
        SELECT time, principal_id, ip_address FROM ok
        WHERE time >= utc_add($plo, - INTERVAL 6 HOUR) AND ip_address IS NOT NULL
    ) i ON p.principal_id = i.principal_id AND p.client_ip = i.ip_address AND p.time >= i.time
)
SELECT
    m.* EXCLUDE (chosen, ip_signin_time),
    s.signin_row, s.signin_id, s.time AS signin_time, s.kind AS signin_kind, s.ip_address AS signin_ip,
    s.country AS signin_country, s.city AS signin_city, s.app_id AS signin_app_id,
    s.app_display_name AS signin_app_name, s.risk_level AS signin_risk_level,
    s.risk_level_aggregated AS signin_risk_level_aggregated, s.risk_state AS signin_risk_state,
    s.conditional_access_status AS signin_ca_status,
    s.resource_id AS signin_resource_id, s.resource_display_name AS signin_resource_name,
    m.ip_signin_time
FROM matched m
LEFT JOIN ok s ON s.signin_row = m.chosen;
