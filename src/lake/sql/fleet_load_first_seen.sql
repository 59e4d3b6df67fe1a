-- Adds segments' partial first_seen (src/lake/sql/segment_first_seen.sql) to
-- everyone's; the files are named in the session variable fleet_files.
INSERT INTO fleet_first_seen (subject, facet, value, first_time, first_row, last_time, events)
SELECT subject, facet, value, min(first_time), arg_min(first_row, first_time), max(last_time), sum(events)
FROM read_parquet(getvariable('fleet_files'))
GROUP BY subject, facet, value
ON CONFLICT DO UPDATE SET
    first_row = CASE WHEN excluded.first_time < first_time THEN excluded.first_row ELSE first_row END,
    first_time = least(first_time, excluded.first_time),
    last_time = greatest(last_time, excluded.last_time),
    events = events + excluded.events;
