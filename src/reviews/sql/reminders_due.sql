-- Reviews to remind of: not completed, items left, due before $1 (now plus the lead time),
-- and not reminded of since $2 (now minus the interval).
SELECT s.id, s.name, s.scope, epoch_us(s.due_at), s.items, s.decided, s.reviewers::VARCHAR
FROM access_review_status s
WHERE s.completed_at IS NULL AND s.decided < s.items AND s.due_at < $1
  AND NOT EXISTS (
      SELECT 1 FROM access_review_log l WHERE l.review_id = s.id AND l.action = 'reminded' AND l.logged_at >= $2
  )
ORDER BY s.due_at, s.id
