-- id: key_auth_access
-- title: Data accessed with an account key by a new client
-- severity: medium
-- soc2: CC6.1, CC6.2
-- mitre: T1078.004 Valid Accounts: Cloud Accounts
-- window: 0m
-- description: A request signed with an account key (or a resource token) carries no identity:
--   nobody can say who made it. Raises the key-based requests of a client (account and source
--   address) that had not used a key before, in its first first_hours (once the first days of
--   history are learned): a legacy client that goes on using its key every day is one finding
--   about its start, not a page a day. Every key-based request on the accounts listed in
--   entra_only_accounts is raised.
-- remediation: Find out who holds the key. If the client is not known, rotate the account keys
--   (regenerate primary and secondary) and review what it read or changed. Move clients to
--   Microsoft Entra ID and set disableLocalAuth on the account.
-- param: learning_days = 3
--   Days of history during which key clients are learned rather than raised.
-- param: first_hours = 1
--   Hours from a new client's first key-based request whose requests are raised.
-- param: entra_only_accounts = ''
--   Comma-separated accounts whose policy is Entra ID only: every key-based request is raised.
SELECT
    r.time,
    'cosmos_requests' AS evidence_table,
    r.rowid AS row_id,
    NULL AS principal_id,
    'account=' || coalesce(r.account, '') || ' ip=' || coalesce(r.client_ip, '') AS entity,
    coalesce(r.auth_token_type, 'key') || ' ' || coalesce(r.operation, '') || ' on '
        || coalesce(r.database_name || '/' || r.collection_name, r.account) || ' from ' || coalesce(r.client_ip, '?')
        || CASE WHEN f.first_time >= utc_add((SELECT history_start FROM data_clock), to_days($learning_days))
            THEN ' (a client first seen using a key at ' || strftime(f.first_time::TIMESTAMP, '%Y-%m-%d %H:%M') || ' UTC)'
            ELSE ' (the account is Entra ID only)' END AS detail
FROM cosmos_requests r
JOIN first_seen f ON f.subject = coalesce(r.account, '') AND f.facet = 'key_client' AND f.value = coalesce(r.client_ip, '')
WHERE r.time >= $from AND r.time < $to
  AND r.principal_id IS NULL
  AND (
      (f.first_time >= utc_add((SELECT history_start FROM data_clock), to_days($learning_days))
       AND r.time < utc_add(f.first_time, to_hours($first_hours)))
      OR list_contains(string_split($entra_only_accounts, ','), r.account)
  )
