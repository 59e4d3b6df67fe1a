-- The fleet's cosmos_requests, activity_hours and first_seen on one connection
-- (src/lake/fleet.rs): every instance's requests as copied from the segments, their
-- counts and facets, and the sign-in ones from this instance's (every instance reads every
-- sign-in: broadcast hubs). {database} is the database's name: `main.<table>` would be
-- the temporary schema's, these views.
CREATE OR REPLACE TEMP VIEW cosmos_requests AS
SELECT fleet_id AS rowid, * EXCLUDE (fleet_id, copied_at, kept, here) FROM "{database}".main.fleet_requests;

CREATE OR REPLACE TEMP VIEW activity_hours AS
SELECT
    subject, hour, sum(requests)::BIGINT AS requests, sum(read_requests)::BIGINT AS read_requests,
    sum(read_bytes)::BIGINT AS read_bytes, sum(deletes)::BIGINT AS deletes, sum(denied)::BIGINT AS denied,
    sum(metadata_requests)::BIGINT AS metadata_requests, sum(signins)::BIGINT AS signins,
    sum(failed_signins)::BIGINT AS failed_signins, min(first_request_time) AS first_request_time,
    arg_min(first_request_row, first_request_time) AS first_request_row
FROM (
    SELECT
        subject, hour, requests, read_requests, read_bytes, deletes, denied, metadata_requests, 0 AS signins,
        0 AS failed_signins, first_request_time, first_request_row
    FROM "{database}".main.fleet_activity
    UNION ALL
    SELECT subject, hour, 0, 0, 0, 0, 0, 0, signins, failed_signins, NULL, NULL
    FROM "{database}".main.activity_hours
    WHERE signins > 0
)
GROUP BY subject, hour;

CREATE OR REPLACE TEMP VIEW first_seen AS
SELECT subject, facet, value, first_time, first_row, last_time, events FROM "{database}".main.fleet_first_seen
UNION ALL
SELECT subject, facet, value, first_time, first_row, last_time, events FROM "{database}".main.first_seen
WHERE facet IN ('country', 'signin');
