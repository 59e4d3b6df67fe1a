-- id: local_auth_reenabled
-- title: Key authentication turned back on for a Cosmos DB account
-- severity: high
-- soc2: CC6.1, CC6.2, CC8.1
-- mitre: T1556 Modify Authentication Process
-- window: 0m
-- description: disableLocalAuth = true makes a Cosmos DB account refuse its account keys and resource
--   tokens: only Microsoft Entra ID identities, with their data-plane roles, can read or write. Turning
--   it back to false reopens the account to anyone holding a key, and key requests carry no identity.
--   Raises a successful write of the account that sets disableLocalAuth to false when the account's
--   previous setting in the Activity log was true. An account whose earlier setting TokenTrail never
--   saw is not raised: an ordinary write restates the current value.
-- remediation: Ask the caller why keys are needed again. If it was not planned, set disableLocalAuth
--   back to true, regenerate both account keys (whoever re-enabled them may have listed them), and
--   review the key-based requests since the change.
WITH writes AS (
    SELECT change_row, time, account, caller_id, caller_name, caller_ip, disable_local_auth
    FROM control_operations
    WHERE succeeded AND kind = 'account_write' AND disable_local_auth IS NOT NULL AND account IS NOT NULL
)
SELECT
    w.time,
    'control_changes' AS evidence_table,
    w.change_row AS row_id,
    w.caller_id AS principal_id,
    'account=' || w.account AS entity,
    'disableLocalAuth set to false on ' || w.account || ' by ' || coalesce(w.caller_name, w.caller_id, '?') || ' from '
        || coalesce(w.caller_ip, '?') || '; it was true since ' || strftime(p.time::TIMESTAMP, '%Y-%m-%d %H:%M')
        || ' UTC (set by ' || coalesce(p.caller_name, p.caller_id, '?') || ')' AS detail
FROM writes w
ASOF JOIN writes p ON p.account = w.account AND p.time < w.time
WHERE w.time >= $from AND w.time < $to
  AND NOT w.disable_local_auth
  AND p.disable_local_auth
