SELECT kind, byte_offset, line, fingerprint, complete, sequence_number, event_offset,
       epoch_us(event_time)
FROM checkpoints WHERE source_id = ?
