-- id: source_reset
-- title: An event stream started again, or lost events before they were read
-- severity: high
-- soc2: CC7.2, CC4.1
-- mitre: T1562.008 Impair Defenses: Disable or Modify Cloud Logs
-- window: 0m
-- description: The Event Hubs source found a partition whose numbering began again below
--   what TokenTrail had stored (the event hub was deleted and created again, or the
--   emulator restarted), or whose events expired by retention before TokenTrail read
--   them. Without this check the new events up to the old position would have been
--   skipped without a trace. Each occurrence is a `TokenTrailSourceReset` record in
--   raw_events, committed with the checkpoint that moved the partition; its detail says
--   what was found and where reading went on (`on_reset` in [eventhubs]).
-- remediation: Find out why the hub was recreated (Activity log: who deleted the event
--   hub) or why TokenTrail fell behind by more than the retention; events sent before the
--   reset that were never read may be missing: note the gap for the auditor, and backfill
--   from the storage archive if diagnostic settings also write one.
SELECT
    time,
    'raw_events' AS evidence_table,
    rowid AS row_id,
    NULL AS principal_id,
    'stream=' || coalesce(record->>'$.properties.stream', source) AS entity,
    record->>'$.properties.detail' AS detail
FROM raw_events
WHERE category = 'TokenTrailSourceReset' AND time >= $from AND time < $to
