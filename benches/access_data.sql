-- Synthetic entitlements for benches/access.rs: one inventory run at $start and $assignments
-- data-plane role assignments of the $principals principals of benches/rules_data.sql (the
-- account their requests go to), Built-in Data Reader or Contributor, scoped to the account, a
-- database or a container, one in ten to a principal that sends nothing.

INSERT INTO inventory_runs VALUES (1, make_timestamp($start)::TIMESTAMPTZ, make_timestamp($start)::TIMESTAMPTZ, 'file', 1, 0, NULL);

INSERT INTO data_role_assignments
SELECT
    '/subscriptions/s/resourcegroups/rg/providers/microsoft.documentdb/databaseaccounts/account-' || (p % 5)
        || '/sqlroleassignments/' || i,
    'account-' || (p % 5),
    's',
    printf('%08x-0000-4000-8000-%012x', p, p),
    CASE WHEN i % 2 = 0 THEN '00000000-0000-0000-0000-000000000001' ELSE '00000000-0000-0000-0000-000000000002' END,
    '/subscriptions/s/resourcegroups/rg/providers/microsoft.documentdb/databaseaccounts/account-' || (p % 5)
        || CASE i % 3 WHEN 0 THEN '' WHEN 1 THEN '/dbs/db-' || (p % 3) ELSE '/dbs/db-' || (p % 3) || '/colls/coll-' || (p % 20) END,
    make_timestamp($start)::TIMESTAMPTZ,
    NULL,
    1
FROM (SELECT i, CASE WHEN i % 10 = 9 THEN $principals + i ELSE i % $principals END AS p FROM range($assignments) t(i));
