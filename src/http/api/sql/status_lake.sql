-- The Parquet lake, per archived table: rows in verified segments, rows retention deleted
-- from this database (in the lake only now), the days the files hold, how far archiving has
-- come and segments a run left unfinished (the next run completes them).
SELECT f.table_name,
       sum(f.rows)::BIGINT AS archived_rows,
       coalesce((SELECT sum(e.rows) FROM lake_evictions e WHERE e.table_name = f.table_name), 0)::BIGINT AS evicted_rows,
       min(f.day)::VARCHAR AS first_day,
       max(f.day)::VARCHAR AS last_day,
       (SELECT max(last_batch) FROM lake_segments WHERE verified_at IS NOT NULL) AS archived_up_to_batch,
       (SELECT max(verified_at) FROM lake_segments)::VARCHAR AS last_archived_at,
       (SELECT count(*) FROM lake_segments WHERE verified_at IS NULL) AS unfinished_segments
FROM lake_files f
GROUP BY f.table_name
ORDER BY f.table_name
