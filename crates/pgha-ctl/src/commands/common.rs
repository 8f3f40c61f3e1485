//! What the cluster commands share: the terminal and REST client they work with, patronictl's
//! timestamps, scheduled-time parsing and Python-style renderings.

use anyhow::{bail, Result};
use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use pgha_types::Cluster;
use serde_json::Value;

use crate::render::{render_members, Format};
use crate::rest::Rest;
use crate::term::{echo, Term};

/// A command's view of the world: the operator's terminal and the agents' REST API.
pub struct Ctx<'t> {
    pub term: &'t mut dyn Term,
    pub rest: Rest,
}

impl Ctx<'_> {
    /// `click.echo(text)`.
    pub fn echo(&mut self, text: &str) {
        echo(self.term, text);
    }

    /// patronictl's `output_members`: the members table (and footer) of `cluster`.
    pub fn show_members(&mut self, cluster: &Cluster, scope: &str, fmt: Format) {
        let text = render_members(cluster, scope, false, fmt);
        self.term.print(&text);
    }
}

/// `--group`: pgha runs no Citus clusters.
pub fn reject_group(group: Option<i64>) -> Result<()> {
    if group.is_some() {
        bail!("--group: Citus clusters are not supported by pgha");
    }
    Ok(())
}

/// patronictl's `timestamp(precision)`: local time, `precision` digits of the fraction
/// (`2024-02-07 18:50:54.94738` for 5, no fraction for 0).
pub fn timestamp(precision: usize) -> String {
    format_timestamp(Local::now().naive_local(), precision)
}

fn format_timestamp(now: NaiveDateTime, precision: usize) -> String {
    let full = now.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
    // Python slices `[:precision - 7]` off the 26-character text.
    let keep = (full.len() + precision).saturating_sub(7);
    full[..keep.min(full.len())].to_string()
}

/// The example in the "When should ..." prompts: an hour from now, `2024-02-07T19:50`.
pub fn next_hour() -> String {
    (Local::now() + chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M")
        .to_string()
}

/// Python's `repr()` of a list of names: `['node2', 'node3']`.
pub fn py_list(names: &[String]) -> String {
    let items: Vec<String> = names
        .iter()
        .map(|n| {
            if n.contains('\'') && !n.contains('"') {
                format!("\"{n}\"")
            } else {
                format!("'{}'", n.replace('\\', "\\\\").replace('\'', "\\'"))
            }
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// `datetime.isoformat(sep)`: `2023-09-13T18:00:00-03:00`, microseconds only when not zero.
pub fn isoformat(t: &DateTime<FixedOffset>, sep: char) -> String {
    let micros = t.timestamp_subsec_micros();
    let frac = if micros == 0 {
        String::new()
    } else {
        format!(".{micros:06}")
    };
    format!(
        "{}{sep}{}{frac}{}",
        t.format("%Y-%m-%d"),
        t.format("%H:%M:%S"),
        t.format("%:z")
    )
}

/// A UTC offset: `Z`, `+03:00`, `+0300`, `-3`.
fn parse_offset(s: &str) -> Option<FixedOffset> {
    if s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (h, m) = match digits.len() {
        1 | 2 => (digits.parse::<i32>().ok()?, 0),
        3 | 4 => {
            let split = digits.len() - 2;
            (digits[..split].parse().ok()?, digits[split..].parse().ok()?)
        }
        _ => return None,
    };
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

fn parse_time(s: &str) -> Option<NaiveTime> {
    ["%H:%M:%S%.f", "%H:%M:%S", "%H:%M", "%H%M%S", "%H%M"]
        .iter()
        .find_map(|f| NaiveTime::parse_from_str(s, f).ok())
}

/// patronictl's `parse_scheduled`: `None` for `now` (or nothing), else the time, in the local
/// zone when it names none. Accepts the ISO 8601 shapes operators write:
/// `2023-09-13T18:00-03:00`, `2023-09-13 18:00:00+00:00`, `2023-09-13T18:00Z`, `2023-09-13`.
pub fn parse_scheduled(scheduled: Option<&str>) -> Result<Option<DateTime<FixedOffset>>> {
    let Some(text) = scheduled.map(str::trim) else {
        return Ok(None);
    };
    if text.is_empty() || text == "now" {
        return Ok(None);
    }
    let fail = || {
        anyhow::anyhow!(
            "Unable to parse scheduled timestamp ({text}). It should be in an unambiguous format (e.g. ISO 8601)"
        )
    };
    let (date, rest) = match text.find(['T', 't', ' ']) {
        Some(i) => (&text[..i], text[i + 1..].trim()),
        None => (text, ""),
    };
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(date, "%Y%m%d"))
        .map_err(|_| fail())?;
    let (time, zone) = match rest.find(['+', '-', 'Z', 'z']) {
        _ if rest.is_empty() => ("", ""),
        Some(i) => (rest[..i].trim(), rest[i..].trim()),
        None if rest.eq_ignore_ascii_case("utc") => ("", rest),
        None => (rest, ""),
    };
    let time = if time.is_empty() {
        NaiveTime::MIN
    } else {
        parse_time(time).ok_or_else(fail)?
    };
    let naive = date.and_time(time);
    let at = if zone.is_empty() {
        Local
            .from_local_datetime(&naive)
            .earliest()
            .ok_or_else(fail)?
            .fixed_offset()
    } else {
        let offset = parse_offset(zone).ok_or_else(fail)?;
        offset
            .from_local_datetime(&naive)
            .single()
            .ok_or_else(fail)?
    };
    Ok(Some(at))
}

/// `loop_wait` of the cluster (10 when unset), as `reload` and `pause --wait` report it.
pub fn loop_wait(cluster: &Cluster) -> u64 {
    match cluster.config.as_ref().and_then(|c| c.get("loop_wait")) {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().map(|f| f as u64))
            .filter(|v| *v > 0)
            .unwrap_or(10),
        Some(Value::String(s)) => s.trim().parse().ok().filter(|v| *v > 0).unwrap_or(10),
        _ => 10,
    }
}

/// A PostgreSQL version as `--pg-version` accepts it (patronictl's `postgres_version_to_int`).
pub fn check_pg_version(version: &str) -> Result<()> {
    let parts: Result<Vec<u32>, _> = version.split('.').map(str::parse::<u32>).collect();
    let Ok(parts) = parts else {
        bail!("Invalid PostgreSQL version: {version}");
    };
    if parts.len() < 2 || parts.len() > 3 || (parts.len() == 2 && parts[0] < 10) {
        bail!("Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: {version}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_like_patronictl() {
        let t = NaiveDate::from_ymd_opt(2024, 2, 7)
            .unwrap()
            .and_hms_micro_opt(18, 50, 54, 947381)
            .unwrap();
        assert_eq!(format_timestamp(t, 6), "2024-02-07 18:50:54.94738");
        assert_eq!(format_timestamp(t, 0), "2024-02-07 18:50:54");
    }

    #[test]
    fn python_list_repr() {
        assert_eq!(
            py_list(&["pg-db1".into(), "pg-db3".into()]),
            "['pg-db1', 'pg-db3']"
        );
        assert_eq!(py_list(&[]), "[]");
        assert_eq!(py_list(&["o'x".into()]), "[\"o'x\"]");
    }

    #[test]
    fn scheduled_times() {
        let p = |s: &str| {
            parse_scheduled(Some(s))
                .unwrap()
                .map(|t| isoformat(&t, 'T'))
        };
        assert_eq!(p("now"), None);
        assert_eq!(p(""), None);
        assert_eq!(
            p("2023-09-13T18:00-03:00").unwrap(),
            "2023-09-13T18:00:00-03:00"
        );
        assert_eq!(
            p("2023-09-13T18:00:00Z").unwrap(),
            "2023-09-13T18:00:00+00:00"
        );
        assert_eq!(
            p("2023-09-13 18:00:05.25+0130").unwrap(),
            "2023-09-13T18:00:05.250000+01:30"
        );
        assert_eq!(
            p("2023-05-29T04:32:31-3").unwrap(),
            "2023-05-29T04:32:31-03:00"
        );
        assert!(p("2023-09-13T18:00")
            .unwrap()
            .starts_with("2023-09-13T18:00:00"));
        let err = parse_scheduled(Some("tomorrow")).unwrap_err().to_string();
        assert_eq!(
            err,
            "Unable to parse scheduled timestamp (tomorrow). It should be in an unambiguous format (e.g. ISO 8601)"
        );
    }

    #[test]
    fn pg_versions() {
        assert!(check_pg_version("9.5.2").is_ok());
        assert!(check_pg_version("15.4").is_ok());
        assert_eq!(
            check_pg_version("9.6").unwrap_err().to_string(),
            "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 9.6"
        );
        assert_eq!(
            check_pg_version("a.b").unwrap_err().to_string(),
            "Invalid PostgreSQL version: a.b"
        );
    }
}
