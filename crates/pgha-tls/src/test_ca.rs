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
