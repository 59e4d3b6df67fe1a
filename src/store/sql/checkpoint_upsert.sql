INSERT OR REPLACE INTO checkpoints VALUES
(?, ?, ?, ?, ?, ?, ?, ?, make_timestamp(?::BIGINT)::TIMESTAMPTZ, make_timestamp(?::BIGINT)::TIMESTAMPTZ, ?)
