-- id: balanced_hub_signins
-- title: Sign-ins arrive on a hub whose partitions the instances share
-- severity: medium
-- soc2: CC7.2, CC4.1
-- mitre: T1562.008 Impair Defenses: Disable or Modify Cloud Logs
-- window: 0m
-- description: A configuration finding. The hub is `balanced` ([eventhubs.balance]): its
--   partitions are shared among the TokenTrail instances of a consumer group, so each
--   instance stores only part of what it carries. Sign-ins there are missing from every
--   other instance's correlation: a data-plane request whose token was issued by a sign-in
--   another instance stored looks like it has no sign-in (no_prior_signin,
--   ip_not_in_signins), and sprays and impossible travel are seen in part. Sign-in logs
--   belong on a `broadcast` hub, which every instance reads whole.
-- remediation: Send the Entra ID sign-in categories (SignInLogs, NonInteractiveUserSignInLogs,
--   ServicePrincipalSignInLogs, ManagedIdentitySignInLogs) to their own event hub and list
--   it in eventhubs.hubs only (not in eventhubs.balance.hubs), or take this hub out of
--   eventhubs.balance.hubs; findings of the sign-in rules raised meanwhile may be wrong.
SELECT
    s.time,
    'signins' AS evidence_table,
    s.rowid AS row_id,
    NULL AS principal_id,
    'hub=' || r.hub AS entity,
    'a ' || s.category || ' record arrived on the balanced hub ' || r.hub
        || ': each instance stores only part of the sign-ins sent there' AS detail
FROM signins s
JOIN hub_roles r ON r.source = s.source AND r.role = 'balanced'
WHERE s.time >= $from AND s.time < $to
