-- id: source_silent
-- title: A log source went silent
-- severity: medium
-- soc2: CC7.2, CC4.1
-- mitre: T1562.008 Impair Defenses: Disable or Modify Cloud Logs
-- window: 7d
-- description: A gap in the evidence is itself a finding. A stream is a Cosmos DB account
--   (cosmos:<account>), a sign-in log (signins:<category>) or another diagnostic category
--   (raw:<category>). Raises a silence of a stream longer than min_gap_hours when the same hours
--   one week earlier would have given at least min_expected_events events (their median hour,
--   quiet hours counted as 0, times the hours of the silence): quiet nights and weekends are
--   quiet every week, a removed diagnostic setting is not, and one burst a week ago does not
--   make a quiet stream look busy. A silence still going on is
--   measured up to the latest event of any stream (the data's own clock), or, when every stream
--   stopped at once, up to when the Event Hubs source last found its hubs empty less
--   delivery_minutes (`source_clock`), and updates as time goes on; a stream needs a week of
--   history first.
-- remediation: Check the diagnostic settings of the account or of Entra ID and the Event Hubs
--   (or storage) they send to; restore them, and note the gap in the evidence for the auditor.
-- param: min_gap_hours = 2
--   Silences shorter than this are never raised.
-- param: min_expected_events = 20
--   Events the silence should have held, judged by the same hours a week earlier.
-- param: delivery_minutes = 30
--   How late Azure may deliver a log to the hub: an empty hub vouches for the time before that.
WITH clock AS (
    SELECT greatest(
        d.history_end,
        coalesce(utc_add((SELECT max(caught_up_until) FROM source_clock), - to_minutes($delivery_minutes)), d.history_end)
    ) AS until
    FROM data_clock d
),
hours AS (
    SELECT
        stream, hour, last_time, last_row,
        lead(first_time) OVER (PARTITION BY stream ORDER BY hour) AS next_time
    FROM stream_hours
    WHERE hour >= utc_add(utc_hour($from), - INTERVAL 1 HOUR)
),
gaps AS (
    SELECT
        h.stream, h.last_time AS gap_start, h.last_row, h.next_time IS NULL AS ongoing,
        coalesce(h.next_time, (SELECT until FROM clock)) AS gap_end
    FROM hours h
    WHERE h.last_time >= $from AND h.last_time < $to
),
long_gaps AS (
    SELECT *, (epoch_us(gap_end) - epoch_us(gap_start)) / 3.6e9 AS gap_hours
    FROM gaps
    WHERE epoch_us(gap_end) - epoch_us(gap_start) >= $min_gap_hours * 3600000000
),
judged AS (
    -- the whole hours inside the silence, and their events one week earlier
    SELECT
        g.stream, g.gap_start, g.last_row, g.ongoing, g.gap_end, g.gap_hours,
        (epoch_us(utc_hour(g.gap_end)) - epoch_us(utc_hour(g.gap_start))) // 3600000000 - 1 AS hours,
        list(w.events) FILTER (WHERE w.events IS NOT NULL) AS busy
    FROM long_gaps g
    LEFT JOIN stream_hours w
      ON w.stream = g.stream
     AND w.hour >= utc_add(utc_hour(g.gap_start), INTERVAL 1 HOUR - INTERVAL 7 DAY)
     AND utc_add(w.hour, INTERVAL 1 HOUR) <= utc_add(g.gap_end, - INTERVAL 7 DAY)
    GROUP BY ALL
),
expected AS (
    SELECT
        *,
        hours * list_aggregate(list_concat(busy, list_resize([]::BIGINT[], greatest(hours - len(busy), 0), 0)), 'median')
            AS expected_events
    FROM judged
    WHERE hours >= 1
)
SELECT
    gap_start AS time,
    CASE
        WHEN stream LIKE 'cosmos:%' THEN 'cosmos_requests'
        WHEN stream LIKE 'signins:%' THEN 'signins'
        ELSE 'raw_events'
    END AS evidence_table,
    last_row AS row_id,
    NULL AS principal_id,
    'stream=' || stream AS entity,
    gap_end AS end_time,
    'no events from ' || stream || ' for ' || round(gap_hours, 1) || ' h, from '
        || strftime(gap_start::TIMESTAMP, '%Y-%m-%d %H:%M') || ' UTC'
        || CASE WHEN ongoing THEN ' (still silent)' ELSE ' to ' || strftime(gap_end::TIMESTAMP, '%Y-%m-%d %H:%M') || ' UTC' END
        || '; the same hours a week earlier make ' || round(expected_events) || ' events expected' AS detail
FROM expected
WHERE expected_events >= $min_expected_events
