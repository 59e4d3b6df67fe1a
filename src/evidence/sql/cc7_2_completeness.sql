-- CC7.2: events per stream per hour (UTC) of [$from, $to), zero for an hour without any, for
-- every stream with an event in the period. Counted from the stored rows of batches up to
-- $as_of. Zero hours are not gaps by themselves: see cc7_2_gaps.sql.
WITH events AS (
    SELECT stream, hour, events FROM stream_events($from, $to, $as_of)
),
hours AS (
    SELECT to_timestamp(unnest(range((epoch_us($from) // 3600000000) * 3600, epoch_us($to) // 1000000, 3600))) AS hour
),
streams AS (SELECT DISTINCT stream FROM events)
SELECT s.stream, h.hour, coalesce(e.events, 0)::BIGINT AS events
FROM streams s
CROSS JOIN hours h
LEFT JOIN events e ON e.stream = s.stream AND e.hour = h.hour
ORDER BY s.stream, h.hour
