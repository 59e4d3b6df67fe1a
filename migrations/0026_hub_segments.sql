-- The segments of balanced partitions in the shared lake ([eventhubs.balance] shared_lake),
-- as this instance wrote or found them: each is one partition's events first_sequence ..
-- last_sequence, claimed once (create-if-absent) by the instance that wrote its files
-- (`crate::lake::segments`). Rows this instance stored in a range another instance claimed
-- (`ours = false`) are in the lake from that one: a moved partition's events read twice.
CREATE TABLE hub_segments (
    source VARCHAR NOT NULL,              -- eventhubs:<namespace>/<hub>, as rows' `source`
    partition VARCHAR NOT NULL,
    first_sequence BIGINT NOT NULL,
    last_sequence BIGINT NOT NULL,
    instance VARCHAR NOT NULL,            -- who claimed it
    ours BOOLEAN NOT NULL,
    rows BIGINT NOT NULL,                 -- rows in its files, all tables
    claim VARCHAR NOT NULL,               -- the claim's path in the shared lake
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, partition, first_sequence)
);
