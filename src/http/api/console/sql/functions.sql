SELECT DISTINCT lower(function_name) FROM duckdb_functions()
WHERE function_type IN ('scalar', 'aggregate', 'macro', 'window')
  AND (internal OR (database_name = current_database() AND schema_name = 'main'))
