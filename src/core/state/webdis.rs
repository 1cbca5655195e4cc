//! The webdis front: `GET /EVALSHA/<sha1>/<numkeys>/<key>.../<arg>...` (or
//! `/EVAL/<source>/...` to load a script), answered with JSON
//! `{"EVALSHA": <reply>}`.
//!
//! `GET` with the command in the path, not `POST /` with it in the body:
//! webdis 0.1.9 never answers a `POST` whose body arrives in a later read
//! than its headers (checked: the request hangs until the client gives
//! up), and a proxy may well write headers and body separately. A path of
//! several KiB (`EVAL` with a script's source) is read fine.
//!
//! Checked against webdis 0.1.9 (Debian bookworm) and Redis 7.0:
//! - `/` separates arguments and a trailing `.ext` picks the output format,
//!   `%XX` is decoded and `+` reads as a space: every argument is
//!   percent-encoded except `A-Z a-z 0-9 - _ ~`, so keys, tokens and the
//!   script source arrive byte for byte;
//! - an integer array reply is `[1,2,3]`; a Redis error is
//!   `[false,"ERR ..."]` (`NOSCRIPT ...` when the script cache is empty);
//!   a status is `[true,"OK"]`;
//! - a command the ACL does not enable is `403` with an empty body; Redis
//!   down is `503` with an empty body (webdis reconnects by itself).

use super::{Call, Front, HttpRequest, StateError};

/// The webdis protocol.
#[derive(Debug, Clone, Copy, Default)]
pub struct Webdis;

/// Longest error message kept from a Redis error.
const MAX_ERROR_LEN: usize = 160;

impl Front for Webdis {
    fn request(&self, call: &Call, full: bool) -> HttpRequest {
        let mut path = String::new();
        if full {
            path.push_str("/EVAL/");
            encode_into(&mut path, call.script.source);
        } else {
            path.push_str("/EVALSHA/");
            path.push_str(&call.script.sha1_hex());
        }
        path.push('/');
        path.push_str(&call.keys.len().to_string());
        for part in call.keys.iter().chain(&call.args) {
            path.push('/');
            encode_into(&mut path, part);
        }
        HttpRequest {
            headers: vec![(":method".into(), "GET".into()), (":path".into(), path)],
            body: Vec::new(),
        }
    }

    fn parse(&self, status: u32, body: &[u8]) -> Result<Vec<i64>, StateError> {
        let value = answer_json(status, body)?;
        let serde_json::Value::Object(map) = value else {
            return Err(StateError::Malformed("webdis answer is not an object"));
        };
        let mut entries = map.into_iter();
        let (Some((_, reply)), None) = (entries.next(), entries.next()) else {
            return Err(StateError::Malformed("webdis answer is not one command"));
        };
        let serde_json::Value::Array(items) = reply else {
            return Err(StateError::Malformed("script reply is not an array"));
        };
        match items.as_slice() {
            [
                serde_json::Value::Bool(false),
                serde_json::Value::String(message),
            ] => Err(redis_error(message)),
            [serde_json::Value::Bool(true), _] => {
                Err(StateError::Malformed("status reply instead of integers"))
            }
            _ => items
                .iter()
                .map(|v| {
                    v.as_i64()
                        .ok_or(StateError::Malformed("script reply holds a non-integer"))
                })
                .collect(),
        }
    }
}

/// webdis's answer as JSON: its HTTP status checked (`0`: no answer came),
/// then the body parsed.
pub fn answer_json(status: u32, body: &[u8]) -> Result<serde_json::Value, StateError> {
    match status {
        200 => {}
        0 => return Err(StateError::NoAnswer),
        403 => return Err(StateError::Forbidden),
        503 => return Err(StateError::Unavailable),
        other => return Err(StateError::Http(other)),
    }
    serde_json::from_slice(body).map_err(|_| StateError::Malformed("webdis answer is not JSON"))
}

fn redis_error(message: &str) -> StateError {
    if message.starts_with("NOSCRIPT") {
        return StateError::NoScript;
    }
    let mut end = message.len().min(MAX_ERROR_LEN);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    StateError::Redis(message.get(..end).unwrap_or_default().to_string())
}

/// Percent-encodes everything but `A-Z a-z 0-9 - _ ~`.
fn encode_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// Percent-encoding as [`Webdis::request`] does it (for tests and tools).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    encode_into(&mut out, s);
    out
}
