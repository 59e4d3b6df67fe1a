-- id: key_client_auth_failures
-- title: Burst of rejected account-key requests from one client
-- severity: medium
-- soc2: CC6.1, CC7.2
-- mitre: T1110 Brute Force
-- window: 1h
-- description: A key-based request that Cosmos DB rejects (401: the signature does not verify; 403:
--   the key may not do this, or the account is Entra ID only) carries no identity, only its client
--   (account and source address). One or two are a client that had its key rotated and was fixed
--   minutes later; many in a few minutes are a client trying keys it should not have: an old
--   key from a leak, a key from another account, or guessing. Raises each rejected key-based
--   request of a client (account and address) that had at least min_failures rejections within
--   window_minutes before or after it. Resource tokens expire by design (their clients renew them
--   on a 401) and do not count.
-- remediation: Find out whose address it is. A known application still using a rotated key needs
--   the new key (from Key Vault); an unknown one means the old key left the building: keep it
--   rotated, check the account's firewall, and move clients to Microsoft Entra ID
--   (disableLocalAuth).
-- param: min_failures = 10
--   Rejected key-based requests of one client within the window.
-- param: window_minutes = 10
--   Minutes before or after each rejection in which they are counted (at most 60).
WITH rejected AS (
    SELECT r.rowid AS row_id, r.time, r.account, r.client_ip, r.operation, r.status_code, r.auth_token_type,
           request_subject(r.principal_id, r.account, r.client_ip) AS subject
    FROM cosmos_requests r
    WHERE r.time >= utc_add($from, - to_minutes($window_minutes))
      AND r.time < utc_add($to, to_minutes($window_minutes))
      AND r.principal_id IS NULL
      -- resource tokens expire by design and their clients renew them on a 401
      AND coalesce(r.auth_token_type, '') NOT ILIKE '%resource%'
      AND r.status_code IN (401, 403)
),
scored AS (
    SELECT
        *,
        count(*) OVER (
            PARTITION BY subject ORDER BY time::TIMESTAMP
            RANGE BETWEEN to_minutes($window_minutes) PRECEDING AND to_minutes($window_minutes) FOLLOWING
        ) AS burst
    FROM rejected
)
SELECT
    time,
    'cosmos_requests' AS evidence_table,
    row_id,
    NULL AS principal_id,
    'account=' || coalesce(account, '') || ' ip=' || coalesce(client_ip, '') AS entity,
    coalesce(operation, 'request') || ' with ' || coalesce(auth_token_type, 'a key') || ' from '
        || coalesce(client_ip, '?') || ' rejected (' || status_code || '); ' || burst || ' rejections within '
        || $window_minutes || ' minutes' AS detail
FROM scored
WHERE burst >= $min_failures AND time >= $from AND time < $to
