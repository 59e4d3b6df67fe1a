-- A principal's activity per bucket of a period and its addresses, from one scan of its
-- requests and one of its sign-ins: $1 principal, $2 from, $3 to (timestamps), $4 the first
-- bucket's start, $5 a bucket's width, $6 the end of the last bucket (epoch microseconds,
-- $4 <= $2, $6 >= $3).
-- Rows of `part` 'hour': every bucket (`start`), one without activity as zeros: requests,
-- bytes out, sign-ins, failed sign-ins.
-- Rows of `part` 'address': each address its requests came from (requests, bytes out,
-- accounts, first, last) or a sign-in did (sign-ins, failed, kinds, apps, first, last);
-- `no_signin` marks one requests came from that no sign-in of the period did (its token was
-- used from elsewhere). Those first, then by requests, then by sign-ins; 300 at most.
WITH r AS MATERIALIZED (
    SELECT epoch_us(time) AS t, time, client_ip, account, response_length
    FROM cosmos_requests WHERE principal_id = $1 AND time >= $2 AND time < $3
), s AS MATERIALIZED (
    SELECT epoch_us(time) AS t, time, ip_address, kind, app_display_name, coalesce(error_code, 0) <> 0 AS failed
    FROM signins WHERE principal_id = $1 AND time >= $2 AND time < $3
), rh AS (
    SELECT $4 + (t - $4) // $5 * $5 AS b, count(*) AS requests, coalesce(sum(response_length), 0)::BIGINT AS bytes_out
    FROM r GROUP BY 1
), sh AS (
    SELECT $4 + (t - $4) // $5 * $5 AS b, count(*) AS signins, count(*) FILTER (WHERE failed) AS failed_signins
    FROM s GROUP BY 1
), hours AS (
    SELECT 'hour' AS part, make_timestamp(g.range) AS start, g.range AS sort,
           coalesce(rh.requests, 0) AS requests, coalesce(rh.bytes_out, 0) AS bytes_out,
           coalesce(sh.signins, 0) AS signins, coalesce(sh.failed_signins, 0) AS failed_signins
    FROM range($4, $6, $5) g LEFT JOIN rh ON rh.b = g.range LEFT JOIN sh ON sh.b = g.range
), d AS (
    SELECT client_ip AS address, count(*) AS requests, coalesce(sum(response_length), 0)::BIGINT AS bytes_out,
           count(DISTINCT account) AS accounts, min(time) AS first, max(time) AS last
    FROM r WHERE client_ip IS NOT NULL AND client_ip <> '' GROUP BY 1
), a AS (
    SELECT ip_address AS address, count(*) AS signins, count(*) FILTER (WHERE failed) AS failed_signins,
           string_agg(DISTINCT kind, ', ' ORDER BY kind) AS signin_kinds,
           string_agg(DISTINCT app_display_name, ', ' ORDER BY app_display_name) AS signin_apps,
           min(time) AS signin_first, max(time) AS signin_last
    FROM s WHERE ip_address IS NOT NULL AND ip_address <> '' GROUP BY 1
), addresses AS (
    SELECT 'address' AS part, address, d.requests, d.bytes_out, d.accounts, d.first, d.last,
           a.signins, a.failed_signins, a.signin_kinds, a.signin_apps, a.signin_first, a.signin_last,
           d.address IS NOT NULL AS data_access, a.address IS NOT NULL AS signed_in,
           d.address IS NOT NULL AND a.address IS NULL AS no_signin
    FROM d FULL JOIN a USING (address)
    ORDER BY no_signin DESC, d.requests DESC NULLS LAST, a.signins DESC NULLS LAST, address
    LIMIT 300
)
SELECT * FROM (
    SELECT part, start, NULL AS address, requests, bytes_out, NULL::BIGINT AS accounts, NULL::TIMESTAMPTZ AS first,
           NULL::TIMESTAMPTZ AS last, signins, failed_signins, NULL AS signin_kinds, NULL AS signin_apps,
           NULL::TIMESTAMPTZ AS signin_first, NULL::TIMESTAMPTZ AS signin_last, NULL::BOOLEAN AS data_access,
           NULL::BOOLEAN AS signed_in, NULL::BOOLEAN AS no_signin, sort
    FROM hours
    UNION ALL
    SELECT part, NULL, address, requests, bytes_out, accounts, first, last, signins, failed_signins, signin_kinds,
           signin_apps, signin_first, signin_last, data_access, signed_in, no_signin,
           row_number() OVER (ORDER BY no_signin DESC, requests DESC NULLS LAST, signins DESC NULLS LAST, address)
    FROM addresses
)
ORDER BY part DESC, sort
