-- Every current Cosmos DB account of the inventory with the settings that decide who gets
-- in, and its key traffic over [$1, $2) from key_exposure (accounts with local auth on;
-- 0 for the others).
SELECT
    a.account, a.resource_id, a.subscription_id, a.resource_group, a.location,
    a.disable_local_auth, a.public_network_access,
    coalesce(k.key_clients, 0)::BIGINT AS key_clients,
    coalesce(k.key_requests, 0)::BIGINT AS key_requests,
    k.last_use
FROM cosmos_accounts a
LEFT JOIN key_exposure($1::TIMESTAMPTZ, $2::TIMESTAMPTZ) k ON k.resource_id = a.resource_id
WHERE a.valid_to IS NULL
ORDER BY coalesce(a.disable_local_auth, false), a.account, a.resource_id
