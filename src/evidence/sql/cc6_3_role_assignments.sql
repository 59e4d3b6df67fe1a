-- CC6.1: Cosmos DB RBAC role assignments that allowed requests in [$from, $to).
SELECT
    account,
    role_assignment_id,
    count(DISTINCT principal_id) AS principals,
    count(*) AS requests,
    min(time) AS first_request,
    max(time) AS last_request
FROM cosmos_requests
WHERE time >= $from AND time < $to AND batch_id <= $as_of AND role_assignment_id IS NOT NULL
GROUP BY ALL
ORDER BY account, role_assignment_id
