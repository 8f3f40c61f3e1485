//! TLS of a PostgreSQL client with libpq's rules: what `sslmode` verifies, client
//! certificates with libpq's key file permission rule, CRLs (`sslcrl`, `sslcrldir`), and the
//! `tls-server-end-point` channel binding data of SCRAM-SHA-256-PLUS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::{invalid, key_mismatch, load_certs, load_key_with, load_roots, provider, TlsError};

/// What the client checks of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerCheck {
    /// Nothing (`sslmode` require/prefer/allow without a root certificate): encrypted only.
    None,
    /// Signed by the root certificate, whatever host name it is for (`verify-ca`; also
    /// require/prefer when a root certificate is there, as libpq does).
    Chain,
    /// Signed by the root certificate and valid for the host connected to (`verify-full`).
    ChainAndName,
}

/// The TLS settings of one PostgreSQL client, files resolved (libpq's defaults applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgClientTls {
    pub check: ServerCheck,
    /// Required unless `check` is `None`.
    pub root_cert: Option<PathBuf>,
    /// `sslcrl`.
    pub crl_file: Option<PathBuf>,
    /// `sslcrldir`: every file in it holds CRLs.
    pub crl_dir: Option<PathBuf>,
    /// `sslcert` / `sslkey` / `sslpassword`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub key_password: Option<String>,
}

impl PgClientTls {
    /// A rustls client configuration, every file read and checked now.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let verifier: Arc<dyn ServerCertVerifier> = match self.check {
            ServerCheck::None => Arc::new(crate::NoVerify(provider())),
            check => {
                let Some(root) = &self.root_cert else {
                    return Err(TlsError::Config(
                        "verifying the server certificate needs a root certificate (sslrootcert)"
                            .into(),
                    ));
                };
                let mut b = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(load_roots(root)?),
                    provider(),
                );
                let crls = self.crls()?;
                if !crls.is_empty() {
                    b = b.with_crls(crls);
                }
                let inner = b
                    .build()
                    .map_err(|e| invalid("CA file", root, e.to_string()))?;
                if check == ServerCheck::Chain {
                    Arc::new(ChainOnly(inner))
                } else {
                    inner
                }
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut config = match (&self.cert_file, &self.key_file) {
            (Some(cert), key) => {
                let chain = load_certs("client certificate file (sslcert)", cert)?;
                let key_path = key.as_deref().unwrap_or(cert);
                check_key_permissions(key_path)?;
                let key = load_key_with(key_path, self.key_password.as_deref(), "sslpassword")?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| key_mismatch(cert, key_path, e))?
            }
            (None, _) => builder.with_no_client_auth(),
        };
        // What libpq 17 offers; older servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(config)
    }

    fn crls(&self) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
        const WHAT: &str = "certificate revocation list";
        let mut files: Vec<PathBuf> = self.crl_file.iter().cloned().collect();
        if let Some(dir) = &self.crl_dir {
            let entries = std::fs::read_dir(dir).map_err(|source| TlsError::Read {
                what: "certificate revocation list directory (sslcrldir)",
                path: dir.clone(),
                source,
            })?;
            let mut in_dir: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            in_dir.sort();
            files.extend(in_dir);
        }
        let mut out = Vec::new();
        for f in files {
            let pem = std::fs::read(&f).map_err(|source| TlsError::Read {
                what: WHAT,
                path: f.clone(),
                source,
            })?;
            let crls = CertificateRevocationListDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(WHAT, &f, format!("bad PEM: {e}")))?;
            if crls.is_empty() {
                return Err(invalid(
                    WHAT,
                    &f,
                    "no PEM CRL (-----BEGIN X509 CRL-----) in it",
                ));
            }
            out.extend(crls);
        }
        Ok(out)
    }
}

/// libpq refuses a private key file that others may read (the walreceiver, pg_basebackup and
/// pg_rewind would fail much later): owned by us it must be u=rw at most, owned by root
/// u=rw,g=r at most. Checked the same way here so the agent says so at once.
pub fn check_key_permissions(path: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|source| TlsError::Read {
        what: "private key file (sslkey)",
        path: path.to_path_buf(),
        source,
    })?;
    let (mode, uid) = (meta.mode(), meta.uid());
    let me = rustix::process::geteuid().as_raw();
    let bad = (uid == me && mode & 0o077 != 0) || (uid == 0 && mode & 0o037 != 0);
    if bad {
        return Err(invalid(
            "private key file (sslkey)",
            path,
            format!(
                "it has group or world access (mode {:04o}), which libpq refuses: make it mode \
                 0600 (or 0640 when owned by root)",
                mode & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Checks the chain and not the host name (`sslmode=verify-ca`). webpki checks the chain
/// first, so a name mismatch error means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The `tls-server-end-point` channel binding data (RFC 5929) of a server certificate: its
/// hash with the hash of its signature algorithm, SHA-256 for MD5 and SHA-1. `None` for an
/// algorithm without one hash (Ed25519, RSA-PSS), for which PostgreSQL offers no binding
/// either.
pub fn server_end_point(cert_der: &[u8]) -> Option<Vec<u8>> {
    use ring::digest::{digest, SHA256, SHA384, SHA512};
    let oid = signature_algorithm_oid(cert_der)?;
    // 1.2.840.113549.1.1.{4,5,11,12,13} (RSA with MD5, SHA-1, SHA-256/384/512) and
    // 1.2.840.10045.4.1 / 4.3.{2,3,4} (ECDSA with SHA-1, SHA-256/384/512).
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    let alg = match oid {
        o if o == ECDSA_SHA1 => &SHA256,
        [prefix @ .., last] if prefix == RSA => match last {
            4 | 5 | 11 => &SHA256,
            12 => &SHA384,
            13 => &SHA512,
            _ => return None,
        },
        [prefix @ .., last] if prefix == ECDSA_SHA2 => match last {
            2 => &SHA256,
            3 => &SHA384,
            4 => &SHA512,
            _ => return None,
        },
        _ => return None,
    };
    Some(digest(alg, cert_der).as_ref().to_vec())
}

/// One DER tag-length-value: (tag, contents, rest).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        rest = &rest[n..];
        len
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The OID bytes of `Certificate.signatureAlgorithm`:
/// SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE { OID, .. }, .. }.
fn signature_algorithm_oid(cert: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    let (SEQUENCE, body, _) = der_tlv(cert)? else {
        return None;
    };
    let (SEQUENCE, _tbs, rest) = der_tlv(body)? else {
        return None;
    };
    let (SEQUENCE, alg, _) = der_tlv(rest)? else {
        return None;
    };
    let (OID, oid, _) = der_tlv(alg)? else {
        return None;
    };
    Some(oid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_point_hash_follows_the_signature_algorithm() {
        use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384};
        for (alg, len) in [(&PKCS_ECDSA_P256_SHA256, 32), (&PKCS_ECDSA_P384_SHA384, 48)] {
            let key = KeyPair::generate_for(alg).unwrap();
            let cert = CertificateParams::new(vec!["db".to_string()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let hash = server_end_point(cert.der()).expect("a hash");
            assert_eq!(hash.len(), len);
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = CertificateParams::new(vec!["db".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert_eq!(server_end_point(cert.der()), None);
        assert_eq!(server_end_point(b"\x30\x03\x02\x01\x00"), None);
    }

    #[test]
    fn key_permissions_as_libpq() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.key");
        std::fs::write(&key, "x").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = check_key_permissions(&key).unwrap_err().to_string();
        assert!(e.contains("k.key") && e.contains("0644"), "{e}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_key_permissions(&key).unwrap();
        let e = check_key_permissions(&dir.path().join("missing.key"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.key"), "{e}");
    }
}
