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
    -- the joins carry only the sign-in's row; its columns are looked up once it is chosen
    SELECT
        r.*,
        CASE WHEN c.time >= utc_add(r.time, - INTERVAL 24 HOUR) THEN c.signin_row ELSE a.signin_row END AS chosen,
        i.time AS ip_time
    FROM r
    ASOF LEFT JOIN (SELECT principal_id, time, signin_row FROM ok) a
      ON r.principal_id = a.principal_id AND r.time >= a.time
    ASOF LEFT JOIN (
        SELECT principal_id, time, signin_row FROM ok WHERE lower(resource_id) = cosmos_resource_app()
    ) c ON r.principal_id = c.principal_id AND r.time >= c.time
    ASOF LEFT JOIN by_ip i ON r.principal_id = i.principal_id AND r.client_ip = i.ip_address AND r.time >= i.time
)
SELECT
    m.* EXCLUDE (chosen, ip_time),
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
    CASE WHEN m.ip_time >= utc_add(m.time, - INTERVAL 7 DAY) THEN m.ip_time END AS ip_signin_time,
    CASE WHEN m.principal_id IS NOT NULL THEN coalesce(m.ip_time >= utc_add(m.time, - INTERVAL 7 DAY), false) END
        AS ip_seen_in_signins_7d
FROM matched m
LEFT JOIN ok s ON s.signin_row = m.chosen
LEFT JOIN principals p ON p.principal_id = m.principal_id;

-- The kind of principal behind a request, from the kind of its sign-in (`unknown` without one).
CREATE MACRO principal_kind_of(signin_kind) AS CASE
    WHEN signin_kind IN ('user_interactive', 'user_noninteractive') THEN 'user'
    WHEN signin_kind IN ('service_principal', 'managed_identity') THEN signin_kind
    ELSE 'unknown'
END;

-- One clock per kind of principal: how far the sign-in logs that kind signs in through have
-- arrived (`until`, the earliest of them, since each arrives with its own delay), whether
-- every one of them was ever received (`complete`) and which were not (`missing`). Users sign
-- in through the interactive and the non-interactive logs (silent refreshes are in the
-- latter), service principals and managed identities through their own; a principal with no
-- sign-in on record (`unknown`) could be any of them. Rules judge a request by its principal's
-- kind, so a late log of one kind does not hold back (or wrongly release) the others.
CREATE VIEW signin_clock AS
WITH categories(stream, kind) AS (
    VALUES ('signins:SignInLogs', 'user'), ('signins:NonInteractiveUserSignInLogs', 'user'),
           ('signins:ServicePrincipalSignInLogs', 'service_principal'),
           ('signins:ManagedIdentitySignInLogs', 'managed_identity')
),
seen AS (
    SELECT lower(stream) AS stream, max(last_time) AS until FROM stream_hours WHERE stream LIKE 'signins:%' GROUP BY ALL
),
per AS (
    SELECT c.kind, c.stream, s.until FROM categories c LEFT JOIN seen s ON s.stream = lower(c.stream)
)
SELECT
    kind, min(until) AS until, bool_and(until IS NOT NULL) AS complete,
    string_agg(CASE WHEN until IS NULL THEN replace(stream, 'signins:', '') END, ', ' ORDER BY stream) AS missing
FROM per
GROUP BY kind
UNION ALL
SELECT
    'unknown', min(until), bool_and(until IS NOT NULL),
    string_agg(CASE WHEN until IS NULL THEN replace(stream, 'signins:', '') END, ', ' ORDER BY stream)
FROM per;

-- When a live source last found its hubs with nothing left to read (every enqueued event
-- committed), by the wall clock: everything sent before then has arrived. Written by
-- detection from the Event Hubs source's partition watch; source_silent measures a silence
-- of every stream at once up to it (the streams' own clock stops with them).
CREATE TABLE source_clock (
    source VARCHAR PRIMARY KEY,
    caught_up_until TIMESTAMPTZ NOT NULL
);

-- Users' sign-in attempts in [lo, hi) that count for password sprays: successes and failed
-- guesses (guess_codes, a comma-separated list of error codes), from outside the trusted
-- networks, each with its source (an IPv4 address, an IPv6 /64) and who tried.
CREATE MACRO guess_attempts(lo, hi, guess_codes) AS TABLE
SELECT
    s.rowid AS row_id, s.time, s.ip_address,
    spray_source(s.ip_address, a.ip_hex, a.version) AS source,
    coalesce(s.principal_id, lower(s.principal_name)) AS who,
    coalesce(s.error_code, 0) = 0 AS ok
FROM signins s
JOIN ip_addresses a ON a.ip = s.ip_address
WHERE s.time >= lo AND s.time < hi
  AND s.kind IN ('user_interactive', 'user_noninteractive')
  AND (coalesce(s.error_code, 0) = 0 OR list_contains(string_split(guess_codes, ','), s.error_code::VARCHAR))
  AND NOT EXISTS (
      SELECT 1 FROM network_lists t
      WHERE t.list = 'trusted' AND a.ip_hex >= t.lo_hex AND a.ip_hex <= t.hi_hex
  );

-- The failed guesses behind password_spray and spray_then_data_access: attempts in [lo, hi)
-- (guess_attempts), of which the failures in [from_t, to_t) whose source saw at least
-- min_users users fail within spray_minutes either side, and fewer users get in from it within
-- success_minutes (shared egress: an office whose staff mistype, then sign in). Each with its
-- source, `users` and `succeeded`.
CREATE MACRO address_sprays(lo, hi, from_t, to_t, spray_minutes, success_minutes, guess_codes, min_users) AS TABLE
WITH attempts AS (
    SELECT * FROM guess_attempts(lo, hi, guess_codes)
),
scored AS (
    -- failures only: the distinct count over a window is costly, and successes are many
    SELECT
        *,
        count(DISTINCT who) OVER (
            PARTITION BY source ORDER BY time::TIMESTAMP
            RANGE BETWEEN to_minutes(spray_minutes) PRECEDING AND to_minutes(spray_minutes) FOLLOWING
        ) AS users
    FROM attempts
    WHERE NOT ok
),
candidates AS MATERIALIZED (
    SELECT * FROM scored WHERE users >= min_users AND time >= from_t AND time < to_t
),
succeeded AS (
    -- users who got in from a candidate's source around it (candidates are few: a join)
    SELECT c.row_id, count(DISTINCT o.who) AS succeeded
    FROM candidates c
    JOIN attempts o
      ON o.ok AND o.source = c.source
     AND o.time >= utc_add(c.time, - to_minutes(success_minutes))
     AND o.time <= utc_add(c.time, to_minutes(success_minutes))
    GROUP BY c.row_id
)
SELECT c.row_id, c.time, c.source, c.users, coalesce(s.succeeded, 0) AS succeeded
FROM candidates c
LEFT JOIN succeeded s ON s.row_id = c.row_id
WHERE coalesce(s.succeeded, 0) < c.users;

-- The password guesses behind distributed_spray and distributed_spray_then_data_access:
-- users' failed guesses (guess_codes, a comma-separated list of error codes) in [lo, hi) from
-- outside the trusted networks that no success from the same source (an IPv4 address, an IPv6
-- /64) within success_minutes explains, whose span of `minutes` around it holds at least
-- min_users users and min_sources sources, no more than two attempts a source, and at least
-- `surge` times the tenant's usual number of users failing in a span (`usual_users`: the
-- median span of the 7 days before its day, quiet spans counting as 0; the data's first day,
-- with none before it, is not judged). Each comes with its span's users, sources and failures.
CREATE MACRO spray_spans(lo, hi, minutes, success_minutes, guess_codes, min_users, min_sources, surge) AS TABLE
WITH attempts AS (
    SELECT * FROM guess_attempts(lo, hi, guess_codes)
),
failing AS (
    -- users failing a guess per span, from the 7 days before the period on
    SELECT epoch_us(s.time) // (minutes * 60000000) AS span,
           count(DISTINCT coalesce(s.principal_id, lower(s.principal_name))) AS users
    FROM signins s
    WHERE s.time >= utc_add(lo, - INTERVAL 8 DAY) AND s.time < hi
      AND s.kind IN ('user_interactive', 'user_noninteractive')
      AND list_contains(string_split(guess_codes, ','), s.error_code::VARCHAR)
    GROUP BY 1
),
background AS (
    -- the tenant's usual number of users failing in a span, for each day: the median span of
    -- the 7 days before it (quiet spans count as 0); a tenant whose thousands of users mistype
    -- all day long is not sprayed every quarter hour
    SELECT d.day, d.covered, coalesce(list_aggregate(list_concat(
               coalesce(list(f.users) FILTER (WHERE f.users IS NOT NULL), []),
               list_resize([]::BIGINT[], greatest(d.covered - count(f.users), 0)::INTEGER, 0)
           ), 'median'), 0) AS users
    FROM (
        -- the spans of the 7 days before each day that the stored history covers
        SELECT day, (day * 86400000000 - greatest((day - 7) * 86400000000, h.start)) // (minutes * 60000000) AS covered
        FROM (SELECT DISTINCT epoch_us(time) // 86400000000 AS day FROM attempts WHERE NOT ok)
        CROSS JOIN (SELECT epoch_us(history_start) AS start FROM data_clock) h
    ) d
    LEFT JOIN failing f
      ON f.span * minutes * 60000000 >= (d.day - 7) * 86400000000
     AND f.span * minutes * 60000000 < d.day * 86400000000
    GROUP BY d.day, d.covered
),
rough AS (
    -- every failure's span before any success explains one: the counts below can only be
    -- lower, so only failures that pass here can pass there (and the costly check of
    -- successes is made for their neighbours only)
    SELECT
        f.time,
        count(DISTINCT f.who) OVER span AS users,
        count(DISTINCT f.source) OVER span AS sources
    FROM attempts f
    WHERE NOT f.ok
    WINDOW span AS (
        ORDER BY f.time::TIMESTAMP
        RANGE BETWEEN to_seconds(minutes * 30) PRECEDING AND to_seconds(minutes * 30) FOLLOWING
    )
),
hot AS MATERIALIZED (
    SELECT DISTINCT r.time, b.users AS usual_users
    FROM rough r
    JOIN background b ON b.day = epoch_us(r.time) // 86400000000 AND b.covered > 0
    WHERE r.users >= min_users AND r.sources >= min_sources AND r.users >= surge * b.users
),
near AS (
    -- the failures within a span of a hot one: all that the spans of the hot ones hold
    SELECT DISTINCT f.*
    FROM attempts f
    JOIN hot h
      ON f.time >= utc_add(h.time, - to_seconds(minutes * 30)) AND f.time <= utc_add(h.time, to_seconds(minutes * 30))
    WHERE NOT f.ok
),
explained AS (
    -- a failure from a source someone signed in from successfully around it: a typo before
    -- getting in, an office or a VPN on a bad morning; not a guess of a spray
    SELECT DISTINCT f.row_id
    FROM near f
    JOIN attempts o
      ON o.ok AND o.source = f.source
     AND o.time >= utc_add(f.time, - to_minutes(success_minutes))
     AND o.time <= utc_add(f.time, to_minutes(success_minutes))
),
guesses AS (
    SELECT n.* FROM near n ANTI JOIN explained e ON e.row_id = n.row_id
),
spans AS (
    -- tenant-wide, over the unexplained failures (a distinct count over a window is costly)
    SELECT
        *,
        count(DISTINCT who) OVER span AS users,
        count(DISTINCT source) OVER span AS sources,
        count(*) OVER span AS failures
    FROM guesses
    WINDOW span AS (
        ORDER BY time::TIMESTAMP
        RANGE BETWEEN to_seconds(minutes * 30) PRECEDING AND to_seconds(minutes * 30) FOLLOWING
    )
)
-- only the hot failures' own spans are whole (a neighbour's may reach past the near ones)
SELECT x.*, h.usual_users
FROM spans x
JOIN hot h ON h.time = x.time
WHERE x.users >= min_users AND x.sources >= min_sources AND x.failures <= 2 * x.sources
  AND x.users >= surge * h.usual_users;

-- Whether a request at `t` came after the life of the token its sign-in (at `signin_time`, of
-- `signin_kind`; NULL when there is none) could have issued: `minutes` for users and service
-- principals, `mi_hours` for a managed identity, whose platform caches its token.
CREATE MACRO token_outlived(t, signin_time, signin_kind, minutes, mi_hours) AS
    signin_time IS NULL
    OR epoch_us(signin_time) < epoch_us(t) - CASE
        WHEN signin_kind = 'managed_identity' THEN mi_hours * 3600000000
        ELSE minutes * 60000000
    END;
