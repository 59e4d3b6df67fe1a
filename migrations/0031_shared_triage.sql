-- One status per finding across instances (src/lake/shared_findings.rs). A finding's
-- detection facts (count, times, summary) stay those of the instance that raised it,
-- but its status is the latest anyone set, on any instance: a finding taken in from an
-- instance that is gone can still be triaged.

-- What was taken in, per part: `updated_at` is the raiser's detection change, `status_at`
-- the status change taken in (NULL: none taken in). A finding here whose `updated_at`
-- differs was raised here since; one whose `status_at` differs was triaged here since.
ALTER TABLE shared_findings_in ADD COLUMN updated_at TIMESTAMPTZ;
ALTER TABLE shared_findings_in ADD COLUMN status_at TIMESTAMPTZ;

-- Those not changed here since: both parts as taken in.
UPDATE shared_findings_in h SET updated_at = f.updated_at, status_at = f.status_at
FROM findings f
WHERE f.fingerprint = h.fingerprint AND h.changed_at = finding_changed(f.updated_at, f.status_at);

-- Those triaged here since, not raised here since (detection's last change is the one
-- taken in): the detection facts as taken in, the status this instance's own.
UPDATE shared_findings_in h SET updated_at = f.updated_at
FROM findings f
WHERE f.fingerprint = h.fingerprint AND h.updated_at IS NULL AND h.changed_at = f.updated_at;

-- Each part now has its own time; the later of the two is no longer read.
ALTER TABLE shared_findings_in DROP COLUMN changed_at;

-- The instance a finding's detection facts were taken in from, unless it was raised here
-- since (NULL: this instance raised it itself). Called with a findings row's columns.
CREATE OR REPLACE MACRO taken_in_from(fp, updated) AS (
    SELECT h.instance FROM shared_findings_in h WHERE h.fingerprint = fp AND h.updated_at = updated
);

-- Whether a finding is as it was taken in: neither raised nor triaged here since.
CREATE MACRO as_taken_in(fp, updated, status_time) AS EXISTS (
    SELECT 1 FROM shared_findings_in h
    WHERE h.fingerprint = fp AND h.updated_at = updated AND h.status_at IS NOT DISTINCT FROM status_time
);
