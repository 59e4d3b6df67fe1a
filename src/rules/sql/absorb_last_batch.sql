SELECT max(batch_id) FROM (
    SELECT
        batch_id,
        sum(cosmos_rows + signin_rows + raw_rows) OVER (ORDER BY batch_id) AS rows_upto,
        row_number() OVER (ORDER BY batch_id) AS n
    FROM ingest_batches
    WHERE batch_id > ?
) WHERE rows_upto <= ? OR n = 1
