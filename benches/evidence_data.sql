-- Synthetic detection results and tool use for benches/evidence.rs, over [$start, $start + $span)
-- microseconds: $findings findings (10 evidence events each, some acknowledged and resolved
-- with their history) and $calls access_log rows.

INSERT INTO findings
SELECT
    i,
    'fp-' || i,
    ['password_spray', 'key_auth_access', 'impossible_travel', 'mass_delete'][1 + i % 4],
    'Synthetic finding ' || i,
    ['low', 'medium', 'high', 'critical'][1 + i % 4],
    printf('%08x-0000-4000-8000-%012x', i % 2000, i % 2000),
    'ip=20.1.' || (i % 250) || '.7',
    make_timestamp($start + (i * ($span // $findings)))::TIMESTAMPTZ,
    make_timestamp($start + (i * ($span // $findings)) + 600000000)::TIMESTAMPTZ,
    10,
    [],
    'synthetic',
    CASE WHEN i % 3 = 0 THEN 'resolved' WHEN i % 3 = 1 THEN 'acknowledged' ELSE 'open' END,
    CASE WHEN i % 3 < 2 THEN 'Responder ' || (i % 7) END,
    CASE WHEN i % 3 < 2 THEN make_timestamp($start + (i * ($span // $findings)) + 3600000000)::TIMESTAMPTZ END,
    NULL,
    make_timestamp($start + (i * ($span // $findings)) + 60000000)::TIMESTAMPTZ,
    make_timestamp($start + (i * ($span // $findings)) + 60000000)::TIMESTAMPTZ
FROM range(1, $findings + 1) t(i);

INSERT INTO finding_evidence
SELECT f.fingerprint, f.rule_id, 'cosmos_requests', j, utc_add(f.first_seen, to_seconds(j * 60)), NULL, f.principal_id, f.entity, 'synthetic'
FROM findings f, range(10) t(j);

INSERT INTO finding_history (finding_id, changed_at, changed_by, from_status, to_status, comment)
SELECT id, created_at, 'tokentrail', NULL, 'open', 'raised' FROM findings
UNION ALL
SELECT id, utc_add(created_at, INTERVAL 30 MINUTE), status_by, 'open', 'acknowledged', 'on it' FROM findings WHERE status IN ('acknowledged', 'resolved')
UNION ALL
SELECT id, status_at, status_by, 'acknowledged', 'resolved', 'fixed' FROM findings WHERE status = 'resolved';

INSERT INTO access_log (time, oid, tid, name, role, method, endpoint, path, parameters, status, rows, duration_ms, client_ip, user_agent, auth)
SELECT
    make_timestamp($start + i * ($span // $calls))::TIMESTAMPTZ,
    'oid-' || (i % 40), 'tid-1', 'User ' || (i % 40), 'TokenTrail.Auditor', 'GET',
    ['/api/findings', '/api/findings/{id}', '/api/search/requests', '/api/sql'][1 + i % 4],
    '/api/findings', '{"limit":"50"}', CASE WHEN i % 50 = 0 THEN 403 ELSE 200 END, 50, 12.5, '10.0.0.' || (i % 200), 'Mozilla/5.0', 'session'
FROM range($calls) t(i);
