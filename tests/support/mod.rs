//! End-to-end harness: a real Envoy process loading the built `.wasm`,
//! real HTTP/1.1 upstreams on loopback, a plain HTTP client, and the
//! admin API for `/stats`. When a test fails, Envoy's log is printed.
#![allow(dead_code, unused_imports)]

pub mod assert;
pub mod client;
pub mod envoy;
pub mod h2;
pub mod redis;
pub mod sign;
pub mod tls;
pub mod upstream;

pub use client::{Request, Response};
pub use envoy::{Envoy, EnvoyBuilder};
pub use upstream::{Reply, Upstream};

use std::path::PathBuf;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `f` against `n` items on `threads` threads (bounded parallel load).
pub fn parallel<T: Send + 'static>(
    threads: usize,
    n: usize,
    f: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = std::sync::Arc::new(f);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let f = f.clone();
            let next = next.clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= n {
                        break;
                    }
                    out.push(f(i));
                }
                out
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}
