//! A real HTTP/1.1 upstream on 127.0.0.1 that records every request it
//! receives (headers and de-chunked body) and answers as told.
//!
//! Only a request whose body was read to its end (its `content-length`, or
//! the last chunk) counts as received. One whose head arrived but whose
//! connection closed before the body was complete (the proxy reset the
//! upstream request) is kept apart, in [`Upstream::incomplete`], with the
//! body bytes that did arrive.

use std::io::{BufRead, BufReader, Read as _, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Lower-case names, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// True when it came with `transfer-encoding: chunked`.
    pub chunked: bool,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("<non-utf8>")
    }

    /// The one value of `name`; an error naming every value otherwise.
    pub fn only(&self, name: &str) -> Result<&str, String> {
        let all: Vec<&str> = self
            .headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect();
        match all.as_slice() {
            [v] => Ok(*v),
            _ => Err(format!("{name}: {all:?}")),
        }
    }
}

/// How to answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    /// Close the connection instead of answering (an upstream reset).
    pub reset: bool,
}

impl Default for Reply {
    fn default() -> Self {
        Self {
            status: 200,
            delay: Duration::ZERO,
            body: b"upstream-ok".to_vec(),
            headers: Vec::new(),
            reset: false,
        }
    }
}

/// Checks one received request (e.g. re-verifies its signature); an error
/// says why it should never have been forwarded.
pub type Check = Box<dyn Fn(&Received) -> Result<(), String> + Send + Sync>;

struct Shared {
    received: Mutex<Vec<Received>>,
    /// With a check, requests are checked and counted, not kept (load).
    check: Option<Check>,
    seen: AtomicU64,
    failed: AtomicU64,
    /// The first few check failures.
    failures: Mutex<Vec<String>>,
    incomplete: Mutex<Vec<Received>>,
    reply: Mutex<Reply>,
    stop: AtomicBool,
}

pub struct Upstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Upstream {
    pub fn start() -> Self {
        Self::with_reply(Reply::default())
    }

    pub fn with_reply(reply: Reply) -> Self {
        Self::spawn(reply, None)
    }

    /// An upstream for load: it answers the default reply, runs `check` on
    /// every complete request and keeps only counts (see [`Self::seen`],
    /// [`Self::failed`], [`Self::failures`]), not the requests.
    pub fn checking(
        check: impl Fn(&Received) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        Self::spawn(Reply::default(), Some(Box::new(check)))
    }

    /// Complete requests received (both modes).
    pub fn seen(&self) -> u64 {
        self.shared.seen.load(Ordering::SeqCst)
    }

    /// Requests the check refused.
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// The first refusals of the check.
    pub fn failures(&self) -> Vec<String> {
        self.shared.failures.lock().unwrap().clone()
    }

    fn spawn(reply: Reply, check: Option<Check>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            received: Mutex::new(Vec::new()),
            check,
            seen: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
            incomplete: Mutex::new(Vec::new()),
            reply: Mutex::new(reply),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        Self { addr, shared }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn set_reply(&self, reply: Reply) {
        *self.shared.reply.lock().unwrap() = reply;
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.shared.received.lock().unwrap().len()
    }

    pub fn clear(&self) {
        self.shared.received.lock().unwrap().clear();
        self.shared.incomplete.lock().unwrap().clear();
    }

    /// Requests whose head arrived but whose connection closed before the
    /// body was complete (`body` holds what did arrive).
    pub fn incomplete(&self) -> Vec<Received> {
        self.shared.incomplete.lock().unwrap().clone()
    }

    /// Waits (bounded) until at least `n` incomplete requests were seen
    /// (the proxy's reset reaches the upstream after the client got its
    /// answer); returns them.
    pub fn wait_incomplete(&self, n: usize) -> Vec<Received> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.incomplete();
            if got.len() >= n || std::time::Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(conn: TcpStream, shared: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(conn);
    loop {
        let req = match read_request(&mut reader) {
            Got::Complete(req) => req,
            Got::Incomplete(req) => {
                shared.incomplete.lock().unwrap().push(req);
                return;
            }
            Got::Nothing => return,
        };
        let reply = shared.reply.lock().unwrap().clone();
        shared.seen.fetch_add(1, Ordering::SeqCst);
        match &shared.check {
            Some(check) => {
                if let Err(why) = check(&req) {
                    shared.failed.fetch_add(1, Ordering::SeqCst);
                    let mut failures = shared.failures.lock().unwrap();
                    if failures.len() < 20 {
                        failures.push(format!("{} {}: {why}", req.method, req.path));
                    }
                }
            }
            None => shared.received.lock().unwrap().push(req),
        }
        if !reply.delay.is_zero() {
            std::thread::sleep(reply.delay);
        }
        if reply.reset {
            let _ = writer.shutdown(std::net::Shutdown::Both);
            return;
        }
        let mut out = format!(
            "HTTP/1.1 {} Status\r\ncontent-length: {}\r\ncontent-type: text/plain\r\n",
            reply.status,
            reply.body.len()
        );
        for (k, v) in &reply.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&reply.body);
        if writer.write_all(&bytes).is_err() {
            return;
        }
    }
}

/// One line, lossily decoded: header values may hold bytes 0x80-0xFF
/// (shown as U+FFFD).
fn read_line(reader: &mut impl BufRead) -> Option<String> {
    let mut line = Vec::new();
    match reader.read_until(b'\n', &mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(
            String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        ),
    }
}

enum Got {
    Complete(Received),
    /// The head arrived, the body did not (all of it).
    Incomplete(Received),
    /// No (parsable) request head.
    Nothing,
}

fn read_request(reader: &mut impl BufRead) -> Got {
    let Some(mut req) = read_head(reader) else {
        return Got::Nothing;
    };
    if read_body(reader, &mut req).is_some() {
        Got::Complete(req)
    } else {
        Got::Incomplete(req)
    }
}

fn read_head(reader: &mut impl BufRead) -> Option<Received> {
    let start = read_line(reader)?;
    let mut parts = start.split(' ');
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    Some(Received {
        method,
        path,
        headers,
        body: Vec::new(),
        chunked,
    })
}

/// Reads the body into `req.body`; `None` when the connection ends first
/// (what arrived stays in `req.body`).
fn read_body(reader: &mut impl BufRead, req: &mut Received) -> Option<()> {
    let length = req
        .header("content-length")
        .and_then(|v| v.parse::<u64>().ok());
    let body = &mut req.body;
    if req.chunked {
        loop {
            let size_line = read_line(reader)?;
            let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                // trailers until empty line
                while !read_line(reader)?.is_empty() {}
                break;
            }
            let mut chunk = vec![0; size];
            reader.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk);
            read_line(reader)?;
        }
    } else if let Some(len) = length {
        // Up to the length, keeping what arrived when the connection ends.
        let got = reader.by_ref().take(len).read_to_end(body).ok()?;
        if u64::try_from(got).ok()? < len {
            return None;
        }
    }
    Some(())
}
