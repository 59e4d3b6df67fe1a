-- The service's own audit trail joins the integrity chain (src/evidence/append.rs):
-- each transaction that appends rows to an append-only table (access_log; finding
-- history and review decisions later) stores a link over the ids it added, chained to
-- the table's previous link, so `tokentrail verify` names the first link whose rows
-- changed, were deleted or were inserted.
CREATE TABLE append_chain (
    table_name VARCHAR NOT NULL,
    link BIGINT NOT NULL,              -- 1, 2, ... per table
    first_id BIGINT NOT NULL,          -- the link covers ids first_id..last_id, all of them
    last_id BIGINT NOT NULL,
    rows BIGINT NOT NULL,
    version INTEGER NOT NULL,          -- encoding version of the digests
    rows_digest VARCHAR NOT NULL,      -- SHA-256 (hex) over the rows, their bounds and count
    chain_digest VARCHAR NOT NULL,     -- SHA-256 (hex) over the previous link's chain digest and this link
    committed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (table_name, link)
);

-- A console query writes a row before it runs (status 102), and its outcome after;
-- both carry the call's request id.
ALTER TABLE access_log ADD COLUMN request_id VARCHAR;
