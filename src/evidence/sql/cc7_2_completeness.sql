-- CC7.2: events per stream per hour of [$from, $to), zero for an hour without any (a gap).
-- A stream is a Cosmos DB account (cosmos:<account>), a sign-in log (signins:<category>) or
-- another category (raw:<category>); every stream with an event in the period is listed for
-- every hour of it. Counted from the stored rows themselves.
WITH events AS (
    SELECT 'cosmos:' || coalesce(account, '') AS stream, date_trunc('hour', time::TIMESTAMP) AS hour, count(*) AS events
    FROM cosmos_requests WHERE time >= $from AND time < $to GROUP BY ALL
    UNION ALL
    SELECT 'signins:' || category, date_trunc('hour', time::TIMESTAMP), count(*)
    FROM signins WHERE time >= $from AND time < $to GROUP BY ALL
    UNION ALL
    SELECT 'raw:' || category, date_trunc('hour', time::TIMESTAMP), count(*)
    FROM raw_events WHERE time >= $from AND time < $to GROUP BY ALL
),
hours AS (
    SELECT unnest(generate_series(date_trunc('hour', $from::TIMESTAMP), $to::TIMESTAMP - INTERVAL 1 MICROSECOND, INTERVAL 1 HOUR)) AS hour
),
streams AS (SELECT DISTINCT stream FROM events)
SELECT s.stream, h.hour::TIMESTAMPTZ AS hour, coalesce(e.events, 0)::BIGINT AS events
FROM streams s
CROSS JOIN hours h
LEFT JOIN events e ON e.stream = s.stream AND e.hour = h.hour
ORDER BY s.stream, h.hour
