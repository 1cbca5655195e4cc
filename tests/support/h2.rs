//! A minimal HTTP/2 client over cleartext (h2c, prior knowledge) for what
//! the system curl cannot do: request trailers, a body in slow pieces, and
//! several streams multiplexed on one connection (curl 7.88's `--parallel`
//! with `--http2-prior-knowledge` fails with "Error in the HTTP2 framing
//! layer", against a plain Envoy too). Request headers are HPACK literals
//! without Huffman; of the answer only `:status` is decoded (a static table
//! entry or a literal, Huffman-coded digits included) plus the body, which
//! is all the tests need: what the upstream received is asserted there.

use super::Response;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 0x1;
/// RST_STREAM error code CANCEL.
const CANCEL: u32 = 0x8;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// One HTTP/2 request.
#[derive(Debug, Clone, Default)]
pub struct H2Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// Sent as these DATA frames, `pause` between them.
    pub body: Vec<Vec<u8>>,
    pub pause: Duration,
    /// Sent as a HEADERS frame that ends the stream.
    pub trailers: Vec<(String, String)>,
    /// Cancel the stream (RST_STREAM, CANCEL) once this many DATA frames
    /// were sent: `Some(0)` right after the headers, `Some(body.len())` after
    /// the whole request (the client gives up waiting for the answer).
    pub cancel_after: Option<usize>,
}

impl H2Request {
    pub fn post(path: &str) -> Self {
        Self {
            method: "POST".into(),
            path: path.into(),
            ..Self::default()
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers.push((name.into(), value.into()));
        self
    }

    /// The body in `pieces` DATA frames with `pause` between them.
    pub fn body(mut self, body: &[u8], pieces: usize, pause: Duration) -> Self {
        let size = body.len().div_ceil(pieces.max(1)).max(1);
        self.body = body.chunks(size).map(<[u8]>::to_vec).collect();
        self.pause = pause;
        self
    }

    /// Sends it on a fresh h2c connection; `Err` when the stream or the
    /// connection was reset before a complete answer.
    pub fn send(&self, addr: SocketAddr) -> std::io::Result<Response> {
        multiplex(std::slice::from_ref(self), addr)?
            .pop()
            .unwrap_or_else(|| Err("no answer".into()))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::ConnectionReset, e))
    }

    fn header_block(&self) -> Vec<u8> {
        let mut block = Vec::new();
        for (k, v) in [
            (":method", self.method.as_str()),
            (":scheme", "http"),
            (":path", self.path.as_str()),
            (":authority", "hooks.example.com"),
        ] {
            literal(&mut block, k, v);
        }
        for (k, v) in &self.headers {
            literal(&mut block, k, v);
        }
        block
    }
}

/// Sends `reqs` as concurrent streams 1, 3, 5, … of one fresh h2c
/// connection: every HEADERS first, then the DATA frames round by round
/// (piece k of every stream, `pause` of the first request between rounds),
/// then the trailers. Returns each stream's answer (or why it has none), in
/// the order of `reqs`.
pub fn multiplex(
    reqs: &[H2Request],
    addr: SocketAddr,
) -> std::io::Result<Vec<Result<Response, String>>> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.set_nodelay(true)?;
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")?;
    // SETTINGS_HEADER_TABLE_SIZE 0: the server's HPACK encoder may not use
    // its dynamic table, so `:status` is always decodable on its own.
    frame(&mut stream, SETTINGS, 0, 0, &[0, 1, 0, 0, 0, 0])?;
    let id = |i: usize| u32::try_from(2 * i + 1).unwrap_or(u32::MAX);
    for (i, req) in reqs.iter().enumerate() {
        let ends = req.body.is_empty() && req.trailers.is_empty();
        let flags = END_HEADERS | if ends { END_STREAM } else { 0 };
        frame(&mut stream, HEADERS, flags, id(i), &req.header_block())?;
    }
    let rounds = reqs.iter().map(|r| r.body.len()).max().unwrap_or(0);
    let pause = reqs.first().map(|r| r.pause).unwrap_or_default();
    let cancel = |stream: &mut TcpStream, i: usize| {
        frame(stream, RST_STREAM, 0, id(i), &CANCEL.to_be_bytes())
    };
    for k in 0..rounds {
        for (i, req) in reqs.iter().enumerate() {
            if req.cancel_after == Some(k) && k < req.body.len() {
                cancel(&mut stream, i)?;
            }
            if req.cancel_after.is_some_and(|c| c <= k) {
                continue;
            }
            let Some(piece) = req.body.get(k) else {
                continue;
            };
            let last = k + 1 == req.body.len() && req.trailers.is_empty();
            frame(
                &mut stream,
                DATA,
                if last { END_STREAM } else { 0 },
                id(i),
                piece,
            )?;
        }
        if k + 1 < rounds && !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    for (i, req) in reqs.iter().enumerate() {
        if req.cancel_after.is_some_and(|c| c < req.body.len()) {
            continue;
        }
        if !req.trailers.is_empty() {
            let mut block = Vec::new();
            for (k, v) in &req.trailers {
                literal(&mut block, k, v);
            }
            frame(
                &mut stream,
                HEADERS,
                END_HEADERS | END_STREAM,
                id(i),
                &block,
            )?;
        }
    }
    for (i, req) in reqs.iter().enumerate() {
        if req.cancel_after.is_some_and(|c| c >= req.body.len()) {
            cancel(&mut stream, i)?;
        }
    }
    let cancelled: Vec<bool> = reqs.iter().map(|r| r.cancel_after.is_some()).collect();
    read_answers(&mut stream, &cancelled)
}

fn frame(
    out: &mut impl Write,
    kind: u8,
    flags: u8,
    stream: u32,
    payload: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut head = len.to_be_bytes()[1..].to_vec();
    head.push(kind);
    head.push(flags);
    head.extend_from_slice(&stream.to_be_bytes());
    out.write_all(&head)?;
    out.write_all(payload)?;
    out.flush()
}

/// HPACK integer with an `n`-bit prefix whose high bits are `mask`.
fn integer(out: &mut Vec<u8>, mask: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(mask | value as u8);
        return;
    }
    out.push(mask | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// "Literal header field without indexing, new name", no Huffman.
fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0);
    integer(out, 0, 7, name.len());
    out.extend_from_slice(name.as_bytes());
    integer(out, 0, 7, value.len());
    out.extend_from_slice(value.as_bytes());
}

#[derive(Default)]
struct Answer {
    status: Option<u16>,
    body: Vec<u8>,
    done: Option<Result<(), String>>,
}

/// Reads until every stream not `cancelled` by the client has its answer.
fn read_answers(
    stream: &mut TcpStream,
    cancelled: &[bool],
) -> std::io::Result<Vec<Result<Response, String>>> {
    let n = cancelled.len();
    let mut answers: Vec<Answer> = cancelled
        .iter()
        .map(|&c| Answer {
            done: c.then(|| Err("cancelled by the client".to_string())),
            ..Answer::default()
        })
        .collect();
    let index = |id: u32| {
        let id = usize::try_from(id).ok()?;
        (id % 2 == 1).then_some(id / 2).filter(|&i| i < n)
    };
    while answers.iter().any(|a| a.done.is_none()) {
        let mut head = [0u8; 9];
        if let Err(e) = stream.read_exact(&mut head) {
            for a in answers.iter_mut().filter(|a| a.done.is_none()) {
                a.done = Some(Err(format!("connection ended: {e}")));
            }
            break;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0; len];
        stream.read_exact(&mut payload)?;
        match (kind, index(id)) {
            (SETTINGS, _) if flags & ACK == 0 => frame(stream, SETTINGS, ACK, 0, &[])?,
            (PING, _) if flags & ACK == 0 => frame(stream, PING, ACK, 0, &payload)?,
            (GOAWAY, _) => {
                for a in answers.iter_mut().filter(|a| a.done.is_none()) {
                    a.done = Some(Err(format!("GOAWAY {payload:?}")));
                }
            }
            (RST_STREAM, Some(i)) => {
                answers[i].done = Some(Err(format!("stream reset {payload:?}")));
            }
            (HEADERS, Some(i)) => {
                let a = &mut answers[i];
                if a.status.is_none() {
                    a.status = decode_status(&payload);
                    if a.status.is_none() {
                        a.done = Some(Err(format!("no :status in {payload:?}")));
                    }
                }
                if flags & END_STREAM != 0 && a.done.is_none() {
                    a.done = Some(Ok(()));
                }
            }
            (DATA, Some(i)) => {
                let a = &mut answers[i];
                a.body.extend_from_slice(&payload);
                if flags & END_STREAM != 0 && a.done.is_none() {
                    a.done = Some(Ok(()));
                }
            }
            _ => {}
        }
    }
    Ok(answers
        .into_iter()
        .map(|a| match a.done {
            Some(Ok(())) => Ok(Response {
                status: a.status.unwrap_or(0),
                headers: Vec::new(),
                body: a.body,
            }),
            Some(Err(e)) => Err(e),
            None => Err("no answer".into()),
        })
        .collect())
}

/// Reads an HPACK integer with an `n`-bit prefix at `pos`.
fn read_integer(block: &[u8], pos: &mut usize, n: u32) -> Option<usize> {
    let max = (1usize << n) - 1;
    let mut value = usize::from(*block.get(*pos)?) & max;
    *pos += 1;
    if value < max {
        return Some(value);
    }
    let mut shift = 0;
    loop {
        let b = *block.get(*pos)?;
        *pos += 1;
        value += usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
}

/// `:status`, the first field of a response header block: an indexed
/// static entry, or a literal with name index 8 and a value of three
/// digits (plain or Huffman-coded).
fn decode_status(block: &[u8]) -> Option<u16> {
    let mut pos = 0;
    // A dynamic table size update may come first.
    while block.get(pos)? & 0xe0 == 0x20 {
        read_integer(block, &mut pos, 5)?;
    }
    let first = *block.get(pos)?;
    if first & 0x80 != 0 {
        let index = read_integer(block, &mut pos, 7)?;
        return [200, 204, 206, 304, 400, 404, 500]
            .get(index.checked_sub(8)?)
            .copied();
    }
    let prefix = if first & 0xc0 == 0x40 { 6 } else { 4 };
    // Any of the static `:status` entries (8-14) names the field.
    if !(8..=14).contains(&read_integer(block, &mut pos, prefix)?) {
        return None;
    }
    let huffman = block.get(pos)? & 0x80 != 0;
    let len = read_integer(block, &mut pos, 7)?;
    let value = block.get(pos..pos + len)?;
    let digits = if huffman {
        huffman_digits(value)?
    } else {
        std::str::from_utf8(value).ok()?.to_string()
    };
    digits.parse().ok()
}

/// Decodes a Huffman-coded string of digits (RFC 7541 appendix B: `0`-`2`
/// are 5-bit codes 0x0-0x2, `3`-`9` 6-bit codes 0x19-0x1f; padding is 1s).
fn huffman_digits(bytes: &[u8]) -> Option<String> {
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let mut out = String::new();
    let mut i = 0;
    while i + 5 <= bits.len() {
        let v = bits[i..i + 5].iter().fold(0u8, |a, b| a << 1 | b);
        if v <= 2 {
            out.push(char::from(b'0' + v));
            i += 5;
            continue;
        }
        if i + 6 > bits.len() {
            break;
        }
        let w = v << 1 | bits[i + 5];
        if !(0x19..=0x1f).contains(&w) {
            break;
        }
        out.push(char::from(b'3' + (w - 0x19)));
        i += 6;
    }
    (!out.is_empty()).then_some(out)
}
