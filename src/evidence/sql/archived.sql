-- Rows of the period ($1 to $2) in batches up to the pack's ($3) that retention deleted
-- from the database: per table, how many and the days they span (whole batches: a batch's
-- days can reach past the period).
SELECT table_name, sum(rows)::BIGINT, min(first_day)::VARCHAR, max(last_day)::VARCHAR
FROM lake_evictions
WHERE batch_id <= ?3
  AND last_day >= CAST(CAST(?1 AS TIMESTAMP) AS DATE)
  AND first_day <= CAST(CAST(?2 AS TIMESTAMP) AS DATE)
GROUP BY table_name
ORDER BY table_name
