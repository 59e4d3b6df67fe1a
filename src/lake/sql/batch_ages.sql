-- A table's rows per batch of a segment not evicted yet: the oldest and newest day, and
-- the count. {table} and {day} come from our own lists ({day} reads `b`).
SELECT t.batch_id, strftime(min({day}), '%Y-%m-%d'), strftime(max({day}), '%Y-%m-%d'), count(*)
FROM {table} t
JOIN ingest_batches b ON b.batch_id = t.batch_id
WHERE t.batch_id BETWEEN ? AND ?
  AND t.batch_id NOT IN (SELECT batch_id FROM lake_evictions WHERE table_name = ?)
GROUP BY t.batch_id
ORDER BY t.batch_id
