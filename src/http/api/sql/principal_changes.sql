-- Changes in the Azure Activity log and the Entra ID AuditLogs (`identity_changes`,
-- migrations/0013_changes.sql) that one principal made or that were made to it: $1 the
-- principal id, $2 'made' (it is the actor) or 'received' (it is the target), $3 how many.
-- All of them, newest first, not only the page's period: a role granted months ago is why
-- today's access works. `total` counts every match. Ids are stored lower-cased (ingest and
-- src/record/change.rs lower them), so only $1 is.
WITH found AS (
    SELECT c.*, count(*) OVER () AS total
    FROM identity_changes c
    WHERE CASE WHEN $2 = 'made' THEN c.actor_id ELSE c.target_id END = lower($1)
    ORDER BY c.time DESC, c.source, c.change_row DESC
    LIMIT $3
),
-- A name for each other principal on the page: its latest sign-in name, else what the
-- audit log called it as a target or as an actor.
others AS (
    SELECT DISTINCT id FROM (
        SELECT actor_id AS id FROM found UNION ALL SELECT target_id FROM found
    ) WHERE id IS NOT NULL
),
names AS (
    SELECT id, arg_min(name, rank) AS name FROM (
        SELECT principal_id AS id, arg_max(principal_name, time) AS name, 1 AS rank
        FROM signins
        WHERE principal_id IN (SELECT id FROM others) AND principal_name IS NOT NULL
        GROUP BY 1
        UNION ALL
        SELECT target_id, arg_max(target_name, time), 2
        FROM directory_changes
        WHERE target_id IN (SELECT id FROM others) AND target_name IS NOT NULL
        GROUP BY 1
        UNION ALL
        SELECT actor_id, arg_max(actor_name, time), 3
        FROM identity_changes
        WHERE actor_id IN (SELECT id FROM others) AND actor_name IS NOT NULL
        GROUP BY 1
    ) GROUP BY id
)
SELECT
    f.source,
    f.change_row,
    f.time,
    f.kind,
    f.operation,
    f.result,
    f.succeeded,
    f.actor_id,
    coalesce(f.actor_name, an.name) AS actor_name,
    f.actor_ip,
    f.target_id,
    -- The target principal's name; an Activity log change names its account instead (`account`).
    CASE WHEN f.source = 'directory_changes' THEN coalesce(f.target_name, tn.name) ELSE tn.name END AS target_name,
    CASE WHEN f.source = 'control_changes' THEN f.target_name END AS account,
    CASE WHEN f.source = 'control_changes' THEN f.role END AS role,
    r.role_name,
    f.scope,
    CASE WHEN f.source = 'directory_changes' THEN f.role END AS group_id,
    CASE WHEN f.source = 'directory_changes' THEN (
        SELECT coalesce(any_value(m->>'new'), any_value(m->>'old'))
        FROM (SELECT unnest(CAST(d.modified AS JSON[])) AS m)
        WHERE m->>'name' = 'Group.DisplayName'
    ) END AS group_name,
    CASE WHEN f.source = 'directory_changes' THEN (
        SELECT coalesce(any_value(m->>'new'), any_value(m->>'old'))
        FROM (SELECT unnest(CAST(d.modified AS JSON[])) AS m)
        WHERE m->>'name' = 'AppRole.Value'
    ) END AS app_role,
    f.raw_row,
    f.total
FROM found f
LEFT JOIN cosmos_roles r ON f.source = 'control_changes' AND r.role_definition_id = f.role
LEFT JOIN directory_changes d ON f.source = 'directory_changes' AND d.rowid = f.change_row
LEFT JOIN names an ON an.id = f.actor_id
LEFT JOIN names tn ON tn.id = f.target_id
ORDER BY f.time DESC, f.source, f.change_row DESC
