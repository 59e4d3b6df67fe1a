-- Finding history joins the integrity chain of append-only tables (migration 9,
-- src/evidence/append.rs): each row gets an `id` from a sequence, first as in access_log,
-- and every transaction that appends rows (detection raising, withdrawing, reopening;
-- people acknowledging, resolving, suppressing) links them in append_chain.
--
-- DuckDB cannot add a column whose default is nextval(), so the table is made again with
-- the same columns after `id`; the rows already there get ids 1, 2, ... in the order they
-- were written (changed_at, then rowid), and the sequence goes on after them. No view
-- reads finding_history. Those rows are chained when the service (detection) next starts.
CREATE SEQUENCE finding_history_id START 1;

CREATE TEMP TABLE finding_history_before AS
SELECT row_number() OVER (ORDER BY changed_at, rowid) AS id, finding_id, changed_at, changed_by, from_status, to_status, comment
FROM finding_history;

DROP TABLE finding_history;

-- Every status change, by people and by TokenTrail (raised, withdrawn, reopened); `id`
-- orders them and chains them (append_chain).
CREATE TABLE finding_history (
    id BIGINT PRIMARY KEY DEFAULT nextval('finding_history_id'),
    finding_id BIGINT NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL,        -- wall clock
    changed_by VARCHAR NOT NULL,            -- who; `tokentrail` for the engine
    from_status VARCHAR,
    to_status VARCHAR NOT NULL,
    comment VARCHAR
);

INSERT INTO finding_history (id, finding_id, changed_at, changed_by, from_status, to_status, comment)
SELECT id, finding_id, changed_at, changed_by, from_status, to_status, comment
FROM finding_history_before
ORDER BY id;

-- The sequence past the ids just given (DuckDB has no setval): one nextval per row.
SELECT max(nextval('finding_history_id')) FROM finding_history_before;

DROP TABLE finding_history_before;

-- The head of each chained table: the last link written. Every link updates its row in
-- the transaction that writes it, so two transactions linking the same table cannot both
-- commit (the second meets DuckDB's write conflict and is run again), and `verify` can
-- tell links deleted from the end of append_chain, or all of them, from none written yet.
CREATE TABLE append_heads (
    table_name VARCHAR PRIMARY KEY,
    link BIGINT NOT NULL,                   -- the last link written; 0: none yet
    last_id BIGINT,                         -- the last id it covers
    updated_at TIMESTAMPTZ NOT NULL
);

INSERT INTO append_heads
SELECT t.table_name, coalesce(max(c.link), 0), max(c.last_id), get_current_timestamp()
FROM (VALUES ('access_log'), ('finding_history')) t(table_name)
LEFT JOIN append_chain c USING (table_name)
GROUP BY t.table_name;
