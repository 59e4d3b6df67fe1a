-- The end of the data (microseconds since the epoch), NULL when nothing is stored: the
-- access review's `until`.
SELECT epoch_us(history_end) AS history_end FROM data_clock
