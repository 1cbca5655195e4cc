//! Target `headers`: the proxy-wasm map decoding
//! (`core::abi_map::deserialize_map`) and `core::headers::Headers` on top.
//!
//! Properties: decoding any bytes returns pairs that fit in the input, that
//! re-encode and decode to themselves, and a [`Headers`] built from them
//! answers `get` / `single_token` exactly as an independent reading of the
//! pairs says: `single_token` is a non-blank, trimmed, visible-ASCII value
//! of a header that occurs once, `Repeated` for a repeated one, `NotAscii`
//! for anything else. Property paths (`serialize_path`, as the SDK sends
//! them): the decoded names, joined by single NUL bytes, no trailing NUL.

use callback_guard::core::abi_map::{deserialize_map, serialize_map, serialize_path};
use callback_guard::core::headers::{HeaderError, Headers};
use std::collections::HashMap;

pub fn check(data: &[u8]) {
    let pairs = deserialize_map(data);
    let total: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(total <= data.len(), "decoded more bytes than given");
    assert!(pairs.len() <= data.len() / 8, "more pairs than headers fit");
    assert_eq!(deserialize_map(&serialize_map(&pairs)), pairs, "round trip");

    // Names as the filter sees them (lossy, lower case), counted once.
    let names: Vec<String> = pairs
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(k).to_ascii_lowercase())
        .collect();
    let mut copies: HashMap<&str, usize> = HashMap::new();
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, n) in names.iter().enumerate() {
        *copies.entry(n).or_default() += 1;
        first.entry(n).or_insert(i);
    }
    let segments: Vec<&str> = names.iter().map(String::as_str).collect();
    let path = serialize_path(&segments);
    let joined: usize = segments.iter().map(|s| s.len()).sum();
    assert_eq!(path.len(), joined + segments.len().saturating_sub(1));
    assert_eq!(
        path.iter().filter(|&&b| b == 0).count(),
        segments.len().saturating_sub(1)
            + segments
                .iter()
                .map(|s| s.matches('\0').count())
                .sum::<usize>()
    );
    if !segments.iter().any(|s| s.contains('\0')) && !segments.is_empty() {
        let back: Vec<&[u8]> = path.split(|&b| b == 0).collect();
        assert_eq!(back.len(), segments.len(), "path segments");
        for (b, s) in back.iter().zip(&segments) {
            assert_eq!(*b, s.as_bytes());
        }
    }
    let headers = Headers::from_bytes(pairs.clone());
    // What the filter reads: the host's map straight into the snapshot.
    assert_eq!(Headers::from_map(data), headers, "from_map");
    // Once per name: its first value is what `get` returns, and the only
    // one when `single_token` may answer with a value.
    for (i, ((_, v), n)) in pairs.iter().zip(&names).enumerate() {
        if first.get(n.as_str()) != Some(&i) {
            continue;
        }
        assert_eq!(
            headers.get(n).map(str::as_bytes),
            Some(String::from_utf8_lossy(v).as_bytes()),
            "get returns the first value"
        );
        let trimmed = trim_sp_tab(v).unwrap_or(&[]);
        let visible = std::str::from_utf8(v).is_ok()
            && trimmed.iter().all(|&b| b.is_ascii_graphic() || b == b' ');
        let got = headers.single_token(n);
        match copies.get(n.as_str()).copied() {
            Some(1) if !visible => assert_eq!(got, Err(HeaderError::NotAscii), "{v:?}"),
            Some(1) if trimmed.is_empty() => assert_eq!(got, Ok(None)),
            Some(1) => assert_eq!(got.map(|t| t.map(str::as_bytes)), Ok(Some(trimmed))),
            _ => assert_eq!(got, Err(HeaderError::Repeated)),
        }
    }
}

/// The value without leading and trailing spaces and tabs (only those: a
/// header value's optional whitespace).
fn trim_sp_tab(v: &[u8]) -> Option<&[u8]> {
    let is_ws = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !is_ws(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !is_ws(b)).map_or(start, |e| e + 1);
    v.get(start..end)
}
