-- The role of each event hub `serve` reads, as configured when it last started:
-- `broadcast` (this instance reads every partition) or `balanced` (the instances of a
-- consumer group share the partitions, [eventhubs.balance]). The `balanced_hub_signins`
-- rule reads it: a balanced hub that carries sign-ins gives each instance only part of them.
CREATE TABLE hub_roles (
    source VARCHAR PRIMARY KEY,   -- eventhubs:<namespace>/<hub>, as rows' `source`
    hub VARCHAR NOT NULL,
    role VARCHAR NOT NULL,        -- broadcast | balanced
    updated_at TIMESTAMPTZ NOT NULL
);
