-- Raised and reopened events not yet routed and without a claim, with their episode: how
-- many raised or reopened events the finding had before. Parameter: how many at most.
SELECT e.id, e.finding_id,
       (SELECT count(*) FROM alert_events p
        WHERE p.finding_id = e.finding_id AND p.change IN ('raised', 'reopened') AND p.id < e.id) AS episode
FROM alert_events e
WHERE e.routed_at IS NULL AND e.change IN ('raised', 'reopened')
  AND NOT EXISTS (SELECT 1 FROM alert_claims c WHERE c.event_id = e.id)
ORDER BY e.id
LIMIT ?
