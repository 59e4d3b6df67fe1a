//! Partition key routing with the service's hash, so a key lands on the same partition
//! here as on a real Event Hub.
//!
//! A port of `PartitionResolver` in `azure_messaging_eventhubs` 0.16 (MIT licence), itself
//! a port of the .NET SDK's Jenkins lookup3 implementation that matches the Event Hubs
//! gateway.

/// The partition (`0..partitions`) that `key` is routed to.
pub fn partition_for_key(key: &str, partitions: u32) -> u32 {
    assert!(partitions > 0, "a hub has at least one partition");
    let hash = hash_code(key);
    ((hash as i32) % (partitions as i32)).unsigned_abs()
}

fn hash_code(key: &str) -> i16 {
    let (hash1, hash2) = lookup3(key.as_bytes(), 0, 0);
    (hash1 ^ hash2) as u16 as i16
}

fn lookup3(data: &[u8], seed1: u32, seed2: u32) -> (u32, u32) {
    fn le32(bytes: &[u8]) -> u32 {
        u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }

    let mut a = 0xDEAD_BEEF_u32.wrapping_add(data.len() as u32).wrapping_add(seed1);
    let mut b = a;
    let mut c = a.wrapping_add(seed2);

    let chunks = if data.len() > 12 { (data.len() - 1) / 12 } else { 0 };
    let mut offset = 0usize;
    for _ in 0..chunks {
        a = a.wrapping_add(le32(&data[offset..]));
        b = b.wrapping_add(le32(&data[offset + 4..]));
        c = c.wrapping_add(le32(&data[offset + 8..]));
        offset += 12;

        a = a.wrapping_sub(c);
        a ^= c.rotate_left(4);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a);
        b ^= a.rotate_left(6);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b);
        c ^= b.rotate_left(8);
        b = b.wrapping_add(a);
        a = a.wrapping_sub(c);
        a ^= c.rotate_left(16);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a);
        b ^= a.rotate_left(19);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b);
        c ^= b.rotate_left(4);
        b = b.wrapping_add(a);
    }

    let tail = &data[offset..];
    let byte = |i: usize, shift: u32| (tail[i] as u32) << shift;
    match tail.len() {
        12 => {
            a = a.wrapping_add(le32(&tail[0..]));
            b = b.wrapping_add(le32(&tail[4..]));
            c = c.wrapping_add(le32(&tail[8..]));
        }
        n @ 9..=11 => {
            if n == 11 {
                c = c.wrapping_add(byte(10, 16));
            }
            if n >= 10 {
                c = c.wrapping_add(byte(9, 8));
            }
            c = c.wrapping_add(byte(8, 0));
            b = b.wrapping_add(le32(&tail[4..]));
            a = a.wrapping_add(le32(&tail[0..]));
        }
        8 => {
            b = b.wrapping_add(le32(&tail[4..]));
            a = a.wrapping_add(le32(&tail[0..]));
        }
        n @ 5..=7 => {
            if n == 7 {
                b = b.wrapping_add(byte(6, 16));
            }
            if n >= 6 {
                b = b.wrapping_add(byte(5, 8));
            }
            b = b.wrapping_add(byte(4, 0));
            a = a.wrapping_add(le32(&tail[0..]));
        }
        4 => a = a.wrapping_add(le32(&tail[0..])),
        n @ 1..=3 => {
            if n == 3 {
                a = a.wrapping_add(byte(2, 16));
            }
            if n >= 2 {
                a = a.wrapping_add(byte(1, 8));
            }
            a = a.wrapping_add(byte(0, 0));
        }
        _ => return (c, b),
    }

    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(24));
    (c, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors the SDKs share (from the .NET test suite, via azure_messaging_eventhubs).
    #[test]
    fn hash_matches_sdk_vectors() {
        let cases: &[(&str, i16)] = &[
            ("7", -15263),
            ("131", 30562),
            ("7149583486996073602", 12977),
            ("FWfAT", -22341),
            ("sOdeEAsyQoEuEFPGerWO", -6503),
            ("FAyAIctPeCgmiwLKbJcyswoHglHVjQdvtBowLACDNORsYvOcLddNJYDmhAVkbyLOrHTKLneMNcbgWVlasVywOByANjs", 5226),
            ("!c*_!I@1^c", 15372),
            ("p4*!jioeO/z-!-;w:dh", -3104),
            ("$0cb", 26269),
            ("-4189260826195535198", 453),
        ];
        for (key, expected) in cases {
            assert_eq!(hash_code(key), *expected, "hash of {key:?}");
        }
    }

    #[test]
    fn keys_stay_in_range() {
        for partitions in 1..=32 {
            for key in ["7", "FWfAT", "", "$0cb", "tenant-42"] {
                assert!(partition_for_key(key, partitions) < partitions);
            }
        }
    }
}
