//! mTLS for the e2e tests: a throw-away CA generated at test time
//! (`rcgen`), a server certificate for `localhost` / `127.0.0.1`, client
//! certificates whose URI SAN is a SPIFFE ID, the Envoy listener
//! `transport_socket` that uses them, and an HTTPS client (`rustls`, ring
//! provider) that sends a [`Request`] with or without a client certificate.

use super::client::{Request, Response, exchange};
use super::repo_root;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{Value, json};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A CA with a server certificate, written as PEM files into `dir`.
pub struct Pki {
    pub dir: PathBuf,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    /// A fresh CA and server certificate under `target/e2e/<name>-pki-...`.
    pub fn new(name: &str) -> Self {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = repo_root().join("target/e2e").join(format!(
            "{}-pki-{}-{}",
            name,
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();

        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.distinguished_name = dn("callback-guard e2e CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let mut server =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        server.distinguished_name = dn("localhost");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &issuer).unwrap();
        std::fs::write(dir.join("server.pem"), server_cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();

        Self {
            dir,
            ca_der: ca_cert.der().clone(),
            issuer,
        }
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// The listener's `transport_socket`: TLS with the server certificate,
    /// client certificates verified against the CA; with
    /// `require_client_certificate: false` a client may also come without one.
    pub fn transport_socket(&self, require_client_certificate: bool) -> Value {
        json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "require_client_certificate": require_client_certificate,
                "common_tls_context": {
                    "tls_certificates": [{
                        "certificate_chain": {"filename": self.file("server.pem")},
                        "private_key": {"filename": self.file("server.key")}
                    }],
                    "validation_context": {"trusted_ca": {"filename": self.file("ca.pem")}}
                }
            }
        })
    }

    /// A client certificate whose only URI SAN is `spiffe_id`, signed by
    /// the CA (also written as `<n>.pem` / `<n>.key`). The SAN is taken as
    /// given, so a malformed one (no `spiffe://`) makes a forged identity.
    pub fn identity(&self, spiffe_id: &str) -> Identity {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = dn("workload");
        params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().unwrap())];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let stem = spiffe_id.rsplit('/').next().unwrap_or("client");
        std::fs::write(self.dir.join(format!("{stem}.pem")), cert.pem()).unwrap();
        std::fs::write(self.dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
        Identity {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }

    /// An HTTPS client trusting the CA, presenting `identity` if given.
    pub fn client(&self, identity: Option<&Identity>) -> TlsClient {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots);
        let config = match identity {
            Some(id) => builder
                .with_client_auth_cert(
                    vec![id.cert.clone()],
                    PrivateKeyDer::Pkcs8(id.key.clone_key()),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        TlsClient {
            config: Arc::new(config),
        }
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A client certificate and its key.
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

/// Sends requests over TLS (one connection per request); cheap to clone
/// into worker threads.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

impl TlsClient {
    pub fn send(&self, req: &Request, addr: SocketAddr) -> Response {
        self.try_send(req, addr)
            .unwrap_or_else(|e| panic!("TLS request {} {} failed: {e}", req.method, req.path))
    }

    pub fn try_send(&self, req: &Request, addr: SocketAddr) -> std::io::Result<Response> {
        let tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
        let conn =
            ClientConnection::new(self.config.clone(), name).map_err(std::io::Error::other)?;
        exchange(req, StreamOwned::new(conn, tcp))
    }
}
