-- Where a principal's data access came from against where it signed in from, in a period
-- ($1 principal, $2 from, $3 to): each address with its requests (bytes out, accounts, first,
-- last) and its sign-ins (failed ones, kinds, apps). `no_signin` marks an address its
-- requests came from that none of its sign-ins in the period did: a token used elsewhere.
-- Those first, then by requests, then by sign-ins.
WITH d AS (
    SELECT client_ip AS address, count(*) AS requests, coalesce(sum(response_length), 0)::BIGINT AS bytes_out,
           count(DISTINCT account) AS accounts, min(time) AS first, max(time) AS last
    FROM cosmos_requests
    WHERE principal_id = $1 AND time >= $2 AND time < $3 AND client_ip IS NOT NULL AND client_ip <> ''
    GROUP BY 1
), s AS (
    SELECT ip_address AS address, count(*) AS signins,
           count(*) FILTER (WHERE coalesce(error_code, 0) <> 0) AS failed_signins,
           string_agg(DISTINCT kind, ', ' ORDER BY kind) AS signin_kinds,
           string_agg(DISTINCT app_display_name, ', ' ORDER BY app_display_name) AS signin_apps,
           min(time) AS signin_first, max(time) AS signin_last
    FROM signins
    WHERE principal_id = $1 AND time >= $2 AND time < $3 AND ip_address IS NOT NULL AND ip_address <> ''
    GROUP BY 1
)
SELECT address, d.requests, d.bytes_out, d.accounts, d.first, d.last,
       s.signins, s.failed_signins, s.signin_kinds, s.signin_apps, s.signin_first, s.signin_last,
       d.address IS NOT NULL AS data_access, s.address IS NOT NULL AS signed_in,
       d.address IS NOT NULL AND s.address IS NULL AS no_signin
FROM d FULL JOIN s USING (address)
ORDER BY no_signin DESC, d.requests DESC NULLS LAST, s.signins DESC NULLS LAST, address
LIMIT 300
