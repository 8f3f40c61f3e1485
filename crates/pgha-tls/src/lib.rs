//! TLS material for pgha's links (etcd, the REST API between members and to pghactl): PEM
//! certificates and keys read with errors that name the file, and the rustls configurations
//! built from them. rustls with the ring provider only: no OpenSSL in the binaries.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the {what} {} is not usable: {detail}", path.display())]
    Invalid {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("{0}")]
    Config(String),
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn invalid(what: &'static str, path: &Path, detail: impl Into<String>) -> TlsError {
    TlsError::Invalid {
        what,
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

/// The PEM certificates of `path` (`what` names its role in errors: "CA file", ...): at least
/// one, or an error naming the file.
pub fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(what, path, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(
            what,
            path,
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
        ));
    }
    Ok(certs)
}

/// The trust anchors of a CA file.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs("CA file", path)? {
        roots
            .add(cert)
            .map_err(|e| invalid("CA file", path, e.to_string()))?;
    }
    Ok(roots)
}

/// The private key of a PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), or an encrypted PKCS#8
/// key (`-----BEGIN ENCRYPTED PRIVATE KEY-----`) opened with `password`.
pub fn load_key(path: &Path, password: Option<&str>) -> Result<PrivateKeyDer<'static>, TlsError> {
    load_key_with(path, password, "restapi.keyfile_password")
}

/// As [`load_key`]; `password_key` names the setting that holds the password in errors.
pub fn load_key_with(
    path: &Path,
    password: Option<&str>,
    password_key: &str,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    const WHAT: &str = "private key file";
    let pem = read(WHAT, path)?;
    let text = String::from_utf8_lossy(&pem);
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        // The legacy OpenSSL encryption (DEK-Info header): no pure-Rust reader for it.
        return Err(invalid(
            WHAT,
            path,
            "it is encrypted in the legacy OpenSSL format (Proc-Type/DEK-Info), which pgha cannot \
             open; convert it to encrypted PKCS#8 (openssl pkcs8 -topk8 -in KEY -out NEW) or \
             decrypt it (openssl pkey -in KEY -out NEW)",
        ));
    }
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let Some(password) = password else {
            return Err(invalid(
                WHAT,
                path,
                format!("it is encrypted and no password is configured ({password_key})"),
            ));
        };
        let (_, der) = pkcs8::der::pem::decode_vec(&pem)
            .map_err(|e| invalid(WHAT, path, format!("bad PEM: {e}")))?;
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice())
            .map_err(|e| invalid(WHAT, path, format!("bad encrypted PKCS#8 key: {e}")))?;
        let doc = info.decrypt(password).map_err(|e| {
            invalid(
                WHAT,
                path,
                format!("cannot decrypt it with the configured password: {e}"),
            )
        })?;
        return Ok(PrivatePkcs8KeyDer::from(doc.as_bytes().to_vec()).into());
    }
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| invalid(WHAT, path, format!("no PEM private key in it ({e})")))
}

// ring rather than aws-lc: the same provider tonic uses for etcd, and no C/cmake build of
// aws-lc. rustls deprecates it only for lacking post-quantum key exchange.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a TLS client trusts and presents.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// Trust anchors; none means the server certificate is not verified only when
    /// `insecure`, and no connection succeeds otherwise.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and its key, presented when the server asks.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub key_password: Option<String>,
    /// Do not verify the server's certificate (`ctl.insecure`).
    pub insecure: bool,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("key_password", &redacted(&self.key_password))
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl ClientTls {
    /// A rustls client configuration, every file read and checked now.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
        } else {
            let roots = match &self.ca_file {
                Some(p) => load_roots(p)?,
                None => RootCertStore::empty(),
            };
            builder.with_root_certificates(roots)
        };
        let mut config = match (&self.cert_file, &self.key_file) {
            (Some(cert), key) => {
                let chain = load_certs("certificate file", cert)?;
                // A PEM holding both the certificate and its key is common (Patroni allows it).
                let key_path = key.as_deref().unwrap_or(cert);
                let key = load_key(key_path, self.key_password.as_deref())?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| key_mismatch(cert, key_path, e))?
            }
            (None, Some(key)) => {
                return Err(TlsError::Config(format!(
                    "a client key ({}) is configured without its certificate",
                    key.display()
                )))
            }
            (None, None) => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn key_mismatch(cert: &Path, key: &Path, e: rustls::Error) -> TlsError {
    TlsError::Config(format!(
        "the certificate {} and the key {} do not go together: {e}",
        cert.display(),
        key.display()
    ))
}

/// Whether and how the server asks clients for a certificate (`restapi.verify_client`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VerifyClient {
    #[default]
    None,
    /// Asked for and verified when given; the application decides what needs one.
    Optional,
    /// The handshake fails without a valid client certificate.
    Required,
}

/// What a TLS server presents and whom it accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    /// `None`: the key is in `cert_file`.
    pub key_file: Option<PathBuf>,
    pub key_password: Option<String>,
    /// Trust anchors for client certificates.
    pub ca_file: Option<PathBuf>,
    pub verify_client: VerifyClient,
    /// An OpenSSL cipher string (`restapi.ciphers`, see [`cipher_suites`]); `None`: rustls's
    /// defaults.
    pub ciphers: Option<String>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("key_password", &redacted(&self.key_password))
            .field("ca_file", &self.ca_file)
            .field("verify_client", &self.verify_client)
            .field("ciphers", &self.ciphers)
            .finish()
    }
}

/// How a secret shows in Debug output: whether it is set, never its value.
fn redacted(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| "<redacted>")
}

impl ServerTls {
    /// A rustls server configuration (HTTP/1.1), every file read and checked now.
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let suites = match &self.ciphers {
            Some(spec) => Arc::new(rustls::crypto::CryptoProvider {
                cipher_suites: cipher_suites(spec)?,
                ..(*provider()).clone()
            }),
            None => provider(),
        };
        let builder = ServerConfig::builder_with_provider(suites)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match self.verify_client {
            VerifyClient::None => builder.with_no_client_auth(),
            mode => {
                let Some(ca) = &self.ca_file else {
                    return Err(TlsError::Config(
                        "verify_client needs a CA file (restapi.cafile) to verify client \
                         certificates against"
                            .into(),
                    ));
                };
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(load_roots(ca)?),
                    provider(),
                );
                let verifier = if mode == VerifyClient::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| invalid("CA file", ca, e.to_string()))?,
                )
            }
        };
        let chain = load_certs("certificate file", &self.cert_file)?;
        let key_path = self.key_file.as_deref().unwrap_or(&self.cert_file);
        let key = load_key(key_path, self.key_password.as_deref())?;
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| key_mismatch(&self.cert_file, key_path, e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// `ctl.insecure`: accepts any server certificate, still checking the handshake signatures.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The most telling part of an error chain from a TLS connection attempt: the certificate
/// verification failure when there is one, in words an operator can act on.
pub fn explain(chain: &str) -> Option<String> {
    // Both the Display ("invalid peer certificate: UnknownIssuer") and Debug
    // ("InvalidCertificate(UnknownIssuer)") forms of rustls errors end up in error chains.
    let known = [
        (
            "UnknownIssuer",
            "the server's certificate is not signed by the configured CA",
        ),
        (
            "BadSignature",
            "the server's certificate signature does not verify",
        ),
        (
            "NotValidForName",
            "the server's certificate is not valid for the host name or address connected to",
        ),
        (
            "certificate: Expired",
            "the server's certificate has expired",
        ),
        (
            "InvalidCertificate(Expired",
            "the server's certificate has expired",
        ),
        ("NotValidYet", "the server's certificate is not valid yet"),
        (
            "CertificateRequired",
            "the server requires a client certificate and none was configured",
        ),
        (
            "UnknownCA",
            "the server does not accept our client certificate (unknown CA)",
        ),
        (
            "BadCertificate",
            "the server rejected our client certificate",
        ),
        (
            "InvalidContentType",
            "the server does not speak TLS (plain http?)",
        ),
    ];
    known
        .iter()
        .find(|(needle, _)| chain.contains(needle))
        .map(|(_, say)| (*say).to_string())
}

mod ciphers;
pub use ciphers::cipher_suites;
pub mod pg;

#[cfg(feature = "test-ca")]
pub mod test_ca;

#[cfg(test)]
mod tests;
