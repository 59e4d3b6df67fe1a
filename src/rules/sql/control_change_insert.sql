INSERT INTO control_changes (
    time, kind, operation, result, status, subscription_id, resource_group, account, resource_id,
    caller_id, caller_app_id, caller_name, caller_ip, target_principal_id, target_principal_type,
    role_definition_id, scope, disable_local_auth, public_network_access, disabled_logs,
    correlation_id, event_category, category, raw_row, batch_id
) VALUES (
    ?, ?, ?, ?, ?, ?, ?, ?, ?,
    ?, ?, ?, ?, ?, ?,
    ?, ?, ?, ?, from_json(?::JSON, '["VARCHAR"]'),
    ?, ?, ?, ?, ?
)
