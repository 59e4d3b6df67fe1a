-- Whether reviewer $3 holds item $2 of review $1, and how they granted it (migration 20's
-- review_conflicts). No row: no such item.
SELECT own, granted FROM review_conflicts($1, $3) WHERE item_id = $2
