-- id: collection_enumeration
-- title: Enumeration of databases and collections
-- severity: medium
-- soc2: CC6.1, CC7.2
-- mitre: T1619 Cloud Storage Object Discovery
-- window: 1h
-- description: Listing the databases and collections of an account and reading the metadata of
--   several of them in a row is how an intruder maps what is there; applications read the one
--   container they use. Raises the metadata requests (on Database or Collection resources) of a
--   principal or key client that, within window_minutes before or after, listed databases or
--   collections at least once and touched at least min_collections collections.
-- remediation: Confirm with the owner (a new tool or a migration script lists containers too).
--   If unexpected, revoke the principal's sessions and rotate its credentials; restrict its role
--   assignment to the containers it needs.
-- param: min_collections = 3
--   Distinct collections whose metadata was read or listed.
-- param: window_minutes = 10
--   Minutes before or after each request in which they are counted (at most 60).
WITH hours AS (
    SELECT subject, hour, metadata_requests
    FROM activity_hours
    WHERE hour >= utc_add(utc_hour($from), - INTERVAL 2 HOUR) AND hour < utc_add($to, INTERVAL 2 HOUR)
      AND metadata_requests > 0
),
candidates AS (
    -- hours whose neighbourhood (the hour before and after) holds enough for a burst
    SELECT subject, hour
    FROM (
        SELECT
            subject, hour,
            sum(metadata_requests) OVER (
                PARTITION BY subject ORDER BY hour::TIMESTAMP
                RANGE BETWEEN INTERVAL 1 HOUR PRECEDING AND INTERVAL 1 HOUR FOLLOWING
            ) AS around
        FROM hours
        -- three hours reach the minimum only if one of them holds a third of it
        WHERE subject IN (SELECT subject FROM hours WHERE metadata_requests * 3 >= $min_collections)
    )
    WHERE around >= $min_collections
),
support AS (
    -- the rows that can count towards a burst in a candidate hour
    SELECT DISTINCT c.subject, utc_add(c.hour, to_hours(k)) AS hour FROM candidates c, range(-1, 2) t(k)
),
meta AS (
    SELECT
        r.rowid AS row_id, r.time, r.principal_id, r.account, r.client_ip, r.operation, r.request_resource_type,
        request_subject(r.principal_id, r.account, r.client_ip) AS subject,
        CASE WHEN coalesce(r.collection_name, '') <> ''
            THEN coalesce(r.account, '') || '/' || coalesce(r.database_name, '') || '/' || r.collection_name END AS collection,
        r.operation = 'ReadFeed' AS listing
    FROM cosmos_requests r
    WHERE r.time >= utc_add($from, - to_minutes($window_minutes))
      AND r.time < utc_add($to, to_minutes($window_minutes))
      AND r.request_resource_type IN ('Database', 'Collection')
),
scored AS (
    SELECT
        m.*,
        count(DISTINCT collection) OVER w AS collections,
        count(*) FILTER (WHERE listing) OVER w AS listings
    FROM meta m
    SEMI JOIN support c ON c.subject = m.subject AND c.hour = utc_hour(m.time)
    WINDOW w AS (
        PARTITION BY m.subject ORDER BY m.time::TIMESTAMP
        RANGE BETWEEN to_minutes($window_minutes) PRECEDING AND to_minutes($window_minutes) FOLLOWING
    )
)
SELECT
    time,
    'cosmos_requests' AS evidence_table,
    row_id,
    principal_id,
    'account=' || coalesce(account, '') || CASE WHEN principal_id IS NULL THEN ' ip=' || coalesce(client_ip, '') ELSE '' END
        AS entity,
    coalesce(operation, '') || ' ' || coalesce(request_resource_type, '') || coalesce(' ' || collection, '') || '; '
        || collections || ' collections and ' || listings || ' listings within ' || $window_minutes || ' minutes' AS detail
FROM scored
WHERE collections >= $min_collections AND listings >= 1 AND time >= $from AND time < $to
