INSERT INTO directory_changes (
    time, kind, operation, audit_category, result, tenant_id, actor_id, actor_kind, actor_name, actor_ip,
    target_id, target_type, target_name, target_app_id, group_id, modified, correlation_id, raw_row, batch_id
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?::JSON, ?, ?, ?)
