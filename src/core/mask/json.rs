//! The single-pass JSON rewriter.
//!
//! One walk over the bytes validates the document (RFC 8259: grammar,
//! escapes including surrogate pairs, number syntax, literals, no trailing
//! garbage, UTF-8) and, at the same time, decides for each value whether it
//! is selected (a field selector) or holds PII (a detector). The output is
//! built by copying the untouched spans of the input verbatim and writing
//! only the replacements: numbers, escapes and whitespace that are not
//! masked come out byte for byte, and an unmasked document is returned
//! unchanged.
//!
//! The walk is iterative (an explicit stack, never recursion) and bounded
//! by the configured depth, so hostile nesting can neither overflow the
//! wasm stack nor cost more than linear time.

use super::detect::{Detectors, Scratch};
use super::select::{Hit, NodeId, Selectors};
use super::strategy::{Raw, Strategy};
use super::{MaskError, Masked, Masker};
use std::ops::Range;

/// Byte classes for the string scanner.
const SPECIAL: u8 = 1; // `"`, `\` or a control character: the scanner must stop
const DIGIT: u8 = 2;
const AT: u8 = 4;

// Evaluated at compile time: an out-of-bounds index here fails the build.
#[allow(clippy::indexing_slicing)]
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = SPECIAL;
        i += 1;
    }
    t[b'"' as usize] = SPECIAL;
    t[b'\\' as usize] = SPECIAL;
    let mut d = b'0';
    while d <= b'9' {
        t[d as usize] = DIGIT;
        d += 1;
    }
    t[b'@' as usize] = AT;
    t
};

fn class(b: u8) -> u8 {
    CLASS.get(usize::from(b)).copied().unwrap_or(SPECIAL)
}

/// An open container and the trie state of its children.
#[derive(Debug, Clone, Copy)]
enum Frame {
    Object(Option<NodeId>),
    Array(Option<NodeId>),
}

/// A string token: the content between the quotes and what it contains.
#[derive(Debug, Clone, Copy)]
struct Str {
    content: (usize, usize),
    escaped: bool,
    /// ASCII digits in the raw content (an escape may hide more).
    digits: usize,
    /// Whether the raw content holds an `@`.
    at: bool,
}

/// One escape sequence in a decoded string, for mapping decoded offsets
/// back to the raw text: `cum_shrink` is how many bytes shorter the decoded
/// text is than the raw text once this escape is passed.
#[derive(Debug, Clone)]
struct Escape {
    decoded: Range<usize>,
    cum_shrink: usize,
}

pub(super) fn rewrite(masker: &Masker, src: &[u8]) -> Result<Masked, MaskError> {
    // JSON text outside strings is ASCII, so validating the whole body once
    // validates every string, and lets every slice below be a `&str`.
    let text = std::str::from_utf8(src).map_err(|_| MaskError::BadJson)?;
    let mut r = Rewriter {
        text,
        src,
        pos: 0,
        out: Vec::new(),
        emitted: 0,
        count: 0,
        sel: &masker.selectors,
        det: &masker.detectors,
        strategy: &masker.strategy,
        max_depth: masker.max_depth,
        stack: Vec::new(),
        skip_stack: Vec::new(),
        decoded: String::new(),
        escapes: Vec::new(),
        found: Vec::new(),
        scratch: Scratch::default(),
    };
    r.run()?;
    let body = if r.count == 0 {
        src.to_vec()
    } else {
        let mut body = r.out;
        body.extend_from_slice(src.get(r.emitted..).unwrap_or(&[]));
        body
    };
    Ok(Masked {
        body,
        count: r.count,
    })
}

struct Rewriter<'a> {
    text: &'a str,
    src: &'a [u8],
    pos: usize,
    /// Output so far; empty until the first replacement.
    out: Vec<u8>,
    /// Input up to here is already in `out`.
    emitted: usize,
    count: u64,
    sel: &'a Selectors,
    det: &'a Detectors,
    strategy: &'a Strategy,
    max_depth: usize,
    stack: Vec<Frame>,
    /// Open containers inside a value being masked whole (true: object).
    skip_stack: Vec<bool>,
    decoded: String,
    escapes: Vec<Escape>,
    found: Vec<Range<usize>>,
    scratch: Scratch,
}

impl Rewriter<'_> {
    fn run(&mut self) -> Result<(), MaskError> {
        let mut hit = self.sel.root();
        loop {
            // A value starts here.
            self.skip_ws();
            match hit {
                Hit::Mask => self.mask_value()?,
                Hit::Descend(node) => match self.peek() {
                    Some(b'{') => {
                        self.open(Frame::Object(node))?;
                        if self.peek() != Some(b'}') {
                            hit = self.member(node)?;
                            continue;
                        }
                        self.pos += 1;
                        self.stack.pop();
                    }
                    Some(b'[') => {
                        self.open(Frame::Array(node))?;
                        if self.peek() != Some(b']') {
                            hit = self.sel.element(node);
                            continue;
                        }
                        self.pos += 1;
                        self.stack.pop();
                    }
                    Some(b'"') => self.string_value()?,
                    _ => self.scalar_value()?,
                },
            }
            // A value ended: close containers until the next sibling.
            hit = loop {
                self.skip_ws();
                let Some(&top) = self.stack.last() else {
                    return self.end();
                };
                match (top, self.peek()) {
                    (Frame::Object(node), Some(b',')) => {
                        self.pos += 1;
                        break self.member(node)?;
                    }
                    (Frame::Array(node), Some(b',')) => {
                        self.pos += 1;
                        break self.sel.element(node);
                    }
                    (Frame::Object(_), Some(b'}')) | (Frame::Array(_), Some(b']')) => {
                        self.pos += 1;
                        self.stack.pop();
                    }
                    _ => return Err(MaskError::BadJson),
                }
            };
        }
    }

    fn end(&mut self) -> Result<(), MaskError> {
        self.skip_ws();
        if self.pos == self.src.len() {
            Ok(())
        } else {
            Err(MaskError::BadJson)
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Enters `{` or `[` at `pos`; leaves `pos` at the next token.
    fn open(&mut self, frame: Frame) -> Result<(), MaskError> {
        if self.stack.len() >= self.max_depth {
            return Err(MaskError::TooDeep);
        }
        self.stack.push(frame);
        self.pos += 1;
        self.skip_ws();
        Ok(())
    }

    /// Reads `"key" :` of an object whose trie state is `node`; returns what
    /// the member's value is.
    fn member(&mut self, node: Option<NodeId>) -> Result<Hit, MaskError> {
        let key = self.key()?;
        if !self.sel.keys_matter(node) {
            return Ok(Hit::Descend(None));
        }
        self.decode(key)?;
        let name = if key.escaped {
            self.decoded.as_str()
        } else {
            self.text.get(key.content.0..key.content.1).unwrap_or("")
        };
        Ok(self.sel.member(node, name))
    }

    /// Reads `"key" :`, leaving `pos` after the colon.
    fn key(&mut self) -> Result<Str, MaskError> {
        self.skip_ws();
        if self.peek() != Some(b'"') {
            return Err(MaskError::BadJson);
        }
        let key = self.scan_string()?;
        self.skip_ws();
        if self.peek() != Some(b':') {
            return Err(MaskError::BadJson);
        }
        self.pos += 1;
        Ok(key)
    }

    /// A string value nobody selected: detectors may mask parts of it.
    fn string_value(&mut self) -> Result<(), MaskError> {
        let s = self.scan_string()?;
        if self.det.is_empty() {
            return Ok(());
        }
        // An escape may hide a digit or an `@` (`\u0040`): decode to be sure.
        if !s.escaped && !self.det.wants(s.digits, s.at) {
            return Ok(());
        }
        self.decode(s)?;
        let Self {
            text,
            src,
            out,
            emitted,
            count,
            det,
            strategy,
            decoded,
            escapes,
            found,
            scratch,
            ..
        } = self;
        let value = if s.escaped {
            decoded.as_str()
        } else {
            text.get(s.content.0..s.content.1).unwrap_or("")
        };
        det.find(value, scratch, found);
        let spans = found.iter().map(|m| {
            let raw = to_raw(escapes, m.start).zip(to_raw(escapes, m.end));
            raw.map(|(a, b)| (m.clone(), (s.content.0 + a)..(s.content.0 + b)))
        });
        if spans.clone().any(|span| span.is_none()) {
            // Unreachable: findings start and end on ASCII and every escape
            // decodes to whole chars. Should it happen, mask the whole value
            // rather than leak it.
            return self.replace_string((s.content.0 - 1)..(s.content.1 + 1), s);
        }
        for (m, raw) in spans.flatten() {
            flush(out, src, *emitted, raw.start);
            strategy.write_str(value.get(m).unwrap_or(""), out);
            *emitted = raw.end;
            *count += 1;
        }
        Ok(())
    }

    /// A number or literal nobody selected. A number a detector recognises
    /// (a phone or card number written as a JSON number, also as
    /// `1.3812345678e10`) is replaced whole by the strategy's *string*,
    /// like a selected number, so the output stays valid JSON.
    fn scalar_value(&mut self) -> Result<(), MaskError> {
        let start = self.pos;
        self.scalar()?;
        if !matches!(self.src.get(start), Some(b'-' | b'0'..=b'9')) {
            return Ok(());
        }
        let raw = self.text.get(start..self.pos).ok_or(MaskError::BadJson)?;
        // Without an exponent the integer a number stands for has no more
        // digits than it is written with; `1.38e10` has more.
        let bytes = raw.as_bytes();
        let exponent = bytes.iter().any(|&b| matches!(b, b'e' | b'E'));
        let digits = if exponent {
            usize::MAX
        } else {
            bytes.iter().filter(|b| b.is_ascii_digit()).count()
        };
        if !self.det.wants(digits, false) {
            return Ok(());
        }
        self.det.find(raw, &mut self.scratch, &mut self.found);
        if self.found.is_empty() {
            // Written with a fraction or an exponent: look at the integer
            // it stands for, if it is one.
            let Some(digits) = integer_digits(raw) else {
                return Ok(());
            };
            self.det.find(&digits, &mut self.scratch, &mut self.found);
            if self.found.is_empty() {
                return Ok(());
            }
        }
        flush(&mut self.out, self.src, self.emitted, start);
        self.out.push(b'"');
        self.strategy.write_raw(raw, Raw::Scalar, &mut self.out);
        self.out.push(b'"');
        self.emitted = self.pos;
        self.count += 1;
        Ok(())
    }

    /// A value selected by a field: replace it whole.
    fn mask_value(&mut self) -> Result<(), MaskError> {
        let start = self.pos;
        let kind = match self.peek() {
            Some(b'"') => {
                let s = self.scan_string()?;
                return self.replace_string(start..self.pos, s);
            }
            Some(b'{' | b'[') => {
                self.skip_container()?;
                Raw::Container
            }
            _ => {
                self.scalar()?;
                Raw::Scalar
            }
        };
        let raw = self.text.get(start..self.pos).ok_or(MaskError::BadJson)?;
        flush(&mut self.out, self.src, self.emitted, start);
        self.out.push(b'"');
        self.strategy.write_raw(raw, kind, &mut self.out);
        self.out.push(b'"');
        self.emitted = self.pos;
        self.count += 1;
        Ok(())
    }

    /// Replaces the string token `token` (quotes included) by the strategy
    /// applied to its decoded value.
    fn replace_string(&mut self, token: Range<usize>, s: Str) -> Result<(), MaskError> {
        self.decode(s)?;
        flush(&mut self.out, self.src, self.emitted, token.start);
        self.out.push(b'"');
        let value = if s.escaped {
            self.decoded.as_str()
        } else {
            self.text.get(s.content.0..s.content.1).unwrap_or("")
        };
        self.strategy.write_str(value, &mut self.out);
        self.out.push(b'"');
        self.emitted = token.end;
        self.count += 1;
        Ok(())
    }

    /// Validates the object or array at `pos` without looking inside.
    fn skip_container(&mut self) -> Result<(), MaskError> {
        let base = self.stack.len();
        self.skip_stack.clear();
        loop {
            // A value starts here.
            self.skip_ws();
            match self.peek() {
                Some(c @ (b'{' | b'[')) => {
                    if base + self.skip_stack.len() >= self.max_depth {
                        return Err(MaskError::TooDeep);
                    }
                    let object = c == b'{';
                    self.skip_stack.push(object);
                    self.pos += 1;
                    self.skip_ws();
                    let close = if object { b'}' } else { b']' };
                    if self.peek() != Some(close) {
                        if object {
                            self.key()?;
                        }
                        continue;
                    }
                    self.pos += 1;
                    self.skip_stack.pop();
                }
                Some(b'"') => {
                    self.scan_string()?;
                }
                _ => self.scalar()?,
            }
            // A value ended; the masked span stops right after it.
            loop {
                let Some(&object) = self.skip_stack.last() else {
                    return Ok(());
                };
                self.skip_ws();
                match (object, self.peek()) {
                    (true, Some(b',')) => {
                        self.pos += 1;
                        self.key()?;
                        break;
                    }
                    (false, Some(b',')) => {
                        self.pos += 1;
                        break;
                    }
                    (true, Some(b'}')) | (false, Some(b']')) => {
                        self.pos += 1;
                        self.skip_stack.pop();
                    }
                    _ => return Err(MaskError::BadJson),
                }
            }
        }
    }

    /// A number or a literal at `pos`.
    fn scalar(&mut self) -> Result<(), MaskError> {
        let literal = |word: &[u8]| -> Option<usize> {
            (self.src.get(self.pos..self.pos + word.len()) == Some(word)).then_some(word.len())
        };
        let len = match self.peek() {
            Some(b't') => literal(b"true"),
            Some(b'f') => literal(b"false"),
            Some(b'n') => literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number_len(),
            _ => None,
        };
        self.pos += len.ok_or(MaskError::BadJson)?;
        Ok(())
    }

    /// Length of the number at `pos`:
    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number_len(&self) -> Option<usize> {
        let b = self.src;
        let at = |i: usize| b.get(i).copied().unwrap_or(0);
        let digits = |mut i: usize| {
            while at(i).is_ascii_digit() {
                i += 1;
            }
            i
        };
        let mut i = self.pos;
        if at(i) == b'-' {
            i += 1;
        }
        i = match at(i) {
            b'0' => i + 1,
            b'1'..=b'9' => digits(i + 1),
            _ => return None,
        };
        if at(i) == b'.' {
            let end = digits(i + 1);
            if end == i + 1 {
                return None;
            }
            i = end;
        }
        if matches!(at(i), b'e' | b'E') {
            i += 1;
            if matches!(at(i), b'+' | b'-') {
                i += 1;
            }
            let end = digits(i);
            if end == i {
                return None;
            }
            i = end;
        }
        Some(i - self.pos)
    }

    /// Scans the string at `pos` (on its opening quote), validating escapes
    /// and rejecting raw control characters; leaves `pos` after the closing
    /// quote.
    fn scan_string(&mut self) -> Result<Str, MaskError> {
        let start = self.pos + 1;
        let mut i = start;
        let mut classes = 0;
        let mut digits = 0;
        let mut escaped = false;
        loop {
            // Eight bytes at a time up to the next special byte.
            while let Some(word) = self
                .src
                .get(i..i + 8)
                .and_then(|w| <[u8; 8]>::try_from(w).ok())
            {
                let w = Word::classify(u64::from_le_bytes(word));
                let before = w.before_special();
                let d = w.digits & before;
                if d != 0 {
                    digits += d.count_ones() as usize;
                }
                if w.at & before != 0 {
                    classes |= AT;
                }
                if w.special != 0 {
                    i += w.special.trailing_zeros() as usize / 8;
                    break;
                }
                i += 8;
            }
            let Some(&b) = self.src.get(i) else {
                return Err(MaskError::BadJson);
            };
            let c = class(b);
            classes |= c;
            if c & SPECIAL == 0 {
                digits += usize::from(c & DIGIT != 0);
                i += 1;
                continue;
            }
            match b {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    let (_, len) = escape_at(self.src, i).ok_or(MaskError::BadJson)?;
                    i += len;
                }
                _ => return Err(MaskError::BadJson),
            }
        }
        self.pos = i + 1;
        Ok(Str {
            content: (start, i),
            escaped,
            digits,
            at: classes & AT != 0,
        })
    }

    /// Decodes `s` into `self.decoded` when it has escapes, recording in
    /// `self.escapes` where they were; a string without escapes is its own
    /// decoded value and is left in place.
    fn decode(&mut self, s: Str) -> Result<(), MaskError> {
        self.escapes.clear();
        if !s.escaped {
            return Ok(());
        }
        let raw = self
            .text
            .get(s.content.0..s.content.1)
            .ok_or(MaskError::BadJson)?;
        self.decoded.clear();
        let bytes = raw.as_bytes();
        let mut shrink = 0;
        let mut i = 0;
        while i < bytes.len() {
            let lit_end = bytes
                .get(i..)
                .and_then(|rest| rest.iter().position(|&b| b == b'\\'))
                .map_or(bytes.len(), |p| i + p);
            self.decoded
                .push_str(raw.get(i..lit_end).ok_or(MaskError::BadJson)?);
            if lit_end == bytes.len() {
                break;
            }
            let (ch, len) = escape_at(bytes, lit_end).ok_or(MaskError::BadJson)?;
            let start = self.decoded.len();
            self.decoded.push(ch);
            shrink += len - ch.len_utf8();
            self.escapes.push(Escape {
                decoded: start..self.decoded.len(),
                cum_shrink: shrink,
            });
            i = lit_end + len;
        }
        Ok(())
    }
}

/// Eight bytes classified at once (SWAR): each mask has the high bit of
/// byte `k` set when byte `k` is of its class. Exact per byte: the sums
/// are taken over the low seven bits only, so no carry crosses a byte.
struct Word {
    /// `"`, `\` or a control character (what stops [`Rewriter::scan_string`]).
    special: u64,
    digits: u64,
    at: u64,
}

impl Word {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;

    fn classify(w: u64) -> Self {
        let low = w & !Self::HIGH;
        let ascii = !w & Self::HIGH;
        // High bit set where the low seven bits are at least `n`.
        let at_least = |n: u64| (low + Self::ONES * (0x80 - n)) & Self::HIGH;
        // High bit set where the low seven bits equal `c`.
        let equal = |c: u64| !((low ^ (Self::ONES * c)) + Self::ONES * 0x7f) & Self::HIGH;
        Self {
            special: ascii & (!at_least(0x20) | equal(u64::from(b'"')) | equal(u64::from(b'\\'))),
            digits: ascii & at_least(u64::from(b'0')) & !at_least(u64::from(b'9') + 1),
            at: ascii & equal(u64::from(b'@')),
        }
    }

    /// The high bits of the bytes before the first special one (all eight
    /// when there is none).
    fn before_special(&self) -> u64 {
        // The lowest set bit minus one sets every bit below it.
        self.special.wrapping_sub(1) & !self.special & Self::HIGH
    }
}

/// Longest integer [`integer_digits`] spells out: more than any card (19),
/// phone (15) or ID (18) has.
const MAX_INTEGER_DIGITS: usize = 24;

/// The digits of the integer a JSON number with a fraction or an exponent
/// stands for (`1.3812345678e10` → `13812345678`, `4111111111111111.0` →
/// `4111111111111111`, sign dropped); None for a plain integer (already
/// examined as written), a non-integer, or more than
/// [`MAX_INTEGER_DIGITS`] digits.
fn integer_digits(raw: &str) -> Option<String> {
    let unsigned = raw.strip_prefix('-').unwrap_or(raw);
    let (mantissa, exp) = match unsigned.find(['e', 'E']) {
        Some(at) => (
            unsigned.get(..at)?,
            unsigned.get(at + 1..)?.parse::<i64>().ok()?,
        ),
        None => (unsigned, 0),
    };
    if exp == 0 && !mantissa.contains('.') {
        return None;
    }
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int}{frac}");
    let point = i64::try_from(int.len()).ok()?.checked_add(exp)?;
    let point = usize::try_from(point).ok()?;
    let mut out = if point >= digits.len() {
        if point > MAX_INTEGER_DIGITS + digits.len() {
            return None;
        }
        let mut out = digits.clone();
        out.extend(std::iter::repeat_n('0', point - digits.len()));
        out
    } else {
        if !digits.get(point..)?.bytes().all(|b| b == b'0') {
            return None;
        }
        digits.get(..point)?.to_string()
    };
    let zeros = out.len() - out.trim_start_matches('0').len();
    out.drain(..zeros.min(out.len().saturating_sub(1)));
    (out.len() <= MAX_INTEGER_DIGITS).then_some(out)
}

/// Copies `src[emitted..to]` into `out` (sized for the whole body on first use).
fn flush(out: &mut Vec<u8>, src: &[u8], emitted: usize, to: usize) {
    if out.capacity() == 0 {
        out.reserve(src.len() + 64);
    }
    out.extend_from_slice(src.get(emitted..to).unwrap_or(&[]));
}

/// Maps an offset in a decoded string back to its raw content; None when
/// it falls inside an escape.
fn to_raw(escapes: &[Escape], decoded: usize) -> Option<usize> {
    let passed = escapes.partition_point(|e| e.decoded.start < decoded);
    match passed.checked_sub(1).and_then(|i| escapes.get(i)) {
        None => Some(decoded),
        Some(e) if e.decoded.end > decoded => None,
        Some(e) => Some(decoded + e.cum_shrink),
    }
}

/// The escape sequence at `b[i]` (a backslash): the char it stands for and
/// its length in bytes. `\uXXXX` surrogates must come as a high-low pair.
fn escape_at(b: &[u8], i: usize) -> Option<(char, usize)> {
    let ch = match *b.get(i + 1)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let hi = hex4(b, i + 2)?;
            return match hi {
                0xD800..=0xDBFF => {
                    if b.get(i + 6..i + 8)? != b"\\u" {
                        return None;
                    }
                    let lo = hex4(b, i + 8)?;
                    if !(0xDC00..=0xDFFF).contains(&lo) {
                        return None;
                    }
                    let code = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                    Some((char::from_u32(code)?, 12))
                }
                _ => Some((char::from_u32(hi)?, 6)),
            };
        }
        _ => return None,
    };
    Some((ch, 2))
}

fn hex4(b: &[u8], i: usize) -> Option<u32> {
    let digits = b.get(i..i + 4)?;
    digits
        .iter()
        .try_fold(0u32, |acc, &d| Some(acc * 16 + char::from(d).to_digit(16)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The eight-byte classifier agrees with the byte table for every byte
    /// value at every position, next to every other byte value.
    #[test]
    fn word_classes_match_the_byte_table() {
        for x in 0..=255u8 {
            for y in 0..=255u8 {
                for k in 0..8 {
                    let mut bytes = [y; 8];
                    bytes[k] = x;
                    let w = Word::classify(u64::from_le_bytes(bytes));
                    for (j, &b) in bytes.iter().enumerate() {
                        let bit = |mask: u64| mask >> (8 * j + 7) & 1 == 1;
                        let c = class(b);
                        assert_eq!(bit(w.special), c & SPECIAL != 0, "{bytes:?} {j}");
                        assert_eq!(bit(w.digits), c & DIGIT != 0, "{bytes:?} {j}");
                        assert_eq!(bit(w.at), c & AT != 0, "{bytes:?} {j}");
                    }
                    let first = bytes.iter().position(|&b| class(b) & SPECIAL != 0);
                    let before = w.before_special();
                    for j in 0..8 {
                        let want = first.is_none_or(|f| j < f);
                        assert_eq!(before >> (8 * j + 7) & 1 == 1, want, "{bytes:?} {j}");
                    }
                }
            }
        }
    }
}
