//! A private certificate authority made at test time (feature `test-ca`): PEM files for a CA
//! and the server and client certificates it signs.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl TestCa {
    pub fn new(common_name: &str) -> TestCa {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        p.distinguished_name
            .push(DnType::CommonName, common_name.to_string());
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("CA key");
        TestCa {
            cert: p.self_signed(&key).expect("self-signed CA"),
            key,
        }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// Writes the CA certificate to `path`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.pem())
    }

    /// A certificate for `names` (DNS names or IP addresses; the first is also its common
    /// name) and its key, as PEM.
    pub fn issue_pem(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut p = CertificateParams::new(names.clone()).expect("certificate parameters");
        if let Some(first) = names.first() {
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.distinguished_name.push(DnType::CommonName, first.clone());
        }
        let key = KeyPair::generate().expect("key");
        let cert = p
            .signed_by(&key, &self.cert, &self.key)
            .expect("signed certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// Writes `<stem>.crt` and `<stem>.key` in `dir` for `names`; returns their paths.
    pub fn issue(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
    ) -> std::io::Result<(PathBuf, PathBuf)> {
        let (cert, key) = self.issue_pem(names);
        let (c, k) = (
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&c, cert)?;
        std::fs::write(&k, key)?;
        Ok((c, k))
    }
}

/// `key_pem` (a PKCS#8 `PRIVATE KEY`) encrypted with `password` as an `ENCRYPTED PRIVATE
/// KEY` (PBES2, PBKDF2-SHA256, AES-256-CBC), the form libpq's `sslpassword` opens.
pub fn encrypt_key_pem(key_pem: &str, password: &str) -> String {
    use pkcs8::der::Decode;
    let (_, der) = pkcs8::der::pem::decode_vec(key_pem.as_bytes()).expect("a PEM key");
    let info = pkcs8::PrivateKeyInfo::from_der(&der).expect("a PKCS#8 key");
    let params =
        pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(2048, b"pghasalt", &[9; 16])
            .expect("PBES2 parameters");
    info.encrypt_with_params(params, password)
        .expect("encryption")
        .to_pem("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF)
        .expect("PEM")
        .to_string()
}
