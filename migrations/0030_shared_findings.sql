-- One list of findings across instances (src/lake/shared_findings.rs). Each instance
-- publishes the findings it raised, with their status, to the shared lake, and takes in
-- those the others published: any instance's pages list every instance's findings.

-- Findings taken in from another instance, as last taken in: `changed_at` is the finding's
-- last change there (the later of updated_at and status_at). A finding here whose own
-- last change is later was raised or changed by this instance since, and is its own again.
-- No key: a finding taken in again is deleted and inserted in one transaction.
CREATE TABLE shared_findings_in (
    fingerprint VARCHAR NOT NULL,
    instance VARCHAR NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL,
    taken_at TIMESTAMPTZ NOT NULL
);

-- A finding's last change: the later of detection's update and its status change.
CREATE MACRO finding_changed(updated, status_time) AS greatest(updated, coalesce(status_time, updated));

-- The instance a finding was taken in from, unless it changed here since (NULL: this
-- instance raised or changed it itself). Called with a findings row's columns.
CREATE MACRO taken_in_from(fp, updated, status_time) AS (
    SELECT h.instance FROM shared_findings_in h
    WHERE h.fingerprint = fp AND h.changed_at = finding_changed(updated, status_time)
);

-- The last file taken in of each other instance's findings (files are named in order).
CREATE TABLE shared_findings_read (
    instance VARCHAR NOT NULL,
    last_file VARCHAR NOT NULL
);

-- This instance's publishing: the latest change of its findings it has published.
CREATE TABLE shared_findings_out (
    published_through TIMESTAMPTZ NOT NULL,
    published_at TIMESTAMPTZ NOT NULL
);
