-- After a rule over everyone's counts returned its evidence (rule_output, row_id the
-- fleet row id of the temporary cosmos_requests view over fleet_requests): the requests
-- it names are kept for good, and the evidence names them there.
UPDATE fleet_requests SET kept = true
WHERE NOT kept AND fleet_id IN (SELECT row_id FROM rule_output WHERE evidence_table = 'cosmos_requests');

UPDATE rule_output SET evidence_table = 'fleet_requests' WHERE evidence_table = 'cosmos_requests';
