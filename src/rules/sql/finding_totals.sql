-- What each fingerprint in `touched` now totals (first and last seen, count, evidence list,
-- summary: see refresh_findings.sql), in `finding_totals`, after replace_evidence.sql
-- replaced rule $rule_id's evidence in [$from, $to).
--
-- Evidence changed only inside that period, so a finding with 1,000 or more evidence
-- events before it keeps its first seen and its evidence list (the first 1,000 by time),
-- and its count, last seen and summary follow from the period's rows before and after the
-- change and from the rows after the period (none when a pass runs to the data's end).
-- Reading all of a finding's evidence instead made each pass of an incident that goes on
-- (a job deleting all day) read more than the last. The fingerprints this cannot settle
-- are left in `read_whole`, whose evidence whole_totals.sql reads.

CREATE OR REPLACE TEMP TABLE period_totals AS
WITH before AS (
    SELECT fingerprint, count(*) AS n, max(coalesce(stored_end_time, stored_time)) AS last_seen
    FROM evidence_diff
    WHERE stored_row IS NOT NULL
    GROUP BY fingerprint
), now AS (
    SELECT fingerprint, count(*) AS n, max(coalesce(end_time, time)) AS last_seen, arg_max(detail, time) AS summary
    FROM new_evidence
    GROUP BY fingerprint
), later AS (
    SELECT fingerprint, count(*) AS n, max(coalesce(end_time, time)) AS last_seen, arg_max(detail, time) AS summary
    FROM finding_evidence
    WHERE rule_id = $rule_id AND time >= $to AND fingerprint IN (SELECT fingerprint FROM touched)
    GROUP BY fingerprint
)
SELECT
    x.fingerprint,
    coalesce(b.n, 0) AS before_n,
    b.last_seen AS before_last_seen,
    coalesce(n.n, 0) AS now_n,
    n.last_seen AS now_last_seen,
    n.summary AS now_summary,
    coalesce(l.n, 0) AS later_n,
    l.last_seen AS later_last_seen,
    l.summary AS later_summary
FROM touched x
LEFT JOIN before b ON b.fingerprint = x.fingerprint
LEFT JOIN now n ON n.fingerprint = x.fingerprint
LEFT JOIN later l ON l.fingerprint = x.fingerprint;

-- Per touched finding: whether its facts are this instance's own evidence's (not taken in
-- from another instance: src/lake/shared_findings.rs), how many of its events are earlier
-- than the period, and its last seen and summary where the period settles them. The
-- earlier events' latest end is known only when the period's and later rows did not
-- reach the stored last seen; their latest detail only when nothing came after them.
CREATE OR REPLACE TEMP TABLE kept_totals AS
SELECT
    p.fingerprint,
    f.principal_id,
    f.entity,
    f.first_seen,
    CASE
        WHEN coalesce(greatest(p.before_last_seen, p.later_last_seen) < f.last_seen, true)
            THEN greatest(f.last_seen, p.now_last_seen, p.later_last_seen)
        WHEN greatest(p.now_last_seen, p.later_last_seen) >= f.last_seen
            THEN greatest(p.now_last_seen, p.later_last_seen)
    END AS last_seen,
    f.count - p.before_n + p.now_n AS count,
    f.evidence,
    CASE WHEN p.later_n > 0 THEN p.later_summary WHEN p.now_n > 0 THEN p.now_summary ELSE f.summary END AS summary,
    taken_in_from(f.fingerprint, f.updated_at) IS NULL AS own,
    f.count - p.before_n - p.later_n AS earlier_n,
    p.later_n > 0 OR p.now_n > 0 OR p.before_n = 0 AS summary_known
FROM period_totals p
JOIN findings f ON f.fingerprint = p.fingerprint;

CREATE OR REPLACE TEMP TABLE finding_totals AS
SELECT fingerprint, principal_id, entity, first_seen, last_seen, count, evidence, summary
FROM kept_totals
WHERE own AND earlier_n >= 1000 AND last_seen IS NOT NULL AND summary_known;

-- The rest, and from when their evidence can be: a finding's own evidence is no earlier
-- than its first seen, a new fingerprint's is all in the period, and a finding taken in
-- from another instance may have evidence here from any time (NULL).
CREATE OR REPLACE TEMP TABLE read_whole AS
SELECT
    p.fingerprint,
    CASE
        WHEN k.fingerprint IS NULL THEN $from::TIMESTAMPTZ
        WHEN k.own THEN least(k.first_seen, $from::TIMESTAMPTZ)
    END AS read_from
FROM period_totals p
LEFT JOIN kept_totals k ON k.fingerprint = p.fingerprint
ANTI JOIN finding_totals t ON t.fingerprint = p.fingerprint;
