-- Synthetic history for benches/rules.rs: $signins sign-ins and $requests Cosmos DB requests
-- of $principals principals (70% users, 20% service principals, 10% managed identities),
-- spread evenly over [$start, $start + $span) microseconds, in ingest batch $batch. Each
-- principal has a home country and three addresses it signs in from and sends requests from;
-- managed identities sign in without an address and call from 10.x. 2% of requests use an
-- account key, 0.2% are denied, 3% of sign-ins fail, 0.5% are rated medium risk.

INSERT INTO signins (
    time, kind, category, signin_id, principal_id, principal_name, app_id, ip_address, country, city,
    latitude, longitude, error_code, risk_level, risk_level_aggregated, risk_state, conditional_access_status, batch_id
)
SELECT
    make_timestamp($start + i * ($span // $signins))::TIMESTAMPTZ,
    CASE WHEN p % 10 < 7 THEN 'user_noninteractive' WHEN p % 10 < 9 THEN 'service_principal' ELSE 'managed_identity' END,
    CASE WHEN p % 10 < 7 THEN 'NonInteractiveUserSignInLogs' WHEN p % 10 < 9 THEN 'ServicePrincipalSignInLogs'
         ELSE 'ManagedIdentitySignInLogs' END,
    'signin-' || $batch || '-' || i,
    printf('%08x-0000-4000-8000-%012x', p, p),
    'principal-' || p,
    'app-' || (p % 50),
    CASE WHEN p % 10 = 9 THEN NULL ELSE printf('%d.%d.%d.%d', 20 + p % 200, (p // 200) % 256, h % 3, 7) END,
    ['US', 'GB', 'DE', 'NL', 'IN'][1 + p % 5],
    ['New York', 'London', 'Berlin', 'Amsterdam', 'Bengaluru'][1 + p % 5],
    CASE WHEN p % 10 = 9 THEN 0 ELSE [40.71, 51.51, 52.52, 52.37, 12.97][1 + p % 5] END,
    CASE WHEN p % 10 = 9 THEN 0 ELSE [-74.01, -0.13, 13.40, 4.90, 77.59][1 + p % 5] END,
    CASE WHEN h % 100 < 3 THEN 50126 ELSE 0 END,
    CASE WHEN h % 1000 < 5 THEN 'medium' ELSE 'none' END,
    CASE WHEN h % 1000 < 5 THEN 'medium' ELSE 'none' END,
    CASE WHEN h % 1000 < 5 THEN 'atRisk' ELSE 'none' END,
    'success',
    $batch
FROM (SELECT i, hash(i * 7 + $batch) AS h, (hash(i + 1000 * $batch) % $principals)::BIGINT AS p FROM range($signins) t(i));

INSERT INTO cosmos_requests (
    time, account, operation, status_code, duration_ms, request_charge, request_length, response_length, client_ip,
    user_agent, principal_id, auth_token_type, key_type, database_name, collection_name, request_resource_type,
    batch_id
)
SELECT
    make_timestamp($start + i * ($span // $requests))::TIMESTAMPTZ,
    'account-' || (p % 5),
    ['Read', 'Query', 'ReadFeed', 'Create', 'Upsert', 'Replace', 'Delete', 'Patch'][1 + (h % 8)::INTEGER],
    CASE WHEN h % 1000 < 12 THEN 429 WHEN h % 1000 < 14 THEN 403 ELSE 200 END,
    (h % 40)::DOUBLE,
    (h % 50)::DOUBLE,
    (h % 1000)::BIGINT,
    ((h // 7) % 40000)::BIGINT,
    CASE
        WHEN p % 10 = 9 THEN printf('10.%d.%d.%d', p % 4, (p // 4) % 256, 9)
        ELSE printf('%d.%d.%d.%d', 20 + p % 200, (p // 200) % 256, (h // 3) % 3, 7)
    END,
    'azsdk-sdk-' || (p % 20) || '/4.5.' || (p % 3) || ' Python/3.11',
    CASE WHEN h % 100 < 2 THEN NULL ELSE printf('%08x-0000-4000-8000-%012x', p, p) END,
    CASE WHEN h % 100 < 2 THEN 'PrimaryMasterKey' ELSE 'AADToken' END,
    CASE WHEN h % 100 < 2 THEN 'PrimaryMasterKey' END,
    'db-' || (p % 3),
    'coll-' || ((p + (h // 11) % 3) % 20),
    'Document',
    $batch
FROM (SELECT i, hash(i * 13 + $batch) AS h, (hash(i * 3 + 1000 * $batch) % $principals)::BIGINT AS p FROM range($requests) t(i));

INSERT INTO ingest_batches VALUES ($batch, get_current_timestamp(), 'bench', 'synthetic', $requests, $signins, 0, 0);
