//! Splitting the fuzzer's bytes into the parts a check needs.

/// `N` fields separated by 0x00 bytes; the last one takes the rest
/// (0x00 included), missing ones are empty.
pub fn fields<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut out: [&[u8]; N] = [&[]; N];
    let mut rest = data;
    for (i, slot) in out.iter_mut().enumerate() {
        if i + 1 == N {
            *slot = rest;
            break;
        }
        match rest.iter().position(|&b| b == 0) {
            Some(at) => {
                *slot = &rest[..at];
                rest = &rest[at + 1..];
            }
            None => {
                *slot = rest;
                rest = &[];
            }
        }
    }
    out
}

/// Header-like text: what the filter sees after lossy UTF-8 conversion.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Header pairs from text: one `name:value` per `\n`-separated line (a line
/// without `:` is a name with an empty value), so a fuzz input can repeat
/// a header, leave its value out or put any bytes in either.
pub fn header_lines(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    bytes
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| match line.iter().position(|&b| b == b':') {
            Some(at) => (line[..at].to_vec(), line[at + 1..].to_vec()),
            None => (line.to_vec(), Vec::new()),
        })
        .collect()
}
