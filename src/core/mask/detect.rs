//! PII detectors (`mask.detectors`): `email`, `phone`, `card`, `cn_id`.
//!
//! Detectors look at the *decoded* text of string values and report the byte
//! ranges of what they recognise, so only the matching substring is masked
//! and the surrounding free text stays readable:
//! `"call me at +8613812345678 tomorrow"` → `"call me at *** tomorrow"`.
//!
//! They are hand-written scanners (no regex engine in the wasm module) tuned
//! to avoid the usual false positives in callback payloads:
//!
//! - a number must stand alone: digits glued to letters or `_` (`ORD13812345678`,
//!   hex hashes, UUIDs), or hanging off `x-`/`x.` (`ORD-…`, `v1.…`), are
//!   skipped, as are decimals (`3.14…`);
//! - `card`: 13–19 digits, optionally grouped by single spaces or dashes, with
//!   a known issuer prefix and length (Visa, Mastercard incl. 2221–2720, Amex,
//!   Diners, JCB, Discover, UnionPay, Maestro) and a valid Luhn check digit.
//!   Unix timestamps in s/ms/µs/ns start with `1`, which no card network in
//!   this list uses, and `yyyyMMdd…` order numbers start with `20`, outside
//!   the Mastercard 2-series;
//! - `phone`: `+<country><number>` with 8–15 digits in all (E.164), groups
//!   separated by a space, `-`, `.` or wrapped in `( )`; and mainland-China
//!   mobiles `1[3-9]` + 9 digits, written `13812345678`, `138 1234 5678` or
//!   `138-1234-5678`; with `+86` they fall under the first form;
//! - `cn_id`: 18 characters, 17 digits and a digit or `X` check character per
//!   GB 11643-1999, a known province code and a real birth date 1900–2099;
//! - `email`: `local@domain.tld`, the local part of `A-Z a-z 0-9 . _ % + -`,
//!   a domain of at least two labels and an alphabetic TLD.
//!
//! Overlapping findings are resolved leftmost-longest, so `13812345678@163.com`
//! is one email, not a phone plus a domain.

use std::ops::Range;

/// One detector, as named in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detector {
    Email,
    Phone,
    Card,
    CnId,
}

impl Detector {
    pub(crate) const NAMES: [&'static str; 4] = ["email", "phone", "card", "cn_id"];

    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "email" => Some(Self::Email),
            "phone" => Some(Self::Phone),
            "card" => Some(Self::Card),
            "cn_id" => Some(Self::CnId),
            _ => None,
        }
    }
}

/// The enabled detectors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Detectors {
    email: bool,
    phone: bool,
    card: bool,
    cn_id: bool,
}

/// Reusable buffers, so scanning a body allocates once.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    candidates: Vec<Range<usize>>,
    groups: Vec<Group>,
}

/// A run of digits inside a numeric token, and the separator before it.
#[derive(Debug, Clone, Copy)]
struct Group {
    start: usize,
    end: usize,
    /// `b' '` or `b'-'`; 0 for the first group of a token.
    sep_before: u8,
}

/// E.164: at most 15 digits including the country code.
const PHONE_MAX_DIGITS: usize = 15;
/// Shortest international number we accept (country code + 7).
const PHONE_MIN_DIGITS: usize = 8;
const CARD_MIN_DIGITS: usize = 13;
/// A resident ID holds 17 digits before its check character.
const CN_ID_MIN_DIGITS: usize = 17;
const CARD_MAX_DIGITS: usize = 19;
/// Shortest digit group of a printed card number.
const CARD_MIN_GROUP: usize = 3;
/// Groups kept per numeric token; a longer `1 2 3 …` run is cut into
/// tokens of this many groups, bounding memory and work per byte.
const MAX_TOKEN_GROUPS: usize = 32;

impl Detectors {
    /// Enables one detector; false when it already was.
    pub(crate) fn enable(&mut self, d: Detector) -> bool {
        let flag = match d {
            Detector::Email => &mut self.email,
            Detector::Phone => &mut self.phone,
            Detector::Card => &mut self.card,
            Detector::CnId => &mut self.cn_id,
        };
        !std::mem::replace(flag, true)
    }

    pub(crate) fn is_empty(&self) -> bool {
        !(self.email || self.phone || self.card || self.cn_id)
    }

    fn numeric(&self) -> bool {
        self.phone || self.card || self.cn_id
    }

    /// Whether a text is worth scanning, given how many ASCII digits it
    /// holds and whether it holds an `@`: an email needs an `@`, and every
    /// numeric finding holds at least [`PHONE_MIN_DIGITS`] (`+` phone; a
    /// mainland mobile has 11), [`CARD_MIN_DIGITS`] or
    /// [`CN_ID_MIN_DIGITS`] digits, so a text with fewer than the smallest
    /// of the enabled ones and no `@` cannot yield a finding.
    pub(crate) fn wants(&self, digits: usize, has_at: bool) -> bool {
        (has_at && self.email) || self.min_digits().is_some_and(|min| digits >= min)
    }

    /// Fewest digits a finding of an enabled numeric detector holds; None
    /// when none is enabled.
    fn min_digits(&self) -> Option<usize> {
        if self.phone {
            Some(PHONE_MIN_DIGITS)
        } else if self.card {
            Some(CARD_MIN_DIGITS)
        } else if self.cn_id {
            Some(CN_ID_MIN_DIGITS)
        } else {
            None
        }
    }

    /// Finds PII in `text`: sorted, non-overlapping byte ranges in `found`.
    /// Every range starts and ends on an ASCII byte, hence on a char boundary.
    pub(crate) fn find(&self, text: &str, scratch: &mut Scratch, found: &mut Vec<Range<usize>>) {
        found.clear();
        let cands = &mut scratch.candidates;
        cands.clear();
        let b = text.as_bytes();
        let mut i = 0;
        while let Some(&c) = b.get(i) {
            if c.is_ascii_digit() {
                let end = token(b, i, &mut scratch.groups);
                if self.numeric() && left_ok(b, i) {
                    self.numeric_token(b, &scratch.groups, cands);
                }
                i = end;
            } else if c.is_ascii_alphabetic() || c == b'_' {
                // Digits glued to a word (`ab12`, hex, UUID parts) are not PII.
                while b.get(i).is_some_and(|&c| is_word(c)) {
                    i += 1;
                }
            } else {
                if c == b'@' && self.email {
                    cands.extend(email_at(b, i));
                } else if c == b'+' && self.phone {
                    cands.extend(intl_phone(b, i));
                }
                i += 1;
            }
        }
        if cands.is_empty() {
            return;
        }
        // Leftmost-longest.
        cands.sort_unstable_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
        let mut last_end = 0;
        for r in cands.drain(..) {
            if r.start >= last_end && r.start < r.end {
                last_end = r.end;
                found.push(r);
            }
        }
    }

    /// Phone, card and ID candidates inside one numeric token (`groups`).
    /// A candidate starts at the token start or after a space separator;
    /// `-` chains are read as one identifier (`2024-05-15`, `ORD-…`).
    fn numeric_token(&self, b: &[u8], groups: &[Group], cands: &mut Vec<Range<usize>>) {
        for (s, first) in groups.iter().enumerate() {
            if s > 0 && first.sep_before != b' ' {
                continue;
            }
            let rest = groups.get(s..).unwrap_or(&[]);
            if self.cn_id {
                cands.extend(cn_id_at(b, first));
            }
            if self.phone {
                cands.extend(cn_mobile_at(b, rest));
            }
            if self.card {
                cands.extend(card_at(b, rest));
            }
        }
    }
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// Whether a number may start at `i`: not glued to a word, not the
/// fraction of a decimal, not the tail of `ORD-…`, not after a `+` (that
/// is an international phone number, handled on its own).
fn left_ok(b: &[u8], i: usize) -> bool {
    let Some(p) = i.checked_sub(1).map(|j| at(b, j)) else {
        return true;
    };
    if is_word(p) || p == b'+' {
        return false;
    }
    if matches!(p, b'-' | b'.') {
        return !i.checked_sub(2).is_some_and(|j| is_word(at(b, j)));
    }
    true
}

/// Whether a number may end before `e`: not glued to a word, not followed
/// by a decimal fraction or a `-digit` continuation.
fn right_ok(b: &[u8], e: usize) -> bool {
    match b.get(e) {
        None => true,
        Some(&c) if is_word(c) => false,
        Some(b'.' | b'-') => !at(b, e + 1).is_ascii_digit(),
        Some(_) => true,
    }
}

/// Collects the digit groups of the numeric token at `start` (digits,
/// then single `' '`/`'-'` + digits, …, at most [`MAX_TOKEN_GROUPS`]) into
/// `groups`; returns its end.
fn token(b: &[u8], start: usize, groups: &mut Vec<Group>) -> usize {
    groups.clear();
    let mut i = start;
    let mut sep = 0;
    loop {
        let gstart = i;
        while at(b, i).is_ascii_digit() {
            i += 1;
        }
        groups.push(Group {
            start: gstart,
            end: i,
            sep_before: sep,
        });
        let next = at(b, i);
        if groups.len() < MAX_TOKEN_GROUPS
            && matches!(next, b' ' | b'-')
            && at(b, i + 1).is_ascii_digit()
        {
            sep = next;
            i += 1;
        } else {
            return i;
        }
    }
}

/// Up to 19 digits of `groups`, concatenated into `buf`; None when there
/// are more or the separators are mixed.
fn digits_of(b: &[u8], groups: &[Group], buf: &mut [u8; CARD_MAX_DIGITS]) -> Option<usize> {
    let mut n = 0;
    let sep = groups.get(1).map_or(0, |g| g.sep_before);
    for (k, g) in groups.iter().enumerate() {
        if k > 0 && g.sep_before != sep {
            return None;
        }
        for &d in b.get(g.start..g.end)? {
            *buf.get_mut(n)? = d - b'0';
            n += 1;
        }
    }
    Some(n)
}

fn cn_mobile_ok(d: &[u8]) -> bool {
    d.len() == 11 && d.first() == Some(&1) && d.get(1).is_some_and(|&x| (3..=9).contains(&x))
}

/// `13812345678` (one group) or `138 1234 5678` / `138-1234-5678`.
fn cn_mobile_at(b: &[u8], groups: &[Group]) -> Option<Range<usize>> {
    let len = |g: &Group| g.end - g.start;
    let used = match groups {
        [g, ..] if len(g) == 11 => 1,
        [a, b2, c, ..] if len(a) == 3 && len(b2) == 4 && len(c) == 4 => 3,
        _ => return None,
    };
    let groups = groups.get(..used)?;
    let mut buf = [0u8; CARD_MAX_DIGITS];
    let n = digits_of(b, groups, &mut buf)?;
    let (first, last) = (groups.first()?, groups.last()?);
    (cn_mobile_ok(buf.get(..n)?) && right_ok(b, last.end)).then_some(first.start..last.end)
}

/// The longest run of whole groups with 13–19 digits that is a card number.
/// Every group has at least 3 digits (true of all printed layouts: 4-4-4-4,
/// 4-6-5, 4-4-4-4-3), which also keeps `1 2 3 …` runs cheap.
fn card_at(b: &[u8], groups: &[Group]) -> Option<Range<usize>> {
    let first = groups.first()?;
    let sep = groups.get(1).map_or(0, |g| g.sep_before);
    let mut buf = [0u8; CARD_MAX_DIGITS];
    let mut n = 0;
    let mut best = None;
    for (k, g) in groups.iter().enumerate() {
        let digits = b.get(g.start..g.end)?;
        if digits.len() < CARD_MIN_GROUP
            || n + digits.len() > CARD_MAX_DIGITS
            || (k > 0 && g.sep_before != sep)
        {
            break;
        }
        for &d in digits {
            *buf.get_mut(n)? = d - b'0';
            n += 1;
        }
        let card = buf.get(..n)?;
        if n >= CARD_MIN_DIGITS && right_ok(b, g.end) && issuer_ok(card) && luhn_ok(card) {
            best = Some(first.start..g.end);
        }
    }
    best
}

/// Known issuer prefixes and the lengths they issue.
fn issuer_ok(d: &[u8]) -> bool {
    let prefix = |k: usize| {
        d.get(..k)
            .map(|p| p.iter().fold(0u32, |acc, &x| acc * 10 + u32::from(x)))
            .unwrap_or(0)
    };
    let len = d.len();
    match prefix(2) {
        40..=49 => matches!(len, 13 | 16 | 19),
        22..=27 => (2221..=2720).contains(&prefix(4)) && len == 16,
        51..=55 => len == 16,
        50 | 56..=58 => (16..=19).contains(&len),
        34 | 37 => len == 15,
        30 | 36 | 38 | 39 => (14..=19).contains(&len),
        35 => (3528..=3589).contains(&prefix(4)) && (16..=19).contains(&len),
        60..=69 => (16..=19).contains(&len),
        _ => false,
    }
}

fn luhn_ok(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 { y - 9 } else { y }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// An 18-character resident ID starting at `g` (a group of 18 digits, or of
/// 17 digits followed by `X`).
fn cn_id_at(b: &[u8], g: &Group) -> Option<Range<usize>> {
    let end = match g.end - g.start {
        18 => g.end,
        17 if matches!(at(b, g.end), b'X' | b'x') => g.end + 1,
        _ => return None,
    };
    let id = b.get(g.start..end)?;
    (right_ok(b, end) && cn_id_ok(id)).then_some(g.start..end)
}

/// GB 11643-1999: province code, birth date, ISO 7064 MOD 11-2 check.
pub(crate) fn cn_id_ok(id: &[u8]) -> bool {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let (Some(body), Some(&check)) = (id.get(..17), id.get(17)) else {
        return false;
    };
    if id.len() != 18 || !body.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let num = |r: Range<usize>| {
        body.get(r)
            .map(|p| {
                p.iter()
                    .fold(0u32, |acc, &x| acc * 10 + u32::from(x - b'0'))
            })
            .unwrap_or(0)
    };
    let province = num(0..2);
    let plausible_province = matches!(
        province,
        11..=15 | 21..=23 | 31..=37 | 41..=46 | 50..=54 | 61..=65 | 71 | 81..=83
    );
    let (year, month, day) = (num(6..10), num(10..12), num(12..14));
    if !plausible_province || !(1900..=2099).contains(&year) || !date_ok(year, month, day) {
        return false;
    }
    let sum: u32 = body
        .iter()
        .zip(WEIGHTS)
        .map(|(&x, w)| u32::from(x - b'0') * w)
        .sum();
    let want = CHECK.get((sum % 11) as usize).copied().unwrap_or(0);
    check.to_ascii_uppercase() == want
}

fn date_ok(year: u32, month: u32, day: u32) -> bool {
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// `+<country><number>`: groups of digits separated by one space, `-` or
/// `.`, or wrapped in parentheses; 8–15 digits in all. The longest prefix
/// of whole groups within the limit wins.
fn intl_phone(b: &[u8], plus: usize) -> Option<Range<usize>> {
    if plus.checked_sub(1).is_some_and(|j| is_word(at(b, j))) {
        return None;
    }
    let mut i = plus + 1;
    if !matches!(at(b, i), b'1'..=b'9') {
        return None;
    }
    let mut digits = 0;
    let mut best = None;
    loop {
        // One group: digits, or `(digits)`.
        let paren = at(b, i) == b'(';
        if paren {
            i += 1;
        }
        let gstart = i;
        while at(b, i).is_ascii_digit() {
            i += 1;
        }
        digits += i - gstart;
        if i == gstart || digits > PHONE_MAX_DIGITS {
            break;
        }
        if paren {
            if at(b, i) != b')' {
                break;
            }
            i += 1;
        }
        if digits >= PHONE_MIN_DIGITS && right_ok(b, i) {
            best = Some(plus..i);
        }
        // Continue only with one separator (or none after `)` / before `(`).
        let next = at(b, i);
        if matches!(next, b' ' | b'-' | b'.') && matches!(at(b, i + 1), b'0'..=b'9' | b'(') {
            i += 1;
        } else if !(next == b'(' || (paren && next.is_ascii_digit())) {
            break;
        }
    }
    best
}

/// `local@domain.tld` around the `@` at `at_sign`.
fn email_at(b: &[u8], at_sign: usize) -> Option<Range<usize>> {
    let is_local =
        |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-');
    let is_domain = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-');
    let mut start = at_sign;
    while start > 0 && is_local(at(b, start - 1)) {
        start -= 1;
    }
    while start < at_sign && at(b, start) == b'.' {
        start += 1;
    }
    if start == at_sign || at(b, at_sign - 1) == b'.' {
        return None;
    }
    let mut end = at_sign + 1;
    while is_domain(at(b, end)) {
        end += 1;
    }
    while end > at_sign + 1 && matches!(at(b, end - 1), b'.' | b'-') {
        end -= 1;
    }
    let domain = b.get(at_sign + 1..end)?;
    let mut labels = 0;
    let mut tld: &[u8] = &[];
    for label in domain.split(|&c| c == b'.') {
        let bad_edge = label.first() == Some(&b'-') || label.last() == Some(&b'-');
        if label.is_empty() || label.len() > 63 || bad_edge {
            return None;
        }
        labels += 1;
        tld = label;
    }
    (labels >= 2 && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic)).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn all() -> Detectors {
        let mut d = Detectors::default();
        for name in Detector::NAMES {
            d.enable(Detector::parse(name).unwrap());
        }
        d
    }

    fn only(name: &str) -> Detectors {
        let mut d = Detectors::default();
        d.enable(Detector::parse(name).unwrap());
        d
    }

    fn found<'t>(d: &Detectors, text: &'t str) -> Vec<&'t str> {
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        d.find(text, &mut scratch, &mut out);
        out.into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn finds_pii_in_free_text() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "email",
                "mail john.doe+cb@example.co.uk now",
                &["john.doe+cb@example.co.uk"],
            ),
            (
                "email",
                "<a@b.io>, c_d@e-f.org.",
                &["a@b.io", "c_d@e-f.org"],
            ),
            (
                "phone",
                "call me at +8613812345678 tomorrow",
                &["+8613812345678"],
            ),
            ("phone", "tel: +86 138 1234 5678.", &["+86 138 1234 5678"]),
            (
                "phone",
                "US +1 (415) 555-2671 office",
                &["+1 (415) 555-2671"],
            ),
            ("phone", "UK +44 20 7946 0958", &["+44 20 7946 0958"]),
            ("phone", "手机13812345678请回电", &["13812345678"]),
            (
                "phone",
                "138 1234 5678 / 139-1234-5678",
                &["138 1234 5678", "139-1234-5678"],
            ),
            ("phone", "2024-05-15 13812345678", &["13812345678"]),
            (
                "card",
                "card 4111 1111 1111 1111 exp 12/25",
                &["4111 1111 1111 1111"],
            ),
            ("card", "4111-1111-1111-1111", &["4111-1111-1111-1111"]),
            ("card", "pan=5555555555554444;", &["5555555555554444"]),
            ("card", "amex 378282246310005", &["378282246310005"]),
            ("card", "visa13 4222222222222 ok", &["4222222222222"]),
            ("card", "mc2 2223003122003222", &["2223003122003222"]),
            ("card", "up 6200000000000005", &["6200000000000005"]),
            ("card", "4111 1111 1111 1111 12", &["4111 1111 1111 1111"]),
            ("card", "amex 3782 822463 10005", &["3782 822463 10005"]),
            ("card", "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", &[]),
            (
                "cn_id",
                "身份证 11010519491231002X 已验证",
                &["11010519491231002X"],
            ),
            ("cn_id", "id 110105194912310021", &[]),
            ("cn_id", "id 440524188001010014", &[]),
            ("cn_id", "11010519491231002x", &["11010519491231002x"]),
        ];
        for (det, text, want) in cases {
            assert_eq!(found(&only(det), text), *want, "{det}: {text}");
        }
    }

    #[test]
    fn ignores_near_misses() {
        let d = all();
        for text in [
            "4111 1111 1111 1112",                  // Luhn fails
            "4111111111111112",                     // Luhn fails
            "11010519491231002Y",                   // not a check char
            "110105194912310022",                   // wrong check digit
            "110105194902300024",                   // Feb 30th
            "1715760000",                           // unix seconds
            "1715760000000", // unix milliseconds (Luhn-valid? irrelevant: prefix 1)
            "1715760000123456", // microseconds
            "1715760000123456789", // nanoseconds
            "2024-05-15",    // ISO date
            "2024-05-15T10:20:30.123+08:00", // ISO timestamp
            "20240515123456789", // date-prefixed order number
            "2024051512345678", // date-prefixed order number
            "ORD-4111111111111111", // identifier, not a card
            "ORD13812345678", // glued to a word
            "v1.13812345678", // version-ish
            "3.13812345678", // a decimal
            "a1b2c3d4e5f6@", // no domain
            "user@localhost", // single-label domain
            "@example.com",  // no local part
            "x@y.c0m",       // numeric TLD
            "123e4567-e89b-12d3-a456-426614174000", // UUID
            "+12",           // too short for a phone
            "+1234567890123456", // 16 digits: too long for E.164
            "1+8613812345678", // arithmetic
            "12345678901",   // 11 digits, not 1[3-9]
            "138123456789",  // 12 digits
            "price 1380.12345678",
        ] {
            assert_eq!(found(&d, text), Vec::<&str>::new(), "{text}");
        }
    }

    #[test]
    fn long_numeric_runs_are_cut() {
        let mut groups = Vec::new();
        let text = "1 ".repeat(100);
        let end = token(text.as_bytes(), 0, &mut groups);
        assert_eq!(
            (groups.len(), end),
            (MAX_TOKEN_GROUPS, 2 * MAX_TOKEN_GROUPS - 1)
        );
        // Cards are still found after the cut.
        let text = format!("{}4111 1111 1111 1111", "12 ".repeat(40));
        assert_eq!(found(&all(), &text), vec!["4111 1111 1111 1111"]);
    }

    #[test]
    fn leftmost_longest() {
        assert_eq!(
            found(&all(), "13812345678@163.com"),
            vec!["13812345678@163.com"]
        );
        assert_eq!(found(&all(), "+8613812345678"), vec!["+8613812345678"]);
        assert_eq!(
            found(&only("phone"), "13812345678@163.com"),
            vec!["13812345678"]
        );
    }

    #[test]
    fn luhn_and_issuers() {
        let digits = |s: &str| s.bytes().map(|c| c - b'0').collect::<Vec<u8>>();
        for ok in [
            "4111111111111111",
            "5555555555554444",
            "378282246310005",
            "6011111111111117",
            "3530111333300000",
            "30569309025904",
        ] {
            assert!(luhn_ok(&digits(ok)) && issuer_ok(&digits(ok)), "{ok}");
        }
        assert!(!luhn_ok(&digits("4111111111111112")));
        assert!(!issuer_ok(&digits("1111111111111117")));
        assert!(!issuer_ok(&digits("2024051512345678")));
    }

    #[test]
    fn cn_id_rules() {
        assert!(cn_id_ok(b"11010519491231002X"));
        assert!(cn_id_ok(b"11010519491231002x"));
        assert!(!cn_id_ok(b"11010519491231002"));
        assert!(!cn_id_ok(b"99010519491231002X"), "unknown province");
        assert!(!cn_id_ok(b"11010518991231002X"), "born before 1900");
        assert!(date_ok(2000, 2, 29) && !date_ok(1900, 2, 29) && !date_ok(2023, 13, 1));
    }

    #[test]
    fn wants_a_trigger() {
        let d = only("email");
        assert!(d.wants(0, true) && !d.wants(30, false) && !d.wants(usize::MAX, false));
        let d = only("card");
        assert!(d.wants(13, false) && !d.wants(12, false) && !d.wants(12, true));
        let d = only("cn_id");
        assert!(d.wants(17, false) && !d.wants(16, false));
        let d = all();
        assert!(d.wants(8, false) && !d.wants(7, false) && d.wants(0, true));
        assert!(!Detectors::default().wants(usize::MAX, true));
    }

    /// [`Detectors::wants`] never skips a text a detector finds something
    /// in: one digit fewer than each detector's shortest finding is not
    /// enough, and those findings are found.
    #[test]
    fn wants_every_shortest_finding() {
        for (name, text) in [
            ("phone", "+49301234"),
            ("phone", "13812345678"),
            ("card", "4222222222222"),
            ("cn_id", "11010519491231002X"),
            ("email", "a@b.co"),
        ] {
            let d = only(name);
            let digits = text.bytes().filter(u8::is_ascii_digit).count();
            assert_eq!(found(&d, text), [text], "{name}");
            assert!(d.wants(digits, text.contains('@')), "{name} {text}");
        }
        assert_eq!(found(&all(), "+4930123"), Vec::<&str>::new());
        assert!(!all().wants(7, false), "+4930123 has 7 digits: too short");
    }
}

/// [`Detectors::wants`] is sound: whatever a detector finds in a text, the
/// text's digit count and `@` make it wanted, so skipping the others loses
/// nothing.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod skip_is_sound {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn a_text_with_a_finding_is_wanted(
            text in "[+]?[1-9][0-9 ().-]{6,24}[0-9Xx]|[0-9 +()@.Xx_a-]{0,40}|[a-z.]{1,5}@[a-z]{1,4}\\.[a-z]{2,3}",
            enabled in 1u8..16,
        ) {
            let mut d = Detectors::default();
            for (k, name) in Detector::NAMES.iter().enumerate() {
                if enabled >> k & 1 == 1 {
                    d.enable(Detector::parse(name).unwrap_or(Detector::Email));
                }
            }
            let mut found = Vec::new();
            d.find(&text, &mut Scratch::default(), &mut found);
            let digits = text.bytes().filter(u8::is_ascii_digit).count();
            if !found.is_empty() {
                prop_assert!(d.wants(digits, text.contains('@')), "{text:?} {found:?}");
            }
        }
    }
}
