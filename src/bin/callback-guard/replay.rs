//! `callback-guard replay`: reads dead-letter copies from the Redis Stream
//! sink (`dead_letter.redis_stream`) and re-sends each one's body and
//! headers to a target, or lists them.
//!
//! It reads Redis directly with the `redis` crate (`XRANGE`, as its own
//! read-only ACL user), not through webdis: the operator runs it next to
//! Redis (or through `kubectl port-forward`). It re-sends with `ureq` to a
//! plain `http://` target (a port-forward, or the service's cluster
//! address).
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
use std::time::Duration;

/// The header a replayed request carries, with the entry's stream id.
pub const REPLAY_HEADER: &str = "x-callback-replay";
/// Copied headers a replay does not send: the filter's own claims.
const NOT_REPLAYED: [&str; 2] = ["x-verified-signature", "x-callback-priority-admitted"];
const IO_TIMEOUT: Duration = Duration::from_secs(10);

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
    let mut redis = connect(&args.redis, args.user.clone(), password)?;
    let reply: redis::Value = redis::cmd("XRANGE")
        .arg(&args.key)
        .arg(&args.from)
        .arg(&args.to)
        .arg("COUNT")
        .arg(args.count)
        .query(&mut redis)
        .map_err(|e| format!("redis: {e}"))?;
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
pub fn entries(reply: redis::Value) -> Result<Vec<Entry>, String> {
    use redis::Value;
    let Value::Array(items) = reply else {
        return Err("XRANGE did not answer an array".into());
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Array(parts) = item else {
            return Err("malformed XRANGE entry".into());
        };
        let [Value::BulkString(id), Value::Array(fields)] = parts.as_slice() else {
            return Err("malformed XRANGE entry".into());
        };
        let id = String::from_utf8_lossy(id).into_owned();
        let envelope = fields
            .chunks(2)
            .find_map(|kv| match kv {
                [Value::BulkString(k), Value::BulkString(v)] if k == b"envelope" => Some(v),
                _ => None,
            })
            .ok_or_else(|| format!("entry {id} has no envelope field"))?;
        let envelope = serde_json::from_slice(envelope)
            .map_err(|e| format!("entry {id}: envelope is not JSON: {e}"))?;
        out.push(Entry { id, envelope });
    }
    Ok(out)
}

/// A connection to `addr` (`host:port`) as `user` (ACL) with `password`.
fn connect(
    addr: &str,
    username: Option<String>,
    password: Option<String>,
) -> Result<redis::Connection, String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("--redis {addr:?}: expected host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("--redis {addr:?}: bad port"))?;
    let info = redis::ConnectionInfo {
        addr: redis::ConnectionAddr::Tcp(host.to_string(), port),
        redis: redis::RedisConnectionInfo {
            username,
            password,
            ..Default::default()
        },
    };
    let client = redis::Client::open(info).map_err(|e| format!("redis {addr}: {e}"))?;
    let con = client
        .get_connection_with_timeout(IO_TIMEOUT)
        .map_err(|e| format!("redis {addr}: {e}"))?;
    con.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| con.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| format!("redis {addr}: {e}"))?;
    Ok(con)
}

/// `POST`s `body` to `target` (`http://host[:port]/path`); the status.
fn post(target: &str, headers: &[(String, String)], body: &[u8]) -> Result<u16, String> {
    split_url(target)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(IO_TIMEOUT))
        .build()
        .into();
    let mut request = agent.post(target);
    for (k, v) in headers {
        request = request.header(k.as_str(), v.as_str());
    }
    let response = request.send(body).map_err(|e| format!("target: {e}"))?;
    Ok(response.status().as_u16())
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
    fn xrange_replies_become_entries() {
        use redis::Value;
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("1-0"),
            Value::Array(vec![
                bulk("envelope"),
                bulk("{\"channel\":\"c\"}"),
                bulk("channel"),
                bulk("c"),
            ]),
        ])]);
        assert_eq!(
            entries(reply).unwrap(),
            [Entry {
                id: "1-0".into(),
                envelope: serde_json::json!({"channel": "c"})
            }]
        );
        assert!(entries(Value::Array(vec![Value::Int(1)])).is_err());
        assert!(entries(Value::Nil).is_err());
        let no_envelope = Value::Array(vec![Value::Array(vec![
            bulk("1-0"),
            Value::Array(vec![bulk("channel"), bulk("c")]),
        ])]);
        assert!(entries(no_envelope).is_err());
        let not_json = Value::Array(vec![Value::Array(vec![
            bulk("1-0"),
            Value::Array(vec![bulk("envelope"), bulk("{")]),
        ])]);
        assert!(entries(not_json).is_err());
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
