//! `host:port` strings as Patroni writes them: `127.0.0.1:5432`, `a,b:5432`, `[::1]:8008`,
//! `0.0.0.0:8008`, `*:5432`.

/// The host part split at commas (brackets of IPv6 literals removed) and the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    pub hosts: Vec<String>,
    pub port: u16,
}

/// Splits at the last `:`. The port must be a number from 1 to 65535.
pub(crate) fn parse(s: &str) -> Result<HostPort, String> {
    let s = s.trim();
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!(
            "expected host:port (e.g. 127.0.0.1:5432), got {s:?} without a port"
        ));
    };
    let port = match port.trim().parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            return Err(format!(
                "port {port:?} in {s:?} is not a number between 1 and 65535"
            ))
        }
    };
    let hosts = host
        .split(',')
        .map(|h| {
            h.trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        })
        .collect();
    Ok(HostPort { hosts, port })
}

/// An address that means "all interfaces", not one peers could connect to.
pub(crate) fn is_wildcard(host: &str) -> bool {
    matches!(host.trim(), "" | "*" | "0.0.0.0" | "::" | "[::]")
}

/// `host:port`, with brackets around IPv6 literals.
pub(crate) fn join(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        assert_eq!(
            parse("127.0.0.1:5432"),
            Ok(HostPort {
                hosts: vec!["127.0.0.1".into()],
                port: 5432
            })
        );
        assert_eq!(
            parse(" a, b:5433 "),
            Ok(HostPort {
                hosts: vec!["a".into(), "b".into()],
                port: 5433
            })
        );
        assert_eq!(
            parse("[::1]:8008").map(|h| h.hosts),
            Ok(vec!["::1".to_string()])
        );
        assert_eq!(parse(":8008").map(|h| h.hosts), Ok(vec![String::new()]));
        assert!(parse("localhost").is_err());
        assert!(parse("localhost:http").is_err());
        assert!(parse("localhost:0").is_err());
        assert!(parse("localhost:70000").is_err());
    }

    #[test]
    fn wildcard_and_join() {
        assert!(is_wildcard("0.0.0.0") && is_wildcard("*") && is_wildcard("::") && is_wildcard(""));
        assert!(!is_wildcard("10.0.0.1"));
        assert_eq!(join("::1", 5432), "[::1]:5432");
        assert_eq!(join("db1", 5432), "db1:5432");
    }
}
