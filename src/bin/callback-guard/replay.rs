//! `callback-guard replay`: reads dead-letter copies from the Redis Stream
//! sink (`dead_letter.redis_stream`) and re-sends each one's body and
//! headers to a target, or lists them.
//!
//! It speaks to Redis directly (RESP over TCP, `AUTH`, `XRANGE`: the few
//! lines below), not through webdis and not with a client crate: the
//! operator runs it next to Redis (or through `kubectl port-forward`) as a
//! separate, read-only Redis user, and the tool stays free of an async
//! runtime and of new dependencies. For the same reason the target is
//! plain `http://` (a port-forward, or the service's cluster address).
//!
//! What a replay is: the copy's body is the body *as forwarded*, masked,
//! so the provider's signature no longer matches it. A replay therefore
//! goes to the service directly (not back through a verifying filter),
//! carries the copy's headers (content type, trace context, the provider's
//! delivery-id headers: a service that deduplicates on them still can)
//! except the filter's own claims (`x-verified-signature`,
//! `x-callback-priority-admitted`), plus `x-callback-replay: <stream id>`
//! so the service can tell a replay from a live delivery; or, with
//! `--sign-secret-env`, signed anew with a Standard Webhooks secret for a
//! target that verifies it (a callback-guard channel). The stream is
//! left as it is (an audit log, capped by `max_len`); `--from` resumes
//! after the last id a run printed.

use base64::Engine;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The header a replayed request carries, with the entry's stream id.
pub const REPLAY_HEADER: &str = "x-callback-replay";
/// Copied headers a replay does not send: the filter's own claims.
const NOT_REPLAYED: [&str; 2] = ["x-verified-signature", "x-callback-priority-admitted"];
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest Redis reply element read (a copy is at most ~80 KB).
const MAX_BULK: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Redis address (host:port)
    #[arg(long, default_value = "127.0.0.1:6379")]
    pub redis: String,
    /// Redis ACL user (e.g. the read-only cg-replay user of istio/fleet-state)
    #[arg(long)]
    pub user: Option<String>,
    /// Name of the environment variable holding the Redis password
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,
    /// The stream's key (dead_letter.redis_stream.key)
    #[arg(long, default_value = "cg:deadletter")]
    pub key: String,
    /// First stream id to read (inclusive; `-`: the oldest)
    #[arg(long, default_value = "-")]
    pub from: String,
    /// Last stream id to read (inclusive; `+`: the newest)
    #[arg(long, default_value = "+")]
    pub to: String,
    /// Most entries read
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub count: u32,
    /// Only entries of this channel
    #[arg(long)]
    pub channel: Option<String>,
    /// Where to re-send each entry (http://host:port/path); without it,
    /// the entries are only listed
    #[arg(long)]
    pub target: Option<String>,
    /// List what would be sent, send nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Name of the environment variable holding a Standard Webhooks secret
    /// (`whsec_...`): sign each replay with it (webhook-id: the delivery
    /// id, or the stream id; webhook-timestamp: now), for a target that
    /// verifies with that secret (e.g. a callback-guard channel whose
    /// `signature` is a mesh-internal standard-webhooks secret)
    #[arg(long, value_name = "VAR")]
    pub sign_secret_env: Option<String>,
}

/// The `whsec_` secret's key bytes.
pub fn signing_key(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| "the signing secret is not whsec_<base64>".to_string())?;
    if key.is_empty() {
        return Err("the signing secret is empty".into());
    }
    Ok(key)
}

/// Replaces any Standard Webhooks headers of `replay` with a signature of
/// its body under `key` at `now_unix_s`.
pub fn sign(replay: &mut Replay, entry: &Entry, key: &[u8], now_unix_s: u64) {
    use callback_guard::core::resign::{ID_HEADER, Resigner, SIGNATURE_HEADER, TIMESTAMP_HEADER};
    let id = entry
        .envelope
        .get("delivery_id")
        .and_then(|v| v.as_str())
        .unwrap_or(&entry.id)
        .to_string();
    let (headers, body) = replay;
    headers.retain(|(k, _)| ![ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER].contains(&k.as_str()));
    for (k, v) in Resigner::new(key.to_vec()).headers(&id, now_unix_s, body) {
        headers.push((k.to_string(), v));
    }
}

/// One stream entry: its id and its envelope (the JSON the filter wrote).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: String,
    pub envelope: serde_json::Value,
}

/// A replay's headers and body.
pub type Replay = (Vec<(String, String)>, Vec<u8>);

/// The request a replay of `entry` sends: headers and body; `Err` when the
/// copy has no body (it was larger than the sink keeps).
pub fn replay_request(entry: &Entry) -> Result<Replay, String> {
    let e = &entry.envelope;
    let body = if let Some(text) = e.get("body").and_then(|v| v.as_str()) {
        text.as_bytes().to_vec()
    } else if let Some(b64) = e.get("body_base64").and_then(|v| v.as_str()) {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "body_base64 is not base64".to_string())?
    } else {
        return Err("the copy has no body (body_omitted): nothing to replay".into());
    };
    let mut headers = Vec::new();
    for pair in e
        .get("headers")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        let (Some(name), Some(value)) = (
            pair.get(0).and_then(|v| v.as_str()),
            pair.get(1).and_then(|v| v.as_str()),
        ) else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        if NOT_REPLAYED.contains(&name.as_str()) || !header_ok(&name, value) {
            continue;
        }
        headers.push((name, value.to_string()));
    }
    headers.push((REPLAY_HEADER.into(), entry.id.clone()));
    Ok((headers, body))
}

fn header_ok(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        && value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

pub fn run(args: &Args) -> Result<bool, String> {
    let password = match &args.password_env {
        Some(var) => Some(std::env::var(var).map_err(|_| format!("{var} is not set"))?),
        None => None,
    };
    let sign_key = match &args.sign_secret_env {
        Some(var) => Some(signing_key(
            &std::env::var(var).map_err(|_| format!("{var} is not set"))?,
        )?),
        None => None,
    };
    let mut redis = Redis::connect(&args.redis)?;
    if let Some(password) = &password {
        let mut cmd = vec!["AUTH"];
        if let Some(user) = &args.user {
            cmd.push(user);
        }
        cmd.push(password);
        redis.command(&cmd)?;
    }
    let count = args.count.to_string();
    let reply = redis.command(&["XRANGE", &args.key, &args.from, &args.to, "COUNT", &count])?;
    let entries = entries(reply)?;
    let send = args.target.is_some() && !args.dry_run;
    let mut ok = true;
    let mut last = None;
    for entry in &entries {
        let field = |k: &str| {
            entry
                .envelope
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("-")
        };
        if args
            .channel
            .as_deref()
            .is_some_and(|c| c != field("channel"))
        {
            continue;
        }
        let status = entry
            .envelope
            .get("status")
            .map_or_else(|| "-".to_string(), |v| v.to_string());
        let line = format!(
            "{} channel={} delivery_id={} failure={} status={status}",
            entry.id,
            field("channel"),
            field("delivery_id"),
            field("failure"),
        );
        let outcome = match (&args.target, send) {
            (Some(target), true) => {
                let sent = replay_request(entry).and_then(|mut r| {
                    if let Some(key) = &sign_key {
                        sign(&mut r, entry, key, now_unix_s());
                    }
                    post(target, &r.0, &r.1)
                });
                match sent {
                    Ok(code) if (200..300).contains(&code) => format!("replayed: {code}"),
                    Ok(code) => {
                        ok = false;
                        format!("FAILED: target answered {code}")
                    }
                    Err(e) => {
                        ok = false;
                        format!("FAILED: {e}")
                    }
                }
            }
            _ => match replay_request(entry) {
                Ok((_, body)) => format!("body {} bytes", body.len()),
                Err(e) => e,
            },
        };
        println!("{line} {outcome}");
        last = Some(entry.id.clone());
    }
    match last {
        Some(id) => eprintln!(
            "{} entries read; to continue after the last one: --from '({id}'",
            entries.len()
        ),
        None => eprintln!("no entries"),
    }
    Ok(ok)
}

fn now_unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `XRANGE`'s reply as entries; an entry without an `envelope` field, or
/// whose envelope is not JSON, is an error (not a copy the filter wrote).
pub fn entries(reply: Resp) -> Result<Vec<Entry>, String> {
    let Resp::Array(items) = reply else {
        return Err("XRANGE did not answer an array".into());
    };
    let mut out = Vec::new();
    for item in items {
        let Resp::Array(parts) = item else {
            return Err("malformed XRANGE entry".into());
        };
        let [Resp::Bulk(id), Resp::Array(fields)] = parts.as_slice() else {
            return Err("malformed XRANGE entry".into());
        };
        let id = String::from_utf8_lossy(id).into_owned();
        let envelope = fields
            .chunks(2)
            .find_map(|kv| match kv {
                [Resp::Bulk(k), Resp::Bulk(v)] if k == b"envelope" => Some(v),
                _ => None,
            })
            .ok_or_else(|| format!("entry {id} has no envelope field"))?;
        let envelope = serde_json::from_slice(envelope)
            .map_err(|e| format!("entry {id}: envelope is not JSON: {e}"))?;
        out.push(Entry { id, envelope });
    }
    Ok(out)
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Resp>),
}

struct Redis {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Redis {
    fn connect(addr: &str) -> Result<Self, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("redis {addr}: {e}"))?;
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        Ok(Self {
            reader: BufReader::new(stream),
            writer,
        })
    }

    fn command(&mut self, args: &[&str]) -> Result<Resp, String> {
        self.writer
            .write_all(&encode_command(args))
            .map_err(|e| format!("redis: {e}"))?;
        read_resp(&mut self.reader, 0)
    }
}

/// A command as a RESP array of bulk strings.
pub fn encode_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one reply; a Redis error (`-ERR ...`) is `Err`.
pub fn read_resp(r: &mut impl BufRead, depth: usize) -> Result<Resp, String> {
    if depth > 8 {
        return Err("redis reply nested too deep".into());
    }
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)
        .map_err(|e| format!("redis: {e}"))?;
    let line = line
        .strip_suffix(b"\r\n")
        .ok_or("redis closed the connection")?;
    let (kind, rest) = line.split_first().ok_or("empty redis reply")?;
    let text = String::from_utf8_lossy(rest).into_owned();
    let number = || text.parse::<i64>().map_err(|_| "malformed redis length");
    match kind {
        b'+' => Ok(Resp::Simple(text)),
        b'-' => Err(format!("redis: {text}")),
        b':' => Ok(Resp::Int(number()?)),
        b'$' => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Resp::Nil);
            };
            if len > MAX_BULK {
                return Err("redis reply too large".into());
            }
            let mut buf = vec![0; len + 2];
            r.read_exact(&mut buf).map_err(|e| format!("redis: {e}"))?;
            buf.truncate(len);
            Ok(Resp::Bulk(buf))
        }
        b'*' => {
            let Ok(n) = usize::try_from(number()?) else {
                return Ok(Resp::Nil);
            };
            (0..n.min(100_000))
                .map(|_| read_resp(r, depth + 1))
                .collect::<Result<_, _>>()
                .map(Resp::Array)
        }
        _ => Err("unknown redis reply type".into()),
    }
}

/// `POST`s `body` to `target` (`http://host[:port]/path`); the status.
fn post(target: &str, headers: &[(String, String)], body: &[u8]) -> Result<u16, String> {
    let (host, path) = split_url(target)?;
    let addr = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let mut stream = TcpStream::connect(&addr).map_err(|e| format!("target {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| format!("target: {e}"))?;
    let mut status = String::new();
    BufReader::new(stream)
        .read_line(&mut status)
        .map_err(|e| format!("target: {e}"))?;
    status
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("target answered no HTTP status: {:?}", status.trim()))
}

/// `http://host[:port]/path` → (`host[:port]`, `/path`).
pub fn split_url(url: &str) -> Result<(&str, &str), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("--target must be an http:// URL")?;
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if host.is_empty() || !header_ok("h", path) || path.contains(' ') {
        return Err(format!("bad --target {url:?}"));
    }
    Ok((host, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(envelope: serde_json::Value) -> Entry {
        Entry {
            id: "1700000000000-0".into(),
            envelope,
        }
    }

    #[test]
    fn a_replay_sends_the_masked_body_and_headers_without_the_filters_claims() {
        let e = entry(serde_json::json!({
            "channel": "payments",
            "body": "{\"phone\":\"***\"}",
            "headers": [["content-type", "application/json"], ["webhook-id", "msg_1"],
                        ["x-verified-signature", "standard-webhooks"], ["bad\nname", "x"]]
        }));
        let (headers, body) = replay_request(&e).unwrap();
        assert_eq!(body, b"{\"phone\":\"***\"}");
        assert_eq!(
            headers,
            [
                ("content-type".to_string(), "application/json".to_string()),
                ("webhook-id".into(), "msg_1".into()),
                (REPLAY_HEADER.into(), "1700000000000-0".into()),
            ]
        );
        let b64 = entry(serde_json::json!({"body_base64": "/w=="}));
        assert_eq!(replay_request(&b64).unwrap().1, [0xff]);
        let omitted = entry(serde_json::json!({"body_omitted": true}));
        assert!(replay_request(&omitted).unwrap_err().contains("no body"));
    }

    #[test]
    fn a_signed_replay_verifies_with_a_stock_standard_webhooks_library() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let e = entry(serde_json::json!({
            "delivery_id": "msg_9",
            "body": "{\"phone\":\"***\"}",
            "headers": [["webhook-id", "msg_9"], ["webhook-signature", "v1,old"]]
        }));
        let mut r = replay_request(&e).unwrap();
        sign(&mut r, &e, &signing_key(secret).unwrap(), now_unix_s());
        let mut headers = http::HeaderMap::new();
        for (k, v) in &r.0 {
            headers.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        assert_eq!(headers.get_all("webhook-id").iter().count(), 1);
        assert_eq!(headers.get_all("webhook-signature").iter().count(), 1);
        let webhook = standardwebhooks::Webhook::new(secret).unwrap();
        webhook.verify(&r.1, &headers).unwrap();
        assert!(signing_key("whsec_").is_err() && signing_key("whsec_!!").is_err());
    }

    #[test]
    fn resp_round_trip_of_an_xrange_reply() {
        assert_eq!(
            encode_command(&["XRANGE", "cg:dl", "-"]),
            b"*3\r\n$6\r\nXRANGE\r\n$5\r\ncg:dl\r\n$1\r\n-\r\n"
        );
        let raw = b"*1\r\n*2\r\n$3\r\n1-0\r\n*4\r\n$8\r\nenvelope\r\n$15\r\n{\"channel\":\"c\"}\r\n$7\r\nchannel\r\n$1\r\nc\r\n";
        let reply = read_resp(&mut &raw[..], 0).unwrap();
        let list = entries(reply).unwrap();
        assert_eq!(
            list,
            [Entry {
                id: "1-0".into(),
                envelope: serde_json::json!({"channel": "c"})
            }]
        );
        assert_eq!(
            read_resp(&mut &b"-NOPERM no\r\n"[..], 0),
            Err("redis: NOPERM no".into())
        );
        assert_eq!(read_resp(&mut &b"$-1\r\n"[..], 0), Ok(Resp::Nil));
        assert!(read_resp(&mut &b"$5\r\nab"[..], 0).is_err());
        assert!(entries(Resp::Array(vec![Resp::Int(1)])).is_err());
    }

    #[test]
    fn arguments_default_to_the_oldest_hundred_entries_listed() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let a = Cli::try_parse_from(["replay"]).unwrap().args;
        assert_eq!(
            (
                a.redis.as_str(),
                a.key.as_str(),
                a.from.as_str(),
                a.to.as_str(),
                a.count
            ),
            ("127.0.0.1:6379", "cg:deadletter", "-", "+", 100)
        );
        assert!(a.target.is_none() && !a.dry_run);
        let a = Cli::try_parse_from([
            "replay",
            "--target",
            "http://svc/x",
            "--from",
            "(1-0",
            "--dry-run",
        ])
        .unwrap()
        .args;
        assert_eq!(
            (a.target.as_deref(), a.from.as_str(), a.dry_run),
            (Some("http://svc/x"), "(1-0", true)
        );
        assert!(Cli::try_parse_from(["replay", "--count", "0"]).is_err());
    }

    #[test]
    fn the_target_is_a_plain_http_url() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/hooks/pay"),
            Ok(("127.0.0.1:8080", "/hooks/pay"))
        );
        assert_eq!(split_url("http://svc"), Ok(("svc", "/")));
        assert!(split_url("https://svc/x").is_err());
        assert!(split_url("http:///x").is_err());
    }
}
