//! Timestamps of scheduled switchovers and restarts, checked as Patroni's `parse_schedule`:
//! unparsable → 422, no time zone → 400, in the past → 422.
//!
//! Accepted: `YYYY-MM-DD[(T| )HH:MM[:SS[.fraction]]]` followed by a time zone: `Z`, `UTC`,
//! `GMT`, or an offset `±HH`, `±HHMM`, `±HH:MM` (optionally after a space).

use axum::http::StatusCode;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, Timelike, Utc};
use serde_json::Value;

const UNPARSABLE: &str =
    "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601";

/// A rejected schedule: the status code and Patroni's text.
pub(super) type Rejection = (StatusCode, String);

/// Parses `value` as the schedule of `action` (`switchover`, `restart`) and checks it is not
/// before `now`.
pub(super) fn parse_schedule(
    value: &Value,
    action: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<FixedOffset>, Rejection> {
    let unparsable = || (StatusCode::UNPROCESSABLE_ENTITY, UNPARSABLE.to_string());
    let Value::String(text) = value else {
        return Err(unparsable());
    };
    match parse_timestamp(text) {
        Parsed::Invalid => Err(unparsable()),
        Parsed::NoZone => Err((
            StatusCode::BAD_REQUEST,
            format!("Timezone information is mandatory for the scheduled {action}"),
        )),
        Parsed::At(at) if at < now => Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Cannot schedule {action} in the past"),
        )),
        Parsed::At(at) => Ok(at),
    }
}

/// The timestamp in UTC as Python's `isoformat()` writes it:
/// `2026-11-22T02:29:15+00:00`, with `.ffffff` when there are microseconds.
pub(super) fn iso(at: &DateTime<FixedOffset>) -> String {
    let utc = at.with_timezone(&Utc);
    let micros = utc.nanosecond() / 1_000 % 1_000_000;
    if micros == 0 {
        format!("{}+00:00", utc.format("%Y-%m-%dT%H:%M:%S"))
    } else {
        format!("{}.{micros:06}+00:00", utc.format("%Y-%m-%dT%H:%M:%S"))
    }
}

#[derive(Debug, PartialEq)]
enum Parsed {
    Invalid,
    NoZone,
    At(DateTime<FixedOffset>),
}

fn parse_timestamp(text: &str) -> Parsed {
    let text = text.trim();
    let (local, zone) = split_zone(text);
    let Some(naive) = parse_local(local.trim_end()) else {
        return Parsed::Invalid;
    };
    let Some(zone) = zone else {
        return Parsed::NoZone;
    };
    let Some(offset) = parse_offset(zone) else {
        return Parsed::Invalid;
    };
    match naive.and_local_timezone(offset).single() {
        Some(at) => Parsed::At(at),
        None => Parsed::Invalid,
    }
}

/// Splits the date-time from a trailing zone designator, if any.
fn split_zone(text: &str) -> (&str, Option<&str>) {
    for name in ["UTC", "GMT", "Z", "z"] {
        if let Some(local) = text.strip_suffix(name) {
            return (local, Some("+00:00"));
        }
    }
    // An offset sign can only follow the time: search after `YYYY-MM-DD`.
    let date_len = "YYYY-MM-DD".len();
    if text.len() > date_len && text.is_char_boundary(date_len) {
        if let Some(p) = text[date_len..].rfind(['+', '-']) {
            let p = p + date_len;
            return (&text[..p], Some(&text[p..]));
        }
    }
    (text, None)
}

fn parse_local(local: &str) -> Option<NaiveDateTime> {
    if let Ok(date) = NaiveDate::parse_from_str(local, "%Y-%m-%d") {
        return date.and_hms_opt(0, 0, 0);
    }
    let normalised: String;
    let local = match local.as_bytes().get(10) {
        Some(b' ') | Some(b't') => {
            normalised = format!("{}T{}", &local[..10], &local[11..]);
            normalised.as_str()
        }
        _ => local,
    };
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(local, f).ok())
}

/// `+HH`, `+HHMM`, `+HH:MM` (or `-`), at most 23:59.
fn parse_offset(zone: &str) -> Option<FixedOffset> {
    let zone = zone.trim();
    let (sign, digits) = match zone.as_bytes().first()? {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    let digits = digits.replacen(':', "", 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m) = match digits.len() {
        2 => (digits.parse::<i32>().ok()?, 0),
        4 => (digits[..2].parse::<i32>().ok()?, digits[2..].parse().ok()?),
        _ => return None,
    };
    if h > 23 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T02:00:00+00:00")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn ok(s: &str) -> String {
        iso(&parse_schedule(&json!(s), "switchover", now()).unwrap())
    }

    fn err(v: Value) -> (u16, String) {
        let (code, text) = parse_schedule(&v, "restart", now()).unwrap_err();
        (code.as_u16(), text)
    }

    #[test]
    fn accepted_forms_normalise_to_utc() {
        let want = "2026-11-22T02:29:15+00:00";
        for s in [
            "2026-11-22T02:29:15+00:00",
            "2026-11-22T02:29:15Z",
            "2026-11-22 02:29:15 UTC",
            "2026-11-22T03:29:15+01:00",
            "2026-11-22T03:29:15+0100",
            "2026-11-22T03:29:15+01",
            "2026-11-21T21:29:15-05:00",
            " 2026-11-22 02:29:15 +00:00 ",
        ] {
            assert_eq!(ok(s), want, "{s}");
        }
        assert_eq!(ok("2026-11-22T02:29+00:00"), "2026-11-22T02:29:00+00:00");
        assert_eq!(
            ok("2026-11-22T02:29:15.25+00:00"),
            "2026-11-22T02:29:15.250000+00:00"
        );
        assert_eq!(ok("2026-11-23Z"), "2026-11-23T00:00:00+00:00");
    }

    #[test]
    fn rejections_as_patroni() {
        for v in [
            json!("tomorrow"),
            json!(""),
            json!(12),
            json!(null),
            json!("2026-13-01T00:00Z"),
        ] {
            assert_eq!(err(v.clone()), (422, UNPARSABLE.to_string()), "{v}");
        }
        for s in [
            "2026-11-22T02:29:15+25:00",
            "2026-11-22T02:29:15+1",
            "2026-11-22T02:29:15 x",
        ] {
            assert_eq!(err(json!(s)).0, 422, "{s}");
        }
        assert_eq!(
            err(json!("2026-11-22T02:29:15")),
            (
                400,
                "Timezone information is mandatory for the scheduled restart".into()
            )
        );
        assert_eq!(err(json!("2026-12-01")).0, 400);
        assert_eq!(
            err(json!("2026-11-22T01:59:59+00:00")),
            (422, "Cannot schedule restart in the past".into())
        );
        // Non-ASCII input never panics on slicing.
        assert_eq!(err(json!("2026-11-2é02:29:15+00:00")).0, 422);
        assert_eq!(err(json!("éééééééééééé")).0, 422);
    }
}
