-- CC7.2: every source whose committed batches hold events of [$from, $to): the batches, and
-- where the source stood before the first and after the last of them (Event Hubs sequence
-- numbers, file lines and bytes). A source's batches follow each other without overlap:
-- each resumes right after the position the previous one committed.
WITH period_batches AS (
    SELECT DISTINCT batch_id FROM cosmos_requests WHERE time >= $from AND time < $to
    UNION SELECT DISTINCT batch_id FROM signins WHERE time >= $from AND time < $to
    UNION SELECT DISTINCT batch_id FROM raw_events WHERE time >= $from AND time < $to
    UNION SELECT DISTINCT batch_id FROM quarantine WHERE time >= $from AND time < $to
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
    WINDOW w AS (PARTITION BY coalesce(p.source_id, b.source_id) ORDER BY b.batch_id)
)
SELECT
    source_id,
    kind,
    count(*) AS batches,
    min(batch_id) AS first_batch,
    max(batch_id) AS last_batch,
    min(committed_at) AS first_committed,
    max(committed_at) AS last_committed,
    sum(batch_rows)::BIGINT AS batch_rows,
    sum(quarantined_rows)::BIGINT AS quarantined_rows,
    arg_min_null(previous_sequence, batch_id) + 1 AS sequence_from,
    max(sequence_number) AS sequence_to,
    coalesce(arg_min_null(previous_line, batch_id), 0) + 1 AS line_from,
    max(line) AS line_to,
    coalesce(arg_min_null(previous_byte_offset, batch_id), 0) AS byte_from,
    max(byte_offset) AS byte_to
FROM positions
WHERE batch_id IN (SELECT batch_id FROM period_batches)
GROUP BY source_id, kind
ORDER BY source_id
