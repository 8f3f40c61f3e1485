use std::path::{Path, PathBuf};

use crate::test_ca::TestCa;

use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs a handshake between the two configurations in memory; the error of whichever side
/// failed first.
fn handshake(client: ClientConfig, server: ServerConfig, name: &str) -> Result<(), rustls::Error> {
    let mut c = rustls::ClientConnection::new(
        Arc::new(client),
        ServerName::try_from(name.to_string()).unwrap(),
    )
    .unwrap();
    let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()?;
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets()?;
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

struct Setup {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    server: ServerTls,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn setup(verify_client: VerifyClient) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca1 = TestCa::new("pgha test CA");
    let ca2 = TestCa::new("another CA");
    let (scert, skey) = ca1.issue_pem(&["localhost", "127.0.0.1"]);
    let (ccert, ckey) = ca1.issue_pem(&["client"]);
    let d = dir.path();
    Setup {
        ca: write(d, "ca.pem", &ca1.pem()),
        other_ca: write(d, "other.pem", &ca2.pem()),
        server: ServerTls {
            cert_file: write(d, "server.crt", &scert),
            key_file: Some(write(d, "server.key", &skey)),
            key_password: None,
            ca_file: Some(d.join("ca.pem")),
            verify_client,
            ciphers: None,
        },
        client_cert: write(d, "client.crt", &ccert),
        client_key: write(d, "client.key", &ckey),
        _dir: dir,
    }
}

#[test]
fn verified_handshake_with_a_client_certificate() {
    let s = setup(VerifyClient::Required);
    let client = ClientTls {
        ca_file: Some(s.ca.clone()),
        cert_file: Some(s.client_cert.clone()),
        key_file: Some(s.client_key.clone()),
        ..Default::default()
    };
    handshake(
        client.client_config().unwrap(),
        s.server.server_config().unwrap(),
        "127.0.0.1",
    )
    .unwrap();
}

#[test]
fn required_client_certificate_is_enforced_and_optional_is_not() {
    let s = setup(VerifyClient::Required);
    let client = ClientTls {
        ca_file: Some(s.ca.clone()),
        ..Default::default()
    };
    let err = handshake(
        client.client_config().unwrap(),
        s.server.server_config().unwrap(),
        "localhost",
    )
    .unwrap_err();
    assert!(
        format!("{err:?}").contains("NoCertificatesPresented"),
        "{err:?}"
    );
    let optional = ServerTls {
        verify_client: VerifyClient::Optional,
        ..s.server.clone()
    };
    handshake(
        client.client_config().unwrap(),
        optional.server_config().unwrap(),
        "localhost",
    )
    .unwrap();
}

#[test]
fn wrong_ca_and_wrong_name_fail_verification_with_a_readable_reason() {
    let s = setup(VerifyClient::None);
    let wrong = ClientTls {
        ca_file: Some(s.other_ca.clone()),
        ..Default::default()
    };
    let err = handshake(
        wrong.client_config().unwrap(),
        s.server.server_config().unwrap(),
        "localhost",
    )
    .unwrap_err();
    assert_eq!(
        explain(&format!("{err:?}")).unwrap(),
        "the server's certificate is not signed by the configured CA"
    );
    let right = ClientTls {
        ca_file: Some(s.ca.clone()),
        ..Default::default()
    };
    let err = handshake(
        right.client_config().unwrap(),
        s.server.server_config().unwrap(),
        "db.example.com",
    )
    .unwrap_err();
    assert!(explain(&format!("{err:?}"))
        .unwrap()
        .contains("not valid for the host name"));
    // ctl.insecure: any certificate.
    let insecure = ClientTls {
        insecure: true,
        ..Default::default()
    };
    handshake(
        insecure.client_config().unwrap(),
        s.server.server_config().unwrap(),
        "db.example.com",
    )
    .unwrap();
}

#[test]
fn unreadable_and_unparsable_files_are_named() {
    let s = setup(VerifyClient::None);
    let missing = ClientTls {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..Default::default()
    };
    let e = missing.client_config().unwrap_err().to_string();
    assert!(
        e.contains("cannot read the CA file /nonexistent/ca.pem"),
        "{e}"
    );

    let garbage = write(s.client_cert.parent().unwrap(), "garbage.pem", "hello\n");
    let e = load_certs("CA file", &garbage).unwrap_err().to_string();
    assert!(
        e.contains("garbage.pem") && e.contains("no PEM certificate"),
        "{e}"
    );
    let e = load_key(&garbage, None).unwrap_err().to_string();
    assert!(
        e.contains("private key file") && e.contains("garbage.pem"),
        "{e}"
    );

    // A key that is not the certificate's.
    let wrong_key = ServerTls {
        key_file: Some(s.client_key.clone()),
        ..s.server.clone()
    };
    let e = wrong_key.server_config().unwrap_err().to_string();
    assert!(
        e.contains("do not go together") && e.contains("client.key"),
        "{e}"
    );
}

#[test]
fn encrypted_pkcs8_key_opens_with_its_password_only() {
    use pkcs8::der::Decode;
    let s = setup(VerifyClient::None);
    let plain = load_key(s.server.key_file.as_ref().unwrap(), None).unwrap();
    let info = pkcs8::PrivateKeyInfo::from_der(plain.secret_der()).unwrap();
    let params =
        pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(2048, b"saltsalt", &[7; 16])
            .unwrap();
    let enc = info.encrypt_with_params(params, "s3cret").unwrap();
    let pem = enc
        .to_pem("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF)
        .unwrap();
    let path = write(s.client_cert.parent().unwrap(), "enc.key", &pem);

    let with_password = ServerTls {
        key_file: Some(path.clone()),
        key_password: Some("s3cret".into()),
        ..s.server.clone()
    };
    with_password.server_config().unwrap();
    let e = load_key(&path, None).unwrap_err().to_string();
    assert!(e.contains("encrypted") && e.contains("enc.key"), "{e}");
    let e = load_key(&path, Some("nope")).unwrap_err().to_string();
    assert!(e.contains("cannot decrypt"), "{e}");
}

/// A client config that offers only `suite` (TLS 1.2), trusting the setup's CA.
fn client_offering(s: &Setup, suite: rustls::SupportedCipherSuite) -> ClientConfig {
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: vec![suite],
        ..(*provider()).clone()
    };
    ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(load_roots(&s.ca).unwrap())
        .with_no_client_auth()
}

/// `restapi.ciphers`: a client offering only a suite the string leaves out is refused; one
/// offering a selected suite gets through. (The test CA's keys are ECDSA.)
#[test]
fn ciphers_limit_the_tls12_suites_served() {
    use rustls::crypto::ring::cipher_suite as cs;
    let s = setup(VerifyClient::None);
    let server = ServerTls {
        ciphers: Some("ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384".into()),
        ..s.server.clone()
    };
    let allowed = client_offering(&s, cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384);
    handshake(allowed, server.server_config().unwrap(), "localhost").unwrap();

    let excluded = client_offering(&s, cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
    let err = handshake(excluded, server.server_config().unwrap(), "localhost").unwrap_err();
    assert!(
        format!("{err:?}").contains("NoCipherSuitesInCommon"),
        "{err:?}"
    );
    // Without `ciphers` the same client is served.
    let excluded = client_offering(&s, cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
    handshake(excluded, s.server.server_config().unwrap(), "localhost").unwrap();

    let bad = ServerTls {
        ciphers: Some("DHE-RSA-AES256-GCM-SHA384".into()),
        ..s.server.clone()
    };
    let e = bad.server_config().unwrap_err().to_string();
    assert!(
        e.contains("DHE-RSA-AES256-GCM-SHA384 is not one pgha can offer"),
        "{e}"
    );
}

#[test]
fn debug_output_hides_key_passwords() {
    let s = setup(VerifyClient::None);
    let server = ServerTls {
        key_password: Some("s3cret".into()),
        ..s.server.clone()
    };
    let client = ClientTls {
        key_password: Some("s3cret".into()),
        ..Default::default()
    };
    for text in [format!("{server:?}"), format!("{client:?}")] {
        assert!(
            !text.contains("s3cret") && text.contains("<redacted>"),
            "{text}"
        );
    }
}
