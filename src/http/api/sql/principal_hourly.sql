-- A principal's activity per bucket of a period: $1 principal, $2 from, $3 to (timestamps),
-- $4 the first bucket's start, $5 a bucket's width, $6 the end of the last bucket (epoch
-- microseconds, $4 <= $2, $6 >= $3). Every bucket is listed, one without activity as zeros.
WITH r AS (
    SELECT $4 + (epoch_us(time) - $4) // $5 * $5 AS b, count(*) AS requests,
           coalesce(sum(response_length), 0)::BIGINT AS bytes_out
    FROM cosmos_requests WHERE principal_id = $1 AND time >= $2 AND time < $3 GROUP BY 1
), s AS (
    SELECT $4 + (epoch_us(time) - $4) // $5 * $5 AS b, count(*) AS signins,
           count(*) FILTER (WHERE coalesce(error_code, 0) <> 0) AS failed_signins
    FROM signins WHERE principal_id = $1 AND time >= $2 AND time < $3 GROUP BY 1
)
SELECT make_timestamp(g.range) AS start, coalesce(r.requests, 0) AS requests, coalesce(r.bytes_out, 0) AS bytes_out,
       coalesce(s.signins, 0) AS signins, coalesce(s.failed_signins, 0) AS failed_signins
FROM range($4, $6, $5) g LEFT JOIN r ON r.b = g.range LEFT JOIN s ON s.b = g.range
ORDER BY g.range
