//! HTTP Basic authentication of the unsafe methods (`restapi.authentication`).

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::wire::text_response;

/// Checks the `Authorization` header against `auth`: `None` when no credentials are configured
/// or they match; otherwise the 401 answer Patroni gives
/// (`WWW-Authenticate: Basic realm="Patroni"`, body `no auth header received` or
/// `not authenticated`).
pub(crate) fn check(auth: Option<&(String, String)>, headers: &HeaderMap) -> Option<Response> {
    let (user, password) = auth?;
    let reason = match headers.get(header::AUTHORIZATION) {
        None => "no auth header received",
        Some(v) => {
            let expected = STANDARD.encode(format!("{user}:{password}"));
            if credentials_match(v.as_bytes(), expected.as_bytes()) {
                return None;
            }
            "not authenticated"
        }
    };
    let mut r = text_response(StatusCode::UNAUTHORIZED, reason);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Patroni\""),
    );
    Some(r)
}

/// `Basic <token>` (scheme case-insensitive) with `token` equal to `expected`, compared in
/// constant time.
fn credentials_match(header_value: &[u8], expected: &[u8]) -> bool {
    const SCHEME: &[u8] = b"basic ";
    if header_value.len() < SCHEME.len()
        || !header_value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME)
    {
        return false;
    }
    let token = header_value[SCHEME.len()..].trim_ascii();
    constant_time_eq(token, expected)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn basic_auth() {
        let creds = ("admin".to_string(), "s3cr3t".to_string());
        let good = format!("Basic {}", STANDARD.encode("admin:s3cr3t"));
        assert!(check(None, &headers(None)).is_none());
        assert!(check(Some(&creds), &headers(Some(&good))).is_none());
        assert!(check(
            Some(&creds),
            &headers(Some(&good.replace("Basic", "basic")))
        )
        .is_none());
        for bad in [
            None,
            Some("Basic"),
            Some("Bearer abc"),
            Some("Basic YWRtaW46d3Jvbmc="),
            Some("Basic !!!"),
        ] {
            let r = check(Some(&creds), &headers(bad)).unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(
                r.headers()[header::WWW_AUTHENTICATE],
                "Basic realm=\"Patroni\""
            );
        }
    }
}
