//! Fleet state for e2e tests (issue #15): a `redis-server` and its HTTP
//! front `webdis` as child processes on free loopback ports, each with a
//! temp dir, locked down as in production (istio/fleet-state):
//! - Redis: no persistence, one database, the default user needs a
//!   password and may only run the commands the scripts use, on keys
//!   under `cg:` ([`REDIS_COMMANDS`]);
//! - webdis: without HTTP basic auth every command is refused (`403`);
//!   with it only [`WEBDIS_COMMANDS`] pass.
//!
//! `make state-tools` installs both (Debian packages); `REDIS_SERVER_BIN` /
//! `WEBDIS_BIN` point elsewhere. Waits are bounded; when a test fails, both
//! logs are printed.

use super::client::{Request, Response, try_send};
use callback_guard::core::state::{
    Answer, Fallback, Protocol, Query, StateError, StatePolicy, lease::LeaseConfig,
};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Commands the scripts in src/core/state/*.lua call, and the dead-letter
/// stream sink's `XADD` (Redis ACL).
pub const REDIS_COMMANDS: [&str; 12] = [
    "eval", "evalsha", "ping", "get", "set", "del", "pttl", "pexpire", "hmget", "hset", "time",
    "xadd",
];
/// Commands webdis passes to Redis for the filter (webdis ACL).
pub const WEBDIS_COMMANDS: [&str; 4] = ["EVALSHA", "EVAL", "PING", "XADD"];
pub const REDIS_PASSWORD: &str = "test-redis-password";
/// The read-only Redis user `callback-guard replay` logs in as: its key
/// pattern and commands.
pub const REPLAY_USER: &str = "cg-replay";
pub const REPLAY_KEYS: &str = "~cg:deadletter*";
pub const REPLAY_COMMANDS: [&str; 3] = ["xrange", "xlen", "ping"];
pub const REPLAY_PASSWORD: &str = "test-replay-password";
/// `user:password` webdis requires (HTTP basic auth).
pub const WEBDIS_USER: &str = "callback-guard:test-webdis-password";

pub struct Store {
    dir: PathBuf,
    redis: Option<Child>,
    webdis: Option<Child>,
    pub redis_port: u16,
    pub webdis_port: u16,
}

/// The binary `name` (or `$env`), looked up on `PATH` without running it
/// (`webdis --version` would start a server with default settings).
fn bin(env: &str, name: &str) -> PathBuf {
    if let Ok(path) = std::env::var(env) {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("{name} not found on PATH: run `make state-tools` (or set {env})")
        })
}

fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe a free port");
    probe.local_addr().expect("probe address").port()
}

impl Store {
    /// Starts Redis and webdis and waits until webdis answers a `PING`
    /// through to Redis.
    pub fn start() -> Self {
        let dir =
            std::env::temp_dir().join(format!("cg-redis-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("redis temp dir");
        let mut store = Self {
            dir,
            redis: None,
            webdis: None,
            redis_port: free_port(),
            webdis_port: free_port(),
        };
        store.write_configs();
        store.start_redis();
        store.start_webdis();
        store.wait_webdis();
        store
    }

    fn write_configs(&self) {
        let acl = REDIS_COMMANDS
            .iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ");
        let redis_conf = format!(
            "port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndatabases 1\ndir {dir}\n\
             logfile {dir}/redis.log\n\
             user default on >{REDIS_PASSWORD} ~cg:* resetchannels -@all {acl}\n\
             user {REPLAY_USER} on >{REPLAY_PASSWORD} {REPLAY_KEYS} resetchannels -@all {replay}\n",
            port = self.redis_port,
            replay = REPLAY_COMMANDS.map(|c| format!("+{c}")).join(" "),
            dir = self.dir.display(),
        );
        std::fs::write(self.dir.join("redis.conf"), redis_conf).expect("write redis.conf");
        let webdis = serde_json::json!({
            "redis_host": "127.0.0.1",
            "redis_port": self.redis_port,
            "redis_auth": REDIS_PASSWORD,
            "http_host": "127.0.0.1",
            "http_port": self.webdis_port,
            "threads": 2,
            "daemonize": false,
            "database": 0,
            "acl": [
                {"disabled": ["*"]},
                {"http_basic_auth": WEBDIS_USER, "enabled": WEBDIS_COMMANDS}
            ],
            "verbosity": 3,
            "logfile": self.dir.join("webdis.log"),
        });
        std::fs::write(self.dir.join("webdis.json"), webdis.to_string()).expect("webdis.json");
    }

    /// Starts (or restarts) redis-server and waits for its port.
    pub fn start_redis(&mut self) {
        assert!(self.redis.is_none(), "redis-server already running");
        let child = Command::new(bin("REDIS_SERVER_BIN", "redis-server"))
            .arg(self.dir.join("redis.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (run `make state-tools`)");
        self.redis = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.redis_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server never listened:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills redis-server (SIGKILL: nothing saved, the script cache lost).
    pub fn kill_redis(&mut self) {
        if let Some(mut child) = self.redis.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn start_webdis(&mut self) {
        let child = Command::new(bin("WEBDIS_BIN", "webdis"))
            .arg(self.dir.join("webdis.json"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start webdis (run `make state-tools`)");
        self.webdis = Some(child);
    }

    /// Waits (bounded) until webdis answers `PING` with Redis behind it.
    pub fn wait_webdis(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = self.try_get("PING", true)
                && r.status == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "webdis never answered PING:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn webdis_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.webdis_port))
    }

    /// `GET /<command>` on webdis (webdis syntax: `/`-separated,
    /// percent-encoded arguments).
    pub fn try_get(&self, command: &str, auth: bool) -> std::io::Result<Response> {
        let mut req = Request::get(&format!("/{command}")).host("webdis");
        if auth {
            req = req.header("authorization", &basic_auth());
        }
        try_send(&req, self.webdis_addr())
    }

    pub fn get(&self, command: &str) -> Response {
        self.try_get(command, true)
            .unwrap_or_else(|e| panic!("webdis {command}: {e}\n{}", self.logs()))
    }

    /// The policy's `state` section for an Envoy whose cluster `cluster`
    /// points at [`Self::webdis_port`] (`EnvoyBuilder::cluster`).
    pub fn state_config(&self, cluster: &str) -> serde_json::Value {
        serde_json::json!({
            "cluster": cluster,
            "authority": "webdis",
            "timeout_ms": 1000,
            "basic_auth": {"value": WEBDIS_USER},
        })
    }

    /// A state policy for this store (the cluster name is unused natively):
    /// what [`Self::state_config`] compiles to.
    pub fn policy(&self) -> StatePolicy {
        StatePolicy {
            cluster: "fleet-state".into(),
            authority: "webdis".into(),
            timeout_ms: 1000,
            key_prefix: "cg:".into(),
            on_unavailable: Fallback::Local,
            protocol: Protocol::Webdis,
            authorization: Some(basic_auth()),
            lease: LeaseConfig::default(),
            breaker_failures: 3,
            breaker_open_ms: 1000,
        }
    }

    /// One query as the filter sends it: `EVALSHA`, and on `NOSCRIPT` once
    /// more with the script's source (`EVAL`).
    pub fn run(&self, policy: &StatePolicy, query: &Query) -> Result<Answer, StateError> {
        match self.run_once(policy, query, false) {
            Err(StateError::NoScript) => self.run_once(policy, query, true),
            other => other,
        }
    }

    /// One HTTP round trip (`full`: `EVAL` with the source).
    pub fn run_once(
        &self,
        policy: &StatePolicy,
        query: &Query,
        full: bool,
    ) -> Result<Answer, StateError> {
        let http = policy.request(query, full);
        let header = |name: &str| {
            http.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let mut req =
            Request::new(&header(":method"), &header(":path")).host(&header(":authority"));
        for (name, value) in &http.headers {
            if !name.starts_with(':') {
                req = req.header(name, value);
            }
        }
        let req = req.body(http.body);
        match try_send(&req, self.webdis_addr()) {
            Ok(resp) => policy.answer(query, u32::from(resp.status), &resp.body),
            Err(_) => policy.answer(query, 0, b""),
        }
    }

    pub fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        let tail = |s: String| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(60)..].join("\n")
        };
        format!(
            "----- redis.log ({}) -----\n{}\n----- webdis.log -----\n{}\n----- end -----",
            self.dir.display(),
            tail(read("redis.log")),
            tail(read("webdis.log"))
        )
    }
}

/// The `Authorization` header value webdis requires.
pub fn basic_auth() -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(WEBDIS_USER)
    )
}

impl Drop for Store {
    fn drop(&mut self) {
        for child in [self.webdis.take(), self.redis.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
