//! `callback-guard oci`: the filter as an OCI image layout that Istio pulls
//! with `oci://` (WasmPlugin `url`, or an EnvoyFilter's remote `http_uri`).
//!
//! Format: the *compat* variant of the Wasm OCI image specification
//! (solo-io/wasm `spec/spec-compat.md`), the one Istio's pilot-agent tries
//! first for OCI manifests (istio/istio `pkg/wasm/imagefetcher.go`,
//! `extractOCIStandardImage`): an OCI image manifest whose last layer is
//! an `application/vnd.oci.image.layer.v1.tar+gzip` holding `plugin.wasm`.
//! It is an ordinary single-layer image, so every registry and OCI client
//! (oras, skopeo, crane, docker) handles it. The *oci* variant with
//! `application/vnd.module.wasm.content.layer.v1+wasm` is also accepted by
//! Istio, but only as a two-layer image, which fewer tools understand.
//!
//! The layout is reproducible: fixed tar metadata (mtime 0, uid/gid 0,
//! mode 0644), a gzip header without time or name, no creation date.

use flate2::{Compression, GzBuilder};
use oci_spec::image::{
    Arch, Descriptor, Digest, ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder,
    MediaType, OciLayoutBuilder, Os, RootFsBuilder, SCHEMA_VERSION, Sha256Digest,
};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

/// The file name Istio looks for in the layer.
pub const WASM_FILE: &str = "plugin.wasm";
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const TITLE: &str = "org.opencontainers.image.title";

/// Writes the layout and prints what was written and how to push it.
pub fn run(wasm: &Path, out: &Path, tag: &str) -> Result<(), String> {
    let module = std::fs::read(wasm).map_err(|e| format!("{}: {e}", wasm.display()))?;
    if !module.starts_with(b"\0asm") {
        return Err(format!(
            "{} is not a WebAssembly module (build it with `make wasm`)",
            wasm.display()
        ));
    }
    let layout = build(&module, tag)?;
    write(&layout, out)?;
    println!("wrote {} (OCI image layout, tag {tag})", out.display());
    println!(
        "  manifest {} ({} bytes)",
        layout.manifest_digest,
        layout.manifest.len()
    );
    println!(
        "  layer    {} ({} bytes gzip): {WASM_FILE}, {} bytes",
        layout.layer_digest,
        layout.layer.len(),
        module.len()
    );
    println!(
        "push with: oras copy --from-oci-layout {}:{tag} REGISTRY/callback-guard:{tag}",
        out.display()
    );
    Ok(())
}

/// Every blob of the layout, serialized.
pub struct Layout {
    pub layer: Vec<u8>,
    pub layer_digest: String,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub index: Vec<u8>,
    pub oci_layout: Vec<u8>,
}

fn sha256(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn digest(bytes: &[u8]) -> Result<Digest, String> {
    let hex = sha256(bytes);
    let d = Sha256Digest::from_str(hex.trim_start_matches("sha256:")).map_err(err)?;
    Ok(d.into())
}

fn size(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// `plugin.wasm` in a tar, with fixed metadata.
fn tar_layer(module: &[u8]) -> Result<Vec<u8>, String> {
    let mut header = tar::Header::new_ustar();
    header.set_path(WASM_FILE).map_err(err)?;
    header.set_size(size(module));
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, module).map_err(err)?;
    builder.into_inner().map_err(err)
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    // GzBuilder writes no file name and the mtime given: stable output.
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    encoder.write_all(bytes).map_err(err)?;
    encoder.finish().map_err(err)
}

/// Builds every blob for `module`, tagged `tag`.
pub fn build(module: &[u8], tag: &str) -> Result<Layout, String> {
    let tar = tar_layer(module)?;
    let layer = gzip(&tar)?;

    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(vec![sha256(&tar)])
        .build()
        .map_err(err)?;
    // GOOS/GOARCH of the target, as the image spec asks: wasip1/wasm.
    let config = ImageConfigurationBuilder::default()
        .architecture(Arch::Wasm)
        .os(Os::Other("wasip1".to_string()))
        .rootfs(rootfs)
        .build()
        .map_err(err)?;
    let config = serde_json::to_vec(&config).map_err(err)?;

    let mut layer_desc = Descriptor::new(MediaType::ImageLayerGzip, size(&layer), digest(&layer)?);
    layer_desc.set_annotations(Some(HashMap::from([(
        TITLE.to_string(),
        WASM_FILE.to_string(),
    )])));
    let manifest = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            size(&config),
            digest(&config)?,
        ))
        .layers(vec![layer_desc])
        .annotations(HashMap::from([
            (TITLE.to_string(), "callback-guard".to_string()),
            (
                "org.opencontainers.image.version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
            (
                "org.opencontainers.image.description".to_string(),
                env!("CARGO_PKG_DESCRIPTION").to_string(),
            ),
            (
                "org.opencontainers.image.licenses".to_string(),
                env!("CARGO_PKG_LICENSE").to_string(),
            ),
        ]))
        .build()
        .map_err(err)?;
    // HashMap order varies between runs; serialize through a sorted map so
    // the manifest (and so its digest) is the same every time.
    let manifest = canonical_json(&manifest)?;

    let mut manifest_desc = Descriptor::new(
        MediaType::ImageManifest,
        size(&manifest),
        digest(&manifest)?,
    );
    manifest_desc.set_annotations(Some(HashMap::from([(
        REF_NAME.to_string(),
        tag.to_string(),
    )])));
    let index = ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest_desc])
        .build()
        .map_err(err)?;
    let index = canonical_json(&index)?;
    let oci_layout = OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build()
        .map_err(err)?;
    let oci_layout = serde_json::to_vec(&oci_layout).map_err(err)?;

    Ok(Layout {
        layer_digest: sha256(&layer),
        layer,
        config,
        manifest_digest: sha256(&manifest),
        manifest,
        index,
        oci_layout,
    })
}

/// JSON with object keys sorted (serde_json's `Value` map is a BTreeMap).
fn canonical_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let v = serde_json::to_value(value).map_err(err)?;
    serde_json::to_vec(&v).map_err(err)
}

/// Writes `layout` to `out`, replacing an earlier layout there. Refuses to
/// touch a non-empty directory that is not an OCI layout.
fn write(layout: &Layout, out: &Path) -> Result<(), String> {
    if out.exists() {
        let is_layout = out.join("oci-layout").is_file();
        let is_empty = std::fs::read_dir(out)
            .map_err(|e| format!("{}: {e}", out.display()))?
            .next()
            .is_none();
        if !is_layout && !is_empty {
            return Err(format!(
                "{} exists and is not an OCI layout; not replacing it",
                out.display()
            ));
        }
        std::fs::remove_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    let blobs = out.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| format!("{}: {e}", blobs.display()))?;
    for blob in [&layout.layer, &layout.config, &layout.manifest] {
        let name = sha256(blob);
        let path = blobs.join(name.trim_start_matches("sha256:"));
        std::fs::write(&path, blob).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    for (name, bytes) in [
        ("oci-layout", &layout.oci_layout),
        ("index.json", &layout.index),
    ] {
        let path = out.join(name);
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_reproducible() {
        let module = b"\0asm\x01\0\0\0";
        let a = build(module, "v1").unwrap();
        let b = build(module, "v1").unwrap();
        assert_eq!(a.manifest, b.manifest);
        assert_eq!(a.index, b.index);
        assert_eq!(a.layer, b.layer);
    }

    #[test]
    fn the_tag_is_the_index_ref_name() {
        let layout = build(b"\0asm\x01\0\0\0", "v9.9.9").unwrap();
        let index: serde_json::Value = serde_json::from_slice(&layout.index).unwrap();
        assert_eq!(
            index["manifests"][0]["annotations"][REF_NAME],
            serde_json::json!("v9.9.9")
        );
    }
}
