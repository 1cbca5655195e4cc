//! `callback-guard`: the native companion of the filter.
//!
//! - `validate FILE...` checks policies (JSON or YAML), Istio manifests
//!   (`WasmPlugin` `spec.pluginConfig`, `EnvoyFilter` wasm `configuration`)
//!   and Envoy bootstraps (every callback-guard wasm filter) with the
//!   parser the filter runs at load time, and prints every error it finds
//!   with its field path (`--format json` for CI).
//! - `schema` prints the JSON Schema of the configuration, generated from
//!   the same serde types.
//! - `oci` writes the built `.wasm` as an OCI image layout that Istio pulls
//!   with `oci://` once pushed to a registry.
//! - `replay` reads dead-letter copies from the Redis Stream sink and
//!   re-sends them to a target (or lists them).
//!
//! Built only with `--features cli` (`make validate`, `make oci`, `make
//! schema`); the `.wasm` never links any of this.

mod oci;
mod replay;
mod schema;
mod validate;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "callback-guard",
    version,
    about = "Check and package callback-guard policies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check policy files and Istio manifests with the filter's own parser
    ///
    /// A FILE is a policy (JSON, or YAML), a Kubernetes manifest (YAML,
    /// several documents allowed: each WasmPlugin's spec.pluginConfig and
    /// each EnvoyFilter's wasm configuration is checked, other kinds are
    /// skipped) or an Envoy bootstrap / xDS file (each callback-guard wasm
    /// filter's configuration is checked). Every error is printed, with its
    /// field path. Exit status 0 when everything is valid, 1 otherwise.
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Substitute a placeholder for secrets whose env var is not set
        /// here (by default a missing variable is an error, as on the proxy)
        #[arg(long)]
        allow_missing_env: bool,
        /// Output: text for people, json (one document on stdout) for CI
        #[arg(long, value_enum, default_value = "text")]
        format: validate::Format,
        /// Also check this sample body (repeatable) against a channel's
        /// `contract`, as the filter would; a body that fails is an error
        #[arg(long = "body", value_name = "FILE")]
        bodies: Vec<PathBuf>,
        /// The channel whose contract the bodies are checked against
        /// (needed when more than one channel has a contract)
        #[arg(long, value_name = "NAME", requires = "bodies")]
        channel: Option<String>,
    },
    /// Print the JSON Schema of the plugin configuration
    Schema {
        /// Write it to this file instead of stdout
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Write the .wasm as an OCI image layout for Istio's oci:// URLs
    Oci {
        /// The built filter
        #[arg(
            long,
            default_value = "target/wasm32-wasip1/release/callback_guard.wasm"
        )]
        wasm: PathBuf,
        /// Layout directory (replaced if it already holds a layout)
        #[arg(long, default_value = "dist/oci")]
        out: PathBuf,
        /// Tag recorded in index.json (org.opencontainers.image.ref.name)
        #[arg(long, default_value = concat!("v", env!("CARGO_PKG_VERSION")))]
        tag: String,
    },
    /// List dead-letter copies in the Redis Stream sink, or re-send them
    ///
    /// Reads entries of dead_letter.redis_stream (XRANGE, directly from
    /// Redis) and, with --target, POSTs each one's body (as forwarded:
    /// masked) and headers to it, with `x-callback-replay: <stream id>`.
    /// The masked body no longer matches the provider's signature: send
    /// replays to the service itself, or re-sign them (--sign-secret-env)
    /// for a target behind a verifying filter.
    /// Exit status 0 when every entry listed was replayed (or listed), 1
    /// otherwise.
    Replay(replay::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate {
            files,
            allow_missing_env,
            format,
            bodies,
            channel,
        } => {
            let outcome = validate::run(
                &files,
                &validate::Options {
                    allow_missing_env,
                    format,
                    bodies,
                    channel,
                },
            );
            return if outcome.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        Command::Schema { output } => schema::run(output.as_deref()),
        Command::Oci { wasm, out, tag } => oci::run(&wasm, &out, &tag),
        Command::Replay(args) => match replay::run(&args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("callback-guard: {message}");
            ExitCode::FAILURE
        }
    }
}
