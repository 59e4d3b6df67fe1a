-- Where a principal signed in from in a period ($1 principal, $2 from, $3 to).
SELECT ip_address, country, city, app_display_name, kind, count(*) AS signins,
       count(*) FILTER (WHERE coalesce(error_code, 0) <> 0) AS failed,
       max(risk_level) FILTER (WHERE risk_level NOT IN ('none', 'hidden')) AS risk,
       min(time) AS first, max(time) AS last
FROM signins WHERE principal_id = $1 AND time >= $2 AND time < $3
GROUP BY ALL ORDER BY last DESC, ip_address, app_display_name, kind LIMIT 200
