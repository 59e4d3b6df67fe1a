-- The latest name each of a list of principals (a JSON array of ids) signed in with.
SELECT principal_id, arg_max(coalesce(principal_name, user_display_name), time) AS name
FROM signins
WHERE principal_id IN (SELECT unnest(from_json(?, '["VARCHAR"]')))
GROUP BY principal_id
