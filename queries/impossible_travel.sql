-- id: impossible_travel
-- title: Sign-ins from places too far apart for the time between them
-- severity: high
-- soc2: CC6.1, CC7.2
-- mitre: T1078.004 Valid Accounts: Cloud Accounts
-- window: 0m
-- description: Two successful sign-ins of the same principal, the second from a place farther
--   from the first than anyone can travel in the time between them (great-circle distance over
--   max_speed_kmh), and at least min_km apart so that a city's different exits do not count.
--   Raises the second sign-in; all such sign-ins of a principal are one finding. Only the sign-in
--   kinds of `kinds` count: by default a person's interactive sign-ins, since workloads run in
--   several regions at once and silent token refreshes come from wherever the device is (a
--   phone on a carrier network). Sign-ins without coordinates (managed identities) are ignored.
-- remediation: Ask the user which of the two was them. Revoke the sessions from the other
--   place, reset the credential, and review the data accessed from it.
-- param: max_speed_kmh = 900
--   Faster than this is impossible (a commercial flight).
-- param: min_km = 500
--   Sign-ins closer than this are never raised.
-- param: max_gap_hours = 24
--   Only sign-ins at most this far apart are compared.
-- param: kinds = 'user_interactive'
--   Comma-separated sign-in kinds compared: user_interactive, user_noninteractive,
--   service_principal.
WITH signed AS (
    SELECT rowid AS row_id, time, principal_id, ip_address, country, city, latitude, longitude
    FROM signins
    WHERE time >= utc_add($from, - to_hours($max_gap_hours)) AND time < $to
      AND coalesce(error_code, 0) = 0
      AND principal_id IS NOT NULL
      AND list_contains(string_split($kinds, ','), kind)
      AND latitude IS NOT NULL AND longitude IS NOT NULL
      AND NOT (latitude = 0 AND longitude = 0)
),
movers AS (
    -- only principals seen at more than one place need their sign-ins in order
    SELECT principal_id
    FROM signed
    GROUP BY principal_id
    HAVING min(latitude) <> max(latitude) OR min(longitude) <> max(longitude)
),
located AS (
    SELECT
        *,
        lag(time) OVER w AS prev_time,
        lag(latitude) OVER w AS prev_latitude,
        lag(longitude) OVER w AS prev_longitude,
        lag(country) OVER w AS prev_country,
        lag(city) OVER w AS prev_city,
        lag(ip_address) OVER w AS prev_ip
    FROM signed
    WHERE principal_id IN (SELECT principal_id FROM movers)
    WINDOW w AS (PARTITION BY principal_id ORDER BY time, row_id)
),
moves AS (
    SELECT
        *,
        2 * 6371 * asin(sqrt(
            pow(sin(radians(latitude - prev_latitude) / 2), 2)
            + cos(radians(prev_latitude)) * cos(radians(latitude)) * pow(sin(radians(longitude - prev_longitude) / 2), 2)
        )) AS km,
        (epoch_us(time) - epoch_us(prev_time)) / 3.6e9 AS hours
    FROM located
    WHERE prev_time IS NOT NULL AND prev_time >= utc_add(time, - to_hours($max_gap_hours))
)
SELECT
    time,
    'signins' AS evidence_table,
    row_id,
    principal_id,
    '' AS entity,
    'signed in from ' || coalesce(city || ', ', '') || coalesce(country, '?') || ' (' || coalesce(ip_address, '?') || ') '
        || round(hours * 60) || ' minutes after ' || coalesce(prev_city || ', ', '') || coalesce(prev_country, '?')
        || ' (' || coalesce(prev_ip, '?') || '): ' || round(km) || ' km, ' || round(km / greatest(hours, 1 / 60)) || ' km/h'
        AS detail
FROM moves
WHERE km >= $min_km
  AND km / greatest(hours, 1.0 / 60) > $max_speed_kmh
  AND time >= $from AND time < $to
