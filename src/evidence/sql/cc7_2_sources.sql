-- CC7.2: every source whose committed batches (up to $as_of) hold events of [$from, $to): the
-- batches, where the source stood before the first and after the last of them (Event Hubs
-- sequence numbers, file lines and bytes), and the reconciliation of what each batch says it
-- committed with the rows stored under it now: `batch_rows` (ingest_batches) against
-- `rows_found` (rows of the four tables carrying those batch ids), of which
-- `rows_in_period` have a time in the period. A source's batches follow each other without
-- overlap: each resumes right after the position the previous one committed.
WITH period_rows AS (
    SELECT batch_id, count(*) AS n FROM cosmos_requests WHERE time >= $from AND time < $to AND batch_id <= $as_of GROUP BY ALL
    UNION ALL SELECT batch_id, count(*) FROM signins WHERE time >= $from AND time < $to AND batch_id <= $as_of GROUP BY ALL
    UNION ALL SELECT batch_id, count(*) FROM raw_events WHERE time >= $from AND time < $to AND batch_id <= $as_of GROUP BY ALL
    UNION ALL SELECT batch_id, count(*) FROM quarantine WHERE time >= $from AND time < $to AND batch_id <= $as_of GROUP BY ALL
),
period_batches AS (
    SELECT batch_id, sum(n)::BIGINT AS rows_in_period FROM period_rows GROUP BY batch_id
),
found AS (
    SELECT batch_id, count(*) AS n FROM cosmos_requests WHERE batch_id IN (SELECT batch_id FROM period_batches) GROUP BY ALL
    UNION ALL SELECT batch_id, count(*) FROM signins WHERE batch_id IN (SELECT batch_id FROM period_batches) GROUP BY ALL
    UNION ALL SELECT batch_id, count(*) FROM raw_events WHERE batch_id IN (SELECT batch_id FROM period_batches) GROUP BY ALL
    UNION ALL SELECT batch_id, count(*) FROM quarantine WHERE batch_id IN (SELECT batch_id FROM period_batches) GROUP BY ALL
),
found_rows AS (
    SELECT batch_id, sum(n)::BIGINT AS rows_found FROM found GROUP BY batch_id
),
positions AS (
    SELECT
        b.batch_id,
        b.committed_at,
        b.cosmos_rows + b.signin_rows + b.raw_rows + b.quarantined_rows AS batch_rows,
        b.quarantined_rows,
        coalesce(p.source_id, b.source_id) AS source_id,
        coalesce(p.kind, 'unrecorded') AS kind,
        p.sequence_number,
        p.line,
        p.byte_offset,
        lag(p.sequence_number) OVER w AS previous_sequence,
        lag(p.line) OVER w AS previous_line,
        lag(p.byte_offset) OVER w AS previous_byte_offset
    FROM ingest_batches b
    LEFT JOIN ingest_positions p USING (batch_id)
    WHERE b.batch_id <= $as_of
    WINDOW w AS (PARTITION BY coalesce(p.source_id, b.source_id) ORDER BY b.batch_id)
)
SELECT
    p.source_id,
    p.kind,
    count(*) AS batches,
    min(p.batch_id) AS first_batch,
    max(p.batch_id) AS last_batch,
    min(p.committed_at) AS first_committed,
    max(p.committed_at) AS last_committed,
    arg_min_null(p.previous_sequence, p.batch_id) + 1 AS sequence_from,
    max(p.sequence_number) AS sequence_to,
    coalesce(arg_min_null(p.previous_line, p.batch_id), 0) + 1 AS line_from,
    max(p.line) AS line_to,
    coalesce(arg_min_null(p.previous_byte_offset, p.batch_id), 0) AS byte_from,
    max(p.byte_offset) AS byte_to,
    sum(p.batch_rows)::BIGINT AS batch_rows,
    coalesce(sum(f.rows_found), 0)::BIGINT AS rows_found,
    sum(pb.rows_in_period)::BIGINT AS rows_in_period,
    sum(p.quarantined_rows)::BIGINT AS quarantined_rows,
    sum(p.batch_rows) = coalesce(sum(f.rows_found), 0) AS reconciled
FROM positions p
JOIN period_batches pb USING (batch_id)
LEFT JOIN found_rows f USING (batch_id)
GROUP BY p.source_id, p.kind
ORDER BY p.source_id, p.kind
