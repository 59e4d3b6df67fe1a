-- For requests of `pending_context` with no sign-in in the 6 hours before the earliest
-- pending request ($plo): their principal's latest successful sign-in before that.

CREATE OR REPLACE TEMP TABLE older_signins AS
WITH latest AS (
    SELECT principal_id, max(time) AS time
    FROM signins
    WHERE time < utc_add($plo, - INTERVAL 6 HOUR)
      AND coalesce(error_code, 0) = 0
      AND principal_id IN (SELECT principal_id FROM pending_context WHERE signin_time IS NULL)
    GROUP BY principal_id
)
SELECT
    s.principal_id,
    -- of sign-ins at the very same time, the first stored
    arg_min({
        'signin_row': s.rowid, 'signin_id': s.signin_id, 'time': s.time, 'kind': s.kind, 'ip_address': s.ip_address,
        'country': s.country, 'city': s.city, 'app_id': s.app_id, 'app_display_name': s.app_display_name,
        'risk_level': s.risk_level, 'risk_level_aggregated': s.risk_level_aggregated, 'risk_state': s.risk_state,
        'conditional_access_status': s.conditional_access_status, 'resource_id': s.resource_id,
        'resource_display_name': s.resource_display_name
    }, s.rowid) AS s
FROM signins s
JOIN latest l ON s.principal_id = l.principal_id AND s.time = l.time
WHERE coalesce(s.error_code, 0) = 0
GROUP BY s.principal_id;
