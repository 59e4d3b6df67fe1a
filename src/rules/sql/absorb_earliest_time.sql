SELECT epoch_us(min(time)) FROM (
    SELECT min(time) AS time FROM new_requests
    UNION ALL SELECT min(time) FROM new_signins
    UNION ALL SELECT min(time) FROM new_raw
)
