//! The proxy-wasm ABI's byte encodings of header maps and property paths,
//! as pure functions: the host adapter (`src/host/abi.rs`) hands them the
//! host's buffers, and they run natively in unit tests and under the fuzzer
//! (`fuzz/`, target `headers`).
//!
//! Map layout: `u32 n` (little-endian), then `n` × (`u32 name_len`,
//! `u32 value_len`), then each name and value followed by a NUL byte.

use std::ops::Range;

/// Decodes a host map. Names and values stay bytes (Envoy accepts
/// 0x80-0xFF in values). A truncated or inconsistent buffer yields the
/// pairs read so far: never a panic, never a read past the buffer, and no
/// allocation larger than the buffer (a lying count reserves nothing).
pub fn deserialize_map(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for_each_pair(bytes, |key, value| out.push((key.to_vec(), value.to_vec())));
    out
}

/// How many pairs a host map says it holds, bounded by what its buffer
/// could hold (every pair takes at least 10 bytes): a capacity hint.
pub fn pair_count(bytes: &[u8]) -> usize {
    let count = bytes
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes);
    usize::try_from(count)
        .unwrap_or(usize::MAX)
        .min(bytes.len() / 10)
}

/// Hands each (name, value) of a host map to `f`, in order, without
/// copying; the same guarantees as [`deserialize_map`].
pub fn for_each_pair(bytes: &[u8], mut f: impl FnMut(&[u8], &[u8])) {
    for_each_span(bytes, |key, value| {
        f(
            bytes.get(key).unwrap_or_default(),
            bytes.get(value).unwrap_or_default(),
        );
    });
}

/// Where a host map's strings start (after its count and lengths), if its
/// count fits the buffer.
pub fn strings_start(bytes: &[u8]) -> Option<usize> {
    let raw: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    let count = usize::try_from(u32::from_le_bytes(raw)).ok()?;
    let start = count.checked_mul(8)?.checked_add(4)?;
    (start <= bytes.len()).then_some(start)
}

/// As [`for_each_pair`], with the byte ranges of each name and value in
/// `bytes` (always within it).
pub fn for_each_span(bytes: &[u8], mut f: impl FnMut(Range<usize>, Range<usize>)) {
    let read_u32 = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(raw)).ok()
    };
    let Some(count) = read_u32(0) else {
        return;
    };
    let Some(mut p) = count.checked_mul(8).and_then(|n| n.checked_add(4)) else {
        return;
    };
    for n in 0..count {
        let s = 4 + n * 8;
        let (Some(klen), Some(vlen)) = (read_u32(s), read_u32(s + 4)) else {
            break;
        };
        let Some(key_end) = p.checked_add(klen).filter(|&end| end <= bytes.len()) else {
            break;
        };
        let key = p..key_end;
        p = key_end + 1;
        let Some(value_end) = p.checked_add(vlen).filter(|&end| end <= bytes.len()) else {
            break;
        };
        let value = p..value_end;
        p = value_end + 1;
        f(key, value);
    }
}

/// Encodes a map (local-reply headers). Lengths past `u32::MAX` cannot
/// occur for header text; they would saturate rather than wrap.
pub fn serialize_map<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| k.as_ref().len() + v.as_ref().len() + 10)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&u32_len(pairs.len()).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&u32_len(k.as_ref().len()).to_le_bytes());
        out.extend_from_slice(&u32_len(v.as_ref().len()).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

/// Property paths are their segments joined by NUL bytes, without a
/// trailing NUL (as the proxy-wasm SDK sends them).
pub fn serialize_path(path: &[&str]) -> Vec<u8> {
    path.iter()
        .map(|s| s.as_bytes())
        .collect::<Vec<_>>()
        .join(&0u8)
}

fn u32_len(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn pair_count_is_bounded_by_the_buffer() {
        let map = serialize_map(&[("a", "1"), ("b", "2")]);
        assert_eq!(pair_count(&map), 2);
        let mut lying = map.clone();
        lying[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(pair_count(&lying), lying.len() / 10);
        assert_eq!(pair_count(&[]), 0);
    }

    #[test]
    fn map_round_trip_and_raw_bytes() {
        let pairs = [("a", "1"), ("x-note", "caf\u{e9}")];
        let got = deserialize_map(&serialize_map(&pairs));
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].1, "caf\u{e9}".as_bytes());
        // A Latin-1 byte is data, not an error.
        let mut raw = serialize_map(&[("x", "ab")]);
        let at = raw.len() - 3;
        raw[at] = 0xe9;
        assert_eq!(deserialize_map(&raw), [(b"x".to_vec(), vec![0xe9, b'b'])]);
    }

    #[test]
    fn truncated_or_lying_maps_never_panic() {
        let good = serialize_map(&[("name", "value"), ("k", "v")]);
        // The final NUL is not needed to read the last value.
        for cut in 0..good.len() - 1 {
            let got = deserialize_map(&good[..cut]);
            assert!(
                got.len() < 2,
                "a buffer cut at {cut} cannot hold both pairs"
            );
        }
        // A count or lengths far past the buffer.
        let mut huge = good.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let _ = deserialize_map(&huge);
        let mut long = good;
        long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(deserialize_map(&long).is_empty());
    }

    #[test]
    fn empty_names_and_values_and_binary_pairs() {
        let pairs: [(&[u8], &[u8]); 3] = [(b"", b""), (b"\0\xff", b"v\0"), (b"k", b"")];
        let got = deserialize_map(&serialize_map(&pairs));
        let want: Vec<(Vec<u8>, Vec<u8>)> = pairs
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(got, want);
        assert!(deserialize_map(&[]).is_empty());
        assert!(deserialize_map(&0u32.to_le_bytes()).is_empty());
    }

    #[test]
    fn property_path_is_nul_separated() {
        assert_eq!(serialize_path(&["a", "bc"]), b"a\0bc");
        assert_eq!(serialize_path(&["one"]), b"one");
    }
}
