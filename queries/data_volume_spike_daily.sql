-- id: data_volume_spike_daily
-- title: Unusual volume of data read in a day
-- severity: medium
-- soc2: CC6.1, CC7.2
-- mitre: T1030 Data Transfer Size Limits
-- window: 1d
-- description: A principal (or a key-based client) read far more in one UTC day than it usually
--   does, even if no hour of it passed data_volume_spike's floor: a slow drip that stays under
--   an hourly limit. The baseline is the principal's own daily read volume (Read, Query and
--   ReadFeed response bytes) over the baseline_days before, summarised by its median and median
--   absolute deviation. A day is raised when it is above floor_mb, above `ratio` times the median
--   and more than `deviations` robust deviations above it; principals with fewer than
--   min_baseline_days active days are judged against floor_mb alone. The evidence is the first
--   request of each hour of that day with reads.
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
WITH days AS (
    SELECT subject, date_trunc('day', hour::TIMESTAMP)::TIMESTAMPTZ AS day, sum(read_bytes) AS read_bytes, sum(read_requests) AS read_requests
    FROM activity_hours
    WHERE hour >= utc_add(date_trunc('day', $from::TIMESTAMP)::TIMESTAMPTZ, - to_days($baseline_days)) AND hour < utc_add($to, INTERVAL 1 DAY)
      AND read_requests > 0
    GROUP BY ALL
),
candidates AS (
    SELECT * FROM days
    WHERE day >= date_trunc('day', $from::TIMESTAMP)::TIMESTAMPTZ AND day < $to AND read_bytes >= $floor_mb * 1048576
),
history AS (
    SELECT c.subject, c.day, h.read_bytes
    FROM candidates c
    JOIN days h ON h.subject = c.subject AND h.day < c.day AND h.day >= utc_add(c.day, - to_days($baseline_days))
),
centre AS (
    SELECT subject, day, median(read_bytes) AS med, count(*) AS days FROM history GROUP BY subject, day
),
spread AS (
    SELECT h.subject, h.day, median(abs(h.read_bytes - m.med)) AS mad
    FROM history h JOIN centre m USING (subject, day)
    GROUP BY h.subject, h.day
),
spikes AS (
    SELECT c.subject, c.day, c.read_bytes, c.read_requests, m.med, m.days
    FROM candidates c
    LEFT JOIN centre m USING (subject, day)
    LEFT JOIN spread s USING (subject, day)
    WHERE coalesce(m.days, 0) < $min_baseline_days
       OR (c.read_bytes > $ratio * m.med AND c.read_bytes > m.med + $deviations * 1.4826 * s.mad)
)
SELECT
    a.first_request_time AS time,
    'cosmos_requests' AS evidence_table,
    a.first_request_row AS row_id,
    CASE WHEN a.subject NOT LIKE 'key:%' THEN a.subject END AS principal_id,
    CASE WHEN a.subject LIKE 'key:%' THEN 'account=' || r.account || ' ip=' || r.client_ip ELSE '' END AS entity,
    'read ' || round(s.read_bytes / 1048576.0, 1) || ' MiB in ' || s.read_requests || ' requests on '
        || strftime(s.day::TIMESTAMP, '%Y-%m-%d') || ' (UTC); ' || CASE
            WHEN coalesce(s.days, 0) < $min_baseline_days THEN 'no baseline yet'
            ELSE 'its median day is ' || round(s.med / 1048576.0, 1) || ' MiB over ' || s.days || ' active days'
        END AS detail
FROM spikes s
JOIN activity_hours a
  ON a.subject = s.subject AND a.hour >= s.day AND a.hour < utc_add(s.day, INTERVAL 1 DAY) AND a.read_requests > 0
JOIN cosmos_requests r ON r.rowid = a.first_request_row
WHERE a.first_request_time >= $from AND a.first_request_time < $to
