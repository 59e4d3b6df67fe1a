-- Correlation: every Cosmos DB request with the principal behind it and the Entra ID
-- sign-in that issued its token. Views over the public tables, so they are always
-- exact: Entra logs that arrive hours late change the answer as soon as they are stored.

-- DuckDB is built without ICU: TIMESTAMPTZ arithmetic goes through TIMESTAMP (UTC).
-- utc_add(t, INTERVAL 1 HOUR) and utc_hour(t) are for rules and users' own SQL.
CREATE MACRO utc_add(t, iv) AS (t::TIMESTAMP + iv)::TIMESTAMPTZ;
CREATE MACRO utc_hour(t) AS date_trunc('hour', t::TIMESTAMP)::TIMESTAMPTZ;

-- The product of a user agent: 'azsdk-python-cosmos/4.5.1 Python/3.11' -> 'azsdk-python-cosmos',
-- so that an SDK upgrade is not a new application.
CREATE MACRO user_agent_family(ua) AS lower(regexp_extract(coalesce(ua, ''), '^[^/ ]*'));

-- Who made a request: its principal, or for key-based requests the client
-- ('key:<account>/<client ip>'), since a key carries no identity.
CREATE MACRO request_subject(principal_id, account, client_ip) AS
    coalesce(principal_id, 'key:' || coalesce(account, '') || '/' || coalesce(client_ip, ''));

-- Every principal seen in either source. `kind` is user, service_principal,
-- managed_identity, or unknown (seen only in Cosmos DB requests, never signing in).
CREATE VIEW principals AS
WITH s AS (
    SELECT
        principal_id,
        arg_max(CASE WHEN kind LIKE 'user%' THEN 'user' ELSE kind END, time) AS kind,
        arg_max(principal_name, time) FILTER (WHERE principal_name IS NOT NULL) AS principal_name,
        list_sort(list(DISTINCT principal_name) FILTER (WHERE principal_name IS NOT NULL)) AS names,
        arg_max(user_display_name, time) FILTER (WHERE user_display_name IS NOT NULL) AS display_name,
        arg_max(app_id, time) FILTER (WHERE app_id IS NOT NULL) AS app_id,
        arg_max(app_display_name, time) FILTER (WHERE app_display_name IS NOT NULL) AS app_name,
        min(time) AS first_signin,
        max(time) AS last_signin,
        count(*) AS signins,
        count(*) FILTER (WHERE coalesce(error_code, 0) <> 0) AS failed_signins
    FROM signins
    WHERE principal_id IS NOT NULL
    GROUP BY principal_id
),
r AS (
    SELECT principal_id, min(time) AS first_data_op, max(time) AS last_data_op, count(*) AS data_ops
    FROM cosmos_requests
    WHERE principal_id IS NOT NULL
    GROUP BY principal_id
)
SELECT
    principal_id,
    coalesce(s.kind, 'unknown') AS kind,
    s.principal_name,
    coalesce(s.names, []) AS names,
    s.display_name,
    s.app_id,
    s.app_name,
    least(s.first_signin, r.first_data_op) AS first_seen,
    greatest(s.last_signin, r.last_data_op) AS last_seen,
    coalesce(s.signins, 0) AS signins,
    coalesce(s.failed_signins, 0) AS failed_signins,
    coalesce(r.data_ops, 0) AS data_ops,
    s.first_signin,
    s.last_signin,
    r.first_data_op,
    r.last_data_op
FROM s
FULL OUTER JOIN r USING (principal_id);

-- One row per cosmos_requests row (none dropped), with:
--   request_row                the request's rowid (the tables are append-only, so it is stable)
--   attribution                entra_id, account_key, resource_token or unknown;
--   unattributable             true when no principal is behind the request (keys, resource tokens)
--   principal_*                the principal (from `principals`)
--   signin_*                   its latest successful sign-in at or before the request: the one
--                              that issued (or refreshed) the token; signin_resource_* is what
--                              that sign-in was for (Azure Cosmos DB, or e.g. the portal)
--   ip_signin_time             its latest successful sign-in from the request's own address in
--                              the 7 days before the request (NULL if none)
--   ip_seen_in_signins_7d      whether there is one (NULL for unattributable requests)
-- The detection engine keeps the same columns materialised in `request_signins` for speed.
CREATE VIEW request_context AS
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
)
SELECT
    r.*,
    CASE
        WHEN r.principal_id IS NOT NULL THEN 'entra_id'
        WHEN r.auth_token_type ILIKE '%resource%' THEN 'resource_token'
        WHEN r.auth_token_type ILIKE '%key%' THEN 'account_key'
        ELSE 'unknown'
    END AS attribution,
    r.principal_id IS NULL AS unattributable,
    p.kind AS principal_kind,
    p.principal_name,
    p.app_id AS principal_app_id,
    p.app_name AS principal_app_name,
    s.signin_row,
    s.signin_id,
    s.time AS signin_time,
    s.kind AS signin_kind,
    s.ip_address AS signin_ip,
    s.country AS signin_country,
    s.city AS signin_city,
    s.app_id AS signin_app_id,
    s.app_display_name AS signin_app_name,
    s.risk_level AS signin_risk_level,
    s.risk_level_aggregated AS signin_risk_level_aggregated,
    s.risk_state AS signin_risk_state,
    s.conditional_access_status AS signin_ca_status,
    s.resource_id AS signin_resource_id,
    s.resource_display_name AS signin_resource_name,
    CASE WHEN i.time >= utc_add(r.time, - INTERVAL 7 DAY) THEN i.time END AS ip_signin_time,
    CASE WHEN r.principal_id IS NOT NULL THEN coalesce(i.time >= utc_add(r.time, - INTERVAL 7 DAY), false) END
        AS ip_seen_in_signins_7d
FROM r
ASOF LEFT JOIN ok s ON r.principal_id = s.principal_id AND r.time >= s.time
ASOF LEFT JOIN by_ip i ON r.principal_id = i.principal_id AND r.client_ip = i.ip_address AND r.time >= i.time
LEFT JOIN principals p ON p.principal_id = r.principal_id;
