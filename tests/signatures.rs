#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Webhook signatures and delivery dedup end to end in a real Envoy (2
//! worker threads): one channel per scheme, every failure reason, key
//! rotation, bodies in many pieces and large bodies, dedup on one worker
//! and across workers, dedup forgetting an id when the upstream fails, and
//! a secret whose env var is missing refusing the configuration.
//!
//! Signatures are made by `support::sign`, never by the filter's verifier;
//! the first test checks those helpers against the providers' published
//! vectors. Assertions are on what the upstream received, what the caller
//! got and the metrics, never on timings.

mod support;

use support::assert::{is_trace_id, local_outcome, local_reply};

use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use support::upstream::Received;
use support::{Envoy, Reply, Request, Response, Upstream, parallel, sign};

// Keys. `STD_KEY` and `STRIPE_SECRET` reach the filter only through the VM
// environment (`vm_config.environment_variables`); the rest are inline.
const STD_ENV: &str = "CG_E2E_STD_SECRET";
const STD_KEY: &[u8] = b"callback-guard e2e standard-webhooks key #1";
const STD_NEXT_KEY: &[u8] = b"callback-guard e2e standard-webhooks key #2";
const ED_SEED: [u8; 32] = *b"callback-guard e2e ed25519 seed!";
const SVIX_KEY: &[u8] = b"callback-guard e2e svix key";
const STRIPE_ENV: &str = "CG_E2E_STRIPE_SECRET";
const STRIPE_SECRET: &str = "whsec_e2eStripeSigningSecret0123456789";
const GITHUB_OLD: &str = "gh-e2e-old-secret-2f9c";
const GITHUB_NEW: &str = "gh-e2e-new-secret-71ab";
const SLACK_SECRET: &str = "8f742231b10e8888abcd99e2e0slack5";
const SHOPIFY_SECRET: &str = "shpss_e2e_shopify_secret_44d1";
const GENERIC_SECRET: &str = "acme-e2e-sha512-secret-90fe";
const GENERIC_HEADER: &str = "x-acme-signature";
const GENERIC_PREFIX: &str = "sha512=";
/// `tolerance_s` of the standard-webhooks, svix and stripe channels; slack
/// keeps the default 300.
const TOLERANCE_S: u64 = 60;
/// Further from now than every channel's tolerance.
const SKEW_S: u64 = 600;
const REASONS: [&str; 4] = ["missing", "malformed", "mismatch", "expired"];

fn whsec(key: &[u8]) -> String {
    format!("whsec_{}", sign::b64(key))
}

fn plugin() -> String {
    let channel = |name: &str, signature: serde_json::Value, dedup: bool| {
        let mut c = json!({
            "name": name,
            "match": {"path_prefix": format!("/hooks/{name}")},
            "signature": signature,
        });
        if dedup {
            c["dedup"] = json!({"window_s": 60});
        }
        c
    };
    json!({"channels": [
        channel("std", json!({
            "scheme": "standard-webhooks",
            "secrets": [{"env": STD_ENV}, {"value": whsec(STD_NEXT_KEY)}],
            "public_keys": [sign::whpk(&ED_SEED)],
            "tolerance_s": TOLERANCE_S,
        }), true),
        channel("svix", json!({
            "scheme": "svix",
            "secrets": [{"value": whsec(SVIX_KEY)}],
            "tolerance_s": TOLERANCE_S,
        }), false),
        channel("stripe", json!({
            "scheme": "stripe",
            "secrets": [{"env": STRIPE_ENV}],
            "tolerance_s": TOLERANCE_S,
        }), true),
        channel("github", json!({
            "scheme": "github",
            "secrets": [{"value": GITHUB_OLD}, {"value": GITHUB_NEW}],
        }), true),
        channel("slack", json!({
            "scheme": "slack",
            "secrets": [{"value": SLACK_SECRET}],
        }), false),
        channel("shopify", json!({
            "scheme": "shopify",
            "secrets": [{"value": SHOPIFY_SECRET}],
        }), true),
        channel("generic", json!({
            "scheme": "hmac",
            "header": GENERIC_HEADER,
            "algorithm": "sha512",
            "encoding": "base64",
            "prefix": GENERIC_PREFIX,
            "secrets": [{"value": GENERIC_SECRET}],
        }), false),
        {"name": "plain", "match": {"path_prefix": "/hooks/plain"}},
    ]})
    .to_string()
}

fn start(name: &str, upstream: &Upstream) -> Envoy {
    Envoy::builder(name)
        .plugin(&plugin())
        .env(STD_ENV, &whsec(STD_KEY))
        .env(STRIPE_ENV, STRIPE_SECRET)
        .cluster("upstream", upstream.port())
        .start()
}

/// Every secret, in every spelling a reply or log could leak it in.
fn secret_texts() -> Vec<String> {
    let mut s: Vec<String> = [STD_KEY, STD_NEXT_KEY, SVIX_KEY]
        .iter()
        .flat_map(|k| {
            [
                whsec(k),
                sign::b64(k),
                String::from_utf8(k.to_vec()).unwrap(),
            ]
        })
        .collect();
    s.extend(
        [
            STRIPE_SECRET,
            GITHUB_OLD,
            GITHUB_NEW,
            SLACK_SECRET,
            SHOPIFY_SECRET,
            GENERIC_SECRET,
        ]
        .map(String::from),
    );
    s.push(sign::b64(&ED_SEED));
    s
}

/// One way of sending a signed callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ch {
    Std,
    /// The `std` channel, signed `v1a` (ed25519) instead of `v1`.
    StdEd,
    Svix,
    Stripe,
    Github,
    Slack,
    Shopify,
    Generic,
}

impl Ch {
    const ALL: [Ch; 8] = [
        Ch::Std,
        Ch::StdEd,
        Ch::Svix,
        Ch::Stripe,
        Ch::Github,
        Ch::Slack,
        Ch::Shopify,
        Ch::Generic,
    ];

    fn name(self) -> &'static str {
        match self {
            Ch::Std | Ch::StdEd => "std",
            Ch::Svix => "svix",
            Ch::Stripe => "stripe",
            Ch::Github => "github",
            Ch::Slack => "slack",
            Ch::Shopify => "shopify",
            Ch::Generic => "generic",
        }
    }

    /// Expected `x-verified-signature`.
    fn scheme(self) -> &'static str {
        match self {
            Ch::Std | Ch::StdEd => "standard-webhooks",
            Ch::Generic => "hmac",
            other => other.name(),
        }
    }

    fn path(self) -> String {
        format!("/hooks/{}/events", self.name())
    }

    /// A request to this channel with `body` and no signature headers.
    fn bare(self, body: &[u8]) -> Request {
        Request::post(&self.path())
            .header("content-type", "application/json")
            .body(body.to_vec())
    }

    /// Delivery `id` of `body` at `ts`, correctly signed (GitHub with the
    /// second of its two secrets).
    fn signed(self, id: &str, ts: u64, body: &[u8]) -> Request {
        let req = self.bare(body);
        match self {
            Ch::Std => std_headers(
                req,
                "webhook",
                id,
                &ts.to_string(),
                &sign::standard_v1(&whsec(STD_KEY), id, ts, body),
            ),
            Ch::StdEd => std_headers(
                req,
                "webhook",
                id,
                &ts.to_string(),
                &sign::standard_v1a(&ED_SEED, id, ts, body),
            ),
            Ch::Svix => std_headers(
                req,
                "svix",
                id,
                &ts.to_string(),
                &sign::standard_v1(&whsec(SVIX_KEY), id, ts, body),
            ),
            Ch::Stripe => req.header("Stripe-Signature", &sign::stripe(STRIPE_SECRET, ts, body)),
            Ch::Github => req
                .header("X-GitHub-Event", "push")
                .header("X-GitHub-Delivery", id)
                .header("X-Hub-Signature-256", &sign::github(GITHUB_NEW, body)),
            Ch::Slack => req
                .header("X-Slack-Request-Timestamp", &ts.to_string())
                .header("X-Slack-Signature", &sign::slack(SLACK_SECRET, ts, body)),
            Ch::Shopify => req.header("X-Shopify-Webhook-Id", id).header(
                "X-Shopify-Hmac-Sha256",
                &sign::shopify(SHOPIFY_SECRET, body),
            ),
            Ch::Generic => req.header(GENERIC_HEADER, &generic_sig(GENERIC_SECRET, body)),
        }
    }
}

fn std_headers(req: Request, prefix: &str, id: &str, ts: &str, sig: &str) -> Request {
    req.header(&format!("{prefix}-id"), id)
        .header(&format!("{prefix}-timestamp"), ts)
        .header(&format!("{prefix}-signature"), sig)
}

fn generic_sig(secret: &str, body: &[u8]) -> String {
    format!(
        "{GENERIC_PREFIX}{}",
        sign::b64(&sign::hmac("sha512", secret.as_bytes(), body))
    )
}

/// A JSON event whose top-level `id` is `id` (Stripe dedups on it).
fn event(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","type":"invoice.paid","data":{{"amount":1234}}}}"#).into_bytes()
}

/// All values of header `name` the upstream received.
fn values<'a>(r: &'a Received, name: &str) -> Vec<&'a str> {
    r.headers
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn assert_duplicate(resp: &Response, scheme: &str, context: &str) {
    local_outcome(resp, 200, "duplicate", context);
    assert_eq!(
        resp.header("x-callback-duplicate"),
        Some("true"),
        "{context}"
    );
    // The duplicate was verified before it was recognised.
    assert_eq!(
        resp.header("x-verified-signature"),
        Some(scheme),
        "{context}"
    );
}

fn assert_forwarded(resp: &Response, scheme: &str, context: &str) {
    assert_eq!(resp.status, 200, "{context}: {}", resp.body_str());
    assert_eq!(resp.body_str(), "upstream-ok", "{context}");
    assert_eq!(resp.header("x-callback-duplicate"), None, "{context}");
    assert_eq!(
        resp.header("x-verified-signature"),
        Some(scheme),
        "{context}"
    );
}

fn verified(envoy: &Envoy, channel: &str) -> f64 {
    envoy.metric("callback_signature_verified_total", &[("channel", channel)])
}

fn failed(envoy: &Envoy, channel: &str, reason: &str) -> f64 {
    envoy.metric(
        "callback_signature_failed_total",
        &[("channel", channel), ("reason", reason)],
    )
}

fn duplicates(envoy: &Envoy, channel: &str) -> f64 {
    envoy.metric("callback_duplicates_total", &[("channel", channel)])
}

#[test]
fn test_signers_reproduce_the_published_vectors() {
    // Standard Webhooks reference libraries (libraries/go/webhook_symmetric_test.go
    // and webhook_asymmetric_test.go), also used by src/core/signature.
    let (id, ts, body) = (
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1_614_265_330,
        br#"{"test": 2432232314}"#,
    );
    assert_eq!(
        sign::standard_v1("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", id, ts, body),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
    let seed: [u8; 32] = *b"TESTSIGNINGKEYDONOTUSETHISFORANY";
    assert_eq!(
        sign::whpk(&seed),
        "whpk_ZlN4eg7dSSqi0moX9hQUk3orrOouK3QVQSlJa248c/g="
    );
    assert_eq!(
        sign::standard_v1a(&seed, id, ts, body),
        "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="
    );
    // GitHub docs, "Validating webhook deliveries".
    assert_eq!(
        sign::github("It's a Secret to Everybody", b"Hello, World!"),
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
    // Slack docs, "Verifying requests from Slack".
    let slack_body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    assert_eq!(
        sign::slack(
            "8f742231b10e8888abcd99yyyzzz85a5",
            1_531_420_618,
            slack_body
        ),
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    );
    // Stripe: v1 of stripe-node's test/Webhook.spec.ts secret over a
    // minimal event (as in src/core/signature/stripe.rs).
    assert_eq!(
        sign::stripe(
            "whsec_test_secret",
            1_700_000_000,
            br#"{"id":"evt_test_webhook","object":"event"}"#
        ),
        "t=1700000000,v1=d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990"
    );
    // RFC 4231 test case 2 (HMAC-SHA-512), RFC 2202 test case 2 (HMAC-SHA-1).
    let (key, data) = (b"Jefe", b"what do ya want for nothing?");
    assert_eq!(
        sign::hex(&sign::hmac("sha512", key, data)),
        "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
    );
    assert_eq!(
        sign::hex(&sign::hmac("sha1", key, data)),
        "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
    );
    assert_eq!(
        sign::shopify("Jefe", data),
        "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
    );
}

#[test]
fn a_valid_callback_of_each_scheme_is_forwarded_marked_verified() {
    let up = Upstream::start();
    let envoy = start("sig-valid", &up);
    let now = sign::now();
    for (i, ch) in Ch::ALL.into_iter().enumerate() {
        let id = format!("msg_valid_{i}");
        let body = event(&id);
        // Inside the tolerance, a few seconds old.
        let resp = ch
            .signed(&id, now - 5, &body)
            // A client-sent value is replaced, not kept next to ours.
            .header("x-verified-signature", "forged")
            .send(envoy.addr());
        let context = format!("{ch:?}");
        assert_forwarded(&resp, ch.scheme(), &context);
        assert!(resp.header("x-callback-trace-id").is_some_and(is_trace_id));
        let got = up.received();
        assert_eq!(got.len(), i + 1, "{context}");
        let last = got.last().unwrap();
        assert_eq!(last.path, ch.path());
        assert_eq!(last.body, body, "{context}");
        assert_eq!(
            values(last, "x-verified-signature"),
            [ch.scheme()],
            "{context}"
        );
    }
    for ch in Ch::ALL {
        let want = if ch.name() == "std" { 2.0 } else { 1.0 };
        assert_eq!(verified(&envoy, ch.name()), want, "{ch:?}");
        for reason in REASONS {
            assert_eq!(failed(&envoy, ch.name(), reason), 0.0, "{ch:?} {reason}");
        }
    }
}

#[test]
fn invalid_signatures_get_401_and_never_reach_the_upstream() {
    let up = Upstream::start();
    let envoy = start("sig-invalid", &up);
    let now = sign::now();
    let (past, future) = (now - SKEW_S, now + SKEW_S);
    let id = "msg_bad";
    let body = event(id);
    let tampered = String::from_utf8(body.clone())
        .unwrap()
        .replace("1234", "9234")
        .into_bytes();
    let now_s = now.to_string();

    let std_sig = |key: &[u8], id: &str, ts: u64| sign::standard_v1(&whsec(key), id, ts, &body);
    let good = std_sig(STD_KEY, id, now);
    // Standard Webhooks / Svix request: (header prefix, id, timestamp, signature, body).
    let std = |prefix: &str, id: &str, ts: &str, sig: &str, body: &[u8]| {
        let ch = if prefix == "svix" { Ch::Svix } else { Ch::Std };
        std_headers(ch.bare(body), prefix, id, ts, sig)
    };
    let std_now = |sig: &str| std("webhook", id, &now_s, sig, &body);
    let std_at = |ts: u64| {
        std(
            "webhook",
            id,
            &ts.to_string(),
            &std_sig(STD_KEY, id, ts),
            &body,
        )
    };
    let svix_at = |ts: u64| {
        let sig = sign::standard_v1(&whsec(SVIX_KEY), id, ts, &body);
        std("svix", id, &ts.to_string(), &sig, &body)
    };
    let stripe_good = sign::stripe(STRIPE_SECRET, now, &body);
    let github_good = sign::github(GITHUB_NEW, &body);
    let slack_good = sign::slack(SLACK_SECRET, now, &body);
    let shopify_good = sign::shopify(SHOPIFY_SECRET, &body);
    let with = |ch: Ch, name: &str, value: &str, body: &[u8]| ch.bare(body).header(name, value);
    let stripe = |v: &str, body: &[u8]| with(Ch::Stripe, "stripe-signature", v, body);
    let github = |v: &str, body: &[u8]| with(Ch::Github, "x-hub-signature-256", v, body);
    let shopify = |v: &str| with(Ch::Shopify, "x-shopify-hmac-sha256", v, &body);
    let generic = |v: &str, body: &[u8]| with(Ch::Generic, GENERIC_HEADER, v, body);
    let slack = |ts: &str, sig: &str| {
        with(Ch::Slack, "x-slack-request-timestamp", ts, &body).header("x-slack-signature", sig)
    };
    let hmac = |alg: &str, key: &str| sign::hmac(alg, key.as_bytes(), &body);
    let svix_sig = sign::standard_v1(&whsec(SVIX_KEY), id, now, &body);

    // (what, channel, expected reason, request), as src/core/signature
    // documents: absent or blank header = missing; unparseable timestamp or
    // no usable signature entry (prefix, version, encoding, length) =
    // malformed; timestamp outside tolerance = expired; else mismatch.
    #[rustfmt::skip]
    let cases: Vec<(&str, Ch, &str, Request)> = vec![
        ("no signature header", Ch::Std, "missing",
            with(Ch::Std, "webhook-id", id, &body).header("webhook-timestamp", &now_s)),
        ("no timestamp header", Ch::Std, "missing",
            with(Ch::Std, "webhook-id", id, &body).header("webhook-signature", &good)),
        ("empty signature", Ch::Std, "missing", std_now("")),
        ("version without signature", Ch::Std, "malformed", std_now("v1,")),
        ("truncated signature", Ch::Std, "malformed", std_now(&good[..good.len() - 8])),
        ("garbled signature", Ch::Std, "malformed", std_now("v1,%%not*base64%%")),
        ("unknown version only", Ch::Std, "malformed", std_now(&format!("v2,{}", &good[3..]))),
        ("timestamp not in seconds", Ch::Std, "malformed", std("webhook", id, "soon", &good, &body)),
        ("wrong secret", Ch::Std, "mismatch", std_now(&std_sig(b"not the key", id, now))),
        ("tampered body", Ch::Std, "mismatch", std("webhook", id, &now_s, &good, &tampered)),
        ("signature of another id", Ch::Std, "mismatch", std("webhook", "msg_other", &now_s, &good, &body)),
        ("v1a by an unknown key", Ch::Std, "mismatch", std_now(&sign::standard_v1a(&[9; 32], id, now, &body))),
        ("timestamp in the past", Ch::Std, "expired", std_at(past)),
        ("timestamp in the future", Ch::Std, "expired", std_at(future)),

        ("webhook- names on svix", Ch::Svix, "missing",
            std_headers(Ch::Svix.bare(&body), "webhook", id, &now_s, &svix_sig)),
        ("standard-webhooks secret", Ch::Svix, "mismatch", std("svix", id, &now_s, &good, &body)),
        ("timestamp in the past", Ch::Svix, "expired", svix_at(past)),

        ("no signature header", Ch::Stripe, "missing", Ch::Stripe.bare(&body)),
        ("empty v1", Ch::Stripe, "malformed", stripe(&format!("t={now},v1="), &body)),
        ("only v0", Ch::Stripe, "malformed", stripe(&stripe_good.replace("v1=", "v0="), &body)),
        ("truncated v1", Ch::Stripe, "malformed", stripe(&stripe_good[..stripe_good.len() - 2], &body)),
        ("no timestamp", Ch::Stripe, "malformed", stripe(stripe_good.split_once(',').unwrap().1, &body)),
        ("wrong secret", Ch::Stripe, "mismatch", stripe(&sign::stripe("whsec_wrong", now, &body), &body)),
        ("tampered body", Ch::Stripe, "mismatch", stripe(&stripe_good, &tampered)),
        ("timestamp in the past", Ch::Stripe, "expired", stripe(&sign::stripe(STRIPE_SECRET, past, &body), &body)),
        ("timestamp in the future", Ch::Stripe, "expired", stripe(&sign::stripe(STRIPE_SECRET, future, &body), &body)),

        ("no signature header", Ch::Github, "missing", Ch::Github.bare(&body)),
        ("sha1 signature", Ch::Github, "malformed", github(&format!("sha1={}", sign::hex(&hmac("sha1", GITHUB_NEW))), &body)),
        ("truncated signature", Ch::Github, "malformed", github(&github_good[..github_good.len() - 2], &body)),
        ("wrong secret", Ch::Github, "mismatch", github(&sign::github("gh-retired", &body), &body)),
        ("tampered body", Ch::Github, "mismatch", github(&github_good, &tampered)),

        ("no timestamp header", Ch::Slack, "missing", with(Ch::Slack, "x-slack-signature", &slack_good, &body)),
        ("timestamp not in seconds", Ch::Slack, "malformed", slack("12:00", &slack_good)),
        ("truncated signature", Ch::Slack, "malformed", slack(&now_s, &slack_good[..slack_good.len() - 1])),
        ("wrong secret", Ch::Slack, "mismatch", slack(&now_s, &sign::slack("wrong", now, &body))),
        ("timestamp in the past", Ch::Slack, "expired", slack(&past.to_string(), &sign::slack(SLACK_SECRET, past, &body))),
        ("timestamp in the future", Ch::Slack, "expired", slack(&future.to_string(), &sign::slack(SLACK_SECRET, future, &body))),

        ("no signature header", Ch::Shopify, "missing", Ch::Shopify.bare(&body)),
        ("hex instead of base64", Ch::Shopify, "malformed", shopify(&sign::hex(&hmac("sha256", SHOPIFY_SECRET)))),
        ("truncated signature", Ch::Shopify, "malformed", shopify(&shopify_good[..20])),
        ("wrong secret", Ch::Shopify, "mismatch", shopify(&sign::shopify("wrong", &body))),

        ("no signature header", Ch::Generic, "missing", Ch::Generic.bare(&body)),
        ("prefix missing", Ch::Generic, "malformed", generic(&sign::b64(&hmac("sha512", GENERIC_SECRET)), &body)),
        ("sha256-sized tag", Ch::Generic, "malformed",
            generic(&format!("{GENERIC_PREFIX}{}", sign::b64(&hmac("sha256", GENERIC_SECRET))), &body)),
        ("wrong secret", Ch::Generic, "mismatch", generic(&generic_sig("wrong", &body), &body)),
        ("tampered body", Ch::Generic, "mismatch", generic(&generic_sig(GENERIC_SECRET, &body), &tampered)),
    ];

    let secrets = secret_texts();
    let mut want: HashMap<(&str, &str), f64> = HashMap::new();
    for (what, ch, reason, req) in &cases {
        let context = format!("{ch:?} {what}");
        // A client-sent claim of verification changes nothing.
        let resp = req
            .clone()
            .header("x-verified-signature", ch.scheme())
            .send(envoy.addr());
        local_reply(&resp, 401, Some(&format!("signature_{reason}")), &context);
        assert_eq!(resp.header("x-verified-signature"), None, "{context}");
        let text = resp.body_str();
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "{context}: reply leaks a secret: {text}"
            );
        }
        for (name, value) in &req.headers {
            if name != "content-type" && value.len() >= 12 {
                assert!(
                    !text.contains(value.as_str()),
                    "{context}: reply echoes {name}: {text}"
                );
            }
        }
        *want.entry((ch.name(), reason)).or_default() += 1.0;
    }

    assert_eq!(up.count(), 0, "an unverified callback reached the upstream");
    for ch in Ch::ALL {
        assert_eq!(verified(&envoy, ch.name()), 0.0, "{ch:?}");
        for reason in REASONS {
            let expected = want.get(&(ch.name(), reason)).copied().unwrap_or(0.0);
            assert_eq!(
                failed(&envoy, ch.name(), reason),
                expected,
                "{ch:?} {reason}"
            );
        }
    }
    // Nor does Envoy's log carry a secret or a key.
    let log = envoy.log();
    for s in &secrets {
        assert!(!log.contains(s.as_str()), "Envoy log contains a secret");
    }
}

#[test]
fn any_configured_key_verifies_during_rotation() {
    let up = Upstream::start();
    let envoy = start("sig-rotation", &up);
    let now = sign::now();
    let body = event("msg_rot");

    // Standard Webhooks: the second secret (inline; the first is from env).
    let next = sign::standard_v1(&whsec(STD_NEXT_KEY), "msg_rot_1", now, &body);
    let resp = std_headers(
        Ch::Std.bare(&body),
        "webhook",
        "msg_rot_1",
        &now.to_string(),
        &next,
    )
    .send(envoy.addr());
    assert_forwarded(&resp, "standard-webhooks", "second secret");
    // A sender mid-rotation lists several signatures; one verifying is enough.
    let stale = sign::standard_v1(&whsec(b"retired key"), "msg_rot_2", now, &body);
    let fresh = sign::standard_v1(&whsec(STD_NEXT_KEY), "msg_rot_2", now, &body);
    let resp = std_headers(
        Ch::Std.bare(&body),
        "webhook",
        "msg_rot_2",
        &now.to_string(),
        &format!("{stale} {fresh}"),
    )
    .send(envoy.addr());
    assert_forwarded(&resp, "standard-webhooks", "two entries, second valid");

    // GitHub, secrets [old, new]: both verify, a third does not.
    for (i, secret) in [GITHUB_OLD, GITHUB_NEW].iter().enumerate() {
        let resp = Ch::Github
            .bare(&body)
            .header("X-GitHub-Delivery", &format!("rot-{i}"))
            .header("X-Hub-Signature-256", &sign::github(secret, &body))
            .send(envoy.addr());
        assert_forwarded(&resp, "github", &format!("secret #{i}"));
    }
    let resp = Ch::Github
        .bare(&body)
        .header("X-GitHub-Delivery", "rot-x")
        .header(
            "X-Hub-Signature-256",
            &sign::github("gh-e2e-retired", &body),
        )
        .send(envoy.addr());
    local_reply(&resp, 401, Some("signature_mismatch"), "retired secret");

    let got = up.received();
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|r| r.body == body));
    assert_eq!(verified(&envoy, "std"), 2.0);
    assert_eq!(verified(&envoy, "github"), 2.0);
    assert_eq!(failed(&envoy, "github", "mismatch"), 1.0);
}

#[test]
fn client_sent_verified_header_never_passes_without_a_valid_signature() {
    let up = Upstream::start();
    let envoy = start("sig-spoof", &up);
    // A channel without signature, and no channel at all: removed.
    for path in ["/hooks/plain/events", "/elsewhere"] {
        let resp = Request::post(path)
            .header("x-verified-signature", "github")
            .header("X-Verified-Signature", "standard-webhooks")
            .json(r#"{"id":"x"}"#)
            .send(envoy.addr());
        assert_eq!(resp.status, 200, "{path}");
        assert_eq!(resp.header("x-verified-signature"), None, "{path}");
    }
    // A signature channel, the signature missing: refused.
    let resp = Ch::Github
        .bare(&event("spoof"))
        .header("x-verified-signature", "github")
        .send(envoy.addr());
    local_reply(
        &resp,
        401,
        Some("signature_missing"),
        "github without signature",
    );
    assert_eq!(resp.header("x-verified-signature"), None);

    let got = up.received();
    assert_eq!(got.len(), 2);
    for r in &got {
        assert_eq!(
            values(r, "x-verified-signature"),
            Vec::<&str>::new(),
            "{}",
            r.path
        );
    }
    assert_eq!(failed(&envoy, "github", "missing"), 1.0);
}

#[test]
fn bodies_in_many_pieces_and_large_bodies_verify_byte_exact() {
    let up = Upstream::start();
    let envoy = start("sig-bodies", &up);
    let now = sign::now();

    // ~4 KiB JSON in 50 chunks with small pauses (standard-webhooks signs
    // id.ts.body: every piece must be in).
    let items: Vec<String> = (0..100)
        .map(|i| format!(r#"{{"sku":"item-{i:03}","qty":{i}}}"#))
        .collect();
    let json_body = format!(r#"{{"id":"msg_chunked","items":[{}]}}"#, items.join(",")).into_bytes();
    let resp = Ch::Std
        .signed("msg_chunked", now, &json_body)
        .chunked(&json_body, 50, Duration::from_millis(3))
        .send(envoy.addr());
    assert_forwarded(&resp, "standard-webhooks", "50 chunks");

    // 60 KiB of arbitrary bytes (not UTF-8) with a content-length, then
    // chunked in 30 pieces: GitHub signs the raw body.
    let big: Vec<u8> = (0..60 * 1024u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let github_req = |delivery: &str, body: &[u8], signed_over: &[u8]| {
        Ch::Github
            .bare(body)
            .header("X-GitHub-Delivery", delivery)
            .header(
                "X-Hub-Signature-256",
                &sign::github(GITHUB_NEW, signed_over),
            )
    };
    let resp = github_req("big-1", &big, &big).send(envoy.addr());
    assert_forwarded(&resp, "github", "60 KiB");
    let resp = github_req("big-2", &big, &big)
        .chunked(&big, 30, Duration::from_millis(1))
        .send(envoy.addr());
    assert_forwarded(&resp, "github", "60 KiB chunked");

    // Only the last byte differs: the whole body is what is checked.
    let mut last_flipped = big.clone();
    *last_flipped.last_mut().unwrap() ^= 1;
    let resp = github_req("big-3", &last_flipped, &big)
        .chunked(&last_flipped, 30, Duration::from_millis(1))
        .send(envoy.addr());
    local_reply(&resp, 401, Some("signature_mismatch"), "last byte flipped");

    let got = up.received();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].body, json_body, "chunked JSON body changed");
    assert_eq!(got[0].header("webhook-id"), Some("msg_chunked"));
    assert!(got[1].body == big, "60 KiB body changed");
    assert!(got[2].body == big, "60 KiB chunked body changed");
    assert_eq!(verified(&envoy, "std"), 1.0);
    assert_eq!(verified(&envoy, "github"), 2.0);
    assert_eq!(failed(&envoy, "github", "mismatch"), 1.0);
}

#[test]
fn second_delivery_of_an_id_is_answered_duplicate_and_not_forwarded() {
    let up = Upstream::start();
    let envoy = start("dedup", &up);
    let now = sign::now();
    let send = |req: Request| req.send(envoy.addr());

    // Standard Webhooks: the same delivery twice, then re-signed later.
    let body = event("order-1");
    let resp = send(Ch::Std.signed("msg_dup", now, &body));
    assert_forwarded(&resp, "standard-webhooks", "std first");
    let resp = send(Ch::Std.signed("msg_dup", now, &body));
    assert_duplicate(&resp, "standard-webhooks", "std same delivery");
    let resp = send(Ch::Std.signed("msg_dup", now - 1, &body));
    assert_duplicate(&resp, "standard-webhooks", "std re-signed retry");

    // A forged request cannot plant an id: dedup runs after verification.
    let forged = std_headers(
        Ch::Std.bare(&body),
        "webhook",
        "msg_planted",
        &now.to_string(),
        &sign::standard_v1(&whsec(b"attacker"), "msg_planted", now, &body),
    );
    local_reply(&send(forged), 401, Some("signature_mismatch"), "forged");
    let resp = send(Ch::Std.signed("msg_planted", now, &body));
    assert_forwarded(&resp, "standard-webhooks", "after forged");

    // Stripe: the event id in the body, whatever the signature timestamp.
    let evt = event("evt_dedup_1");
    assert_forwarded(
        &send(Ch::Stripe.signed("", now, &evt)),
        "stripe",
        "evt first",
    );
    assert_duplicate(
        &send(Ch::Stripe.signed("", now - 3, &evt)),
        "stripe",
        "evt retry",
    );
    let evt2 = event("evt_dedup_2");
    assert_forwarded(
        &send(Ch::Stripe.signed("", now, &evt2)),
        "stripe",
        "other evt",
    );

    // GitHub: X-GitHub-Delivery, not the body.
    let push = event("push");
    assert_forwarded(&send(Ch::Github.signed("d-1", now, &push)), "github", "d-1");
    assert_duplicate(
        &send(Ch::Github.signed("d-1", now, &push)),
        "github",
        "d-1 again",
    );
    assert_forwarded(
        &send(Ch::Github.signed("d-2", now, &push)),
        "github",
        "d-2 same body",
    );

    // Shopify: X-Shopify-Webhook-Id.
    let order = event("shop-order");
    assert_forwarded(
        &send(Ch::Shopify.signed("s-1", now, &order)),
        "shopify",
        "s-1",
    );
    assert_duplicate(
        &send(Ch::Shopify.signed("s-1", now, &order)),
        "shopify",
        "s-1 again",
    );

    let got = up.received();
    let delivered: Vec<String> = got
        .iter()
        .map(|r| {
            ["webhook-id", "x-github-delivery", "x-shopify-webhook-id"]
                .iter()
                .find_map(|h| r.header(h))
                .map(String::from)
                .unwrap_or_else(|| {
                    serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["id"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
        })
        .collect();
    assert_eq!(
        delivered,
        [
            "msg_dup",
            "msg_planted",
            "evt_dedup_1",
            "evt_dedup_2",
            "d-1",
            "d-2",
            "s-1"
        ]
    );
    assert_eq!(duplicates(&envoy, "std"), 2.0);
    assert_eq!(duplicates(&envoy, "stripe"), 1.0);
    assert_eq!(duplicates(&envoy, "github"), 1.0);
    assert_eq!(duplicates(&envoy, "shopify"), 1.0);
    // Duplicates were verified (and counted as such) before being recognised.
    assert_eq!(verified(&envoy, "std"), 4.0);
    assert_eq!(failed(&envoy, "std", "mismatch"), 1.0);
}

/// Per-worker accepted connections of the listener (`worker_N` stats).
fn connections_per_worker(envoy: &Envoy) -> BTreeMap<String, u64> {
    envoy
        .admin_get("/stats?filter=worker_.*downstream_cx_total")
        .lines()
        .filter(|l| l.starts_with("listener.127.0.0.1_"))
        .filter_map(|l| {
            let (name, value) = l.split_once(": ")?;
            let worker = name.split('.').find(|p| p.starts_with("worker_"))?;
            Some((worker.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

#[test]
fn duplicates_are_caught_across_worker_threads() {
    let up = Upstream::start();
    let envoy = start("dedup-workers", &up);
    let addr = envoy.addr();
    let now = sign::now();
    let ids = 100;
    // Both copies of a pair are sent at about the same time, each over its
    // own connection; connections are spread over the 2 workers.
    let results = parallel(8, 2 * ids, move |i| {
        let id = format!("msg_par_{:03}", i / 2);
        let resp = Ch::Std.signed(&id, now, &event(&id)).send(addr);
        (id, resp)
    });

    // The copy that is not forwarded is a duplicate when the first was
    // already delivered, or `409 in_progress` while it was still in flight.
    let mut per_id: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut in_progress = 0;
    for (id, resp) in &results {
        let entry = per_id.entry(id.clone()).or_default();
        if resp.header("x-callback-duplicate") == Some("true") {
            assert_duplicate(resp, "standard-webhooks", id);
            entry.1 += 1;
        } else if resp.status == 409 {
            local_reply(resp, 409, Some("in_progress"), id);
            assert!(resp.header("retry-after").is_some(), "{id}");
            in_progress += 1;
            entry.1 += 1;
        } else {
            assert_forwarded(resp, "standard-webhooks", id);
            entry.0 += 1;
        }
    }
    assert_eq!(per_id.len(), ids);
    for (id, counts) in &per_id {
        assert_eq!(*counts, (1, 1), "{id}: (forwarded, not forwarded)");
    }

    let mut upstream_ids: BTreeMap<String, usize> = BTreeMap::new();
    for r in up.received() {
        *upstream_ids
            .entry(r.header("webhook-id").unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(upstream_ids.len(), ids);
    assert!(
        upstream_ids.values().all(|n| *n == 1),
        "some id reached the upstream twice: {upstream_ids:?}"
    );
    assert_eq!(duplicates(&envoy, "std"), (ids - in_progress) as f64);

    // Both workers took a real share of the connections, so (with 100
    // pairs) some pairs certainly had their copies on different workers.
    let workers = connections_per_worker(&envoy);
    eprintln!("connections per worker: {workers:?}");
    assert_eq!(workers.len(), 2, "{workers:?}");
    assert_eq!(workers.values().sum::<u64>(), 2 * ids as u64, "{workers:?}");
    assert!(
        workers.values().all(|n| *n >= (2 * ids / 10) as u64),
        "connections not spread over both workers: {workers:?}"
    );
}

#[test]
fn a_delivery_the_upstream_failed_is_not_a_duplicate_on_retry() {
    let up = Upstream::with_reply(Reply {
        status: 503,
        ..Reply::default()
    });
    let envoy = start("dedup-forget", &up);
    let now = sign::now();
    let body = event("order-503");
    let delivery = || Ch::Std.signed("msg_retry", now, &body);

    let resp = delivery().send(envoy.addr());
    assert_eq!(resp.status, 503, "{}", resp.body_str());
    assert_eq!(resp.header("x-callback-duplicate"), None);

    // The provider retries; the upstream is back.
    up.set_reply(Reply::default());
    let resp = delivery().send(envoy.addr());
    assert_forwarded(&resp, "standard-webhooks", "retry after 503");
    // Now it was accepted: a further copy is a duplicate.
    let resp = delivery().send(envoy.addr());
    assert_duplicate(&resp, "standard-webhooks", "copy after success");

    let got = up.received();
    assert_eq!(got.len(), 2, "the first delivery and its retry");
    assert!(
        got.iter()
            .all(|r| r.header("webhook-id") == Some("msg_retry") && r.body == body)
    );
    assert_eq!(duplicates(&envoy, "std"), 1.0);
    assert_eq!(
        envoy.metric(
            "callback_upstream_failures_total",
            &[("channel", "std"), ("cluster", "upstream")]
        ),
        1.0
    );
}

#[test]
fn a_secret_whose_env_var_is_missing_refuses_the_configuration() {
    let inline = "inline-secret-never-logged-5e1f";
    let from_env = "env-secret-never-logged-a7c3";
    let cases = [
        (
            json!({"channels": [{"name": "a", "match": {"path_prefix": "/a"},
                "signature": {"scheme": "stripe", "secrets": [{"env": "CG_E2E_UNSET"}]}}]}),
            "channels[0].signature.secrets[0]: env var CG_E2E_UNSET is not set",
        ),
        (
            json!({"channels": [
                {"name": "a", "match": {"path_prefix": "/a"},
                 "signature": {"scheme": "github", "secrets": [{"value": inline}]}},
                {"name": "b", "match": {"path_prefix": "/b"},
                 "signature": {"scheme": "slack",
                               "secrets": [{"env": "CG_E2E_SET"}, {"env": "CG_E2E_UNSET"}]}}]}),
            "channels[1].signature.secrets[1]: env var CG_E2E_UNSET is not set",
        ),
    ];
    for (i, (config, needle)) in cases.iter().enumerate() {
        let up = Upstream::start();
        let log = Envoy::builder(&format!("sig-bad-env-{i}"))
            .plugin(&config.to_string())
            .env("CG_E2E_SET", from_env)
            .cluster("upstream", up.port())
            .start_expect_exit();
        let line = support::assert::config_error_line(&log);
        assert!(line.contains(needle), "{needle:?} not in: {line}");
        for secret in [inline, from_env] {
            assert!(!log.contains(secret), "the log shows a secret:\n{log}");
        }
    }
}
