-- id: diagnostic_setting_removed
-- title: Diagnostic setting deleted or a watched log turned off
-- severity: high
-- soc2: CC7.2, CC7.3, CC4.1
-- mitre: T1562.008 Impair Defenses: Disable or Modify Cloud Logs
-- window: 0m
-- description: TokenTrail sees only what diagnostic settings send it. Deleting the setting of a Cosmos
--   DB account (or of the subscription's Activity log), or writing it with one of the logs in
--   watched_logs set to enabled = false, blinds every rule at once, and is what an intruder does
--   before the part they do not want seen. Raises each successful such change; source_silent raises
--   the silence that follows, this names who caused it.
-- remediation: Ask the caller why. Restore the setting (the same Event Hubs destination and
--   categories), then review the Activity log and the account's requests from the change until the
--   logs flowed again: anything in that gap is unseen. Restrict Microsoft.Insights/diagnosticSettings
--   write and delete to the platform team.
-- param: watched_logs = 'dataplanerequests,administrative,security,policy,auditlogs,signinlogs,noninteractiveusersigninlogs,serviceprincipalsigninlogs,managedidentitysigninlogs'
--   Comma-separated log categories (any case) that must stay enabled.
SELECT
    o.time,
    'control_changes' AS evidence_table,
    o.change_row AS row_id,
    o.caller_id AS principal_id,
    coalesce('account=' || o.account, 'subscription=' || o.subscription_id) AS entity,
    CASE WHEN o.kind = 'diagnostic_setting_delete' THEN 'diagnostic setting '
            || regexp_extract(o.resource_id, 'diagnosticsettings/([^/]+)', 1) || ' deleted'
        ELSE 'diagnostic setting ' || regexp_extract(o.resource_id, 'diagnosticsettings/([^/]+)', 1)
            || ' written with ' || array_to_string(o.disabled_logs, ', ') || ' off' END
        || ' on ' || coalesce(o.account, 'the subscription ' || o.subscription_id) || ' by '
        || coalesce(o.caller_name, o.caller_id, '?') || ' from ' || coalesce(o.caller_ip, '?') AS detail
FROM control_operations o
WHERE o.time >= $from AND o.time < $to
  AND o.succeeded
  AND (o.account IS NOT NULL OR regexp_matches(o.resource_id, '^/subscriptions/[^/]+/providers/microsoft\.insights/'))
  AND (
      o.kind = 'diagnostic_setting_delete'
      OR (o.kind = 'diagnostic_setting_write'
          AND len(list_filter(o.disabled_logs, lambda x: list_contains(string_split(lower($watched_logs), ','), lower(x)))) > 0)
  )
