//! Delivery dedup (SPEC `dedup`): a second delivery with the same delivery
//! id inside `window_s` is a duplicate (answered 200 +
//! `x-callback-duplicate: true`, not forwarded).
//!
//! # Where the id comes from
//! By the channel's signature scheme ([`DeliveryIdSource::for_scheme`]):
//! `webhook-id` (standard-webhooks), `svix-id` (svix), `x-github-delivery`
//! (github), `x-shopify-webhook-id` (shopify), the top-level `id` of the
//! JSON body (stripe event id). Without a signature, or for schemes that
//! carry no id (`slack`, `hmac`), the first of those headers present is
//! used. The extension `dedup.id_header` names one header instead.
//! Call [`DedupPolicy::check`] only after the signature verified, so
//! unauthenticated requests cannot plant ids.
//!
//! # The dedup key: never plantable
//! The key remembered is [`DedupPolicy::delivery_key`]: the id alone where
//! the signature covers it (`webhook-id`/`svix-id` are in the signed
//! content; the Stripe event id is in the signed body), and otherwise the
//! id plus a digest of the verified body (GitHub's `X-GitHub-Delivery` and
//! Shopify's `X-Shopify-Webhook-Id` are not signed: a captured body
//! replayed under a victim's delivery id must not make the genuine
//! delivery a "duplicate"). Dedup on a channel without a signature is
//! refused at load unless `dedup.allow_unsigned` accepts the risk; its key
//! holds the body digest too.
//!
//! # Storage, and its bound
//! Remembered ids live in proxy-wasm shared data, visible to every worker
//! thread, and shared data never evicts. So the set is bounded by
//! construction: each channel has a fixed number of shards (keys
//! `cg:dedup:<channel>:<shard>`), each one compact binary value — a format
//! byte, then up to [`SHARD_CAPACITY`] (256) entries of 16 bytes: the
//! 64-bit hash of the id (first 8 bytes of its SHA-256, big-endian: the
//! same in every worker and every build) and its expiry second. Inserting
//! into a full shard drops expired entries first, then the oldest.
//!
//! A channel therefore remembers at most `max_ids` ids (default
//! [`DEFAULT_MAX_IDS`] = 4096: 16 shards, 64 KiB; the extension
//! `dedup.max_ids` goes up to 65536: 256 shards, 1 MiB). When more than
//! that arrive within a window, the oldest are forgotten early and a late
//! duplicate of them is forwarded: dedup fails open, a callback is never
//! lost for it.
//!
//! Every read-modify-write goes through [`update`] (compare-and-swap with
//! bounded retries); a duplicate is answered from one read, without a write.
//!
//! # In flight, then delivered
//! A key has two states. [`DedupPolicy::check`] remembers a new key as
//! *in flight* for `in_flight_s` (default 60 s): a retry arriving then is
//! [`DedupOutcome::InFlight`] (the filter answers `409 in_progress` with
//! `retry-after`, so the provider tries again), never "delivered". Only a
//! 2xx from the upstream makes it *delivered* ([`DedupPolicy::delivered`])
//! for `window_s`: a retry then is [`DedupOutcome::Duplicate`] (`200`,
//! `x-callback-duplicate: true`). Any other outcome (non-2xx, reset,
//! timeout, the caller hanging up) forgets the key
//! ([`DedupPolicy::forget`]), so the provider's next retry is forwarded.
//! An in-flight mark whose answer never came (a VM reloaded mid-request)
//! expires after `in_flight_s`.
//!
//! ```
//! use callback_guard::core::dedup::{DEFAULT_IN_FLIGHT_S, DEFAULT_MAX_IDS, DedupOutcome, DedupPolicy};
//! use callback_guard::core::shared::MemoryStore;
//!
//! // `{"window_s": 60, "allow_unsigned": true}`, as `config` compiles it.
//! let dedup = DedupPolicy::new(60, DEFAULT_IN_FLIGHT_S, DEFAULT_MAX_IDS, None, None);
//! let store = MemoryStore::new();
//! assert_eq!(dedup.check(&store, "payments", "msg_1", 1000), Ok(DedupOutcome::First));
//! // A retry while the first attempt is in flight: try again later.
//! assert_eq!(
//!     dedup.check(&store, "payments", "msg_1", 1001),
//!     Ok(DedupOutcome::InFlight { retry_after_s: 59 })
//! );
//! // The upstream answered 2xx at 1002: delivered for the 60 s window.
//! dedup.delivered(&store, "payments", "msg_1", 1002).unwrap();
//! assert_eq!(dedup.check(&store, "payments", "msg_1", 1061), Ok(DedupOutcome::Duplicate));
//! assert_eq!(dedup.check(&store, "payments", "msg_1", 1062), Ok(DedupOutcome::First));
//! ```

use crate::core::headers::Headers;
use crate::core::names::header;
use crate::core::shared::{SharedStore, StoreError, update};
use crate::core::signature::Scheme;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// Entries per shard value.
pub const SHARD_CAPACITY: usize = 256;
/// Ids remembered per channel unless `dedup.max_ids` says otherwise.
pub const DEFAULT_MAX_IDS: u32 = 4096;
/// Range accepted for `dedup.max_ids`.
pub const MIN_MAX_IDS: u32 = SHARD_CAPACITY as u32;
pub const MAX_MAX_IDS: u32 = 65_536;
/// Longest accepted `window_s`: 30 days (Stripe retries for 3 days).
pub const MAX_WINDOW_S: u64 = 30 * 24 * 3600;
/// Delivery ids longer than this are not deduplicated (no provider sends
/// them; it keeps hostile input from being hashed without end).
pub const MAX_ID_LEN: usize = 256;

/// Headers tried in order when the scheme names none.
pub const FALLBACK_ID_HEADERS: [&str; 4] = [
    header::WEBHOOK_ID,
    header::SVIX_ID,
    header::GITHUB_DELIVERY,
    header::SHOPIFY_WEBHOOK_ID,
];

/// Shard value layout version; a value with another first byte (a future
/// layout written by a newer VM during a rollout) is read as empty.
const FORMAT: u8 = 1;
const ENTRY_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupOutcome {
    /// Not seen (or forgotten): forward it; it is now remembered in flight.
    First,
    /// Delivered (2xx) inside the window: answer 200 +
    /// `x-callback-duplicate: true`.
    Duplicate,
    /// Another attempt is in flight: answer 409 with `retry-after`.
    InFlight { retry_after_s: u64 },
}

/// Default of `dedup.in_flight_s`.
pub const DEFAULT_IN_FLIGHT_S: u64 = 60;
/// Range of `dedup.in_flight_s`.
pub const MAX_IN_FLIGHT_S: u64 = 3600;
/// Marks an in-flight entry: the top bit of its expiry second.
const IN_FLIGHT_BIT: u64 = 1 << 63;

/// Where a request's delivery id is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryIdSource {
    /// One header (lower-case name).
    Header(Cow<'static, str>),
    /// The top-level string `id` of a JSON body (Stripe event id).
    JsonBodyId,
    /// The first present of [`FALLBACK_ID_HEADERS`].
    KnownHeaders,
}

impl DeliveryIdSource {
    /// The id a provider using `scheme` sends; `None` = no signature.
    pub fn for_scheme(scheme: Option<Scheme>) -> Self {
        match scheme {
            Some(Scheme::StandardWebhooks) => Self::Header(Cow::Borrowed(header::WEBHOOK_ID)),
            Some(Scheme::Svix) => Self::Header(Cow::Borrowed(header::SVIX_ID)),
            Some(Scheme::Github) => Self::Header(Cow::Borrowed(header::GITHUB_DELIVERY)),
            Some(Scheme::Shopify) => Self::Header(Cow::Borrowed(header::SHOPIFY_WEBHOOK_ID)),
            Some(Scheme::Stripe) => Self::JsonBodyId,
            Some(Scheme::Slack | Scheme::Hmac) | None => Self::KnownHeaders,
        }
    }

    /// The delivery id, when present, non-blank and at most
    /// [`MAX_ID_LEN`] bytes.
    pub fn delivery_id(&self, headers: &Headers, body: &[u8]) -> Option<String> {
        match self {
            Self::JsonBodyId => self.body_id(body),
            _ => self.header_id(headers).map(str::to_string),
        }
    }

    /// [`delivery_id`](Self::delivery_id) of a source that reads headers,
    /// borrowed from them (`None` for [`Self::JsonBodyId`]).
    pub fn header_id<'a>(&self, headers: &'a Headers) -> Option<&'a str> {
        let id = match self {
            Self::Header(name) => token(headers, name),
            Self::KnownHeaders => FALLBACK_ID_HEADERS
                .iter()
                .find_map(|name| token(headers, name)),
            Self::JsonBodyId => None,
        }?;
        valid_id(id).then_some(id)
    }

    /// [`delivery_id`](Self::delivery_id) of [`Self::JsonBodyId`] (`None`
    /// for a source that reads headers).
    pub fn body_id(&self, body: &[u8]) -> Option<String> {
        match self {
            Self::JsonBodyId => json_body_id(body)
                .filter(|id| valid_id(id))
                .map(Cow::into_owned),
            _ => None,
        }
    }

    /// Whether an id header this source reads is repeated or not visible
    /// ASCII: such a request is refused, never deduplicated on one copy
    /// while the service sees another.
    pub fn malformed(&self, headers: &Headers) -> bool {
        match self {
            Self::Header(name) => headers.single_token(name).is_err(),
            Self::KnownHeaders => FALLBACK_ID_HEADERS
                .iter()
                .any(|name| headers.single_token(name).is_err()),
            Self::JsonBodyId => false,
        }
    }
}

/// An id is used when present, non-blank and at most [`MAX_ID_LEN`] bytes.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN
}

fn token<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.single_token(name).ok().flatten()
}

/// Top-level `"id": "<string>"` of a JSON object; anything else is `None`.
fn json_body_id(body: &[u8]) -> Option<Cow<'_, str>> {
    #[derive(Deserialize)]
    struct Event<'a> {
        #[serde(borrow, default)]
        id: Option<Cow<'a, str>>,
    }
    // serde also reads a struct from a JSON array (by position): only an
    // object is an event.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice::<Event<'_>>(body).ok()?.id
}

/// A compiled `dedup` section.
#[derive(Debug)]
pub struct DedupPolicy {
    pub window_s: u64,
    /// How long a key stays in flight without an answer.
    pub in_flight_s: u64,
    source: DeliveryIdSource,
    /// The signature covers the id: the key is the id alone.
    id_signed: bool,
    shards: u64,
}

impl DedupPolicy {
    /// The policy from checked values (`config` bounds `window_s`,
    /// `in_flight_s` and `max_ids` and checks `id_header` is a header
    /// name): the id comes from `id_header` if given, else from what the
    /// `scheme` sends; the key is the id alone only when the scheme's
    /// signature covers it.
    pub fn new(
        window_s: u64,
        in_flight_s: u64,
        max_ids: u32,
        id_header: Option<&str>,
        scheme: Option<Scheme>,
    ) -> Self {
        let id_signed = id_header.is_none()
            && matches!(
                scheme,
                Some(Scheme::StandardWebhooks | Scheme::Svix | Scheme::Stripe)
            );
        let source = match id_header {
            Some(name) => DeliveryIdSource::Header(Cow::Owned(name.to_ascii_lowercase())),
            None => DeliveryIdSource::for_scheme(scheme),
        };
        Self {
            window_s,
            in_flight_s,
            source,
            id_signed,
            shards: u64::from(max_ids.div_ceil(MIN_MAX_IDS)),
        }
    }

    /// The delivery id of a request (see [`DeliveryIdSource`]).
    pub fn delivery_id(&self, headers: &Headers, body: &[u8]) -> Option<String> {
        self.source.delivery_id(headers, body)
    }

    /// The key dedup remembers for a request (see the module doc): the id
    /// where the signature covers it, else the id and a digest of `body`.
    pub fn delivery_key(&self, headers: &Headers, body: &[u8]) -> Option<String> {
        let id = self.delivery_id(headers, body)?;
        if self.id_signed {
            return Some(id);
        }
        let digest = Sha256::digest(body);
        let mut key = String::with_capacity(id.len() + 1 + 32);
        key.push_str(&id);
        key.push('#');
        for b in digest.iter().take(16) {
            key.push_str(&format!("{b:02x}"));
        }
        Some(key)
    }

    /// See [`DeliveryIdSource::malformed`].
    pub fn id_malformed(&self, headers: &Headers) -> bool {
        self.source.malformed(headers)
    }

    /// Where ids are read from.
    pub fn source(&self) -> &DeliveryIdSource {
        &self.source
    }

    /// Upper bound of ids remembered for one channel.
    pub fn max_ids(&self) -> usize {
        usize::try_from(self.shards)
            .unwrap_or(usize::MAX)
            .saturating_mul(SHARD_CAPACITY)
    }

    /// Remembers `id` for `channel` and says whether it was already seen
    /// inside the window.
    pub fn check(
        &self,
        store: &dyn SharedStore,
        channel: &str,
        id: &str,
        now_unix_s: u64,
    ) -> Result<DedupOutcome, StoreError> {
        let hash = id_hash(id);
        let key = self.key(channel, hash);
        let seen = |e: &Entry| e.seen_at(now_unix_s);
        // Fast path: a duplicate or in-flight retry is answered from one
        // read, no write.
        if let Some((value, _)) = store.get(&key)?
            && let Some(outcome) = decode(&value)
                .find(|e| e.hash == hash && e.expiry > now_unix_s)
                .map(|e| seen(&e))
        {
            return Ok(outcome);
        }
        let expiry = now_unix_s.saturating_add(self.in_flight_s);
        update(store, &key, |current| {
            let mut entries: Vec<Entry> = current
                .map(|v| decode(v).filter(|e| e.expiry > now_unix_s).collect())
                .unwrap_or_default();
            if let Some(e) = entries.iter().find(|e| e.hash == hash) {
                // Another worker remembered it between our read and now.
                let outcome = seen(e);
                return (encode(&entries), outcome);
            }
            entries.push(Entry {
                hash,
                expiry,
                in_flight: true,
            });
            // Entries are kept in arrival order: the front is the oldest.
            let excess = entries.len().saturating_sub(SHARD_CAPACITY);
            entries.drain(..excess);
            (encode(&entries), DedupOutcome::First)
        })
    }

    /// The upstream answered 2xx: `id` is delivered, a duplicate for
    /// `window_s` from now. Re-inserts it if it was dropped meanwhile.
    pub fn delivered(
        &self,
        store: &dyn SharedStore,
        channel: &str,
        id: &str,
        now_unix_s: u64,
    ) -> Result<(), StoreError> {
        let hash = id_hash(id);
        let key = self.key(channel, hash);
        let expiry = now_unix_s.saturating_add(self.window_s);
        update(store, &key, |current| {
            let mut entries: Vec<Entry> = current
                .map(|v| {
                    decode(v)
                        .filter(|e| e.expiry > now_unix_s && e.hash != hash)
                        .collect()
                })
                .unwrap_or_default();
            entries.push(Entry {
                hash,
                expiry,
                in_flight: false,
            });
            let excess = entries.len().saturating_sub(SHARD_CAPACITY);
            entries.drain(..excess);
            (encode(&entries), ())
        })
    }

    /// Forgets `id` for `channel`, so the provider's retry is forwarded:
    /// call it when the upstream answered 5xx or the request was reset.
    /// Writes nothing when the id is not remembered.
    pub fn forget(
        &self,
        store: &dyn SharedStore,
        channel: &str,
        id: &str,
    ) -> Result<(), StoreError> {
        let hash = id_hash(id);
        let key = self.key(channel, hash);
        match store.get(&key)? {
            Some((value, _)) if decode(&value).any(|e| e.hash == hash) => {}
            _ => return Ok(()),
        }
        update(store, &key, |current| {
            let entries: Vec<Entry> = current
                .map(|v| decode(v).filter(|e| e.hash != hash).collect())
                .unwrap_or_default();
            (encode(&entries), ())
        })
    }

    fn key(&self, channel: &str, hash: u64) -> String {
        // `shards` >= 1 by construction; `max(1)` keeps the modulo total.
        format!("cg:dedup:{channel}:{}", hash % self.shards.max(1))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    hash: u64,
    /// Unix second it expires (stored without [`IN_FLIGHT_BIT`]).
    expiry: u64,
    in_flight: bool,
}

impl Entry {
    /// What a retry of this live entry gets at `now`.
    fn seen_at(&self, now: u64) -> DedupOutcome {
        if self.in_flight {
            DedupOutcome::InFlight {
                retry_after_s: self.expiry.saturating_sub(now).max(1),
            }
        } else {
            DedupOutcome::Duplicate
        }
    }
}

/// First 8 bytes of SHA-256(id), big-endian.
fn id_hash(id: &str) -> u64 {
    Sha256::digest(id.as_bytes())
        .iter()
        .take(8)
        .fold(0, |acc, b| acc << 8 | u64::from(*b))
}

fn be_u64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |acc, b| acc << 8 | u64::from(*b))
}

/// The entries of a shard value; an unknown layout or a torn tail yields
/// what can be read (nothing, for an unknown layout).
fn decode(value: &[u8]) -> impl Iterator<Item = Entry> + '_ {
    let body = match value.split_first() {
        Some((&FORMAT, rest)) => rest,
        _ => &[],
    };
    body.chunks_exact(ENTRY_LEN).map(|chunk| {
        let (hash, expiry) = chunk.split_at(ENTRY_LEN / 2);
        let expiry = be_u64(expiry);
        Entry {
            hash: be_u64(hash),
            expiry: expiry & !IN_FLIGHT_BIT,
            in_flight: expiry & IN_FLIGHT_BIT != 0,
        }
    })
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + entries.len() * ENTRY_LEN);
    out.push(FORMAT);
    for e in entries {
        out.extend_from_slice(&e.hash.to_be_bytes());
        let flag = if e.in_flight { IN_FLIGHT_BIT } else { 0 };
        out.extend_from_slice(&(e.expiry.min(!IN_FLIGHT_BIT) | flag).to_be_bytes());
    }
    out
}

/// RFC 9110 token characters.
/// An RFC 9110 token: a valid header name.
pub fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::shared::MemoryStore;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// A policy from a `dedup` section as JSON (already valid) and the
    /// channel's signature scheme.
    fn policy(json: &str, scheme: Option<&str>) -> DedupPolicy {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        DedupPolicy::new(
            v["window_s"].as_u64().unwrap(),
            v["in_flight_s"].as_u64().unwrap_or(DEFAULT_IN_FLIGHT_S),
            v["max_ids"]
                .as_u64()
                .map_or(DEFAULT_MAX_IDS, |n| u32::try_from(n).unwrap()),
            v["id_header"].as_str(),
            scheme.map(|s| Scheme::parse(s).unwrap()),
        )
    }

    /// A delivery that the upstream answered 2xx at once: `check`, then
    /// `delivered` when it was the first.
    fn deliver(
        p: &DedupPolicy,
        store: &dyn SharedStore,
        channel: &str,
        id: &str,
        now: u64,
    ) -> Result<DedupOutcome, StoreError> {
        let outcome = p.check(store, channel, id, now)?;
        if outcome == DedupOutcome::First {
            p.delivered(store, channel, id, now)?;
        }
        Ok(outcome)
    }

    #[test]
    fn delivery_id_follows_the_scheme() {
        let h = headers(&[("webhook-id", "w"), ("x-github-delivery", "72d3162e")]);
        let id = DeliveryIdSource::for_scheme(Some(Scheme::Github)).delivery_id(&h, b"");
        assert_eq!(id.as_deref(), Some("72d3162e"));
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().copied().collect()
    }

    const ALL_IDS: [(&str, &str); 4] = [
        (
            "X-Shopify-Webhook-Id",
            "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        ),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("svix-id", "msg_svix"),
        ("webhook-id", "msg_std"),
    ];

    #[test]
    fn delivery_id_by_scheme() {
        let h = headers(&ALL_IDS);
        let id = |scheme: Option<&str>, body: &[u8]| {
            policy(r#"{"window_s":60}"#, scheme).delivery_id(&h, body)
        };
        assert_eq!(
            id(Some("standard-webhooks"), b"").as_deref(),
            Some("msg_std")
        );
        assert_eq!(id(Some("svix"), b"").as_deref(), Some("msg_svix"));
        assert_eq!(
            id(Some("github"), b"").as_deref(),
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
        );
        assert_eq!(
            id(Some("shopify"), b"").as_deref(),
            Some("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
        );
        // Stripe: the event id from the body, never a header.
        let event = br#"{"id": "evt_1NG8Du2eZvKYlo2CUI79vXWy", "object": "event", "data": {"object": {"id": "pi_1"}}}"#;
        assert_eq!(
            id(Some("stripe"), event).as_deref(),
            Some("evt_1NG8Du2eZvKYlo2CUI79vXWy")
        );
        assert_eq!(id(Some("stripe"), b"not json"), None);
        assert_eq!(id(Some("stripe"), br#"{"id": 42}"#), None);
        assert_eq!(id(Some("stripe"), br#"{"object": "event"}"#), None);
        assert_eq!(id(Some("stripe"), br#"["evt_1"]"#), None);
        // No signature, slack, hmac: the known headers, in order.
        for scheme in [None, Some("slack"), Some("hmac")] {
            assert_eq!(id(scheme, b"").as_deref(), Some("msg_std"), "{scheme:?}");
        }
        let only_github = headers(&[("webhook-id", "  "), ("x-github-delivery", "gh-1")]);
        assert_eq!(
            policy(r#"{"window_s":60}"#, None)
                .delivery_id(&only_github, b"")
                .as_deref(),
            Some("gh-1")
        );
        assert_eq!(
            policy(r#"{"window_s":60}"#, None).delivery_id(&headers(&[]), b"{}"),
            None
        );
    }

    #[test]
    fn delivery_id_edge_cases() {
        let p = policy(r#"{"window_s":60}"#, Some("github"));
        assert_eq!(
            p.delivery_id(&headers(&[("x-github-delivery", "")]), b""),
            None
        );
        let long = "x".repeat(MAX_ID_LEN + 1);
        assert_eq!(
            p.delivery_id(&headers(&[("x-github-delivery", &long)]), b""),
            None
        );
        let custom = policy(
            r#"{"window_s":60,"id_header":"X-Request-Id"}"#,
            Some("hmac"),
        );
        assert_eq!(
            custom
                .delivery_id(
                    &headers(&[("x-request-id", "r-1"), ("webhook-id", "w")]),
                    b""
                )
                .as_deref(),
            Some("r-1")
        );
    }

    #[test]
    fn first_then_duplicate_then_expired() {
        let p = policy(r#"{"window_s":3600}"#, Some("standard-webhooks"));
        let store = MemoryStore::new();
        assert_eq!(
            deliver(&p, &store, "payments", "msg_1", 1_000),
            Ok(DedupOutcome::First)
        );
        assert_eq!(
            deliver(&p, &store, "payments", "msg_1", 1_001),
            Ok(DedupOutcome::Duplicate)
        );
        assert_eq!(
            deliver(&p, &store, "payments", "msg_1", 4_599),
            Ok(DedupOutcome::Duplicate)
        );
        assert_eq!(
            deliver(&p, &store, "payments", "msg_2", 4_599),
            Ok(DedupOutcome::First)
        );
        // The window is over: a new first delivery, remembered again.
        assert_eq!(
            deliver(&p, &store, "payments", "msg_1", 4_600),
            Ok(DedupOutcome::First)
        );
        assert_eq!(
            deliver(&p, &store, "payments", "msg_1", 4_601),
            Ok(DedupOutcome::Duplicate)
        );
    }

    #[test]
    fn duplicates_do_not_write() {
        let p = policy(r#"{"window_s":60}"#, None);
        let store = MemoryStore::new();
        deliver(&p, &store, "c", "a", 10).unwrap();
        let key = p.key("c", id_hash("a"));
        let (_, cas) = store.get(&key).unwrap().unwrap();
        assert_eq!(
            deliver(&p, &store, "c", "a", 11),
            Ok(DedupOutcome::Duplicate)
        );
        assert_eq!(store.get(&key).unwrap().unwrap().1, cas);
    }

    #[test]
    fn channels_are_independent() {
        let p = policy(r#"{"window_s":60}"#, None);
        let store = MemoryStore::new();
        assert_eq!(
            deliver(&p, &store, "payments", "evt_1", 10),
            Ok(DedupOutcome::First)
        );
        assert_eq!(
            deliver(&p, &store, "orders", "evt_1", 10),
            Ok(DedupOutcome::First)
        );
        assert_eq!(
            deliver(&p, &store, "orders", "evt_1", 11),
            Ok(DedupOutcome::Duplicate)
        );
        p.forget(&store, "orders", "evt_1").unwrap();
        assert_eq!(
            deliver(&p, &store, "payments", "evt_1", 12),
            Ok(DedupOutcome::Duplicate)
        );
    }

    #[test]
    fn forget_lets_the_retry_through() {
        let p = policy(r#"{"window_s":60}"#, None);
        let store = MemoryStore::new();
        assert_eq!(
            deliver(&p, &store, "c", "evt_1", 10),
            Ok(DedupOutcome::First)
        );
        assert_eq!(
            deliver(&p, &store, "c", "evt_2", 10),
            Ok(DedupOutcome::First)
        );
        p.forget(&store, "c", "evt_1").unwrap();
        assert_eq!(
            deliver(&p, &store, "c", "evt_1", 11),
            Ok(DedupOutcome::First)
        );
        assert_eq!(
            deliver(&p, &store, "c", "evt_2", 11),
            Ok(DedupOutcome::Duplicate)
        );
        // Forgetting an unknown id creates nothing.
        let empty = MemoryStore::new();
        p.forget(&empty, "c", "never-seen").unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn storage_stays_bounded_under_many_ids() {
        let p = policy(r#"{"window_s":86400}"#, None);
        assert_eq!(p.max_ids(), DEFAULT_MAX_IDS as usize);
        let store = MemoryStore::new();
        let n = 20_000;
        for i in 0..n {
            assert_eq!(
                deliver(&p, &store, "c", &format!("evt_{i}"), 1_000),
                Ok(DedupOutcome::First)
            );
        }
        assert_eq!(store.len(), 16);
        let mut remembered = 0;
        for shard in 0..16 {
            let (value, _) = store.get(&format!("cg:dedup:c:{shard}")).unwrap().unwrap();
            assert!(value.len() <= 1 + SHARD_CAPACITY * ENTRY_LEN);
            remembered += decode(&value).count();
        }
        assert_eq!(remembered, DEFAULT_MAX_IDS as usize);
        // The newest are still remembered; the oldest were dropped first.
        assert_eq!(
            deliver(&p, &store, "c", &format!("evt_{}", n - 1), 1_001),
            Ok(DedupOutcome::Duplicate)
        );
        assert_eq!(
            deliver(&p, &store, "c", "evt_0", 1_001),
            Ok(DedupOutcome::First)
        );
    }

    #[test]
    fn expired_entries_make_room_before_live_ones() {
        let p = policy(r#"{"window_s":10,"max_ids":256}"#, None);
        let store = MemoryStore::new();
        for i in 0..SHARD_CAPACITY - 1 {
            deliver(&p, &store, "c", &format!("old_{i}"), 0).unwrap();
        }
        deliver(&p, &store, "c", "live", 5).unwrap();
        // At t=12 every old_ entry expired; filling the shard keeps "live".
        for i in 0..SHARD_CAPACITY - 1 {
            deliver(&p, &store, "c", &format!("new_{i}"), 12).unwrap();
        }
        assert_eq!(
            deliver(&p, &store, "c", "live", 14),
            Ok(DedupOutcome::Duplicate)
        );
        let (value, _) = store.get("cg:dedup:c:0").unwrap().unwrap();
        assert_eq!(decode(&value).count(), SHARD_CAPACITY);
    }

    #[test]
    fn max_ids_sets_the_shard_count() {
        assert_eq!(
            policy(r#"{"window_s":1,"max_ids":256}"#, None).max_ids(),
            256
        );
        assert_eq!(
            policy(r#"{"window_s":1,"max_ids":300}"#, None).max_ids(),
            512
        );
        assert_eq!(
            policy(r#"{"window_s":1,"max_ids":65536}"#, None).max_ids(),
            65_536
        );
    }

    #[test]
    fn hash_is_stable_across_builds() {
        // python: hashlib.sha256(b"msg_p5jXN8AQM9LWM0D4loKWxJek").hexdigest()[:16]
        assert_eq!(
            id_hash("msg_p5jXN8AQM9LWM0D4loKWxJek"),
            0xf968_7cd8_cba4_44e0
        );
        assert_eq!(id_hash("evt_123"), 0xa404_468e_8bb9_9ce1);
    }

    #[test]
    fn unknown_layout_and_torn_values_are_tolerated() {
        let p = policy(r#"{"window_s":60,"max_ids":256}"#, None);
        let store = MemoryStore::new();
        store.set("cg:dedup:c:0", &[9, 1, 2, 3], None).unwrap();
        assert_eq!(deliver(&p, &store, "c", "a", 1), Ok(DedupOutcome::First));
        let (mut value, cas) = store.get("cg:dedup:c:0").unwrap().unwrap();
        value.extend_from_slice(&[7, 7, 7]);
        store.set("cg:dedup:c:0", &value, Some(cas)).unwrap();
        assert_eq!(
            deliver(&p, &store, "c", "a", 2),
            Ok(DedupOutcome::Duplicate)
        );
    }

    struct Broken;
    impl SharedStore for Broken {
        fn get(&self, _: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            Err(StoreError::Host)
        }
        fn set(&self, _: &str, _: &[u8], _: Option<u32>) -> Result<(), StoreError> {
            Err(StoreError::Host)
        }
    }

    #[test]
    fn store_errors_are_reported_not_hidden() {
        let p = policy(r#"{"window_s":60}"#, None);
        assert_eq!(p.check(&Broken, "c", "a", 1), Err(StoreError::Host));
        assert_eq!(p.forget(&Broken, "c", "a"), Err(StoreError::Host));
    }

    #[test]
    fn keys_are_the_id_only_where_the_signature_covers_it() {
        let h = headers(&[
            ("webhook-id", "msg_1"),
            ("x-github-delivery", "gh-1"),
            ("x-shopify-webhook-id", "sh-1"),
        ]);
        let body = br#"{"id":"evt_1"}"#;
        let key =
            |scheme: Option<&str>| policy(r#"{"window_s":60}"#, scheme).delivery_key(&h, body);
        assert_eq!(key(Some("standard-webhooks")).as_deref(), Some("msg_1"));
        assert_eq!(key(Some("stripe")).as_deref(), Some("evt_1"));
        for (scheme, id) in [
            (Some("github"), "gh-1"),
            (Some("shopify"), "sh-1"),
            (None, "msg_1"),
        ] {
            let k = key(scheme).unwrap();
            assert!(
                k.starts_with(&format!("{id}#")) && k.len() == id.len() + 33,
                "{k}"
            );
            // Another body under the same id is another key: a planted id
            // cannot suppress the genuine delivery.
            let other = policy(r#"{"window_s":60}"#, scheme).delivery_key(&h, b"{}");
            assert_ne!(Some(k), other);
        }
        // A custom id header is never taken as signed.
        let custom = policy(
            r#"{"window_s":60,"id_header":"webhook-id"}"#,
            Some("standard-webhooks"),
        )
        .delivery_key(&h, body)
        .unwrap();
        assert!(custom.starts_with("msg_1#"));
    }

    #[test]
    fn in_flight_then_delivered_or_forgotten() {
        let p = policy(
            r#"{"window_s":3600,"in_flight_s":30}"#,
            Some("standard-webhooks"),
        );
        let store = MemoryStore::new();
        assert_eq!(p.check(&store, "c", "m", 100), Ok(DedupOutcome::First));
        // A retry during the first attempt is told to come back, never
        // "delivered".
        assert_eq!(
            p.check(&store, "c", "m", 110),
            Ok(DedupOutcome::InFlight { retry_after_s: 20 })
        );
        // The attempt failed: forgotten, the next retry is forwarded.
        p.forget(&store, "c", "m").unwrap();
        assert_eq!(p.check(&store, "c", "m", 111), Ok(DedupOutcome::First));
        // This one succeeds: a duplicate for the whole window.
        p.delivered(&store, "c", "m", 112).unwrap();
        assert_eq!(p.check(&store, "c", "m", 113), Ok(DedupOutcome::Duplicate));
        assert_eq!(p.check(&store, "c", "m", 3711), Ok(DedupOutcome::Duplicate));
        assert_eq!(p.check(&store, "c", "m", 3712), Ok(DedupOutcome::First));
        // An in-flight mark whose answer never came expires.
        assert_eq!(p.check(&store, "c", "lost", 100), Ok(DedupOutcome::First));
        assert_eq!(
            p.check(&store, "c", "lost", 129),
            Ok(DedupOutcome::InFlight { retry_after_s: 1 })
        );
        assert_eq!(p.check(&store, "c", "lost", 130), Ok(DedupOutcome::First));
    }
}
