SELECT c.table_name, any_value(t.kind) AS kind, any_value(t.comment) AS comment,
       list({'name': c.column_name, 'type': c.data_type} ORDER BY c.column_index) AS columns
FROM duckdb_columns() c
JOIN (SELECT table_name, 'table' AS kind, comment FROM duckdb_tables() WHERE schema_name = 'main'
      UNION ALL SELECT view_name, 'view', comment FROM duckdb_views() WHERE schema_name = 'main' AND NOT internal) t
  USING (table_name)
WHERE c.schema_name = 'main' AND c.database_name = current_database()
GROUP BY c.table_name ORDER BY c.table_name
