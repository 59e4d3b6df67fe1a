-- The files of table $1 that hold its evicted rows of days $2 to $3 (inclusive): a file
-- of a segment with an eviction of that table spanning the file's day.
SELECT f.path, f.sha256, f.bytes, f.day::VARCHAR
FROM lake_files f
WHERE f.table_name = $1
  AND f.day BETWEEN CAST($2 AS DATE) AND CAST($3 AS DATE)
  AND EXISTS (
      SELECT 1 FROM lake_evictions e
      WHERE e.table_name = f.table_name AND e.first_batch = f.first_batch
        AND f.day BETWEEN e.first_day AND e.last_day)
ORDER BY f.path
