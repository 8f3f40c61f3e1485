//! `restapi.ciphers`: an OpenSSL cipher string (as Patroni hands it to `SSLContext.set_ciphers`)
//! mapped onto the cipher suites rustls offers.
//!
//! OpenSSL's syntax: entries separated by `:` (or `,`, `;`, spaces); an entry is a cipher name
//! or an alias (`HIGH`, `ECDHE`, `AESGCM`, ...), several joined by `+` select what all of them
//! match; a leading `!` removes for good, `-` removes (a later entry may add back), `+` moves
//! to the end; `@STRENGTH` and `@SECLEVEL=n` are accepted and change nothing here. As with
//! OpenSSL, the string governs TLS 1.2 only: TLS 1.3 keeps its suites unless the string names
//! some of them (`TLS_AES_256_GCM_SHA384`), which then are the only ones.
//!
//! rustls offers only forward-secret AEAD suites, so most of OpenSSL's cipher names (CBC, RSA
//! key exchange, DHE, 3DES, ...) cannot be given: naming one is an error that says which, rather
//! than a silently weaker or different set.

use rustls::crypto::ring::cipher_suite as cs;
use rustls::SupportedCipherSuite;

use crate::TlsError;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    Ecdsa,
    Rsa,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Enc {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20,
}

/// A TLS 1.2 suite rustls offers, with the attributes OpenSSL's aliases select on.
struct Tls12 {
    openssl: &'static str,
    auth: Auth,
    enc: Enc,
    suite: SupportedCipherSuite,
}

fn tls12() -> [Tls12; 6] {
    use {Auth::*, Enc::*};
    let s = |openssl, auth, enc, suite| Tls12 {
        openssl,
        auth,
        enc,
        suite,
    };
    [
        s(
            "ECDHE-ECDSA-AES256-GCM-SHA384",
            Ecdsa,
            Aes256Gcm,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ),
        s(
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            Ecdsa,
            Aes128Gcm,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        s(
            "ECDHE-ECDSA-CHACHA20-POLY1305",
            Ecdsa,
            Chacha20,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        s(
            "ECDHE-RSA-AES256-GCM-SHA384",
            Rsa,
            Aes256Gcm,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ),
        s(
            "ECDHE-RSA-AES128-GCM-SHA256",
            Rsa,
            Aes128Gcm,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ),
        s(
            "ECDHE-RSA-CHACHA20-POLY1305",
            Rsa,
            Chacha20,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ]
}

/// The TLS 1.3 suites, by their IANA names (OpenSSL's `-ciphersuites` names).
fn tls13() -> [(&'static str, SupportedCipherSuite); 3] {
    [
        ("TLS_AES_256_GCM_SHA384", cs::TLS13_AES_256_GCM_SHA384),
        ("TLS_AES_128_GCM_SHA256", cs::TLS13_AES_128_GCM_SHA256),
        (
            "TLS_CHACHA20_POLY1305_SHA256",
            cs::TLS13_CHACHA20_POLY1305_SHA256,
        ),
    ]
}

type Select = Box<dyn Fn(&Tls12) -> bool>;

/// What one alias (or cipher name) of an entry selects among the TLS 1.2 suites.
fn selector(word: &str) -> Option<Select> {
    use {Auth::*, Enc::*};
    let f: Select = match word {
        // Every suite rustls has is ECDHE, AEAD, TLS 1.2+, "HIGH" and in OpenSSL's default set.
        "ALL" | "DEFAULT" | "HIGH" | "kECDHE" | "kEECDH" | "ECDHE" | "EECDH" | "ECDH"
        | "TLSv1.2" => Box::new(|_| true),
        "aECDSA" | "ECDSA" => Box::new(|t| t.auth == Ecdsa),
        "aRSA" => Box::new(|t| t.auth == Rsa),
        "AES" | "AESGCM" | "FIPS" => Box::new(|t| matches!(t.enc, Aes128Gcm | Aes256Gcm)),
        "AES128" => Box::new(|t| t.enc == Aes128Gcm),
        "AES256" => Box::new(|t| t.enc == Aes256Gcm),
        "CHACHA20" => Box::new(|t| t.enc == Chacha20),
        "SUITEB128" => Box::new(|t| t.auth == Ecdsa && t.enc != Chacha20),
        "SUITEB192" => Box::new(|t| t.auth == Ecdsa && t.enc == Aes256Gcm),
        // Aliases OpenSSL knows that match nothing rustls offers: RSA means RSA key exchange,
        // SHA256/SHA384 a MAC (these suites have AEAD).
        "COMPLEMENTOFDEFAULT"
        | "COMPLEMENTOFALL"
        | "MEDIUM"
        | "LOW"
        | "EXPORT"
        | "EXP"
        | "aNULL"
        | "eNULL"
        | "NULL"
        | "kRSA"
        | "RSA"
        | "kDHE"
        | "kEDH"
        | "DHE"
        | "EDH"
        | "DH"
        | "kDH"
        | "ADH"
        | "AECDH"
        | "aDSS"
        | "DSS"
        | "aECDH"
        | "kECDH"
        | "PSK"
        | "kPSK"
        | "aPSK"
        | "kECDHEPSK"
        | "ECDHEPSK"
        | "kDHEPSK"
        | "DHEPSK"
        | "kRSAPSK"
        | "RSAPSK"
        | "SRP"
        | "kSRP"
        | "aSRP"
        | "3DES"
        | "DES"
        | "RC4"
        | "RC2"
        | "IDEA"
        | "SEED"
        | "MD5"
        | "SHA1"
        | "SHA"
        | "SHA256"
        | "SHA384"
        | "CAMELLIA"
        | "CAMELLIA128"
        | "CAMELLIA256"
        | "ARIA"
        | "ARIA128"
        | "ARIA256"
        | "AESCCM"
        | "AESCCM8"
        | "CBC"
        | "SSLv3"
        | "TLSv1"
        | "TLSv1.0"
        | "kGOST"
        | "aGOST"
        | "GOST94"
        | "GOST89MAC"
        | "aGOST01"
        | "kGOST18" => Box::new(|_| false),
        name => {
            let name = tls12().into_iter().find(|t| t.openssl == name)?.openssl;
            Box::new(move |t| t.openssl == name)
        }
    };
    Some(f)
}

fn tls12_names() -> [&'static str; 6] {
    tls12().map(|t| t.openssl)
}

/// A word that is an OpenSSL cipher name (not an alias) rustls does not have: the kinds of
/// names OpenSSL gives its suites. Told apart from a typo only for the message.
fn looks_like_openssl_cipher(word: &str) -> bool {
    word.contains('-')
        && word
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-')
}

fn error(spec: &str, detail: String) -> TlsError {
    TlsError::Config(format!("the cipher string {spec:?}: {detail}"))
}

fn supported() -> String {
    let mut names: Vec<&str> = tls12_names().to_vec();
    names.extend(tls13().map(|(n, _)| n));
    names.join(", ")
}

/// The cipher suites `spec` selects, TLS 1.3 ones first; an error naming the entry that rustls
/// cannot offer or is not OpenSSL syntax, or saying that nothing is selected.
pub fn cipher_suites(spec: &str) -> Result<Vec<SupportedCipherSuite>, TlsError> {
    let all = tls12();
    // Indices into `all`, in OpenSSL's order of selection.
    let mut active: Vec<usize> = Vec::new();
    let mut killed = [false; 6];
    let mut tls13_named: Vec<&'static str> = Vec::new();
    let mut tls13_removed: Vec<&'static str> = Vec::new();
    for entry in spec
        .split([':', ',', ';', ' '])
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        if entry == "@STRENGTH" || entry.starts_with("@SECLEVEL=") {
            continue;
        }
        let (op, body) = match entry.as_bytes()[0] {
            b'!' | b'-' | b'+' => (entry.as_bytes()[0], &entry[1..]),
            _ => (b' ', entry),
        };
        if let Some((name, _)) = tls13().into_iter().find(|(n, _)| *n == body) {
            match op {
                b' ' => tls13_named.push(name),
                b'!' | b'-' => tls13_removed.push(name),
                _ => {}
            }
            continue;
        }
        let mut selectors = Vec::new();
        for word in body.split('+') {
            match selector(word) {
                Some(f) => selectors.push(f),
                None if looks_like_openssl_cipher(word) => {
                    return Err(error(
                        spec,
                        format!(
                            "the cipher {word} is not one pgha can offer (rustls has only \
                             forward-secret AEAD suites: {})",
                            supported()
                        ),
                    ))
                }
                None => {
                    return Err(error(
                        spec,
                        format!("{word:?} is not an OpenSSL cipher name or alias pgha knows"),
                    ))
                }
            }
        }
        let matching: Vec<usize> = (0..all.len())
            .filter(|&i| selectors.iter().all(|f| f(&all[i])))
            .collect();
        match op {
            b'!' => {
                active.retain(|i| !matching.contains(i));
                for &i in &matching {
                    killed[i] = true;
                }
            }
            b'-' => active.retain(|i| !matching.contains(i)),
            b'+' => {
                let (moved, kept): (Vec<usize>, Vec<usize>) =
                    active.iter().partition(|i| matching.contains(i));
                active = kept;
                active.extend(moved);
            }
            _ => {
                for i in matching {
                    if !killed[i] && !active.contains(&i) {
                        active.push(i);
                    }
                }
            }
        }
    }
    if active.is_empty() && tls13_named.is_empty() {
        return Err(error(
            spec,
            format!(
                "selects no cipher suite pgha can offer (rustls has: {})",
                supported()
            ),
        ));
    }
    let mut suites: Vec<SupportedCipherSuite> = tls13()
        .into_iter()
        .filter(|(n, _)| tls13_named.is_empty() || tls13_named.contains(n))
        .filter(|(n, _)| !tls13_removed.contains(n))
        .map(|(_, s)| s)
        .collect();
    suites.extend(active.into_iter().map(|i| all[i].suite));
    Ok(suites)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(spec: &str) -> Vec<String> {
        cipher_suites(spec)
            .unwrap()
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect()
    }

    #[test]
    fn openssl_strings_map_to_rustls_suites() {
        assert_eq!(
            names("ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-GCM-SHA384"),
            [
                "TLS13_AES_256_GCM_SHA384",
                "TLS13_AES_128_GCM_SHA256",
                "TLS13_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            ]
        );
        assert_eq!(names("HIGH:!aNULL:!MD5").len(), 9);
        assert_eq!(
            names("ECDHE+AESGCM:!AES128:@STRENGTH")[3..],
            [
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            ]
        );
        // `-` lets a later entry add back, `!` does not.
        assert_eq!(names("ALL:-aRSA:ECDHE-RSA-CHACHA20-POLY1305").len(), 7);
        assert_eq!(names("ALL:!aRSA:ECDHE-RSA-CHACHA20-POLY1305").len(), 6);
        assert_eq!(
            names("TLS_AES_128_GCM_SHA256"),
            ["TLS13_AES_128_GCM_SHA256"]
        );
    }

    #[test]
    fn what_rustls_cannot_offer_is_named() {
        let e = cipher_suites("ECDHE-RSA-AES256-GCM-SHA384:AES256-SHA")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the cipher AES256-SHA is not one pgha can offer"),
            "{e}"
        );
        let e = cipher_suites("HIGH:BOGUS").unwrap_err().to_string();
        assert!(e.contains("\"BOGUS\" is not an OpenSSL cipher name"), "{e}");
        for nothing in ["MEDIUM", "HIGH:!ECDHE", "aNULL", "!HIGH"] {
            let e = cipher_suites(nothing).unwrap_err().to_string();
            assert!(e.contains("selects no cipher suite"), "{nothing}: {e}");
        }
    }
}
