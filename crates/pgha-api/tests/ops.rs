//! Unsafe methods: Basic auth and body checks, in front of the operations (answered 503
//! `not supported` here, as the router runs without an agent behind it).

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::*;

const CREDS: Option<(&str, &str)> = Some(("patroni", "s3cret"));

fn req(method: Method, uri: &str, auth: Option<&str>, body: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    match body {
        Some(text) => b
            .header("content-length", text.len())
            .header("content-type", "application/json")
            .body(Body::from(text.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

#[tokio::test]
async fn basic_auth_guards_unsafe_methods() {
    let body = Some(r#"{"leader": "node3", "candidate": "node1"}"#);

    let a = call_with(
        leader(),
        CREDS,
        req(Method::POST, "/switchover", None, body),
    )
    .await;
    assert_eq!(a.code, StatusCode::UNAUTHORIZED);
    assert_eq!(a.headers["www-authenticate"], "Basic realm=\"Patroni\"");
    assert_eq!(a.body, "no auth header received");

    let wrong = basic("patroni", "nope");
    let a = call_with(
        leader(),
        CREDS,
        req(Method::POST, "/switchover", Some(&wrong), body),
    )
    .await;
    assert_eq!(a.code, StatusCode::UNAUTHORIZED);
    assert_eq!(a.body, "not authenticated");

    let right = basic("patroni", "s3cret");
    let a = call_with(
        leader(),
        CREDS,
        req(Method::POST, "/switchover", Some(&right), body),
    )
    .await;
    assert_eq!(a.code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.body, "not supported");

    // No credentials configured: open, as Patroni.
    let a = call_with(leader(), None, req(Method::POST, "/switchover", None, body)).await;
    assert_eq!(a.code, StatusCode::SERVICE_UNAVAILABLE);

    // Every known unsafe endpoint checks auth.
    for (method, uri) in [
        (Method::POST, "/failover"),
        (Method::POST, "/restart"),
        (Method::POST, "/reload"),
        (Method::POST, "/reinitialize"),
        (Method::DELETE, "/switchover"),
        (Method::DELETE, "/restart"),
        (Method::PATCH, "/config"),
        (Method::PUT, "/config"),
    ] {
        let a = call_with(replica(), CREDS, req(method.clone(), uri, None, body)).await;
        assert_eq!(a.code, StatusCode::UNAUTHORIZED, "{method} {uri}");
        let a = call_with(
            replica(),
            CREDS,
            req(method.clone(), uri, Some(&right), body),
        )
        .await;
        assert_eq!(a.code, StatusCode::SERVICE_UNAVAILABLE, "{method} {uri}");
    }

    // GET stays open.
    let a = call_with(leader(), CREDS, req(Method::GET, "/patroni", None, None)).await;
    assert_eq!(a.code, StatusCode::OK);
}

#[tokio::test]
async fn unknown_unsafe_paths_are_unsupported() {
    for (method, uri) in [
        (Method::POST, "/nonexistent"),
        (Method::POST, "/patroni"),
        (Method::DELETE, "/config"),
        (Method::PUT, "/switchover"),
    ] {
        let a = call_with(leader(), CREDS, req(method.clone(), uri, None, None)).await;
        assert_eq!(a.code, StatusCode::NOT_IMPLEMENTED, "{method} {uri}");
        assert!(
            a.body.contains(&format!("Unsupported method ('{method}')")),
            "{}",
            a.body
        );
    }
}

#[tokio::test]
async fn body_checks() {
    let right = basic("patroni", "s3cret");
    let auth = Some(right.as_str());
    // Body required, Content-Length missing: 411.
    let a = call_with(
        leader(),
        CREDS,
        req(Method::POST, "/switchover", auth, None),
    )
    .await;
    assert_eq!(a.code, StatusCode::LENGTH_REQUIRED);
    // Bad JSON, non-object, empty object: 400.
    for body in ["{oops", "[1]", "{}", ""] {
        let a = call_with(
            leader(),
            CREDS,
            req(Method::POST, "/failover", auth, Some(body)),
        )
        .await;
        assert_eq!(a.code, StatusCode::BAD_REQUEST, "{body:?}");
        assert!(a.body.contains("Error code: 400"));
    }
    // Optional body: none, empty or {} are fine.
    for body in [None, Some(""), Some("{}"), Some(r#"{"force": true}"#)] {
        let a = call_with(
            replica(),
            CREDS,
            req(Method::POST, "/reinitialize", auth, body),
        )
        .await;
        assert_eq!(a.code, StatusCode::SERVICE_UNAVAILABLE, "{body:?}");
    }
    let a = call_with(
        replica(),
        CREDS,
        req(Method::POST, "/restart", auth, Some("nope")),
    )
    .await;
    assert_eq!(a.code, StatusCode::BAD_REQUEST);
    // No body needed.
    let a = call_with(replica(), CREDS, req(Method::POST, "/reload", auth, None)).await;
    assert_eq!(a.code, StatusCode::SERVICE_UNAVAILABLE);
}
