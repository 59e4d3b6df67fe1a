-- CC7.2: the detection rules in force when the pack was made ($catalogue: the rule
-- catalogue, built-in rules and the rules folder, as JSON), with when each was last evaluated.
WITH catalogue AS (
    SELECT unnest(from_json($catalogue::JSON, '[{"rule_id":"VARCHAR","title":"VARCHAR","severity":"VARCHAR","soc2":"VARCHAR","mitre":"VARCHAR","window":"VARCHAR","origin":"VARCHAR"}]'), recursive := true)
)
SELECT c.rule_id, c.title, c.severity, c.soc2, c.mitre, c."window", c.origin, s.definition, s.evaluated_at AS last_evaluated
FROM catalogue c
LEFT JOIN rule_state s USING (rule_id)
ORDER BY c.rule_id
