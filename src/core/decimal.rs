//! Integers in decimal, written on the stack: the timestamp a signature
//! covers, a rewritten `content-length`, the status in the decision record.
//! Each is made per request, where `to_string` would allocate.

/// Digits of `u64::MAX`, the longest number written.
pub const MAX_DIGITS: usize = 20;

/// `n` in decimal, spelled as `n.to_string()` spells it, written into
/// `buffer`.
pub fn decimal(n: u64, buffer: &mut [u8; MAX_DIGITS]) -> &str {
    let mut start = buffer.len();
    let mut rest = n;
    for slot in buffer.iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        start -= 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    // ASCII digits only: the conversion cannot fail.
    buffer
        .get(start..)
        .and_then(|digits| std::str::from_utf8(digits).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn decimal_spells_a_number_as_to_string_does() {
        let mut buffer = [0; MAX_DIGITS];
        for n in [0, 7, 9, 10, 401, 1_700_000_000, 4_294_967_295, u64::MAX] {
            assert_eq!(decimal(n, &mut buffer), n.to_string());
        }
    }
}
