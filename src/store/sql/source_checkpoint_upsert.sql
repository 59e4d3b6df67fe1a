INSERT OR REPLACE INTO source_checkpoints VALUES
(?, ?, ?, ?, ?, ?, ?, ?, ?, make_timestamp(?::BIGINT)::TIMESTAMPTZ, make_timestamp(?::BIGINT)::TIMESTAMPTZ, ?)
