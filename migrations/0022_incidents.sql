-- Incidents (src/rules/incidents.rs): findings that tell one story, grouped after each
-- detection pass. A finding joins the incident of an earlier finding it shares a
-- principal, an address or (when one of them names no principal, as a key's use does) an
-- account with, within a day of it; a finding that links two incidents merges the newer
-- into the older. Findings keep their own status and history; an incident's status is
-- read from its findings (migration's view `incident_status`).

CREATE SEQUENCE incident_ids START 1;

CREATE TABLE incidents (
    id BIGINT PRIMARY KEY DEFAULT nextval('incident_ids'),
    owner VARCHAR,                          -- who is on it, as given by the person who set it
    owner_set_by VARCHAR,
    owner_set_at TIMESTAMPTZ,
    merged_into BIGINT,                     -- the older incident it became part of
    created_at TIMESTAMPTZ NOT NULL,        -- wall clock
    updated_at TIMESTAMPTZ NOT NULL         -- wall clock
);

-- Which incident each finding belongs to (one), and what linked it.
CREATE TABLE incident_findings (
    finding_id BIGINT PRIMARY KEY,
    incident_id BIGINT NOT NULL,
    linked_by VARCHAR,                      -- principal=..., ip=..., account=...; NULL for the first
    linked_to BIGINT,                       -- the finding it shares that with
    added_at TIMESTAMPTZ NOT NULL           -- wall clock
);

-- Everything that happened to an incident, by TokenTrail (created, joined, merged) and by
-- people (owner, acknowledged, resolved, reopened): append-only, chained like the finding
-- history (store::append).
CREATE SEQUENCE incident_log_id START 1;

CREATE TABLE incident_log (
    id BIGINT PRIMARY KEY DEFAULT nextval('incident_log_id'),
    incident_id BIGINT NOT NULL,
    logged_at TIMESTAMPTZ NOT NULL,         -- wall clock
    changed_by VARCHAR NOT NULL,            -- who; `tokentrail` for the engine
    action VARCHAR NOT NULL,                -- created, joined, merged, owner, acknowledged, resolved, reopened
    finding_id BIGINT,                      -- joined: the finding; merged: NULL
    detail VARCHAR                          -- joined: what linked it; merged: the other incident; people: their comment
);

INSERT INTO append_heads VALUES ('incident_log', 0, NULL, get_current_timestamp());

-- Each incident that is not merged away, with what its findings say: severity (the
-- highest of findings not withdrawn), status (open while any finding is open, else
-- acknowledged while any is, else resolved, suppressed or withdrawn), time span and counts.
CREATE VIEW incident_status AS
SELECT i.id, i.owner, i.owner_set_by, i.owner_set_at, i.created_at, i.updated_at,
       CASE max(CASE f.severity WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END)
            FILTER (WHERE f.status <> 'withdrawn')
           WHEN 4 THEN 'critical' WHEN 3 THEN 'high' WHEN 2 THEN 'medium' WHEN 1 THEN 'low' ELSE 'low' END AS severity,
       CASE WHEN bool_or(f.status = 'open') THEN 'open'
            WHEN bool_or(f.status = 'acknowledged') THEN 'acknowledged'
            WHEN bool_or(f.status = 'resolved') THEN 'resolved'
            WHEN bool_or(f.status = 'suppressed') THEN 'suppressed'
            ELSE 'withdrawn' END AS status,
       min(f.first_seen) AS first_seen,
       max(f.last_seen) AS last_seen,
       count(*) AS findings,
       count(*) FILTER (WHERE f.status = 'open') AS open_findings,
       sum(f.count)::BIGINT AS events
FROM incidents i
JOIN incident_findings m ON m.incident_id = i.id
JOIN findings f ON f.id = m.finding_id
WHERE i.merged_into IS NULL
GROUP BY ALL;
