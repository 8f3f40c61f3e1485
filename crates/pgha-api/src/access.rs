//! Who may make unsafe requests, before the Basic-auth check, in Patroni's order: the source
//! address against `restapi.allowlist` (and, with `allowlist_include_members`, the hosts of the
//! members' `api_url`), then a client certificate when `verify_client` asks for one. Both
//! refusals are 403, `Access is denied` and `client certificate required`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, StatusCode};
use axum::response::Response;

use crate::wire::text_response;
use crate::ApiState;

/// An IP network: an address and how many leading bits of it count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// `10.0.0.0/8`, `fd00::/64`, or a single address (`127.0.0.1`: all its bits).
    pub fn parse(s: &str) -> Option<Network> {
        let (ip, prefix) = match s.trim().split_once('/') {
            Some((ip, bits)) => (ip.parse::<IpAddr>().ok()?, Some(bits.parse::<u8>().ok()?)),
            None => (s.trim().parse::<IpAddr>().ok()?, None),
        };
        Network::new(ip, prefix)
    }

    fn new(addr: IpAddr, prefix: Option<u8>) -> Option<Network> {
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Network { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> u128 {
            match ip {
                IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
                IpAddr::V6(v6) => u128::from(v6),
            }
        };
        let ip = ip.to_canonical();
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let mask = if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        };
        bits(ip) & mask == bits(self.addr) & mask
    }
}

/// The `restapi` access rules of the unsafe endpoints.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// `restapi.allowlist`, host names resolved; empty: no list.
    pub allowlist: Vec<Network>,
    /// `restapi.allowlist_include_members`.
    pub include_members: bool,
    /// `verify_client: optional` (or `required`): a request without a verified client
    /// certificate may only read.
    pub client_certificate: bool,
}

impl Access {
    /// The networks of `restapi.allowlist` entries: CIDR networks as written, addresses and
    /// host names resolved now (as Patroni does when it loads the configuration). What does not
    /// resolve is returned apart, for the caller to log; it allows nobody.
    pub fn resolve_allowlist(entries: &[String]) -> (Vec<Network>, Vec<String>) {
        let mut nets = Vec::new();
        let mut failed = Vec::new();
        for e in entries {
            if let Some(n) = Network::parse(e) {
                nets.push(n);
                continue;
            }
            if e.contains('/') {
                failed.push(format!("{e}: not a network"));
                continue;
            }
            match std::net::ToSocketAddrs::to_socket_addrs(&(e.as_str(), 0)) {
                Ok(addrs) => nets.extend(addrs.filter_map(|a| Network::new(a.ip(), None))),
                Err(err) => failed.push(format!("{e}: {err}")),
            }
        }
        (nets, failed)
    }
}

/// Whether this connection presented a client certificate that the TLS layer verified; the
/// server puts it in every request's extensions (absent: plain HTTP, none).
#[derive(Debug, Clone, Copy)]
pub struct ClientCertificate(pub bool);

/// The 403 answer for an unsafe request `access` refuses, `None` to go on. `members_count`:
/// whether the members' addresses are allowed for this operation (not for `POST /failsafe`,
/// as in Patroni).
pub(crate) async fn check(
    state: &ApiState,
    extensions: &Extensions,
    members_count: bool,
) -> Option<Response> {
    let access = &state.access;
    let members_count = members_count && access.include_members;
    if !access.allowlist.is_empty() || members_count {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip());
        let allowed = match peer {
            // A server that does not say where the request comes from cannot let it through.
            None => false,
            Some(ip) => {
                access.allowlist.iter().any(|n| n.contains(ip))
                    || (members_count
                        && member_networks(state).await.iter().any(|n| n.contains(ip)))
            }
        };
        if !allowed {
            return Some(text_response(StatusCode::FORBIDDEN, "Access is denied"));
        }
    }
    if access.client_certificate
        && !extensions
            .get::<ClientCertificate>()
            .is_some_and(|ClientCertificate(c)| *c)
    {
        return Some(text_response(
            StatusCode::FORBIDDEN,
            "client certificate required",
        ));
    }
    None
}

/// The addresses of the members' `api_url` hosts in the last DCS view, resolved now (a member
/// whose host does not resolve adds nothing).
async fn member_networks(state: &ApiState) -> Vec<Network> {
    let urls: Vec<String> = {
        let status = state.status.borrow();
        status
            .cluster
            .iter()
            .flat_map(|c| c.members.iter())
            .filter_map(|m| m.data.api_url.clone())
            .collect()
    };
    let mut nets = Vec::new();
    for url in urls {
        let Some(host) = url_host(&url) else {
            continue;
        };
        if let Some(n) = Network::parse(&host) {
            nets.push(n);
            continue;
        }
        // Not an IP address (parsed above), so no brackets are needed.
        match tokio::net::lookup_host(format!("{host}:0")).await {
            Ok(addrs) => nets.extend(addrs.filter_map(|a| Network::new(a.ip(), None))),
            Err(e) => tracing::debug!("allowlist_include_members: cannot resolve {host}: {e}"),
        }
    }
    nets
}

/// The host of `http(s)://host:port/...`, brackets of an IPv6 address removed.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.0,
        None => authority.split(':').next()?,
    };
    (!host.is_empty()).then(|| host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let n = Network::parse("10.1.0.0/16").unwrap();
        assert!(n.contains(ip("10.1.200.3")) && !n.contains(ip("10.2.0.1")));
        assert!(n.contains(ip("::ffff:10.1.0.9")));
        let one = Network::parse("127.0.0.1").unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        assert!(Network::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(!Network::parse("0.0.0.0/0").unwrap().contains(ip("::1")));
        assert!(Network::parse("fd00::/8").unwrap().contains(ip("fdab::1")));
        assert!(Network::parse("10.0.0.0/33").is_none());
        let (nets, failed) = Access::resolve_allowlist(&[
            "localhost".into(),
            "192.168.0.0/24".into(),
            "no-such-host.invalid".into(),
        ]);
        assert!(nets.iter().any(|n| n.contains(ip("127.0.0.1"))), "{nets:?}");
        assert!(nets.iter().any(|n| n.contains(ip("192.168.0.77"))));
        assert_eq!(failed.len(), 1);
        assert!(
            failed[0].starts_with("no-such-host.invalid: "),
            "{failed:?}"
        );
    }

    #[test]
    fn hosts_of_api_urls() {
        assert_eq!(
            url_host("http://10.0.0.1:8008/patroni").as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(
            url_host("https://[::1]:8008/patroni").as_deref(),
            Some("::1")
        );
        assert_eq!(
            url_host("https://db1.example.com/patroni").as_deref(),
            Some("db1.example.com")
        );
        assert_eq!(url_host("http:///x"), None);
    }
}
