-- id: listkeys_then_key_access
-- title: Account keys listed, then used by a new client
-- severity: high
-- soc2: CC6.1, CC6.2, CC7.2
-- mitre: T1552 Unsecured Credentials
-- window: 1d
-- description: A request signed with an account key carries no identity, but the Activity log says
--   who read the keys: listKeys, readonlykeys or listConnectionStrings on the account. Raises the
--   key-based requests of a client (account and source address) first seen using a key within
--   max_hours after a successful key listing on its account (once the first learning_days of history
--   are learned), naming the identity that listed them: the latest listing before the client's first
--   key request. The listing itself is evidence too. Listings by the identities in rotation_ids (a
--   job that rotates the keys into a vault) are raised only when the new client uses the address the
--   keys were listed from. A client whose first request used a read-write key is not attributed to
--   a listing of the read-only keys.
-- remediation: Ask the identity that listed the keys why, and who received them. If nobody knows the
--   client, regenerate both account keys, review what the client read or changed, remove listKeys
--   from roles that do not need it (Cosmos DB Operator cannot read keys), and set disableLocalAuth
--   on the account once its clients use Microsoft Entra ID.
-- param: max_hours = 24
--   Hours after a key listing in which a new key client is attributed to it (at most 24).
-- param: learning_days = 3
--   Days of history during which key clients are learned rather than raised.
-- param: first_hours = 1
--   Hours from a new client's first key-based request whose requests are raised.
-- param: rotation_ids = ''
--   Comma-separated object ids of the identities that list keys to rotate them.
WITH listings AS (
    SELECT change_row, time, account, caller_id, caller_name, caller_ip, kind
    FROM control_operations
    WHERE succeeded AND kind IN ('list_keys', 'read_only_keys', 'list_connection_strings') AND account IS NOT NULL
),
-- read-only keys sign only reads: a client using a read-write key did not get it there
full_listings AS (
    SELECT * FROM listings WHERE kind <> 'read_only_keys'
),
fresh AS MATERIALIZED (
    -- key clients first seen in the period's reach (its requests, or a listing's max_hours), once
    -- learned, with the kind of key their first request used
    SELECT f.subject AS account, f.value AS client_ip, f.first_time,
           coalesce(r.key_type, r.auth_token_type, '') ILIKE '%readonly%' AS read_only_key
    FROM first_seen f
    JOIN cosmos_requests r ON r.time = f.first_time AND r.account = f.subject AND r.client_ip = f.value
        AND r.principal_id IS NULL
    WHERE f.facet = 'key_client'
      AND f.first_time >= utc_add($from, - to_hours($first_hours)) AND f.first_time < utc_add($to, to_hours($max_hours))
      AND f.first_time >= utc_add((SELECT history_start FROM data_clock), to_days($learning_days))
),
chosen AS (
    -- the latest listing before the client's first key request that could have given it its key
    SELECT DISTINCT c.account, c.client_ip, c.first_time,
           CASE WHEN c.read_only_key THEN a.change_row ELSE w.change_row END AS change_row
    FROM fresh c
    ASOF LEFT JOIN listings a ON a.account = c.account AND c.first_time >= a.time
    ASOF LEFT JOIN full_listings w ON w.account = c.account AND c.first_time >= w.time
),
clients AS MATERIALIZED (
    SELECT c.account, c.client_ip, c.first_time,
           l.change_row, l.time AS listed_at, l.caller_id, l.caller_name, l.caller_ip, l.kind
    FROM chosen c
    JOIN listings l USING (change_row)
    WHERE c.first_time < utc_add(l.time, to_hours($max_hours))
      AND (NOT list_contains(string_split($rotation_ids, ','), l.caller_id) OR c.client_ip = l.caller_ip)
),
described AS (
    SELECT *,
        'account=' || account || ' ip=' || client_ip AS entity,
        replace(kind, '_', ' ') || ' on ' || account || ' by ' || coalesce(caller_name, caller_id, '?') || ' from '
            || coalesce(caller_ip, '?') || ' at ' || strftime(listed_at::TIMESTAMP, '%Y-%m-%d %H:%M') || ' UTC' AS listing
    FROM clients
)
SELECT
    r.time,
    'cosmos_requests' AS evidence_table,
    r.rowid AS row_id,
    c.caller_id AS principal_id,
    c.entity,
    coalesce(r.auth_token_type, 'key') || ' ' || coalesce(r.operation, '') || ' on '
        || coalesce(r.database_name || '/' || r.collection_name, r.account) || ' from ' || r.client_ip
        || ', a key client first seen at ' || strftime(c.first_time::TIMESTAMP, '%Y-%m-%d %H:%M') || ' UTC, after '
        || c.listing || CASE WHEN r.client_ip = c.caller_ip THEN ' (the same address)' ELSE '' END AS detail
FROM described c
JOIN cosmos_requests r ON r.account = c.account AND r.client_ip = c.client_ip
WHERE r.time >= $from AND r.time < $to
  AND r.time >= c.first_time AND r.time < utc_add(c.first_time, to_hours($first_hours))
  AND r.principal_id IS NULL
UNION ALL
SELECT
    listed_at, 'control_changes', change_row, caller_id, entity,
    listing || ', then a new key client from ' || client_ip || ' at ' || strftime(first_time::TIMESTAMP, '%Y-%m-%d %H:%M') || ' UTC'
FROM described
WHERE listed_at >= $from AND listed_at < $to
