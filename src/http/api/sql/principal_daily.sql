-- A principal's days in a period ($1 principal, $2 from, $3 to, $4 the day $2 falls in),
-- with the median day of the 28 before as its baseline.
WITH days AS (
    SELECT date_trunc('day', time::TIMESTAMP) AS day, count(*) AS requests, sum(response_length)::BIGINT AS bytes_out
    FROM cosmos_requests WHERE principal_id = $1 AND time >= utc_add($2, - INTERVAL 28 DAY) AND time < $3 GROUP BY 1
), s AS (
    SELECT date_trunc('day', time::TIMESTAMP) AS day, count(*) AS signins
    FROM signins WHERE principal_id = $1 AND time >= $2 AND time < $3 GROUP BY 1
), baseline AS (
    SELECT median(requests) AS baseline_requests, median(bytes_out) AS baseline_bytes_out
    FROM days WHERE day < $2::TIMESTAMP
)
SELECT coalesce(d.day, s.day) AS day, coalesce(d.requests, 0) AS requests,
       coalesce(d.bytes_out, 0) AS bytes_out, coalesce(s.signins, 0) AS signins,
       b.baseline_requests, b.baseline_bytes_out
FROM days d FULL JOIN s USING (day), baseline b
WHERE coalesce(d.day, s.day) >= $4::TIMESTAMP
ORDER BY day
