-- One UI across instances (src/lake/fleet.rs, src/lake/view.rs). Every instance now keeps a
-- copy of every instance's recent requests in fleet_requests (not only the rules lease
-- holder), so a new holder's first pass finds them there, and the search and principal
-- pages answer with the requests other instances stored beside this one's own.
-- `here`: this instance's DuckDB holds the same event's row too (its own segment, or a
-- range read twice when a partition moved), so a page reads it from there and not twice.
ALTER TABLE fleet_requests ADD COLUMN here BOOLEAN DEFAULT false;

UPDATE fleet_requests f SET here = true
FROM cosmos_requests c
WHERE c.source = f.source AND c.partition = f.partition AND c.sequence_number = f.sequence_number
    AND c.record_index = f.record_index;
