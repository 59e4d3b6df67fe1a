-- The clients a principal used in a period ($1 principal, $2 from, $3 to).
SELECT user_agent, 'data' AS seen_in, count(*) AS events, max(time) AS last FROM cosmos_requests
WHERE principal_id = $1 AND time >= $2 AND time < $3 GROUP BY ALL
UNION ALL
SELECT user_agent, 'signin', count(*), max(time) FROM signins
WHERE principal_id = $1 AND time >= $2 AND time < $3 GROUP BY ALL
ORDER BY events DESC, seen_in, user_agent LIMIT 100
