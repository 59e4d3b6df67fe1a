-- The sign-in behind a request: the principal's latest successful sign-in *to Azure Cosmos
-- DB* (resource app id a232010e-820c-4083-83bb-3ace5fc29d0b) within the 24 hours before it,
-- else its latest successful sign-in of any kind, as before. A token is issued for one
-- resource: one for Outlook or the portal cannot be used on Cosmos DB, so a later sign-in to
-- another resource (a phone refreshing mail from another address) is not the one that
-- issued the request's token. 24 hours covers a managed identity's cached token, the longest.
-- Requests correlated before this migration keep the sign-in they were given in
-- `request_signins`; the view applies to all.
CREATE MACRO cosmos_resource_app() AS 'a232010e-820c-4083-83bb-3ace5fc29d0b';

CREATE OR REPLACE VIEW request_context AS
WITH ok AS (
    SELECT
        rowid AS signin_row, signin_id, time, principal_id, kind, ip_address, country, city, app_id,
        app_display_name, risk_level, risk_level_aggregated, risk_state, conditional_access_status,
        resource_id, resource_display_name
    FROM signins
    WHERE coalesce(error_code, 0) = 0 AND principal_id IS NOT NULL
),
by_ip AS (
    SELECT time, principal_id, ip_address FROM ok WHERE ip_address IS NOT NULL
),
r AS (
    SELECT rowid AS request_row, * FROM cosmos_requests
),
matched AS (
    SELECT
        r.*,
        CASE WHEN c.time >= utc_add(r.time, - INTERVAL 24 HOUR) THEN c.s ELSE a.s END AS s,
        i.time AS ip_time
    FROM r
    ASOF LEFT JOIN (SELECT principal_id, time, ok AS s FROM ok) a
      ON r.principal_id = a.principal_id AND r.time >= a.time
    ASOF LEFT JOIN (SELECT principal_id, time, ok AS s FROM ok WHERE lower(resource_id) = cosmos_resource_app()) c
      ON r.principal_id = c.principal_id AND r.time >= c.time
    ASOF LEFT JOIN by_ip i ON r.principal_id = i.principal_id AND r.client_ip = i.ip_address AND r.time >= i.time
)
SELECT
    m.* EXCLUDE (s, ip_time),
    CASE
        WHEN m.principal_id IS NOT NULL THEN 'entra_id'
        WHEN m.auth_token_type ILIKE '%resource%' THEN 'resource_token'
        WHEN m.auth_token_type ILIKE '%key%' THEN 'account_key'
        ELSE 'unknown'
    END AS attribution,
    m.principal_id IS NULL AS unattributable,
    p.kind AS principal_kind,
    p.principal_name,
    p.app_id AS principal_app_id,
    p.app_name AS principal_app_name,
    m.s.signin_row,
    m.s.signin_id,
    m.s.time AS signin_time,
    m.s.kind AS signin_kind,
    m.s.ip_address AS signin_ip,
    m.s.country AS signin_country,
    m.s.city AS signin_city,
    m.s.app_id AS signin_app_id,
    m.s.app_display_name AS signin_app_name,
    m.s.risk_level AS signin_risk_level,
    m.s.risk_level_aggregated AS signin_risk_level_aggregated,
    m.s.risk_state AS signin_risk_state,
    m.s.conditional_access_status AS signin_ca_status,
    m.s.resource_id AS signin_resource_id,
    m.s.resource_display_name AS signin_resource_name,
    CASE WHEN m.ip_time >= utc_add(m.time, - INTERVAL 7 DAY) THEN m.ip_time END AS ip_signin_time,
    CASE WHEN m.principal_id IS NOT NULL THEN coalesce(m.ip_time >= utc_add(m.time, - INTERVAL 7 DAY), false) END
        AS ip_seen_in_signins_7d
FROM matched m
LEFT JOIN principals p ON p.principal_id = m.principal_id;
