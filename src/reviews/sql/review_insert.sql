INSERT INTO access_reviews (uuid, name, scope, reviewers, usage_since, usage_until, due_at, created_at, created_by, created_by_oid)
VALUES (uuid()::VARCHAR, ?, ?, ?::JSON, ?, ?, ?, get_current_timestamp(), ?, ?)
RETURNING id
