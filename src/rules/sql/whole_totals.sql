-- Adds to `finding_totals` the totals of the fingerprints in `read_whole` (finding_totals.sql)
-- from all their evidence with time from $read_from (NULL: any time).

INSERT INTO finding_totals (fingerprint, principal_id, entity, first_seen, last_seen, count, evidence, summary)
SELECT
    fingerprint,
    any_value(principal_id),
    any_value(entity),
    min(time),
    max(coalesce(end_time, time)),
    count(*),
    -- the first 1000 by time, kept in a bounded heap rather than sorting all of it
    list_transform(
        min({'time': time, 'row_id': row_id, 'table': evidence_table}, 1000),
        lambda e: {'table': e.table, 'row_id': e.row_id}
    ),
    arg_max(detail, time)
FROM finding_evidence
WHERE ($read_from::TIMESTAMPTZ IS NULL OR time >= $read_from::TIMESTAMPTZ)
    AND fingerprint IN (SELECT fingerprint FROM read_whole)
GROUP BY fingerprint;
