//! A plain HTTP/1.1 client over `TcpStream` (or any `Read + Write`, e.g. a
//! TLS stream, see `tls.rs`): exact control over headers, chunking and
//! pauses between body pieces.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send the body as these chunks (chunked encoding), pausing between.
    pub chunks: Option<(Vec<Vec<u8>>, Duration)>,
    pub host: String,
    /// Trailers sent after a chunked body.
    pub trailers: Vec<(String, String)>,
    /// Headers sent as raw bytes (e.g. Latin-1 values), after `headers`.
    pub raw_headers: Vec<(String, Vec<u8>)>,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            chunks: None,
            host: "hooks.example.com".to_string(),
            trailers: Vec::new(),
            raw_headers: Vec::new(),
        }
    }

    pub fn post(path: &str) -> Self {
        Self::new("POST", path)
    }

    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The first value of header `name` set with [`Self::header`].
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A header whose value is sent as these exact bytes.
    pub fn raw_header(mut self, name: &str, value: &[u8]) -> Self {
        self.raw_headers.push((name.to_string(), value.to_vec()));
        self
    }

    pub fn host(mut self, host: &str) -> Self {
        self.host = host.to_string();
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn json(self, body: &str) -> Self {
        self.header("content-type", "application/json").body(body)
    }

    /// Adds a trailer (only sent with a chunked body).
    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sends the body in `pieces` chunks with `pause` between them.
    pub fn chunked(mut self, body: &[u8], pieces: usize, pause: Duration) -> Self {
        let size = body.len().div_ceil(pieces.max(1)).max(1);
        self.chunks = Some((body.chunks(size).map(<[u8]>::to_vec).collect(), pause));
        self
    }

    pub fn send(&self, addr: SocketAddr) -> Response {
        try_send(self, addr)
            .unwrap_or_else(|e| panic!("request {} {} failed: {e}", self.method, self.path))
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("<non-utf8>")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.body_str()))
    }
}

pub fn try_send(req: &Request, addr: SocketAddr) -> std::io::Result<Response> {
    exchange(req, connect(addr)?)
}

/// Writes `req` on an open connection (plain or TLS) and reads the answer.
pub fn exchange(req: &Request, mut stream: impl Read + Write) -> std::io::Result<Response> {
    write_request(req, &mut stream, true)?;
    read_response(&mut BufReader::new(stream))
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The request as bytes on the wire (a body sent whole, not chunked), with
/// `connection: close` when `close`.
pub fn encode(req: &Request, close: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let plain = Request {
        chunks: None,
        ..req.clone()
    };
    // Writing into a Vec cannot fail.
    let _ = write_request(&plain, &mut out, close);
    out
}

/// HTTP/1.1 pipelining: writes every request on one connection in a single
/// write (the last one asks to close it), then reads the answers in order
/// until there is one per request or the connection ends (the error then).
pub fn pipeline(reqs: &[Request], addr: SocketAddr) -> (Vec<Response>, Option<std::io::Error>) {
    match pipeline_inner(reqs, addr) {
        Ok(answers) => (answers, None),
        Err((answers, e)) => (answers, Some(e)),
    }
}

type Partial = (Vec<Response>, std::io::Error);

fn pipeline_inner(reqs: &[Request], addr: SocketAddr) -> Result<Vec<Response>, Partial> {
    let mut stream = connect(addr).map_err(|e| (Vec::new(), e))?;
    let mut bytes = Vec::new();
    for (i, req) in reqs.iter().enumerate() {
        bytes.extend_from_slice(&encode(req, i + 1 == reqs.len()));
    }
    stream
        .write_all(&bytes)
        .and_then(|()| stream.flush())
        .map_err(|e| (Vec::new(), e))?;
    let mut reader = BufReader::new(stream);
    let mut answers = Vec::new();
    for i in 0..reqs.len() {
        match read_response(&mut reader) {
            Ok(resp) => answers.push(resp),
            Err(e) => {
                let e = std::io::Error::new(e.kind(), format!("pipelined answer {i}: {e}"));
                return Err((answers, e));
            }
        }
    }
    Ok(answers)
}

/// Sends the head and the first `sent` bytes of the body (declared with its
/// full `content-length`), then closes the connection without reading: a
/// client that gives up mid-body.
pub fn abort_mid_body(req: &Request, sent: usize, addr: SocketAddr) -> std::io::Result<()> {
    let mut stream = connect(addr)?;
    let bytes = encode(req, true);
    let cut = bytes.len() - req.body.len() + sent.min(req.body.len());
    stream.write_all(&bytes[..cut])?;
    stream.flush()?;
    // Let the proxy read what was sent before the connection goes away.
    std::thread::sleep(Duration::from_millis(100));
    stream.shutdown(std::net::Shutdown::Both)
}

/// Sends the whole request and returns the open connection without reading
/// the answer: shut it down to play a client that gives up after its body.
pub fn send_unread(req: &Request, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut stream = connect(addr)?;
    stream.write_all(&encode(req, true))?;
    stream.flush()?;
    Ok(stream)
}

/// Sends the head and the first `sent` bytes of the body (declared with its
/// full `content-length`), then waits for an answer without sending more: a
/// stalled client (slowloris). `Err` when the proxy closed without one.
pub fn stall_mid_body(req: &Request, sent: usize, addr: SocketAddr) -> std::io::Result<Response> {
    let mut stream = connect(addr)?;
    let bytes = encode(req, true);
    let cut = bytes.len() - req.body.len() + sent.min(req.body.len());
    stream.write_all(&bytes[..cut])?;
    stream.flush()?;
    read_response(&mut BufReader::new(stream))
}

/// A keep-alive HTTP/1.1 connection that reconnects when the server closed
/// it (its answer said `connection: close`, or it was gone before a new
/// request was written). For load: no request is sent twice.
pub struct Conn {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
    /// Connections opened so far.
    pub opened: u64,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            stream: None,
            opened: 0,
        }
    }

    /// Sends `req` (body whole) and reads its answer.
    pub fn send(&mut self, req: &Request) -> std::io::Result<Response> {
        let mut reader = match self.stream.take() {
            Some(r) => r,
            None => {
                self.opened += 1;
                BufReader::new(connect(self.addr)?)
            }
        };
        reader.get_mut().write_all(&encode(req, false))?;
        let resp = read_response(&mut reader)?;
        let closing = resp
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if !closing {
            self.stream = Some(reader);
        }
        Ok(resp)
    }
}

fn write_request(req: &Request, stream: &mut impl Write, close: bool) -> std::io::Result<()> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\n{}",
        req.method,
        req.path,
        req.host,
        if close { "connection: close\r\n" } else { "" }
    );
    for (k, v) in &req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match &req.chunks {
        Some(_) => head.push_str("transfer-encoding: chunked\r\n"),
        None => {
            let has_len = req
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
            if !has_len && (!req.body.is_empty() || req.method == "POST") {
                head.push_str(&format!("content-length: {}\r\n", req.body.len()));
            }
        }
    }
    let mut head = head.into_bytes();
    for (k, v) in &req.raw_headers {
        head.extend_from_slice(k.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(v);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    stream.write_all(&head)?;
    match &req.chunks {
        Some((chunks, pause)) => {
            for chunk in chunks {
                stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
                stream.write_all(chunk)?;
                stream.write_all(b"\r\n")?;
                stream.flush()?;
                if !pause.is_zero() {
                    std::thread::sleep(*pause);
                }
            }
            stream.write_all(b"0\r\n")?;
            for (k, v) in &req.trailers {
                stream.write_all(format!("{k}: {v}\r\n").as_bytes())?;
            }
            stream.write_all(b"\r\n")?;
        }
        None => stream.write_all(&req.body)?,
    }
    stream.flush()
}

fn line(reader: &mut impl BufRead) -> std::io::Result<String> {
    let mut raw = Vec::new();
    reader.read_until(b'\n', &mut raw)?;
    Ok(String::from_utf8_lossy(&raw)
        .trim_end_matches(['\r', '\n'])
        .to_string())
}

fn read_response(reader: &mut impl BufRead) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let status_line = line(reader)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let l = line(reader)?;
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v): &(String, String)| v.clone())
    };
    let mut body = Vec::new();
    // No body, whatever the headers say (RFC 9110 6.4.1).
    if status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(Response {
            status,
            headers,
            body,
        });
    }
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let size =
                usize::from_str_radix(line(reader)?.trim(), 16).map_err(|_| bad("chunk size"))?;
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            line(reader)?;
        }
    } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body = vec![0; len];
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}
