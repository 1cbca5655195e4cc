#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The README's "Try it" session (and every other console block that talks
//! to the demo), replayed: the demo Envoy config
//! (`envoy/envoy.yaml`) and the demo upstreams (`envoy/demo_upstream.py`)
//! on free ports, as `make run` starts them, then every `$ ` command of the
//! section's console blocks, run by bash from the repository root with the
//! ports swapped, its output compared with the one shown. In the shown
//! output, `…` matches anything (a line of its own: any lines), a run of 16
//! or more hex digits matches any hex run of that length (trace ids), and
//! blank lines are ignored.

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use support::{Envoy, repo_root};

/// `(command, shown output)` of every console block that talks to the
/// demo (a command naming port 10000 or 9901), in README order: the Try-it
/// session and the examples further down, which run after it.
fn session(readme: &str) -> Vec<(String, Vec<String>)> {
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    let mut block: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_console = false;
    let mut continued = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            if in_console
                && block
                    .iter()
                    .any(|(cmd, _)| cmd.contains(":10000") || cmd.contains(":9901"))
            {
                steps.append(&mut block);
            }
            block.clear();
            in_console = line == "```console";
            continued = false;
            continue;
        }
        if !in_console {
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ ") {
            block.push((cmd.to_string(), Vec::new()));
            continued = cmd.ends_with('\\');
        } else if continued {
            let step = block.last_mut().unwrap();
            step.0.push('\n');
            step.0.push_str(line);
            continued = line.ends_with('\\');
        } else if let Some(step) = block.last_mut() {
            step.1.push(line.to_string());
        }
    }
    steps
}

#[derive(Debug)]
enum Token {
    Text(String),
    Any,
    Hex(usize),
}

fn tokens(pattern: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut text = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '…' {
            out.push(Token::Text(std::mem::take(&mut text)));
            out.push(Token::Any);
            i += 1;
            continue;
        }
        let run = chars[i..]
            .iter()
            .take_while(|c| c.is_ascii_digit() || ('a'..='f').contains(*c))
            .count();
        if run >= 16 {
            out.push(Token::Text(std::mem::take(&mut text)));
            out.push(Token::Hex(run));
            i += run;
            continue;
        }
        text.push(chars[i]);
        i += 1;
    }
    out.push(Token::Text(text));
    out
}

fn line_matches(tokens: &[Token], line: &str) -> bool {
    match tokens.split_first() {
        None => line.is_empty(),
        Some((Token::Text(t), rest)) => line
            .strip_prefix(t.as_str())
            .is_some_and(|l| line_matches(rest, l)),
        Some((Token::Hex(n), rest)) => {
            line.len() >= *n
                && line[..*n]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && line_matches(rest, &line[*n..])
        }
        Some((Token::Any, rest)) => (0..=line.len())
            .filter(|&i| line.is_char_boundary(i))
            .any(|i| line_matches(rest, &line[i..])),
    }
}

fn lines_match(shown: &[String], got: &[&str]) -> bool {
    match shown.split_first() {
        None => got.is_empty(),
        Some((first, rest)) if first.trim() == "…" => {
            (0..=got.len()).any(|i| lines_match(rest, &got[i..]))
        }
        Some((first, rest)) => {
            !got.is_empty() && line_matches(&tokens(first), got[0]) && lines_match(rest, &got[1..])
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The demo upstreams, stopped when dropped.
struct DemoUpstreams(Child);

impl DemoUpstreams {
    fn start(ports: &[u16; 4]) -> Self {
        let names = ["default", "region-a", "region-b", "region-c"];
        let mut child = Command::new("python3")
            .current_dir(repo_root())
            .arg("-u")
            .arg("envoy/demo_upstream.py")
            .args(names.iter().zip(ports).map(|(n, p)| format!("{n}={p}")))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs envoy/demo_upstream.py");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        for _ in names {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            assert!(line.starts_with("demo upstream "), "{line}");
        }
        Self(child)
    }
}

impl Drop for DemoUpstreams {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_try_it_session_runs_as_shown() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let steps = session(&readme);
    assert!(steps.len() >= 11, "{steps:#?}");

    let ports = [free_port(), free_port(), free_port(), free_port()];
    let _upstreams = DemoUpstreams::start(&ports);
    let mut yaml = std::fs::read_to_string(repo_root().join("envoy/envoy.yaml")).unwrap();
    yaml = yaml
        .replace("port_value: 10000", "port_value: 0")
        .replace("port_value: 9901", "port_value: 0");
    for (fixed, port) in [18080, 18081, 18082, 18083].iter().zip(ports) {
        yaml = yaml.replace(
            &format!("port_value: {fixed}"),
            &format!("port_value: {port}"),
        );
    }
    let envoy = Envoy::start_yaml("readme", &yaml);
    let listener = envoy.addr().port();
    let admin = envoy.admin().port();
    let swap = |text: &str| {
        text.replace(":10000", &format!(":{listener}"))
            .replace(":9901", &format!(":{admin}"))
    };

    for (command, shown) in &steps {
        let command = swap(command);
        let shown: Vec<String> = shown
            .iter()
            .map(|l| swap(l))
            .filter(|l| !l.trim().is_empty())
            .collect();
        let out = Command::new("bash")
            .current_dir(repo_root())
            .arg("-c")
            .arg(&command)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let got: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            out.status.success(),
            "$ {command}\nexited {}: {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            lines_match(&shown, &got),
            "$ {command}\n--- README shows:\n{}\n--- got:\n{}",
            shown.join("\n"),
            got.join("\n")
        );
    }
}

#[test]
fn the_matcher_is_strict_where_the_readme_is_exact() {
    let shown = |s: &str| s.lines().map(str::to_string).collect::<Vec<_>>();
    assert!(lines_match(
        &shown("HTTP 204\nid: 52c8c477d94642363b068909e503eae8\n…\nend \"region-…\""),
        &[
            "HTTP 204",
            "id: 0123456789abcdef0123456789abcdef",
            "x",
            "y",
            "end \"region-b\""
        ]
    ));
    assert!(!lines_match(&shown("HTTP 204"), &["HTTP 200"]));
    assert!(!lines_match(
        &shown("id: 52c8c477d94642363b068909e503eae8"),
        &["id: 52c8"]
    ));
    assert!(!lines_match(&shown("a\nb"), &["a", "b", "c"]));
}

#[test]
fn sign_py_signs_every_scheme_the_filter_verifies() {
    let std_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    // (scheme, secret, extra signature settings, extra sign.py arguments)
    let schemes: [(&str, &str, &str, &[&str]); 8] = [
        ("standard-webhooks", std_secret, "", &[]),
        ("svix", std_secret, "", &[]),
        ("stripe", "whsec_stripe_demo", "", &[]),
        ("github", "demo-github-secret", "", &[]),
        ("slack", "slack-signing-secret", "", &[]),
        ("shopify", "shopify-secret", "", &[]),
        (
            "hmac",
            "generic-secret",
            r#","header":"x-signature""#,
            &["--header", "x-signature"],
        ),
        (
            "hmac",
            "generic-secret",
            r#","header":"x-sig","algorithm":"sha512","encoding":"base64","prefix":"sha512=""#,
            &[
                "--header",
                "x-sig",
                "--algorithm",
                "sha512",
                "--encoding",
                "base64",
                "--prefix",
                "sha512=",
            ],
        ),
    ];
    let channels: Vec<String> = schemes
        .iter()
        .enumerate()
        .map(|(i, (scheme, secret, extra, _))| {
            format!(
                r#"{{"name":"c{i}","match":{{"path_prefix":"/c{i}/"}},
                    "signature":{{"scheme":"{scheme}","secrets":[{{"value":"{secret}"}}]{extra}}}}}"#
            )
        })
        .collect();
    let up = support::Upstream::start();
    let envoy = Envoy::builder("sign-py")
        .plugin(&format!(r#"{{"channels":[{}]}}"#, channels.join(",")))
        .cluster("upstream", up.port())
        .start();
    for (i, (scheme, secret, _, args)) in schemes.iter().enumerate() {
        let url = format!("http://{}/c{i}/hook", envoy.addr());
        for (tamper, want) in [(false, "HTTP 200"), (true, "HTTP 401")] {
            let mut cmd = Command::new("python3");
            cmd.current_dir(repo_root())
                .args([
                    "envoy/sign.py",
                    scheme,
                    secret,
                    &url,
                    r#"{"id":"evt_1","n":1}"#,
                ])
                .args(*args);
            if tamper {
                cmd.arg("--tamper");
            }
            let out = cmd.output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{scheme}: {text}");
            assert!(
                text.starts_with(want),
                "{scheme} {args:?} (tamper {tamper}): {text}"
            );
        }
    }

    // Nothing listening: one line on stderr, exit status 1.
    let port = free_port();
    let out = Command::new("python3")
        .current_dir(repo_root())
        .args([
            "envoy/sign.py",
            "github",
            "s",
            &format!("http://127.0.0.1:{port}/x"),
            "{}",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("Connection refused") && err.contains("make run"),
        "{err}"
    );
}
