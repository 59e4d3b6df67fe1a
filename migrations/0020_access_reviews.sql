-- Access reviews (SOC 2 CC6.2/CC6.3): an Admin starts a review of the role assignments in
-- a scope, names its reviewers and a due date; each reviewer decides, per assignment,
-- approve, revoke (Graph's "Deny") or don't know, with a justification. `src/reviews/`
-- writes these tables; the API and the evidence pack read them.
--
-- A review and its items are written once, when it starts, and never changed. Everything
-- that happens to it afterwards (each decision, each reminder sent, its completion) is a
-- row of `access_review_log`, append-only and chained like the access log and finding
-- history (append_chain, src/store/append.rs). The `started` row carries the SHA-256 of
-- the items as they were written, so the chain vouches for them too.

CREATE SEQUENCE access_review_ids START 1;

CREATE TABLE access_reviews (
    id BIGINT PRIMARY KEY DEFAULT nextval('access_review_ids'),
    uuid VARCHAR NOT NULL UNIQUE,           -- the id an export names it by (Graph's accessReviewId)
    name VARCHAR NOT NULL,
    scope VARCHAR NOT NULL,                 -- ARM path, lower case: assignments at or under it, and above it
                                            -- when they reach into it; '/' for every one
    reviewers JSON NOT NULL,                -- [{"oid", "name"}]: who may decide (object ids)
    usage_since TIMESTAMPTZ NOT NULL,       -- the use each item shows is over [usage_since, usage_until)
    usage_until TIMESTAMPTZ NOT NULL,
    due_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    created_by VARCHAR NOT NULL,            -- name (oid, tid) as finding history writes people
    created_by_oid VARCHAR NOT NULL
);

-- One row per role assignment under review, as it was when the review started: who holds
-- it, what it grants, who granted it (the Activity log's write of it), and what its holder
-- used it for over the review's usage period.
CREATE TABLE access_review_items (
    review_id BIGINT NOT NULL,
    item_id INTEGER NOT NULL,               -- 1, 2, ... within the review
    uuid VARCHAR NOT NULL,                  -- Graph's decision item id
    plane VARCHAR NOT NULL,                 -- data (Cosmos DB data-plane role) or azure (may list keys)
    assignment_id VARCHAR NOT NULL,         -- ARM id, lower case
    account VARCHAR,
    principal_id VARCHAR NOT NULL,
    principal_name VARCHAR,
    principal_kind VARCHAR,                 -- user, service_principal, managed_identity, group, unknown
    role_definition_id VARCHAR NOT NULL,
    role_name VARCHAR,
    data_actions VARCHAR[],                 -- what the role grants (data plane)
    scope VARCHAR NOT NULL,
    granted_at TIMESTAMPTZ,                 -- the Activity log's write, else the inventory's first sight
    granted_by_oid VARCHAR,                 -- the write's caller (object id), when the log holds it
    granted_by_name VARCHAR,
    requests BIGINT NOT NULL,               -- data: successful requests it allowed; azure: key listings
    last_use TIMESTAMPTZ,
    used_actions VARCHAR[] NOT NULL,        -- data actions used (data), operations (azure)
    recommendation VARCHAR NOT NULL,        -- approve, revoke or unknown (Graph: Approve, Deny, NoInfoAvailable)
    advice VARCHAR NOT NULL,                -- why, in one sentence
    PRIMARY KEY (review_id, item_id)
);

CREATE SEQUENCE access_review_log_id START 1;

-- What happened to each review, in order, append-only and chained.
CREATE TABLE access_review_log (
    id BIGINT PRIMARY KEY DEFAULT nextval('access_review_log_id'),
    review_id BIGINT NOT NULL,
    item_id INTEGER,                        -- the item decided; NULL for the review itself
    action VARCHAR NOT NULL,                -- started, decided, reminded, completed
    decision VARCHAR,                       -- decided: Approve, Deny, DontKnow (Graph's words)
    justification VARCHAR,
    by_oid VARCHAR,                         -- who (object id); NULL for TokenTrail (reminders)
    by_name VARCHAR,
    logged_at TIMESTAMPTZ NOT NULL,
    detail JSON                             -- started: {"items", "items_sha256"}; completed: counts;
                                            -- reminded: the destinations
);

INSERT INTO append_heads VALUES ('access_review_log', 0, NULL, get_current_timestamp());

-- Each item with its latest decision (a reviewer may change theirs until the review ends;
-- every decision stays in the log).
CREATE VIEW access_review_decisions AS
WITH latest AS (
    SELECT review_id, item_id, max(id) AS id FROM access_review_log WHERE action = 'decided' GROUP BY ALL
)
SELECT i.*, l.decision, l.justification, l.by_oid AS decided_by_oid, l.by_name AS decided_by_name,
       l.logged_at AS decided_at, l.id AS decision_log_id
FROM access_review_items i
LEFT JOIN latest x ON x.review_id = i.review_id AND x.item_id = i.item_id
LEFT JOIN access_review_log l ON l.id = x.id;

-- Each review with its progress and state: completed (a `completed` row), overdue (past
-- its due date, not completed) or open.
CREATE VIEW access_review_status AS
SELECT
    r.id, r.uuid, r.name, r.scope, r.reviewers, r.usage_since, r.usage_until, r.due_at, r.created_at, r.created_by,
    (SELECT count(*) FROM access_review_items i WHERE i.review_id = r.id) AS items,
    (SELECT count(DISTINCT l.item_id) FROM access_review_log l WHERE l.review_id = r.id AND l.action = 'decided') AS decided,
    c.completed_at, c.completed_by,
    CASE WHEN c.completed_at IS NOT NULL THEN 'completed' WHEN r.due_at < get_current_timestamp() THEN 'overdue' ELSE 'open' END AS state
FROM access_reviews r
LEFT JOIN (
    SELECT review_id, min(logged_at) AS completed_at, arg_min(by_name, logged_at) AS completed_by
    FROM access_review_log WHERE action = 'completed' GROUP BY review_id
) c ON c.review_id = r.id;

-- Why `who` (an object id, lower case) may not decide each item of `review`: `own` (the
-- access is theirs) or `granted` (when they wrote the assignment: any successful write of
-- it by them in the control-plane history now, so a grant the Activity log delivered after
-- the review started counts too; else the grantor the item recorded).
CREATE MACRO review_conflicts(review, who) AS TABLE
WITH writes AS (
    SELECT resource_id, max(time) AS written_at
    FROM control_operations
    WHERE caller_id = who AND succeeded AND kind IN ('data_role_assignment_write', 'role_assignment_write')
    GROUP BY resource_id
)
SELECT
    i.item_id,
    i.principal_id = who AS own,
    coalesce(
        'you wrote this role assignment on ' || strftime(w.written_at, '%Y-%m-%d %H:%M UTC'),
        CASE WHEN i.granted_by_oid = who
             THEN 'you granted this access' || coalesce(' on ' || strftime(i.granted_at, '%Y-%m-%d %H:%M UTC'), '') END
    ) AS granted
FROM access_review_items i
LEFT JOIN writes w ON w.resource_id = i.assignment_id
WHERE i.review_id = review;
