-- id: data_volume_spike_daily
-- title: Unusual volume of data read in a day
-- severity: medium
-- soc2: CC6.1, CC7.2
-- mitre: T1030 Data Transfer Size Limits
-- window: 1d
-- description: A principal (or a key-based client) read far more in 24 hours than it usually
--   does in a day, even if no hour of it passed data_volume_spike's floor: a slow drip that stays
--   under an hourly limit. The 24 hours roll (by whole hours), so a drip across midnight counts
--   whole. The baseline is the principal's own daily read volume (Read, Query and ReadFeed
--   response bytes, by UTC day) over the baseline_days before, summarised by its median and
--   median absolute deviation. 24 hours are raised when they are above floor_mb, above `ratio`
--   times the median day and more than `deviations` robust deviations above it; principals with
--   fewer than min_baseline_days active days are judged against floor_mb alone. The evidence is
--   the first request of each of those hours with reads.
-- remediation: Ask the owner what the principal read all day and why. If nobody expects it,
--   revoke its sessions and credentials, and trace where the data went from the client addresses.
-- param: floor_mb = 500
--   Daily reads below this many MiB are never raised.
-- param: ratio = 5.0
--   The day must exceed this multiple of the median day.
-- param: deviations = 8.0
--   And this many robust standard deviations (1.4826 x MAD) above the median.
-- param: baseline_days = 28
--   Days of history that form the baseline.
-- param: min_baseline_days = 7
--   Active days needed for a baseline; fewer and only the floor applies.
WITH hours AS (
    -- the hours whose 24 hours can hold the period's evidence (a day after it included)
    SELECT subject, hour, read_bytes, read_requests, first_request_time, first_request_row
    FROM activity_hours
    WHERE hour >= utc_add(utc_hour($from), - INTERVAL 23 HOUR) AND hour < utc_add($to, INTERVAL 1 DAY)
      AND read_requests > 0
),
rolling AS (
    -- the reads of the 24 hours up to and including each hour (epoch microseconds: no time zone
    -- arithmetic in the frame)
    SELECT
        subject, hour,
        sum(read_bytes) OVER last_day AS day_bytes,
        sum(read_requests) OVER last_day AS day_requests
    FROM hours
    WINDOW last_day AS (PARTITION BY subject ORDER BY epoch_us(hour) RANGE BETWEEN 82800000000 PRECEDING AND CURRENT ROW)
),
candidates AS (
    SELECT * FROM rolling WHERE hour >= utc_hour($from) AND day_bytes >= $floor_mb * 1048576
),
days AS (
    -- the candidates' UTC days of reads before, for their baselines
    SELECT subject, date_trunc('day', hour::TIMESTAMP)::TIMESTAMPTZ AS day, sum(read_bytes) AS read_bytes
    FROM activity_hours
    WHERE hour >= utc_add(utc_hour($from), - to_days($baseline_days + 2)) AND hour < $to
      AND read_requests > 0
      AND subject IN (SELECT subject FROM candidates)
    GROUP BY ALL
),
history AS (
    -- the whole UTC days before the 24 hours began
    SELECT c.subject, c.hour, d.read_bytes
    FROM candidates c
    JOIN days d
      ON d.subject = c.subject
     AND utc_add(d.day, INTERVAL 1 DAY) <= utc_add(c.hour, - INTERVAL 23 HOUR)
     AND d.day >= utc_add(c.hour, - to_days($baseline_days))
),
centre AS (
    SELECT subject, hour, median(read_bytes) AS med, count(*) AS days FROM history GROUP BY subject, hour
),
spread AS (
    SELECT h.subject, h.hour, median(abs(h.read_bytes - m.med)) AS mad
    FROM history h JOIN centre m USING (subject, hour)
    GROUP BY h.subject, h.hour
),
spikes AS (
    SELECT c.subject, c.hour, c.day_bytes, c.day_requests, m.med, m.days
    FROM candidates c
    LEFT JOIN centre m USING (subject, hour)
    LEFT JOIN spread s USING (subject, hour)
    WHERE coalesce(m.days, 0) < $min_baseline_days
       OR (c.day_bytes > $ratio * m.med AND c.day_bytes > m.med + $deviations * 1.4826 * s.mad)
),
evidence AS (
    -- the first request of each hour with reads in any 24 hours raised, with the largest of them
    SELECT a.subject, a.first_request_time, a.first_request_row, arg_max(s, s.day_bytes) AS s
    FROM spikes s
    JOIN hours a
      ON a.subject = s.subject AND a.hour <= s.hour AND a.hour >= utc_add(s.hour, - INTERVAL 23 HOUR)
    GROUP BY ALL
)
SELECT
    e.first_request_time AS time,
    'cosmos_requests' AS evidence_table,
    e.first_request_row AS row_id,
    CASE WHEN e.subject NOT LIKE 'key:%' THEN e.subject END AS principal_id,
    CASE WHEN e.subject LIKE 'key:%' THEN 'account=' || r.account || ' ip=' || r.client_ip ELSE '' END AS entity,
    'read ' || round(e.s.day_bytes / 1048576.0, 1) || ' MiB in ' || e.s.day_requests || ' requests in the 24 hours to '
        || strftime(utc_add(e.s.hour, INTERVAL 1 HOUR)::TIMESTAMP, '%Y-%m-%d %H:00') || ' UTC; ' || CASE
            WHEN coalesce(e.s.days, 0) < $min_baseline_days THEN 'no baseline yet'
            ELSE 'its median day is ' || round(e.s.med / 1048576.0, 1) || ' MiB over ' || e.s.days || ' active days'
        END AS detail
FROM evidence e
JOIN cosmos_requests r ON r.rowid = e.first_request_row
WHERE e.first_request_time >= $from AND e.first_request_time < $to
