-- Evidence as it stood at a time: what an evidence pack's populations read so that a
-- pack for a closed period says the same whenever it is made (an acknowledgement or a
-- rule edited later does not change it).

-- Each version of each detection rule and when it was in force: written when a process
-- that runs detection starts with a rule that is new or whose definition (text,
-- parameters, lists: rule_state.definition) changed, and closed when the rule changes
-- again or is no longer run.
CREATE TABLE rule_versions (
    rule_id VARCHAR NOT NULL,
    definition VARCHAR NOT NULL,            -- hash of what the rule's results depend on
    title VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    soc2 VARCHAR NOT NULL,                  -- comma-separated criteria
    mitre VARCHAR,
    window_seconds BIGINT NOT NULL,
    origin VARCHAR NOT NULL,                -- built-in <file>, or the rules folder's file
    parameters JSON,                        -- effective parameter values
    sql VARCHAR NOT NULL,                   -- the query as run
    in_force_from TIMESTAMPTZ NOT NULL,
    in_force_to TIMESTAMPTZ,                -- NULL while in force
    PRIMARY KEY (rule_id, in_force_from)
);

-- The rules running before this migration, from when their current definition was first
-- evaluated; the next start of detection fills in what they are (title, SQL, ...).
INSERT INTO rule_versions
SELECT rule_id, definition, '', '', '', NULL, 0, '', NULL, '', evaluated_at, NULL
FROM rule_state;

-- Findings raised before `t`, each with its status, comment and last change as of `t`,
-- from finding_history (the findings table holds only the status now).
CREATE MACRO findings_at(t) AS TABLE
WITH h AS (
    SELECT
        finding_id,
        arg_max(to_status, (changed_at, id)) AS status,
        arg_max(comment, (changed_at, id)) AS status_comment,
        max(changed_at) AS status_changed_at
    FROM finding_history
    WHERE changed_at < t
    GROUP BY finding_id
)
SELECT
    f.id, f.fingerprint, f.rule_id, f.title, f.severity, f.principal_id, f.entity, f.created_at,
    coalesce(h.status, 'open') AS status, h.status_comment, h.status_changed_at
FROM findings f
LEFT JOIN h ON h.finding_id = f.id
WHERE f.created_at < t;

-- Events per stream per hour of [lo, hi), counted from the rows of batches up to `as_of`;
-- hours are UTC whatever the session's time zone. A stream is a Cosmos DB account
-- (cosmos:<account>), a sign-in log (signins:<category>) or another category (raw:<category>),
-- as in the source_silent rule.
CREATE MACRO stream_events(lo, hi, as_of) AS TABLE
SELECT stream, to_timestamp((epoch_us(time) // 3600000000) * 3600) AS hour, count(*) AS events, max(time) AS last_time
FROM (
    SELECT 'cosmos:' || coalesce(account, '') AS stream, time FROM cosmos_requests
    WHERE time >= lo AND time < hi AND batch_id <= as_of
    UNION ALL
    SELECT 'signins:' || category, time FROM signins
    WHERE time >= lo AND time < hi AND batch_id <= as_of
    UNION ALL
    SELECT 'raw:' || category, time FROM raw_events
    WHERE time >= lo AND time < hi AND batch_id <= as_of
)
GROUP BY ALL;

-- The silences of streams that the source_silent rule judged (a stream quiet when the same
-- hours a week earlier were busy) overlapping [lo, hi), as known at `known_at`: a silence is a
-- fact of the data, whenever the rule judged it (logs of a past period can be ingested later).
CREATE MACRO stream_silences(lo, hi, known_at) AS TABLE
SELECT
    substr(e.entity, length('stream=') + 1) AS stream,
    e.time AS silent_from,
    coalesce(e.end_time, e.time) AS silent_until,
    e.detail,
    f.id AS finding_id
FROM finding_evidence e
JOIN findings_at(known_at) f USING (fingerprint)
WHERE e.rule_id = 'source_silent' AND f.status <> 'withdrawn' AND e.time < hi AND coalesce(e.end_time, e.time) > lo;

-- The findings a pack for [lo, hi) covers, as known at `made_at`: raised in the period, or
-- with evidence in it, and not withdrawn by then (status as of `made_at`).
CREATE MACRO findings_in(lo, hi, made_at) AS TABLE
SELECT f.*
FROM findings_at(made_at) f
WHERE f.status <> 'withdrawn'
  AND ((f.created_at >= lo AND f.created_at < hi)
       OR EXISTS (SELECT 1 FROM finding_evidence e WHERE e.fingerprint = f.fingerprint AND e.time >= lo AND e.time < hi));

-- Each principal's latest name in the sign-ins of batches up to `as_of`.
CREATE MACRO principal_names(as_of) AS TABLE
SELECT principal_id, arg_max(principal_name, time) AS principal_name
FROM signins
WHERE principal_name IS NOT NULL AND batch_id <= as_of
GROUP BY principal_id;
