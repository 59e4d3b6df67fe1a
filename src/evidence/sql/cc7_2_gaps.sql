-- CC7.2: the gaps of [$from, $to): runs of hours in which a stream that has events in the
-- period has none (see cc7_2_completeness.sql), with their length.
WITH events AS (
    SELECT 'cosmos:' || coalesce(account, '') AS stream, date_trunc('hour', time::TIMESTAMP) AS hour
    FROM cosmos_requests WHERE time >= $from AND time < $to GROUP BY ALL
    UNION
    SELECT 'signins:' || category, date_trunc('hour', time::TIMESTAMP)
    FROM signins WHERE time >= $from AND time < $to GROUP BY ALL
    UNION
    SELECT 'raw:' || category, date_trunc('hour', time::TIMESTAMP)
    FROM raw_events WHERE time >= $from AND time < $to GROUP BY ALL
),
hours AS (
    SELECT unnest(generate_series(date_trunc('hour', $from::TIMESTAMP), $to::TIMESTAMP - INTERVAL 1 MICROSECOND, INTERVAL 1 HOUR)) AS hour
),
empty AS (
    SELECT s.stream, h.hour
    FROM (SELECT DISTINCT stream FROM events) s
    CROSS JOIN hours h
    ANTI JOIN events e ON e.stream = s.stream AND e.hour = h.hour
),
runs AS (
    SELECT stream, hour, hour - to_hours(row_number() OVER (PARTITION BY stream ORDER BY hour)) AS run
    FROM empty
)
SELECT stream, min(hour)::TIMESTAMPTZ AS gap_from, (max(hour) + INTERVAL 1 HOUR)::TIMESTAMPTZ AS gap_to, count(*) AS hours
FROM runs
GROUP BY stream, run
ORDER BY stream, gap_from
