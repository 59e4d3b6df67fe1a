-- id: container_or_database_deleted
-- title: Container or database deleted, or server-side script written
-- severity: high
-- soc2: CC7.2, CC8.1, A1.2
-- mitre: T1485 Data Destruction
-- window: 0m
-- description: Applications read and write documents; deleting a whole container (collection) or
--   database, or writing the stored procedures, triggers and user-defined functions that run
--   inside Cosmos DB with the container's full access, is administration, and rare on the data
--   plane. One such request is enough: a dropped container takes every document with it, and a
--   planted trigger runs on every write. Raises each Delete of a Collection or Database resource,
--   and each Create, Replace, Upsert or Delete of a StoredProcedure, Trigger or
--   UserDefinedFunction, whatever its status (a denied attempt says what the caller wanted), except
--   404 (nothing there) and 409 (an application creating its scripts if they do not exist yet, at
--   every start). One finding per caller and account.
-- remediation: Ask the owner of the principal (or of the key client) whether it was planned. If not,
--   disable the principal or rotate the account keys, restore a deleted container from continuous
--   backup (point in time before the delete), and review the body of every script written.
SELECT
    r.time,
    'cosmos_requests' AS evidence_table,
    r.rowid AS row_id,
    r.principal_id,
    'account=' || coalesce(r.account, '') || CASE WHEN r.principal_id IS NULL THEN ' ip=' || coalesce(r.client_ip, '') ELSE '' END
        AS entity,
    r.operation || ' of ' || CASE lower(r.request_resource_type)
            WHEN 'collection' THEN 'container '
            WHEN 'database' THEN 'database '
            ELSE lower(r.request_resource_type) || ' '
        END
        || coalesce(nullif(r.request_resource_id, ''), r.database_name || coalesce('/' || r.collection_name, ''), '?')
        || ' on ' || coalesce(r.account, '?') || ' from ' || coalesce(r.client_ip, '?')
        || CASE WHEN r.principal_id IS NULL THEN ' with ' || coalesce(r.auth_token_type, 'a key') ELSE '' END
        || ' (status ' || coalesce(r.status_code::VARCHAR, '?') || CASE
            WHEN r.status_code IN (401, 403) THEN ', denied: an attempt)'
            ELSE ')' END AS detail
FROM cosmos_requests r
WHERE r.time >= $from AND r.time < $to
  AND coalesce(r.status_code, 0) NOT IN (404, 409)
  AND (
      (r.operation = 'Delete' AND lower(r.request_resource_type) IN ('collection', 'database'))
      OR (r.operation IN ('Create', 'Replace', 'Upsert', 'Delete')
          AND lower(r.request_resource_type) IN ('storedprocedure', 'trigger', 'userdefinedfunction'))
  )
