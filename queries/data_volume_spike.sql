-- id: data_volume_spike
-- title: Unusual volume of data read
-- severity: high
-- soc2: CC6.1, CC7.2
-- mitre: T1530 Data from Cloud Storage
-- window: 1h
-- description: A principal (or a key-based client) read far more in 60 minutes than it usually
--   does in an hour. The 60 minutes roll: an export from 10:30 to 11:30 counts whole, not as two
--   half hours each under the floor. The baseline is the principal's own hourly read volume
--   (Read, Query and ReadFeed response bytes) over the baseline_days before, summarised by its
--   median and median absolute deviation, which a few earlier spikes do not move. A 60-minute
--   span is raised when it is above floor_mb, above `ratio` times the median, and more than
--   `deviations` robust deviations above it; its read requests are the evidence. Principals with
--   too little history are judged against floor_mb alone. Slow drips under the floor are
--   data_volume_spike_daily's.
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
WITH floor_pairs AS (
    -- a 60-minute span ending in hour h lies in hours h-1 and h: only where those two together
    -- pass the floor can one of the spans
    SELECT subject, hour, pair_bytes
    FROM (
        SELECT subject, hour,
               read_bytes + CASE WHEN before_hour = utc_add(hour, - INTERVAL 1 HOUR) THEN before ELSE 0 END
                   AS pair_bytes
        FROM (
            SELECT subject, hour, read_bytes,
                   lag(read_bytes) OVER (PARTITION BY subject ORDER BY hour) AS before,
                   lag(hour) OVER (PARTITION BY subject ORDER BY hour) AS before_hour
            FROM activity_hours
            WHERE hour >= utc_add(utc_hour($from), - INTERVAL 1 HOUR) AND hour < utc_add($to, INTERVAL 1 HOUR)
              AND read_requests > 0
        )
    )
    WHERE pair_bytes >= $floor_mb * 1048576
),
history AS (
    SELECT c.subject, c.hour, h.read_bytes
    FROM floor_pairs c
    JOIN activity_hours h
      ON h.subject = c.subject
     AND h.hour < utc_add(c.hour, - INTERVAL 1 HOUR)
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
pairs AS (
    -- no span holds more than its two hours, so a pair that is no spike as a whole has none
    -- (a steady heavy reader's requests are then never read, however many)
    SELECT p.subject, p.hour
    FROM floor_pairs p
    LEFT JOIN centre m USING (subject, hour)
    LEFT JOIN spread s USING (subject, hour)
    WHERE coalesce(m.hours, 0) < $min_baseline_hours
       OR (p.pair_bytes > $ratio * m.med AND p.pair_bytes > m.med + $deviations * 1.4826 * s.mad)
),
reads AS (
    -- the reads of the candidate hours and the hour before each, with the bytes read in the 60
    -- minutes up to each (epoch microseconds: the frame needs no time zone arithmetic)
    SELECT
        r.rowid AS row_id, r.time, r.principal_id, r.account, r.client_ip, p.subject, p.hour,
        sum(coalesce(r.response_length, 0)) OVER (
            PARTITION BY p.subject, p.hour ORDER BY epoch_us(r.time)
            RANGE BETWEEN 3599999999 PRECEDING AND CURRENT ROW
        ) AS rolling
    FROM pairs p
    JOIN cosmos_requests r
      ON request_subject(r.principal_id, r.account, r.client_ip) = p.subject
     AND r.time >= utc_add(p.hour, - INTERVAL 1 HOUR) AND r.time < utc_add(p.hour, INTERVAL 1 HOUR)
    WHERE r.operation IN ('Read', 'Query', 'ReadFeed')
),
peaks AS (
    -- spans ending in the candidate hour that pass every threshold
    SELECT r.subject, r.hour, r.time AS span_end, r.rolling, m.med, m.hours
    FROM reads r
    LEFT JOIN centre m USING (subject, hour)
    LEFT JOIN spread s USING (subject, hour)
    WHERE r.time >= r.hour
      AND r.rolling >= $floor_mb * 1048576
      AND (coalesce(m.hours, 0) < $min_baseline_hours
           OR (r.rolling > $ratio * m.med AND r.rolling > m.med + $deviations * 1.4826 * s.mad))
),
largest AS (
    SELECT subject, hour, arg_max(span_end, rolling) AS span_end, max(rolling) AS rolling, any_value(med) AS med,
           any_value(hours) AS hours
    FROM peaks
    GROUP BY subject, hour
)
SELECT
    r.time,
    'cosmos_requests' AS evidence_table,
    r.row_id,
    r.principal_id,
    CASE WHEN r.principal_id IS NULL THEN 'account=' || coalesce(r.account, '') || ' ip=' || coalesce(r.client_ip, '')
         ELSE '' END AS entity,
    'read ' || round(l.rolling / 1048576.0, 1) || ' MiB in the 60 minutes to '
        || strftime(l.span_end::TIMESTAMP, '%Y-%m-%d %H:%M') || ' UTC; ' || CASE
            WHEN coalesce(l.hours, 0) < $min_baseline_hours THEN 'no baseline yet'
            ELSE 'its median hour is ' || round(l.med / 1048576.0, 2) || ' MiB over ' || l.hours || ' active hours'
        END AS detail
FROM largest l
JOIN reads r
  ON r.subject = l.subject AND r.hour = l.hour
 -- the reads of the largest span: the 60 minutes up to its end
 AND epoch_us(r.time) > epoch_us(l.span_end) - 3600000000 AND r.time <= l.span_end
WHERE r.time >= $from AND r.time < $to
QUALIFY row_number() OVER (PARTITION BY r.row_id ORDER BY l.hour) = 1
