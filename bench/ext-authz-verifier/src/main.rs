//! A small ext_authz HTTP service that verifies Standard Webhooks signatures
//! (HMAC-SHA256 over `<webhook-id>.<webhook-timestamp>.<body>`, key = the
//! base64 after `whsec_`), as an engineer would write one next to Envoy:
//! hyper on a single-threaded tokio runtime, one connection task each.
//!
//! Usage: `ext-authz-verifier <listen addr> <whsec_ secret> [tolerance_s]`;
//! prints `listening on <addr>` once bound (port 0 picks a free one).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use std::convert::Infallible;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

struct Verifier {
    key: Vec<u8>,
    tolerance_s: u64,
}

impl Verifier {
    fn check(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), &'static str> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or("missing webhook header")
        };
        let id = header("webhook-id")?;
        let ts = header("webhook-timestamp")?;
        let sigs = header("webhook-signature")?;
        let ts_n: u64 = ts.parse().map_err(|_| "bad timestamp")?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| "clock")?
            .as_secs();
        if now.abs_diff(ts_n) > self.tolerance_s {
            return Err("timestamp outside tolerance");
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).map_err(|_| "key")?;
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(body);
        let expected = mac.finalize().into_bytes();
        // Space-separated `v1,<base64>` entries; any one matching is enough.
        for sig in sigs.split(' ') {
            if let Some(b64) = sig.strip_prefix("v1,")
                && let Ok(given) = STANDARD.decode(b64)
                && bool::from(given.ct_eq(expected.as_slice()))
            {
                return Ok(());
            }
        }
        Err("no matching signature")
    }
}

async fn handle(
    verifier: Rc<Verifier>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, "unreadable body")),
    };
    Ok(match verifier.check(&parts.headers, &body) {
        Ok(()) => reply(StatusCode::OK, ""),
        Err(why) => reply(StatusCode::UNAUTHORIZED, why),
    })
}

fn reply(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args
        .next()
        .ok_or("usage: ext-authz-verifier <addr> <whsec_secret> [tolerance_s]")?;
    let secret = args.next().ok_or("missing secret")?;
    let tolerance_s = args.next().map(|t| t.parse()).transpose()?.unwrap_or(300);
    let key = STANDARD.decode(
        secret
            .strip_prefix("whsec_")
            .ok_or("secret is whsec_<base64>")?,
    )?;
    let verifier = Rc::new(Verifier { key, tolerance_s });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    tokio::task::LocalSet::new().block_on(&rt, serve(addr, verifier))
}

/// Accepts connections forever, one task each (all on this one thread).
async fn serve(addr: String, verifier: Rc<Verifier>) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let v = verifier.clone();
        tokio::task::spawn_local(async move {
            let service = service_fn(move |req| handle(v.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
