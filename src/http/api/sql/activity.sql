SELECT hour,
       coalesce(sum(events) FILTER (WHERE stream LIKE 'cosmos:%'), 0) AS requests,
       coalesce(sum(events) FILTER (WHERE stream LIKE 'signins:%'), 0) AS signins,
       coalesce(sum(events) FILTER (WHERE stream LIKE 'raw:%'), 0) AS other
FROM stream_hours
WHERE hour > utc_add((SELECT max(hour) FROM stream_hours), - to_hours(?))
GROUP BY 1 ORDER BY 1
