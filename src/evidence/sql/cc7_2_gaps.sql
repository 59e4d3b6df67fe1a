-- CC7.2: the gaps of [$from, $to): where a stream is known to have stopped, that is a
-- silence the source_silent rule judged (the same hours a week earlier were busy), cut to
-- the period; one with no event of its stream after it, up to the period's end, lasts to the
-- end. Quiet hours of a stream that is quiet at those hours every week are not gaps; see
-- cc7_2_coverage.sql for streams with no events at all.
WITH last AS (
    SELECT stream, max(last_time) AS last_event FROM stream_events($from, $to, $as_of) GROUP BY stream
),
silences AS (
    SELECT s.*, coalesce(l.last_event <= s.silent_from, true) AS still_silent_at_end
    FROM stream_silences($from, $to, $made_at) s
    LEFT JOIN last l USING (stream)
)
SELECT
    stream,
    greatest(silent_from, $from) AS gap_from,
    CASE WHEN still_silent_at_end THEN $to ELSE least(silent_until, $to) END AS gap_to,
    round((epoch_us(CASE WHEN still_silent_at_end THEN $to ELSE least(silent_until, $to) END)
           - epoch_us(greatest(silent_from, $from))) / 3.6e9, 1) AS hours,
    still_silent_at_end,
    finding_id,
    detail
FROM silences
ORDER BY stream, gap_from
