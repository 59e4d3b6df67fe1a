-- The requests to (re)correlate: the new ones with a principal, and the already absorbed
-- requests of principals with a new sign-in at or before them ($since: the earliest such
-- sign-in; $lo: the last batch absorbed before this one). Their old rows are removed.

CREATE OR REPLACE TEMP TABLE pending AS
SELECT row_id AS request_row, time, principal_id, account, client_ip, operation, status_code
FROM new_requests
WHERE principal_id IS NOT NULL
UNION ALL
SELECT r.rowid, r.time, r.principal_id, r.account, r.client_ip, r.operation, r.status_code
FROM cosmos_requests r
JOIN late_signins l ON r.principal_id = l.principal_id AND r.time >= l.since
WHERE r.time >= $since AND r.batch_id <= $lo;

DELETE FROM request_signins
USING late_signins l
WHERE request_signins.principal_id = l.principal_id
  AND request_signins.time >= l.since
  AND request_signins.time >= $since;
