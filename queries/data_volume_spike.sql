-- id: data_volume_spike
-- title: Unusual volume of data read
-- severity: high
-- soc2: CC6.1, CC7.2
-- mitre: T1530 Data from Cloud Storage
-- window: 1h
-- description: A principal (or a key-based client) read far more in one hour than it usually
--   does. The baseline is the principal's own hourly read volume (Read, Query and ReadFeed
--   response bytes) over the baseline_days before, summarised by its median and median absolute
--   deviation, which a few earlier spikes do not move. An hour is raised when it is above
--   floor_mb, above `ratio` times the median, and more than `deviations` robust deviations above
--   it. Principals with too little history are judged against floor_mb alone.
-- remediation: Ask the owner whether the export was expected (a migration, a backfill). If not,
--   revoke the principal's sessions and credentials, and find where the data went from the
--   client address.
-- param: floor_mb = 100
--   Hourly reads below this many MiB are never raised.
-- param: ratio = 10.0
--   The hour must exceed this multiple of the median hour.
-- param: deviations = 8.0
--   And this many robust standard deviations (1.4826 x MAD) above the median.
-- param: baseline_days = 14
--   Days of history that form the baseline.
-- param: min_baseline_hours = 6
--   Active hours needed for a baseline; fewer and only the floor applies.
WITH candidates AS (
    SELECT subject, hour, read_bytes, read_requests
    FROM activity_hours
    WHERE hour >= utc_hour($from) AND hour < $to AND read_bytes >= $floor_mb * 1048576
),
history AS (
    SELECT c.subject, c.hour, h.read_bytes
    FROM candidates c
    JOIN activity_hours h
      ON h.subject = c.subject
     AND h.hour < c.hour
     AND h.hour >= utc_add(c.hour, - to_days($baseline_days))
     AND h.read_requests > 0
),
centre AS (
    SELECT subject, hour, median(read_bytes) AS med, count(*) AS hours FROM history GROUP BY subject, hour
),
spread AS (
    SELECT h.subject, h.hour, median(abs(h.read_bytes - m.med)) AS mad
    FROM history h JOIN centre m USING (subject, hour)
    GROUP BY h.subject, h.hour
),
spikes AS (
    SELECT c.subject, c.hour, c.read_bytes, c.read_requests, m.med, m.hours, s.mad
    FROM candidates c
    LEFT JOIN centre m USING (subject, hour)
    LEFT JOIN spread s USING (subject, hour)
    WHERE coalesce(m.hours, 0) < $min_baseline_hours
       OR (c.read_bytes > $ratio * m.med AND c.read_bytes > m.med + $deviations * 1.4826 * s.mad)
)
SELECT
    r.time,
    'cosmos_requests' AS evidence_table,
    r.rowid AS row_id,
    r.principal_id,
    CASE WHEN r.principal_id IS NULL THEN 'account=' || coalesce(r.account, '') || ' ip=' || coalesce(r.client_ip, '')
         ELSE '' END AS entity,
    'read ' || round(s.read_bytes / 1048576.0, 1) || ' MiB in ' || s.read_requests || ' requests in the hour from '
        || strftime(s.hour::TIMESTAMP, '%Y-%m-%d %H:00') || ' UTC; ' || CASE
            WHEN coalesce(s.hours, 0) < $min_baseline_hours THEN 'no baseline yet'
            ELSE 'its median hour is ' || round(s.med / 1048576.0, 2) || ' MiB over ' || s.hours || ' active hours'
        END AS detail
FROM cosmos_requests r
JOIN spikes s
  ON request_subject(r.principal_id, r.account, r.client_ip) = s.subject
 AND r.time >= s.hour AND r.time < utc_add(s.hour, INTERVAL 1 HOUR)
WHERE r.time >= $from AND r.time < $to
  AND r.operation IN ('Read', 'Query', 'ReadFeed')
