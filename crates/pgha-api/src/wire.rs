//! Bytes on the wire as Patroni writes them: JSON in Python's `json.dumps` default style
//! (`", "` / `": "` separators, non-ASCII escaped), plain-text answers labelled `text/html`,
//! and `BaseHTTPRequestHandler.send_error` HTML pages.

use std::io;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::ser::Formatter;
use serde_json::Value;

/// Serializes like Python's `json.dumps(value)`: `{"a": 1, "b": [1, 2]}`, with every character
/// outside printable ASCII escaped as `\uXXXX`.
pub fn to_python_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    if value.serialize(&mut ser).is_err() {
        // Serializing a `Value` into memory cannot fail; keep a valid body regardless.
        return "null".to_string();
    }
    String::from_utf8(out).unwrap_or_else(|_| "null".to_string())
}

struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if fragment.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            return w.write_all(fragment.as_bytes());
        }
        let mut buf = [0u16; 2];
        for c in fragment.chars() {
            if (' '..='~').contains(&c) {
                let mut b = [0u8; 4];
                w.write_all(c.encode_utf8(&mut b).as_bytes())?;
            } else {
                for unit in c.encode_utf16(&mut buf) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// A JSON answer with `Content-Type: application/json`.
pub(crate) fn json_response(code: StatusCode, value: &Value) -> Response {
    let mut r = (code, to_python_json(value)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A plain-text answer; Patroni labels those `text/html`.
pub(crate) fn text_response(code: StatusCode, body: impl Into<String>) -> Response {
    let mut r = (code, body.into()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}

/// The status line only: no body, no Content-Type (what HAProxy's OPTIONS/HEAD checks and the
/// Kubernetes probes get).
pub(crate) fn status_only(code: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = code;
    r
}

/// The HTML page Python's `send_error` writes, e.g. for 502 on `/config` without a config key.
pub(crate) fn error_page(code: StatusCode, message: Option<&str>) -> Response {
    let (short, explain) = describe(code);
    let message = escape_html(message.unwrap_or(short));
    let body = format!(
        "<!DOCTYPE HTML>\n<html lang=\"en\">\n    <head>\n        <meta charset=\"utf-8\">\n        \
         <title>Error response</title>\n    </head>\n    <body>\n        <h1>Error response</h1>\n        \
         <p>Error code: {}</p>\n        <p>Message: {}.</p>\n        \
         <p>Error code explanation: {} - {}.</p>\n    </body>\n</html>\n",
        code.as_u16(),
        message,
        code.as_u16(),
        explain
    );
    let mut r = (code, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html;charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Python's `http.HTTPStatus` phrase and description (without the final period).
fn describe(code: StatusCode) -> (&'static str, &'static str) {
    match code.as_u16() {
        400 => ("Bad Request", "Bad request syntax or unsupported method"),
        401 => ("Unauthorized", "No permission -- see authorization schemes"),
        403 => (
            "Forbidden",
            "Request forbidden -- authorization will not help",
        ),
        404 => ("Not Found", "Nothing matches the given URI"),
        409 => ("Conflict", "Request conflict"),
        411 => ("Length Required", "Client must specify Content-Length"),
        413 => ("Request Entity Too Large", "Entity is too large"),
        500 => ("Internal Server Error", "Server got itself in trouble"),
        501 => ("Not Implemented", "Server does not support this operation"),
        502 => ("Bad Gateway", "Invalid responses from another server/proxy"),
        503 => (
            "Service Unavailable",
            "The server cannot process the request due to a high load",
        ),
        _ => (code.canonical_reason().unwrap_or("Error"), "Error"),
    }
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_separators_and_ascii_escapes() {
        let v = json!({"a": [1, 2, {"b": null}], "s": "é\u{1F600}\u{7f}\"\n"});
        assert_eq!(
            to_python_json(&v),
            r#"{"a": [1, 2, {"b": null}], "s": "\u00e9\ud83d\ude00\u007f\"\n"}"#
        );
        assert_eq!(to_python_json(&json!([])), "[]");
        assert_eq!(to_python_json(&json!({})), "{}");
    }
}
