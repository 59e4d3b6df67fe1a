-- CC7.2: each evidence event in [$from, $to) of the findings known when the pack was made
-- and not withdrawn then (as cc7_2_findings.sql), one by one, joined to the event it points at
-- (finding_evidence.row_id is the rowid in evidence_table, fleet_id in fleet_requests; a control or directory change
-- points at its raw_events record through raw_row) for its stable id and where its record
-- came from: event_id as in cc6_1_key_access_events.sql (macro record_event_id), the
-- record's SHA-256 (for raw_events, of the record as stored). Evidence without an event row
-- (a gap) has the id `finding <id> <entity> <time>`. Events are looked up by rowid, once each.
WITH f AS (
    SELECT id, fingerprint, severity FROM findings_at($made_at) WHERE status <> 'withdrawn'
),
e AS (
    SELECT
        f.id AS finding_id, x.rule_id, f.severity, x.evidence_table, x.row_id, x.time, x.principal_id,
        x.entity, x.detail
    FROM finding_evidence x
    JOIN f USING (fingerprint)
    WHERE x.time >= $from AND x.time < $to
),
requests AS (
    SELECT
        'cosmos_requests' AS evidence_table, rowid AS row_id, activity_id, client_ip, source, line, record_index,
        partition, sequence_number, lower(hex(record_sha256)) AS record_sha256,
        record_event_id('cosmos_requests', source, line, record_index, partition, sequence_number, batch_id, rowid)
            AS event_id
    FROM cosmos_requests
    WHERE rowid IN (SELECT row_id FROM e WHERE evidence_table = 'cosmos_requests') AND batch_id <= $as_of
    UNION ALL
    -- requests another instance stored, copied by the rules lease holder (their batch is
    -- that instance's: copied_at says when they came here)
    SELECT
        'fleet_requests', fleet_id, activity_id, client_ip, source, line, record_index, partition, sequence_number,
        lower(hex(record_sha256)),
        record_event_id('cosmos_requests', source, line, record_index, partition, sequence_number, batch_id, fleet_id)
    FROM fleet_requests
    WHERE fleet_id IN (SELECT row_id FROM e WHERE evidence_table = 'fleet_requests') AND copied_at <= $made_at
),
sign_ins AS (
    SELECT
        rowid AS row_id, signin_id, ip_address, source, line, record_index, partition, sequence_number,
        lower(hex(record_sha256)) AS record_sha256,
        record_event_id('signins', source, line, record_index, partition, sequence_number, batch_id, rowid)
            AS event_id
    FROM signins
    WHERE rowid IN (SELECT row_id FROM e WHERE evidence_table = 'signins') AND batch_id <= $as_of
),
changes AS (
    SELECT 'control_changes' AS evidence_table, rowid AS row_id, raw_row FROM control_changes
    WHERE rowid IN (SELECT row_id FROM e WHERE evidence_table = 'control_changes') AND batch_id <= $as_of
    UNION ALL
    SELECT 'directory_changes', rowid, raw_row FROM directory_changes
    WHERE rowid IN (SELECT row_id FROM e WHERE evidence_table = 'directory_changes') AND batch_id <= $as_of
    UNION ALL
    SELECT 'raw_events', row_id, row_id FROM e WHERE evidence_table = 'raw_events'
),
raw AS (
    SELECT
        rowid AS raw_row, source, line, record_index, partition, sequence_number, sha256(record::VARCHAR) AS record_sha256,
        record_event_id('raw_events', source, line, record_index, partition, sequence_number, batch_id, rowid)
            AS event_id
    FROM raw_events
    WHERE rowid IN (SELECT raw_row FROM changes) AND batch_id <= $as_of
),
names AS (
    SELECT principal_id, arg_max(principal_name, time) AS principal_name
    FROM signins
    WHERE principal_name IS NOT NULL AND time < $to AND batch_id <= $as_of
      AND principal_id IN (SELECT principal_id FROM e)
    GROUP BY principal_id
)
SELECT
    e.finding_id,
    e.rule_id,
    e.severity,
    coalesce(
        r.event_id, s.event_id, w.event_id,
        'finding ' || e.finding_id::VARCHAR || ' ' || e.entity || ' ' || e.time::VARCHAR
    ) AS event_id,
    e.time,
    e.evidence_table,
    e.principal_id,
    n.principal_name,
    e.entity,
    e.detail,
    r.activity_id,
    s.signin_id,
    coalesce(r.client_ip, s.ip_address) AS client_ip,
    coalesce(r.source, s.source, w.source) AS source,
    coalesce(r.partition, s.partition, w.partition) AS partition,
    coalesce(r.sequence_number, s.sequence_number, w.sequence_number) AS sequence_number,
    coalesce(r.line, s.line, w.line) AS line,
    coalesce(r.record_index, s.record_index, w.record_index) AS record_index,
    coalesce(r.record_sha256, s.record_sha256, w.record_sha256) AS record_sha256
FROM e
LEFT JOIN requests r ON r.evidence_table = e.evidence_table AND r.row_id = e.row_id
LEFT JOIN sign_ins s ON e.evidence_table = 'signins' AND s.row_id = e.row_id
LEFT JOIN changes c ON c.evidence_table = e.evidence_table AND c.row_id = e.row_id
LEFT JOIN raw w ON w.raw_row = c.raw_row
LEFT JOIN names n ON n.principal_id = e.principal_id
ORDER BY e.finding_id, e.time, event_id
