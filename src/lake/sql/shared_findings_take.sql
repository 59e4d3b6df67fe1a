-- The findings of a file of another instance's (`incoming`) that are taken in, and what of
-- each: its detection facts when it is new here, or was taken in before and not raised
-- here since and the file's are later (`take_detection`); its status when the file's
-- status change is later than this one's, whoever raised it (`take_status`). A finding
-- this instance raised itself keeps its own detection facts.
CREATE OR REPLACE TEMP TABLE takes AS
SELECT * FROM (
    SELECT i.*, f.id AS local_id, f.status AS local_status, h.status_at AS held_status_at,
        f.id IS NULL OR (h.fingerprint IS NOT NULL AND i.updated_at > f.updated_at) AS take_detection,
        f.id IS NOT NULL AND coalesce(i.status_at > coalesce(f.status_at, '-infinity'::TIMESTAMPTZ), false)
            AS take_status
    FROM incoming i
    LEFT JOIN findings f ON f.fingerprint = i.fingerprint
    LEFT JOIN shared_findings_in h ON h.fingerprint = i.fingerprint AND h.updated_at = f.updated_at
)
WHERE take_detection OR take_status;
