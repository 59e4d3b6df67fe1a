-- What the status page and `tokentrail ingest` report: per source, how much came in,
-- how much was quarantined, and when it last moved.
CREATE VIEW ingest_status AS
SELECT
    c.source_id,
    c.kind,
    c.complete,
    c.line,
    c.sequence_number,
    c.event_time,
    c.updated_at,
    b.batches,
    b.cosmos_rows,
    b.signin_rows,
    b.raw_rows,
    b.quarantined_rows
FROM checkpoints c
LEFT JOIN (
    SELECT
        source_id,
        count(*) AS batches,
        sum(cosmos_rows) AS cosmos_rows,
        sum(signin_rows) AS signin_rows,
        sum(raw_rows) AS raw_rows,
        sum(quarantined_rows) AS quarantined_rows
    FROM ingest_batches
    GROUP BY source_id
) b USING (source_id);
