-- CC7.2: the detection rules in force at any time in [$from, $to), each version as it was
-- (rule_versions: written when a process that runs detection starts), with when it came
-- into force and, if before $to, when it stopped. A rule changed during the period has a
-- row per version.
SELECT
    rule_id,
    title,
    severity,
    soc2,
    mitre,
    window_seconds,
    origin,
    definition,
    parameters,
    in_force_from,
    CASE WHEN in_force_to < $to THEN in_force_to END AS in_force_until
FROM rule_versions
WHERE in_force_from < $to AND (in_force_to IS NULL OR in_force_to > $from)
ORDER BY rule_id, in_force_from
