-- CC7.2: every stream expected or seen, and what arrived of it in [$from, $to):
--   expected  configured ($expected), an account of the inventory in force in the period, or
--             a stream with events in the 30 days before the period;
--   status    `stopped` (a silence judged by the source_silent rule still going on at the
--             period's end), `interrupted` (such a silence inside the period), `ingested`
--             (events, no silence), `quiet` (no events, seen in the 30 days before, no silence:
--             the same hours a week earlier were quiet too), `not ingested` (expected, but no
--             event of it stored in the period or the 30 days before).
-- Silences are judged only where the rule runs: `judged` says whether source_silent was
-- running when the pack was made.
WITH period AS (
    SELECT stream, sum(events)::BIGINT AS events, max(last_time) AS last_event
    FROM stream_events($from, $to, $as_of)
    GROUP BY stream
),
before AS (
    SELECT stream, max(last_time) AS last_before
    FROM stream_events(utc_add($from, - INTERVAL 30 DAY), $from, $as_of)
    GROUP BY stream
),
configured AS (
    SELECT unnest(from_json($expected::JSON, '["VARCHAR"]')) AS stream, 'configured' AS why
),
expected AS (
    SELECT stream, why FROM configured
    UNION ALL
    SELECT DISTINCT 'cosmos:' || account, 'inventory'
    FROM cosmos_accounts
    WHERE valid_from < $to AND (valid_to IS NULL OR valid_to > $from)
),
streams AS (
    SELECT stream FROM expected UNION SELECT stream FROM period UNION SELECT stream FROM before
),
silences AS (
    SELECT
        stream,
        sum(epoch_us(least(silent_until, $to)) - epoch_us(greatest(silent_from, $from))) / 3.6e9 AS silent_hours,
        max(silent_from) AS last_silence_from,
        min(finding_id) AS finding_id
    FROM stream_silences($from, $to, $made_at)
    GROUP BY stream
),
judged AS (
    -- The rule judges all history when it starts or changes, so running when the pack was
    -- made means it judged the period.
    SELECT count(*) > 0 AS judged FROM rule_versions
    WHERE rule_id = 'source_silent' AND in_force_from <= $made_at AND (in_force_to IS NULL OR in_force_to > $made_at)
)
SELECT
    s.stream,
    (SELECT string_agg(DISTINCT why, ', ' ORDER BY why) FROM expected x WHERE x.stream = s.stream) AS expected,
    CASE
        -- no event after its last silence began, up to the period's end
        WHEN si.stream IS NOT NULL AND coalesce(p.last_event <= si.last_silence_from, true) THEN 'stopped'
        WHEN si.stream IS NOT NULL THEN 'interrupted'
        WHEN coalesce(p.events, 0) > 0 THEN 'ingested'
        WHEN b.stream IS NOT NULL THEN 'quiet'
        ELSE 'not ingested'
    END AS status,
    coalesce(p.events, 0) AS events,
    p.last_event,
    b.last_before AS last_event_before_period,
    round(si.silent_hours, 1) AS silent_hours,
    si.finding_id AS silence_finding,
    (SELECT judged FROM judged) AS judged
FROM streams s
LEFT JOIN period p USING (stream)
LEFT JOIN before b USING (stream)
LEFT JOIN silences si USING (stream)
ORDER BY s.stream
