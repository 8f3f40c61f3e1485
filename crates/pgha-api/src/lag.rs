//! `?lag=` values: bytes, optionally with a PostgreSQL memory unit.

/// Parses a lag as Patroni's `parse_int(value, 'B')` does: a number (integer or decimal) with an
/// optional unit `B`, `kB`, `MB`, `GB` or `TB` (case-sensitive, as PostgreSQL's), e.g.
/// `1048576`, `16kB`, `64MB`, `1.5GB`. Returns `None` for anything else, including negative
/// values; values beyond `u64` saturate.
pub fn parse_lag(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let unit = unit.trim();
    let multiplier: u64 = match unit {
        "" | "B" => 1,
        "kB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        _ => return None,
    };
    let num = num.strip_prefix('+').unwrap_or(num);
    if num.is_empty() || num.contains('+') || num == "." {
        return None;
    }
    if !num.contains('.') {
        let n: u128 = match num.parse::<u128>() {
            Ok(n) => n,
            // Only digits remain, so the only failure is overflow.
            Err(_) => return Some(u64::MAX),
        };
        return Some(u64::try_from(n.saturating_mul(u128::from(multiplier))).unwrap_or(u64::MAX));
    }
    if num.matches('.').count() > 1 {
        return None;
    }
    let f: f64 = num.parse().ok()?;
    let bytes = (f * multiplier as f64).round();
    if !bytes.is_finite() || bytes < 0.0 {
        return None;
    }
    // `as` saturates for values beyond u64.
    Some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_plain_bytes() {
        assert_eq!(parse_lag("1048576"), Some(1_048_576));
        assert_eq!(parse_lag("0"), Some(0));
        assert_eq!(parse_lag("16kB"), Some(16 * 1024));
        assert_eq!(parse_lag("64MB"), Some(64 << 20));
        assert_eq!(parse_lag("1GB"), Some(1 << 30));
        assert_eq!(parse_lag("2TB"), Some(2 << 40));
        assert_eq!(parse_lag("1 MB"), Some(1 << 20));
        assert_eq!(parse_lag("100B"), Some(100));
        assert_eq!(parse_lag("1.5MB"), Some(1_572_864));
        assert_eq!(parse_lag(".5kB"), Some(512));
        assert_eq!(parse_lag("+7"), Some(7));
    }

    #[test]
    fn garbage_is_none() {
        for s in [
            "", "MB", "1mb", "1KB", "abc", "-1", "1.2.3", ".", "1 M B", "1e3", "++1",
        ] {
            assert_eq!(parse_lag(s), None, "{s:?}");
        }
    }

    #[test]
    fn huge_values_saturate() {
        assert_eq!(
            parse_lag("99999999999999999999999999999999999999999"),
            Some(u64::MAX)
        );
        assert_eq!(parse_lag("99999999999999999999TB"), Some(u64::MAX));
    }
}
