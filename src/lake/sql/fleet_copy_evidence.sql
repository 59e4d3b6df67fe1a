-- After a rule over everyone's counts returned its evidence (rule_output, row_id the
-- fleet row id of the temporary cosmos_requests view): each request it names is copied
-- into fleet_requests once, and the evidence names it there.
INSERT INTO fleet_requests BY NAME
SELECT * EXCLUDE (rowid), rowid AS fleet_id, now() AS copied_at
FROM cosmos_requests
WHERE rowid IN (SELECT row_id FROM rule_output WHERE evidence_table = 'cosmos_requests')
  AND rowid NOT IN (SELECT fleet_id FROM fleet_requests WHERE fleet_id IS NOT NULL);

UPDATE rule_output SET evidence_table = 'fleet_requests' WHERE evidence_table = 'cosmos_requests';
