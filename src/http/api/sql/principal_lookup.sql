-- Principals whose sign-in name (a user's UPN, a service principal's name) or display
-- name is $1, ignoring case; the most recently seen first ($1 the name).
SELECT principal_id
FROM signins
WHERE principal_id IS NOT NULL
  AND (lower(principal_name) = lower($1) OR lower(user_display_name) = lower($1))
GROUP BY principal_id
ORDER BY max(time) DESC
LIMIT 10
