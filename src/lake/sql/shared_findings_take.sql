-- The findings of a file of another instance's (`incoming`) that are taken in: those new
-- here, and those taken in before, not changed here since, whose change in the file is
-- later. A finding this instance raised or changed itself stays as it is.
CREATE OR REPLACE TEMP TABLE takes AS
SELECT i.*, f.id AS local_id, f.status AS local_status
FROM incoming i
LEFT JOIN findings f ON f.fingerprint = i.fingerprint
LEFT JOIN shared_findings_in h ON h.fingerprint = i.fingerprint
    AND h.changed_at = finding_changed(f.updated_at, f.status_at)
WHERE f.id IS NULL OR (h.fingerprint IS NOT NULL AND i.changed_at > h.changed_at);
