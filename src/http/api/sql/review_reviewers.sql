-- People who have signed in to TokenTrail with the Reviewer role: who an Admin can name.
SELECT lower(oid) AS oid, arg_max(name, time) AS name, max(time) AS last_seen
FROM access_log
WHERE role = 'TokenTrail.Reviewer' AND oid IS NOT NULL
GROUP BY lower(oid)
ORDER BY name, oid
