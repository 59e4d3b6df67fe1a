SELECT (SELECT count(*) FROM rule_output WHERE time >= $2 AND time < $3),
(SELECT count(*) FROM finding_evidence WHERE rule_id = $1 AND time >= $2 AND time < $3)
