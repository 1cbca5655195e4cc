//! Which channel a request belongs to.
//!
//! A request's path is matched in **one canonical form**
//! ([`canonical_path`]): what a lenient service would make of it. Query and
//! fragment go; `\` becomes `/`; percent-encoded unreserved characters and
//! encoded `/` and `\` are decoded; `;` parameters are cut from every
//! segment (Tomcat's `/..;/`); `.` and `..` segments are resolved and
//! repeated slashes merged. A channel compares its prefix with that form
//! ASCII-case-folded, unless it is case-sensitive. The prefix is a plain
//! string prefix, exactly as Envoy's route `prefix` matches (so a channel
//! covers at least what an Envoy route with the same prefix sends to the
//! service): `/callbacks/payments` also covers `/callbacks/payments-v2`;
//! list the more specific channel first, or end the prefix with `/`.
//!
//! Then [`route`] picks the first channel the canonical path fits, or, under
//! a *guard prefix* (`reject_unmatched`), refuses the request, or lets it
//! pass. Services differ in which of those normalisations they apply, so
//! when the path holds anything to normalise (an escape, `\`, `;`, `//`, a
//! dot segment) the filter also reads it **every other way** a service
//! might: each combination of reading `\` as `/` or not, cutting `;`
//! parameters (before or after reading `\` as `/`) or not, merging
//! slashes or not and resolving dot segments or not (RFC 3986 style
//! without merging, and that followed by merging), on the path as sent
//! (and with its parameters cut first, decoded or not), with the few
//! non-ASCII letters Java's case-insensitive matching equates with ASCII
//! ones (Kelvin sign `K` as `k`, `ſ` as `s`, `İ`/`ı` as `i`) folded, decoded once,
//! and, while it still holds an encoded `%` or `;` (`%252e`: double
//! encoding) or an escape a decoding round assembled (`%%32e` decodes to
//! `%2e`), decoded again, up to [`MAX_DECODE_ROUNDS`] rounds. Each
//! reading must agree with the canonical verdict:
//!
//! - a reading that fits a channel: the canonical path fits the same one;
//! - a reading under a guard prefix: the canonical path is guarded too (in
//!   a channel or refused).
//!
//! So `/callbacks/payments/../logistics` is refused, not sent to the
//! unsigned `logistics` channel (a service that does not resolve `..` would
//! hand it to the payments handler), and so is
//! `/%252e%252e/callbacks/payments` (a service that decodes twice reads the
//! payments path). A disagreement is [`Refusal::AmbiguousPath`]: answered
//! 404, never forwarded. Legitimate callback senders do not send such
//! paths. Ordinary paths (nothing to normalise) cost one match.

use std::borrow::Cow;

/// Further decoding rounds looked at while the decoded path still holds an
/// encoded `%` or `;`. A path still encoded after them is refused when the
/// filter has anything to protect.
pub const MAX_DECODE_ROUNDS: usize = 4;
/// Most decoding chains followed for one path (the path as sent and each
/// form with its `;` parameters cut); a path that needs more is refused
/// when the filter has anything to protect.
const MAX_CHAINS: usize = 16;

/// Longest `path_prefix` or guard prefix accepted in the configuration.
pub const MAX_PREFIX_LEN: usize = 1024;

/// `match` of a channel: a path prefix (on the canonical path) and,
/// optionally, a host list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelMatch {
    /// Canonical (see [`canonical_prefix`]); lower case unless
    /// `case_sensitive`.
    path_prefix: String,
    case_sensitive: bool,
    /// Normalised by [`normalize_host`]. Empty = any host.
    hosts: Vec<String>,
}

impl ChannelMatch {
    /// `path_prefix` should be canonical ([`canonical_prefix`] checks it
    /// at load); `hosts` are normalised here.
    pub fn new(path_prefix: &str, case_sensitive: bool, hosts: &[String]) -> Self {
        let path_prefix = if case_sensitive {
            path_prefix.to_string()
        } else {
            path_prefix.to_ascii_lowercase()
        };
        Self {
            path_prefix,
            case_sensitive,
            hosts: hosts.iter().map(|h| normalize_host(h)).collect(),
        }
    }

    /// Whether the request fits this channel, as [`route`] decides it
    /// (ignoring guard prefixes and the other channels).
    pub fn matches(&self, path: &str, authority: &str) -> bool {
        route(std::slice::from_ref(self), |m| m, &[], path, authority) == Route::Channel(0)
    }

    fn fits(&self, path: &str, host: &str) -> bool {
        let prefixed = if self.case_sensitive {
            path.starts_with(self.path_prefix.as_str())
        } else {
            starts_with_folded(path, &self.path_prefix)
        };
        prefixed && (self.hosts.is_empty() || self.hosts.iter().any(|h| h == host))
    }

    /// Whether every request `later` fits also fits `self`, so that `later`,
    /// listed after `self`, could never be chosen.
    pub fn shadows(&self, later: &ChannelMatch) -> bool {
        let prefix_covers = match (self.case_sensitive, later.case_sensitive) {
            (false, _) => later
                .path_prefix
                .to_ascii_lowercase()
                .starts_with(self.path_prefix.as_str()),
            (true, true) => later.path_prefix.starts_with(self.path_prefix.as_str()),
            // `later` also takes case variants that `self` does not.
            (true, false) => false,
        };
        let hosts_cover = self.hosts.is_empty()
            || (!later.hosts.is_empty() && later.hosts.iter().all(|h| self.hosts.contains(h)));
        prefix_covers && hosts_cover
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The index of its channel.
    Channel(usize),
    /// No channel and no guard prefix: only the header rules apply.
    Pass,
    /// Answered 404 by the filter, never forwarded.
    Refuse(Refusal),
}

/// Why a request was refused by [`route`] (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Under a guard prefix, but no channel fits.
    NoChannel,
    /// The path reads differently to services that normalise it
    /// differently, and the readings fall into different channels.
    AmbiguousPath,
}

impl Refusal {
    pub const ALL: [Refusal; 2] = [Refusal::NoChannel, Refusal::AmbiguousPath];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NoChannel => crate::core::names::code::NO_CHANNEL,
            Refusal::AmbiguousPath => crate::core::names::code::AMBIGUOUS_PATH,
        }
    }
}

/// The verdict for one reading of the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fit {
    Channel(usize),
    Guarded,
    Open,
}

impl Fit {
    /// Does `self` (the canonical reading) protect at least what `other`
    /// (another reading) would?
    fn covers(self, other: Fit) -> bool {
        match other {
            Fit::Open => true,
            Fit::Guarded => self != Fit::Open,
            Fit::Channel(i) => self == Fit::Channel(i),
        }
    }
}

/// Whether `path`, ASCII-case-folded, starts with `prefix` (lower case):
/// as `path.to_ascii_lowercase().starts_with(prefix)`, without the copy.
fn starts_with_folded(path: &str, prefix: &str) -> bool {
    path.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// Chooses the route of a request: `path` is the `:path` pseudo-header
/// (query included), `authority` the `:authority`. `guards` are canonical,
/// lower-case guard prefixes. See the module documentation for the rules.
pub fn route<C>(
    channels: &[C],
    matcher: impl Fn(&C) -> &ChannelMatch,
    guards: &[String],
    path: &str,
    authority: &str,
) -> Route {
    let host = host_of(authority);
    let fit = |path: &str| -> Fit {
        if let Some(i) = channels.iter().position(|c| matcher(c).fits(path, &host)) {
            return Fit::Channel(i);
        }
        if guards.iter().any(|g| starts_with_folded(path, g)) {
            Fit::Guarded
        } else {
            Fit::Open
        }
    };
    let protects = !channels.is_empty() || !guards.is_empty();

    let raw = strip_query(path);
    let tricks = has_tricks(raw);
    let main = fit(&canonical(raw, tricks));
    if !tricks {
        // Every reading is the canonical one (up to case).
        return verdict(true, main);
    }
    if raw.len() > MAX_ANALYSED_PATH && protects {
        return Route::Refuse(Refusal::AmbiguousPath);
    }
    let mut agreed = true;
    let mut check = |decoded: &str| {
        // Java's case-insensitive matching also equates a few non-ASCII
        // letters with ASCII ones: that reading too, when there are any.
        let folded = unicode_folded(decoded);
        for text in std::iter::once(decoded).chain(folded.as_deref()) {
            for steps in Steps::ALL {
                let reading = normalize(text, steps);
                // RFC 3986 dot removal, then empty segments ignored (a
                // server that resolves dots as the RFC says in front of a
                // router that skips empty segments): `/.//callbacks//..`
                // reads as `/callbacks/`, where merging first reads `/`.
                if steps.dots && !steps.merge && reading.contains("//") {
                    agreed &= main.covers(fit(&merge_slashes(&reading)));
                }
                agreed &= main.covers(fit(&reading));
            }
        }
    };
    // The path as sent is decoded round by round. `;` parameters may be
    // cut before any round, and before `\` is read as `/` (Tomcat cuts a
    // parameter up to the next `/` first: `/\;\%/callbacks/payments` is
    // `/\/callbacks/payments` there, that is `/callbacks/payments`, where
    // cutting after `\` became `/` gives `/%/callbacks/payments`), so
    // every form holding `;` also starts a chain of its own with its
    // parameters cut.
    let mut starts = vec![raw.to_string()];
    let mut seen: Vec<String> = Vec::new();
    let mut settled_all = true;
    while let Some(start) = starts.pop() {
        if seen.contains(&start) {
            continue;
        }
        if seen.len() >= MAX_CHAINS {
            settled_all = false;
            break;
        }
        let mut visit = |form: &str, starts: &mut Vec<String>| {
            check(form);
            if form.contains(';') {
                starts.push(cut_params(form));
            }
        };
        visit(&start, &mut starts);
        let mut decoded = decode_once(&start);
        visit(&decoded, &mut starts);
        let mut settled = !still_encoded(&decoded);
        for _ in 0..MAX_DECODE_ROUNDS {
            if settled {
                break;
            }
            // A full decoder turns `%252e` into `%2e` and stops there; the
            // next round would make it `.`: both are readings.
            let revealed = decode_delimiters(&decoded);
            visit(&revealed, &mut starts);
            decoded = decode_once(&revealed);
            visit(&decoded, &mut starts);
            settled = !still_encoded(&decoded);
        }
        settled_all &= settled;
        seen.push(start);
    }
    if !settled_all && protects {
        agreed = false;
    }
    verdict(agreed, main)
}

fn verdict(agreed: bool, main: Fit) -> Route {
    match (agreed, main) {
        (false, _) => Route::Refuse(Refusal::AmbiguousPath),
        (true, Fit::Channel(i)) => Route::Channel(i),
        (true, Fit::Guarded) => Route::Refuse(Refusal::NoChannel),
        (true, Fit::Open) => Route::Pass,
    }
}

/// Longest path (query excluded) whose readings are analysed; a longer one
/// with anything to normalise is refused when the filter protects anything
/// (the analysis costs up to about a hundred passes over the path).
pub const MAX_ANALYSED_PATH: usize = 8192;

/// Whether some service could read `raw` differently from its canonical
/// form (beyond case): it holds an escape, a `\`, a `;`, an empty segment
/// or a dot segment. One pass over the bytes: it runs for every request.
fn has_tricks(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    let dot_segment = |segment: &[u8]| matches!(segment, b"." | b"..");
    let mut segment_start = 0;
    let mut previous = 0u8;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            0x80.. | b'%' | b'\\' | b';' => return true,
            b'/' => {
                if previous == b'/' || dot_segment(bytes.get(segment_start..i).unwrap_or_default())
                {
                    return true;
                }
                segment_start = i + 1;
            }
            _ => {}
        }
        previous = b;
    }
    dot_segment(bytes.get(segment_start..).unwrap_or_default())
}

/// The normalisation steps a service may or may not apply; every
/// combination is a reading of the path.
#[derive(Debug, Clone, Copy)]
struct Steps {
    /// `\` read as `/`.
    backslash: bool,
    /// `;` parameters cut from each segment.
    params: bool,
    /// Empty segments (repeated slashes) dropped.
    merge: bool,
    /// `.` and `..` segments resolved.
    dots: bool,
}

impl Steps {
    const CANONICAL: Steps = Steps {
        backslash: true,
        params: true,
        merge: true,
        dots: true,
    };

    const ALL: [Steps; 16] = {
        let mut all = [Self::CANONICAL; 16];
        let mut i = 0;
        while i < 16 {
            all[i] = Steps {
                backslash: i & 1 != 0,
                params: i & 2 != 0,
                merge: i & 4 != 0,
                dots: i & 8 != 0,
            };
            i += 1;
        }
        all
    };
}

/// The path without query and fragment.
fn strip_query(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or(path)
}

/// The canonical form of a path (query already removed), the one channels
/// and guard prefixes are matched on:
///
/// 1. `%XX` decoded when it encodes an unreserved character (letters,
///    digits, `-._~`), `/` or `\`; every other escape is kept, with
///    upper-case hex;
/// 2. `\` read as `/`;
/// 3. in each segment, everything from the first `;` on removed;
/// 4. empty segments dropped, `.` segments dropped, `..` removes the
///    segment before it (never above the root);
/// 5. one leading `/`, and a trailing `/` when the last segment was empty,
///    `.` or `..`.
///
/// ```
/// use callback_guard::core::channel::canonical_path;
/// assert_eq!(canonical_path("/callbacks;x=1/./%70ayments"), "/callbacks/payments");
/// assert_eq!(canonical_path(r"/callbacks\logistics\..\payments"), "/callbacks/payments");
/// assert_eq!(canonical_path("//a/b/../"), "/a/");
/// assert_eq!(canonical_path("/a/%252e%3f"), "/a/%252e%3F");
/// ```
pub fn canonical_path(path: &str) -> String {
    canonical(path, has_tricks(path)).into_owned()
}

/// [`canonical_path`] of `path` (`tricks`: [`has_tricks`] of it),
/// borrowing `path` when it is canonical already: an absolute path with
/// nothing to normalise, the usual request.
fn canonical(path: &str, tricks: bool) -> Cow<'_, str> {
    if !tricks && path.starts_with('/') {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(normalize(&decode_once(path), Steps::CANONICAL))
    }
}

/// Steps 2 to 5 of [`canonical_path`], each only when `steps` says so. A
/// step left out leaves that feature as it is (without `merge` and `dots`
/// the segments are joined back unchanged, RFC 3986 style when only `dots`
/// is on: `..` then also removes an empty segment).
fn normalize(decoded: &str, steps: Steps) -> String {
    let slashed;
    let text = if steps.backslash && decoded.contains('\\') {
        slashed = decoded.replace('\\', "/");
        slashed.as_str()
    } else {
        decoded
    };
    let mut segments: Vec<&str> = Vec::new();
    let mut directory = false;
    // The first piece is what precedes the leading '/' (empty for an
    // absolute path); it is not a segment.
    for (i, segment) in text.split('/').enumerate() {
        let segment = if steps.params {
            segment.split(';').next().unwrap_or("")
        } else {
            segment
        };
        if i == 0 && segment.is_empty() {
            continue;
        }
        directory = segment.is_empty() || (steps.dots && (segment == "." || segment == ".."));
        match segment {
            "" if steps.merge => {}
            "." if steps.dots => {}
            ".." if steps.dots => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(text.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || (directory && !out.ends_with('/')) {
        out.push('/');
    }
    out
}

/// Each `/`-separated segment cut at its first `;` (a `\` is not a
/// separator here).
fn cut_params(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(segment.split(';').next().unwrap_or(""));
    }
    out
}

/// Non-ASCII letters that Java's case-insensitive comparison
/// (`String.equalsIgnoreCase`, `regionMatches(true, …)`, hence Spring's
/// case-insensitive path matching) equates with an ASCII letter, because
/// their upper or lower case is one: Kelvin sign, long s, dotted capital I,
/// dotless small i.
const UNICODE_FOLDS: [(char, char); 4] = [
    ('\u{212A}', 'k'),
    ('\u{17F}', 's'),
    ('\u{130}', 'i'),
    ('\u{131}', 'i'),
];

/// `decoded` with its non-ASCII escapes decoded (lossy UTF-8) and the
/// [`UNICODE_FOLDS`] letters replaced by their ASCII letter; `None` when
/// it holds none of them.
fn unicode_folded(decoded: &str) -> Option<String> {
    if decoded.is_ascii() && !decoded.contains('%') {
        return None;
    }
    let bytes = decoded.as_bytes();
    let mut raw = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2))
            && let Some(c @ 0x80..) = escaped(h, l)
        {
            raw.push(c);
            i += 3;
            continue;
        }
        raw.push(b);
        i += 1;
    }
    let text = String::from_utf8_lossy(&raw);
    if !text
        .chars()
        .any(|c| UNICODE_FOLDS.iter().any(|(u, _)| *u == c))
    {
        return None;
    }
    Some(
        text.chars()
            .map(|c| {
                UNICODE_FOLDS
                    .iter()
                    .find(|(u, _)| *u == c)
                    .map_or(c, |(_, a)| *a)
            })
            .collect(),
    )
}

/// Repeated slashes as one.
fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c != '/' || !out.ends_with('/') {
            out.push(c);
        }
    }
    out
}

/// Step 1 of [`canonical_path`]: one decoding round of the escapes every
/// lenient service decodes (`%5C` becomes `\`, read as `/` later).
fn decode_once(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (bytes.get(i + 1), bytes.get(i + 2))
            && let (Some(h), Some(l)) = ((*h as char).to_digit(16), (*l as char).to_digit(16))
        {
            let c = (h * 16 + l) as u8;
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'/' | b'\\') {
                out.push(c as char);
            } else {
                out.push('%');
                out.push(hex_digit(c >> 4));
                out.push(hex_digit(c & 0xf));
            }
            i += 3;
            continue;
        }
        // Multi-byte UTF-8 (lossy header data) is copied through char by char.
        match path.get(i..).and_then(|rest| rest.chars().next()) {
            Some(ch) => {
                out.push(ch);
                i += ch.len_utf8();
            }
            None => break,
        }
    }
    out
}

fn hex_digit(n: u8) -> char {
    char::from_digit(u32::from(n), 16)
        .unwrap_or('0')
        .to_ascii_uppercase()
}

/// Whether a service that decodes once more reads `decoded` differently:
/// it still holds an escape of `%` or `;`, or of a character
/// [`decode_once`] decodes. The latter arise when a decoding round
/// assembles a new escape: `%%32e` decodes to `%2e`, a second decoding to
/// `.` (Python's `unquote` twice, for one).
fn still_encoded(decoded: &str) -> bool {
    decoded.as_bytes().windows(3).any(|w| match w {
        [b'%', h, l] => escaped(*h, *l).is_some_and(|c| {
            matches!(c, b'%' | b';') || c.is_ascii_alphanumeric() || b"-._~/\\".contains(&c)
        }),
        _ => false,
    })
}

/// The byte `%hl` encodes, for two hex digits of either case.
fn escaped(h: u8, l: u8) -> Option<u8> {
    let h = (h as char).to_digit(16)?;
    let l = (l as char).to_digit(16)?;
    u8::try_from(h * 16 + l).ok()
}

/// What a further decoding reveals beyond [`decode_once`]: `%25` (`%`) and
/// `%3B` (`;`), in either case (an assembled escape may be lower case).
fn decode_delimiters(decoded: &str) -> String {
    let bytes = decoded.as_bytes();
    let mut out = String::with_capacity(decoded.len());
    let mut i = 0;
    while let Some(rest) = decoded.get(i..) {
        let Some(ch) = rest.chars().next() else { break };
        if ch == '%'
            && let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2))
            && let Some(c @ (b'%' | b';')) = escaped(h, l)
        {
            out.push(c as char);
            i += 3;
            continue;
        }
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Checks a configured path or guard prefix: it must start with `/`, be
/// visible ASCII without `?` or `#`, at most [`MAX_PREFIX_LEN`] bytes, and
/// be canonical (the error proposes the canonical spelling).
pub fn canonical_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.starts_with('/') {
        return Err("must start with '/'".into());
    }
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(format!("must be at most {MAX_PREFIX_LEN} bytes"));
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '?' | '#'))
    {
        return Err(format!(
            "{prefix:?}: character {c:?} is not allowed (visible ASCII, no query or fragment; percent-encode the rest)"
        ));
    }
    let canonical = canonical_path(prefix);
    if canonical != prefix {
        return Err(format!(
            "{prefix:?} is not a canonical path (paths are matched canonical: decoded, dot-segments resolved, slashes merged, no ';' parameters); write {canonical:?}"
        ));
    }
    Ok(())
}

/// The host of an `:authority` (or of a configured host) as channels
/// compare it: user info and port removed (an IPv6 literal keeps its
/// address, without brackets), trailing dots removed, ASCII lower case.
///
/// ```
/// use callback_guard::core::channel::normalize_host;
/// assert_eq!(normalize_host("Hooks.Example.COM.:80"), "hooks.example.com");
/// assert_eq!(normalize_host("[::1]:10000"), "::1");
/// ```
pub fn normalize_host(authority: &str) -> String {
    host_of(authority).into_owned()
}

/// [`normalize_host`], borrowing `authority` when it is lower case already.
fn host_of(authority: &str) -> Cow<'_, str> {
    let a = authority.trim();
    let a = a.rsplit_once('@').map_or(a, |(_, host)| host);
    let host = if let Some(rest) = a.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or(rest)
    } else if a.bytes().filter(|b| *b == b':').count() == 1 {
        // host:port (a bare IPv6 address has more than one ':')
        match a.split_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => a,
        }
    } else {
        a
    };
    let host = host.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// `match.methods`: the HTTP methods that carry a channel's callbacks.
/// A request with another method and *no body* (a provider's GET
/// verification handshake, a HEAD probe) is not a callback and passes
/// through untouched; one that carries a body is checked whatever its
/// method, so a body can never escape the checks by picking a method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Methods(Vec<String>);

impl Methods {
    /// The default: the methods providers deliver callbacks with.
    pub const DEFAULT: [&'static str; 3] = ["POST", "PUT", "PATCH"];

    /// `methods` are upper-case tokens (validated at load).
    pub fn new(methods: Vec<String>) -> Self {
        Self(methods)
    }

    /// Whether a request is a callback of the channel: its method is
    /// listed, or it carries a body.
    pub fn is_callback(&self, method: &str, has_body: bool) -> bool {
        has_body || self.0.iter().any(|m| m == method)
    }
}

impl Default for Methods {
    fn default() -> Self {
        Self(Self::DEFAULT.iter().map(|m| (*m).to_string()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_decide_what_is_a_callback() {
        let m = Methods::default();
        assert!(m.is_callback("POST", false));
        assert!(m.is_callback("PATCH", true));
        // A GET handshake without a body is not a callback...
        assert!(!m.is_callback("GET", false));
        // ...but nothing with a body escapes, whatever its method.
        assert!(m.is_callback("GET", true));
        assert!(m.is_callback("PROPFIND", true));
        let post_only = Methods::new(vec!["POST".into()]);
        assert!(!post_only.is_callback("PUT", false));
    }
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn m(prefix: &str, hosts: &[&str]) -> ChannelMatch {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        ChannelMatch::new(prefix, false, &hosts)
    }

    /// The shipped demo: payments (signed), github, logistics (unsigned),
    /// guard `/callbacks/`.
    fn demo() -> (Vec<ChannelMatch>, Vec<String>) {
        (
            vec![
                m("/callbacks/payments", &[]),
                m("/callbacks/github", &[]),
                m("/callbacks/logistics", &[]),
            ],
            vec!["/callbacks/".to_string()],
        )
    }

    fn demo_route(path: &str) -> Route {
        let (channels, guards) = demo();
        route(&channels, |c| c, &guards, path, "hooks.example.com")
    }

    fn unguarded_route(path: &str) -> Route {
        let (channels, _) = demo();
        route(&channels, |c| c, &[], path, "hooks.example.com")
    }

    /// Ways a service behind the proxy may read a path, written
    /// independently of the filter's code: raw, decoding once or twice,
    /// stripping `;` parameters before or after decoding, resolving dot
    /// segments or not.
    mod services {
        fn full_decode(s: &str) -> String {
            let b = s.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
                if b[i] == b'%'
                    && let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2))
                {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        }

        fn strip_params(s: &str) -> String {
            s.split('/')
                .map(|seg| seg.split(';').next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("/")
        }

        fn resolve(s: &str) -> String {
            let mut out: Vec<&str> = Vec::new();
            for seg in s.split('/') {
                match seg {
                    "" | "." => {}
                    ".." => {
                        out.pop();
                    }
                    x => out.push(x),
                }
            }
            format!("/{}", out.join("/"))
        }

        /// RFC 3986 remove_dot_segments: empty segments stay, so `..`
        /// may remove one.
        fn rfc_resolve(s: &str) -> String {
            let mut out: Vec<&str> = Vec::new();
            for seg in s.split('/').skip(1) {
                match seg {
                    "." => {}
                    ".." => {
                        out.pop();
                    }
                    x => out.push(x),
                }
            }
            format!("/{}", out.join("/"))
        }

        fn slashes(s: String) -> String {
            s.replace('\\', "/")
        }

        pub fn readings(raw: &str) -> Vec<(&'static str, String)> {
            vec![
                ("raw", raw.to_string()),
                ("decode", full_decode(raw)),
                ("decode+resolve", resolve(&slashes(full_decode(raw)))),
                ("nginx", resolve(&full_decode(raw))),
                ("rfc3986", rfc_resolve(&full_decode(raw))),
                ("tomcat", resolve(&full_decode(&strip_params(raw)))),
                ("spring", resolve(&strip_params(&slashes(full_decode(raw))))),
                ("decode twice", full_decode(&full_decode(raw))),
                (
                    "decode twice+resolve",
                    resolve(&strip_params(&slashes(full_decode(&full_decode(raw))))),
                ),
            ]
        }
    }

    /// The security property behind the routing rules, over every path of
    /// up to four segments built from tricky pieces: whenever some service
    /// would read the path as the payments channel's, the filter treats it
    /// as the payments channel or refuses it; whenever a service would read
    /// it under the guard prefix, the filter does not let it pass.
    #[test]
    #[cfg(not(target_arch = "wasm32"))] // about 40 000 paths: native only
    fn no_service_reading_escapes_the_filter() {
        const PIECES: [&str; 14] = [
            "callbacks",
            "Payments",
            "logistics",
            "..",
            ".",
            "",
            "%2e%2e",
            "%252e%252e",
            "..;x",
            "%3b",
            "%2f",
            "%5c",
            r"\",
            "%2570ayments",
        ];
        let (channels, guards) = demo();
        let mut checked = 0;
        let mut stack: Vec<String> = vec![String::new()];
        while let Some(path) = stack.pop() {
            if path.matches('/').count() < 4 {
                for piece in PIECES {
                    stack.push(format!("{path}/{piece}"));
                }
            }
            if path.is_empty() {
                continue;
            }
            let guarded = route(&channels, |c| c, &guards, &path, "");
            let unguarded = route(&channels, |c| c, &[], &path, "");
            for (service, reading) in services::readings(&path) {
                let folded = reading.to_ascii_lowercase();
                if folded.starts_with("/callbacks/payments") {
                    for r in [guarded, unguarded] {
                        assert!(
                            matches!(r, Route::Channel(0) | Route::Refuse(_)),
                            "{path:?} reads as {reading:?} ({service}) but routes {r:?}"
                        );
                    }
                }
                if folded.starts_with("/callbacks/") {
                    assert_ne!(
                        guarded,
                        Route::Pass,
                        "{path:?} reads as {reading:?} ({service}) under the guard"
                    );
                }
            }
            checked += 1;
        }
        assert!(checked > 38_000, "{checked}");
    }

    #[test]
    fn prefix_and_hosts() {
        let m = m("/callbacks/payments", &["hooks.example.com"]);
        assert!(m.matches("/callbacks/payments", "hooks.example.com"));
        assert!(m.matches("/callbacks/payments/x?y=1", "Hooks.Example.com:8443"));
        assert!(!m.matches("/callbacks/pay", "hooks.example.com"));
        assert!(!m.matches("/callbacks/payments", "evil.example.com"));
        assert!(!m.matches("/other?/callbacks/payments", "hooks.example.com"));
    }

    #[test]
    fn issue_12_path_variants_land_in_the_payments_channel() {
        for p in [
            "/callbacks;x=1/payments",
            "/CALLBACKS/PAYMENTS",
            "/callbacks/Payments",
            r"/callbacks\payments",
            "/callbacks//payments",
            "//callbacks/payments/",
            "/callbacks/./payments",
            "/callbacks/%70ayments",
            "/callbacks%2Fpayments",
            "/callbacks%2fpayments?x=1",
            "/callbacks%5Cpayments",
            "/callbacks/..;/callbacks/payments",
            "/callbacks/%2e/payments",
            "/callbacks/payments;jsessionid=1",
            "/callbacks/payments/%2570", // decodes twice to the same channel
        ] {
            assert_eq!(demo_route(p), Route::Channel(0), "{p}");
            assert_eq!(unguarded_route(p), Route::Channel(0), "{p} (no guard)");
        }
    }

    #[test]
    fn readings_that_disagree_are_refused() {
        for p in [
            // As sent: logistics; canonical: payments (and the reverse).
            "/callbacks/logistics/../payments",
            "/callbacks/payments/../logistics",
            "/callbacks/payments/..;/logistics",
            "/callbacks/payments%2F..%2Flogistics",
            // As sent: payments; canonical: outside every channel.
            "/callbacks/payments/../../admin",
            // Decoded twice: payments.
            "/%252e%252e/callbacks/payments",
            "/callbacks%253Bx/payments",
            "/x/%252E%252E/callbacks/%2570ayments",
            // Decoded twice: logistics instead of payments.
            "/callbacks/payments/%252e%252e/logistics",
            // Still encoded after every round.
            "/callbacks/payments/%252525252525252e",
        ] {
            assert_eq!(demo_route(p), Route::Refuse(Refusal::AmbiguousPath), "{p}");
            assert_eq!(
                unguarded_route(p),
                Route::Refuse(Refusal::AmbiguousPath),
                "{p} (no guard)"
            );
        }
        // Ambiguous only to some services: RFC 3986 dot removal without
        // merging (`//..` removes the empty segment), decoding without
        // resolving, keeping `;` parameters.
        for p in [
            "/callbacks/payments//../logistics",
            "/callbacks%2fpayments%2f..%2flogistics",
            "/x/../callbacks/payments/..;x",
            r"/\/CALLBACKS/Payments/..;x",
        ] {
            assert_eq!(
                unguarded_route(p),
                Route::Refuse(Refusal::AmbiguousPath),
                "{p} (no guard)"
            );
        }
        // Too long to analyse, and holding something to normalise.
        let long = format!("/callbacks/payments/{}", "a/".repeat(MAX_ANALYSED_PATH / 2));
        assert_eq!(demo_route(&long), Route::Channel(0));
        assert_eq!(
            demo_route(&format!("{long}%41")),
            Route::Refuse(Refusal::AmbiguousPath)
        );
        // Under the guard as sent, outside it canonical.
        assert_eq!(
            demo_route("/callbacks/../admin"),
            Route::Refuse(Refusal::AmbiguousPath)
        );
        assert_eq!(unguarded_route("/callbacks/../admin"), Route::Pass);
    }

    /// Found by the `channel` fuzz target: a decoding round can assemble
    /// a new escape out of `%` and decoded digits (`%%32e` decodes to
    /// `%2e`, which a second decoding, e.g. Python's `unquote` twice,
    /// makes `.`). The filter stopped after one round because no `%25` or
    /// `%3B` was left, so `/x/%%32e%%32e/callbacks/payments` passed while
    /// such a service read `/callbacks/payments`.
    #[test]
    fn escapes_assembled_by_decoding_are_decoded_again() {
        for p in [
            "/x/%%32e%%32e/callbacks/payments",
            "/x/%%32E%%32E/callbacks/payments",
            "/x/%%32%65%%32%65/callbacks/payments",
            "/callbacks/%%37%30ayments",
            "/callbacks%%32fpayments",
            "/callbacks/logistics/..%%33b/payments",
        ] {
            assert_eq!(demo_route(p), Route::Refuse(Refusal::AmbiguousPath), "{p}");
            assert_eq!(
                unguarded_route(p),
                Route::Refuse(Refusal::AmbiguousPath),
                "{p} (no guard)"
            );
        }
        // An assembled escape of anything else reads the same decoded
        // again: nothing to refuse.
        assert_eq!(demo_route("/callbacks/payments/%%33f"), Route::Channel(0));
    }

    /// Found by the `channel` fuzz target: RFC 3986 dot removal keeps
    /// empty segments (`//..` removes only the empty one), and a router
    /// that then skips empty segments reads what no other reading did:
    /// `/.///callbacks//../\.//./.././././.` is `///callbacks/` after the
    /// RFC, `/callbacks/` (the guard) after merging, `/` canonical.
    #[test]
    fn rfc_dot_removal_then_merged_slashes_is_a_reading() {
        for p in [
            r"/.///callbacks//../\.//./.././././.",
            "/.///callbacks//..",
            "/.//callbacks//github//..",
        ] {
            assert_eq!(demo_route(p), Route::Refuse(Refusal::AmbiguousPath), "{p}");
        }
    }

    /// Found by the `channel` fuzz target: Tomcat cuts `;` parameters
    /// before it reads `\` as `/`, so the parameter runs to the next `/`
    /// and takes the backslashes' segment boundaries with it:
    /// `//\\\;\%/hooks/x` is `//\\\/hooks/x` and then `/hooks/x`.
    #[test]
    fn parameters_cut_before_backslashes_are_a_reading() {
        let channels = [m("/hooks/", &[]), m("/callbacks/payments", &[])];
        for p in [r"//\\\;\%/hooks/x", r"/\;\%/callbacks/payments"] {
            assert_eq!(
                route(&channels, |c| c, &[], p, ""),
                Route::Refuse(Refusal::AmbiguousPath),
                "{p}"
            );
        }
    }

    /// Found by the `channel` fuzz target: parameters cut first (before
    /// `\` becomes `/`), then the path decoded twice (`%253B` → `;`, cut
    /// again) reads `/callbacks/...`; the filter decoded the cut form once
    /// only, and let the request pass the guard.
    #[test]
    fn parameters_cut_first_then_decoded_twice_is_a_reading() {
        let p = "/x\\//\\\\\\\\\\..\\;\u{FFFD}M\\\u{FFFD}\u{FFFD}@W%2\\/callbacks%253Bx/giFthu&b";
        assert_ne!(demo_route(p), Route::Pass, "{p}");
        assert!(matches!(demo_route(p), Route::Refuse(_)), "{p}");
    }

    /// Java's `equalsIgnoreCase` (Spring's case-insensitive matching)
    /// equates the Kelvin sign with `k` and `ſ` with `s`: a path spelled
    /// with them, raw or percent-encoded, reads as the channel there.
    #[test]
    fn unicode_letters_java_folds_to_ascii_are_a_reading() {
        for p in [
            "/callbac%E2%84%AAs/payments",
            "/callbacks/payment%C5%BF",
            "/callbac\u{212A}s/payments",
            "/callbacks/logi%C5%BFtics/../payments",
        ] {
            assert_eq!(demo_route(p), Route::Refuse(Refusal::AmbiguousPath), "{p}");
        }
        assert_eq!(
            unguarded_route("/callbac%E2%84%AAs/payments"),
            Route::Refuse(Refusal::AmbiguousPath)
        );
        // Other non-ASCII text is not folded.
        assert_eq!(
            demo_route("/callbacks/payments/caf%C3%A9"),
            Route::Channel(0)
        );
        assert_eq!(unguarded_route("/caf\u{e9}"), Route::Pass);
    }

    #[test]
    fn the_guard_refuses_what_fits_no_channel() {
        for p in [
            "/callbacks/",
            "/callbacks/payment",
            "/callbacks/unknown",
            "/CALLBACKS/unknown",
            "/callbacks/%252e%252e/payments",
            "/callbacks/%2e%2e%2fcallbacks%2fx",
            "/callbacks;x/other",
        ] {
            assert_eq!(demo_route(p), Route::Refuse(Refusal::NoChannel), "{p}");
        }
        for p in [
            "/health",
            "/callbacks",
            "/callbacksx/payments",
            "/other/%2e%2e/health",
        ] {
            assert_eq!(demo_route(p), Route::Pass, "{p}");
        }
        // Under the guard as sent (a service that does not decode sees it
        // there), outside it canonical.
        assert_eq!(
            demo_route("/callbacks/%2e%2e/payments"),
            Route::Refuse(Refusal::AmbiguousPath)
        );
        assert_eq!(unguarded_route("/callbacks/%2e%2e/payments"), Route::Pass);
        // Without the guard, double encoding that decodes outside every
        // channel passes (nothing to protect there).
        assert_eq!(
            unguarded_route("/callbacks/%252e%252e/payments"),
            Route::Pass
        );
        assert_eq!(unguarded_route("/callbacks/unknown"), Route::Pass);
    }

    #[test]
    fn first_fitting_channel_wins_on_the_canonical_path() {
        let channels = [
            m("/callbacks/payments-v2", &[]),
            m("/callbacks/payments", &[]),
        ];
        let r = |p| route(&channels, |c| c, &[], p, "");
        assert_eq!(r("/callbacks/payments-v2/x"), Route::Channel(0));
        assert_eq!(r("/callbacks/PAYMENTS-V2"), Route::Channel(0));
        assert_eq!(r("/callbacks/payments"), Route::Channel(1));
        // A plain prefix, as Envoy's route `prefix`.
        assert_eq!(r("/callbacks/paymentsx"), Route::Channel(1));
    }

    #[test]
    fn case_sensitive_channels_opt_out_of_folding() {
        let exact = ChannelMatch::new("/Callbacks/Payments", true, &[]);
        assert!(exact.matches("/Callbacks/Payments/x", ""));
        assert!(!exact.matches("/callbacks/payments", ""));
        let guards = ["/callbacks/".to_string()];
        let r = route(
            std::slice::from_ref(&exact),
            |c| c,
            &guards,
            "/callbacks/payments",
            "",
        );
        assert_eq!(r, Route::Refuse(Refusal::NoChannel));
        // Configured upper case on a folding channel matches any case.
        assert!(m("/Callbacks/Payments", &[]).matches("/CALLBACKS/payments", ""));
    }

    #[test]
    fn hosts_are_normalised_on_both_sides() {
        let ch = m("/callbacks/payments", &["Hooks.Example.com."]);
        for host in [
            "hooks.example.com",
            "hooks.example.com.",
            "hooks.example.com.:80",
            "HOOKS.EXAMPLE.COM:8443",
            "hooks.example.com..",
            " hooks.example.com ",
            "user@hooks.example.com:80",
        ] {
            assert!(ch.matches("/callbacks/payments", host), "{host}");
        }
        for host in [
            "evil.example.com",
            "hooks.example.com.evil",
            "",
            "hooks.example.co",
        ] {
            assert!(!ch.matches("/callbacks/payments", host), "{host}");
        }
        // A guard refuses the other hosts instead of passing them.
        let guards = ["/callbacks/".to_string()];
        let r = route(
            std::slice::from_ref(&ch),
            |c| c,
            &guards,
            "/callbacks/payments",
            "evil.example.com",
        );
        assert_eq!(r, Route::Refuse(Refusal::NoChannel));
    }

    #[test]
    fn normalize_host_forms() {
        assert_eq!(normalize_host("[::1]:10000"), "::1");
        assert_eq!(normalize_host("[::1]"), "::1");
        assert_eq!(normalize_host("::1"), "::1");
        assert_eq!(normalize_host("127.0.0.1:80"), "127.0.0.1");
        assert_eq!(normalize_host("example.com:x"), "example.com:x");
        assert_eq!(normalize_host(""), "");
        let v6 = m("/cb", &["[::1]"]);
        assert!(v6.matches("/cb", "[::1]:10000"));
        assert!(m("/cb", &["::1"]).matches("/cb", "[::1]"));
    }

    #[test]
    fn has_tricks_is_the_plain_definition_in_one_pass() {
        let plain = |raw: &str| {
            !raw.is_ascii()
                || raw.contains(['%', '\\', ';'])
                || raw.contains("//")
                || raw.split('/').any(|s| s == "." || s == "..")
        };
        // Every path of up to 4 characters over an alphabet with each
        // trick, and some longer ones.
        let alphabet = ['/', '.', 'a', '%', '\\', ';', 'é'];
        let mut paths = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..4 {
            last = last
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            paths.extend(last.iter().cloned());
        }
        paths.extend(
            [
                "/callbacks/bench",
                "/a/./b",
                "/a/../b",
                "/a/b/..",
                "/a/b/.",
                "..",
                "/a//b",
                "/a/.b/..c/",
            ]
            .map(String::from),
        );
        for path in &paths {
            assert_eq!(has_tricks(path), plain(path), "{path:?}");
        }
    }

    #[test]
    fn a_path_with_nothing_to_normalise_is_its_own_canonical_form() {
        for path in [
            "/",
            "/callbacks/bench",
            "/Callbacks/Payments/",
            "/a.b/..c/.d/...",
            "/a-b_c~d/e:f@g",
            "",
            "a/b",
            "*",
        ] {
            assert!(!has_tricks(path), "{path}");
            let slow = normalize(&decode_once(path), Steps::CANONICAL);
            let fast = canonical(path, false);
            assert_eq!(fast, slow, "{path}");
            assert_eq!(matches!(fast, Cow::Borrowed(_)), path.starts_with('/'));
        }
        for (host, folded) in [("localhost:10000", true), ("Hooks.Example.COM.:80", false)] {
            assert_eq!(
                host_of(host),
                host.to_ascii_lowercase()
                    .split(':')
                    .next()
                    .unwrap()
                    .trim_end_matches('.')
            );
            assert_eq!(matches!(host_of(host), Cow::Borrowed(_)), folded);
        }
        assert!(starts_with_folded("/CallBacks/x", "/callbacks/"));
        assert!(!starts_with_folded("/callback", "/callbacks"));
        assert!(!starts_with_folded("/callb\u{e9}cks", "/callbacks"));
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical_path("/a/%C3%A9/é/%3f"), "/a/%C3%A9/é/%3F");
        assert_eq!(canonical_path("/../.."), "/");
        assert_eq!(canonical_path(""), "/");
        assert_eq!(canonical_path("/a/b/"), "/a/b/");
        assert_eq!(canonical_path("/a/b/.."), "/a/");
        assert_eq!(canonical_path("a/b"), "/a/b");
        assert_eq!(canonical_path("/a;p/b;q=1;r/c"), "/a/b/c");
        assert_eq!(canonical_path("/a/%zz/%4"), "/a/%zz/%4");
        assert_eq!(canonical_path("/%252e"), "/%252e");
    }

    #[test]
    fn configured_prefixes_must_be_canonical() {
        for ok in [
            "/",
            "/cb",
            "/callbacks/",
            "/callbacks/payments",
            "/a%3Fb",
            "/Callbacks",
        ] {
            assert_eq!(canonical_prefix(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("callbacks", "start with '/'"),
            ("/callbacks//payments", "write \"/callbacks/payments\""),
            ("/callbacks/./payments", "canonical"),
            ("/callbacks/x/../payments", "canonical"),
            ("/callbacks;x", "canonical"),
            (r"/callbacks\payments", "canonical"),
            ("/callbacks/%70ayments", "canonical"),
            ("/a%3fb", "write \"/a%3Fb\""),
            ("/callbacks?x", "not allowed"),
            ("/call backs", "not allowed"),
            ("/é", "not allowed"),
        ] {
            let err = canonical_prefix(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(canonical_prefix(&format!("/{}", "a".repeat(MAX_PREFIX_LEN))).is_err());
    }

    #[test]
    fn shadowing() {
        let broad = m("/callbacks/", &[]);
        let narrow = m("/callbacks/payments", &["hooks.example.com"]);
        assert!(broad.shadows(&narrow));
        assert!(!narrow.shadows(&broad));
        assert!(!m("/callbacks/", &["a.example"]).shadows(&m("/callbacks/x", &[])));
        assert!(
            m("/callbacks/", &["a.example", "b.example"])
                .shadows(&m("/callbacks/x", &["b.example"]))
        );
        let exact = ChannelMatch::new("/callbacks/", true, &[]);
        assert!(!exact.shadows(&m("/callbacks/x", &[])));
        assert!(broad.shadows(&ChannelMatch::new("/Callbacks/X", true, &[])));
        assert!(!m("/callbacks/payments-v2", &[]).shadows(&m("/callbacks/payments", &[])));
    }
}
