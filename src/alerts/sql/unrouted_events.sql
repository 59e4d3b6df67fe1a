-- The events not yet routed, oldest first, each with its episode's claim (migration 27):
-- the finding's last raised or reopened event up to it opened the episode. Columns: id,
-- finding_id, change, won, holder (NULL: no claim), whether the opening event is
-- unrouted too, the instance the finding was taken in from (migration 31; NULL: raised
-- here). Parameter: how many at most.
WITH batch AS (
    SELECT id, finding_id, change FROM alert_events WHERE routed_at IS NULL ORDER BY id LIMIT ?
), opened AS (
    SELECT b.*,
           (SELECT max(o.id) FROM alert_events o
            WHERE o.finding_id = b.finding_id AND o.change IN ('raised', 'reopened') AND o.id <= b.id) AS opening
    FROM batch b
)
SELECT x.id, x.finding_id, x.change, c.won, c.holder, x.opening IS NOT NULL AND o.routed_at IS NULL,
       taken_in_from(f.fingerprint, f.updated_at)
FROM opened x
LEFT JOIN findings f ON f.id = x.finding_id
LEFT JOIN alert_claims c ON c.event_id = x.opening
LEFT JOIN alert_events o ON o.id = x.opening
ORDER BY x.id
