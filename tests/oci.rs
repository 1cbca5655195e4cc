#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `callback-guard oci` (what `make oci` runs) writes an OCI image layout
//! that holds exactly the built `.wasm`, in the compat variant Istio pulls:
//! every blob's sha256 is its name and matches the descriptors pointing at
//! it, sizes agree, and the single tar+gzip layer holds `plugin.wasm`.

mod support;

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::envoy::wasm_path;
use support::repo_root;

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn make_layout(name: &str, tag: &str) -> PathBuf {
    let out = repo_root()
        .join("target/e2e")
        .join(format!("oci-{name}-{}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_callback-guard"))
        .arg("oci")
        .arg("--wasm")
        .arg(wasm_path())
        .arg("--out")
        .arg(&out)
        .args(["--tag", tag])
        .status()
        .unwrap();
    assert!(status.success());
    out
}

/// Reads the blob a descriptor points at, checking digest and size.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(
        sha256_hex(&bytes),
        hex,
        "blob content does not match {digest}"
    );
    assert_eq!(
        descriptor["size"].as_u64(),
        Some(bytes.len() as u64),
        "size of {digest}"
    );
    bytes
}

#[test]
fn layout_holds_exactly_the_built_wasm() {
    let layout = make_layout("check", "v0.1.0");
    let wasm = std::fs::read(wasm_path()).unwrap();

    let oci_layout: Value =
        serde_json::from_slice(&std::fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(oci_layout["imageLayoutVersion"], "1.0.0");

    // Every blob is named by its own sha256.
    let mut blobs = Vec::new();
    for entry in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(sha256_hex(&std::fs::read(&path).unwrap()), name);
        blobs.push(name);
    }
    blobs.sort();

    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    let desc = &manifests[0];
    assert_eq!(
        desc["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        desc["annotations"]["org.opencontainers.image.ref.name"],
        "v0.1.0"
    );
    let manifest: Value = serde_json::from_slice(&blob(&layout, desc)).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );

    let config: Value = serde_json::from_slice(&blob(&layout, &manifest["config"])).unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(
        (config["os"].as_str(), config["architecture"].as_str()),
        (Some("wasip1"), Some("wasm"))
    );

    // Istio's compat variant: the last layer is tar+gzip with plugin.wasm.
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let gz = blob(&layout, &layers[0]);
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut tar_bytes)
        .unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        format!("sha256:{}", sha256_hex(&tar_bytes)),
        "diff_id is the uncompressed layer's digest"
    );
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let mut entries = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().to_string();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        entries.push((path, content));
    }
    assert_eq!(entries.len(), 1, "one file in the layer");
    assert_eq!(entries[0].0, "plugin.wasm");
    assert!(
        entries[0].1 == wasm,
        "the layer's plugin.wasm is not the built .wasm"
    );

    // Nothing else in blobs/: exactly manifest, config and layer.
    let mut expected: Vec<String> = [desc, &manifest["config"], &layers[0]]
        .iter()
        .map(|d| {
            d["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:")
                .to_string()
        })
        .collect();
    expected.sort();
    assert_eq!(blobs, expected);
}

#[test]
fn layout_is_reproducible_and_replaces_an_old_one() {
    let a = make_layout("again", "v1.2.3");
    let first = std::fs::read(a.join("index.json")).unwrap();
    // Writing over an existing layout replaces it, stale blobs included.
    std::fs::write(a.join("blobs/sha256/stale"), b"x").unwrap();
    let b = make_layout("again", "v1.2.3");
    assert_eq!(a, b);
    assert_eq!(std::fs::read(b.join("index.json")).unwrap(), first);
    assert!(!b.join("blobs/sha256/stale").exists());
}

#[test]
fn refuses_to_replace_a_directory_that_is_not_a_layout() {
    let dir = repo_root()
        .join("target/e2e")
        .join(format!("oci-not-a-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keep.txt"), b"precious").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_callback-guard"))
        .arg("oci")
        .arg("--wasm")
        .arg(wasm_path())
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(dir.join("keep.txt").exists());
    // And a file that is not wasm is refused.
    let out = Command::new(env!("CARGO_BIN_EXE_callback-guard"))
        .args(["oci", "--wasm", "Cargo.toml", "--out"])
        .arg(dir.join("sub"))
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a WebAssembly module"));
}
