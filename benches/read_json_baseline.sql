-- The baseline of the ingest benchmark: DuckDB's own read_json filling the same
-- typed table with the same columns TokenTrail's parser produces. $1 is the file.
INSERT INTO cosmos_requests BY NAME
SELECT
    "time"::TIMESTAMPTZ AS time,
    lower(regexp_extract(resourceId, 'DATABASEACCOUNTS/([^/]+)', 1)) AS account,
    lower(coalesce(nullif(properties.subscriptionId, ''), regexp_extract(resourceId, 'SUBSCRIPTIONS/([^/]+)', 1))) AS subscription_id,
    regexp_extract(resourceId, 'RESOURCEGROUPS/([^/]+)', 1) AS resource_group,
    nullif(properties.region, '') AS region,
    operationName AS operation,
    nullif(properties.statusCode, '')::INTEGER AS status_code,
    nullif(properties.duration, '')::DOUBLE AS duration_ms,
    nullif(properties.requestCharge, '')::DOUBLE AS request_charge,
    nullif(properties.requestLength, '')::BIGINT AS request_length,
    nullif(properties.responseLength, '')::BIGINT AS response_length,
    nullif(properties.clientIpAddress, '') AS client_ip,
    nullif(properties.userAgent, '') AS user_agent,
    lower(nullif(properties.aadPrincipalId, '')) AS principal_id,
    nullif(properties.aadAppliedRoleAssignmentId, '') AS role_assignment_id,
    nullif(properties.authTokenType, '') AS auth_token_type,
    nullif(properties.keyType, '') AS key_type,
    nullif(properties.connectionMode, '') AS connection_mode,
    nullif(properties.databaseName, '') AS database_name,
    nullif(properties.collectionName, '') AS collection_name,
    nullif(properties.requestResourceType, '') AS request_resource_type,
    nullif(properties.requestResourceId, '') AS request_resource_id,
    nullif(properties.partitionId, '') AS partition_id,
    nullif(properties.activityId, '') AS activity_id,
    nullif(properties.resourceTokenPermissionId, '') AS resource_token_permission_id,
    nullif(properties.resourceTokenPermissionMode, '') AS resource_token_permission_mode,
    nullif(properties.resourceTokenUserRid, '') AS resource_token_user_rid,
    NULL AS level,
    0 AS batch_id
FROM read_json(
    $1,
    format = 'newline_delimited',
    columns = {
        "time": 'VARCHAR',
        resourceId: 'VARCHAR',
        category: 'VARCHAR',
        operationName: 'VARCHAR',
        properties: 'STRUCT(activityId VARCHAR, requestResourceType VARCHAR, requestResourceId VARCHAR,
            statusCode VARCHAR, duration VARCHAR, userAgent VARCHAR, clientIpAddress VARCHAR,
            requestCharge VARCHAR, requestLength VARCHAR, responseLength VARCHAR,
            resourceTokenPermissionId VARCHAR, resourceTokenPermissionMode VARCHAR, resourceTokenUserRid VARCHAR,
            region VARCHAR, partitionId VARCHAR, aadPrincipalId VARCHAR, aadAppliedRoleAssignmentId VARCHAR,
            authTokenType VARCHAR, keyType VARCHAR, connectionMode VARCHAR, subscriptionId VARCHAR,
            databaseName VARCHAR, collectionName VARCHAR)'
    }
)
WHERE category = 'DataPlaneRequests'
