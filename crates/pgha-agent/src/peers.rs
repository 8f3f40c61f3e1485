//! Asking the other members where they are, for the leader race (`GET /patroni`), and
//! whether they still follow us while the DCS is down (`POST /failsafe`).

use std::collections::BTreeMap;
use std::time::Duration;

use pgha_core::{FailsafeReply, PeerReply, PeerStatus};
use pgha_types::{failover_priority_of, nofailover_of, Cluster};
use serde_json::Value;
use tracing::{info, warn};

/// Queries every other member with an `api_url` concurrently, and the `extra` ones (name,
/// api_url); a peer that does not answer within `timeout` is reported without a reply.
pub async fn probe_peers(
    http: &reqwest::Client,
    cluster: &Cluster,
    me: &str,
    extra: Vec<(String, String)>,
    timeout: Duration,
) -> Vec<PeerStatus> {
    let asks = cluster
        .members
        .iter()
        .filter(|m| m.name != me)
        .filter_map(|m| Some((m.name.clone(), m.data.api_url.clone()?)))
        .chain(extra)
        .map(|(name, url)| async move {
            let reply = match http.get(&url).timeout(timeout).send().await {
                Ok(resp) => match resp.json::<Value>().await {
                    Ok(body) => {
                        info!("Got response from {name} {url}: {body}");
                        Some(parse_reply(&body))
                    }
                    Err(e) => {
                        info!("Request to {name} {url} returned an unreadable body: {e}");
                        None
                    }
                },
                Err(e) => {
                    info!("Request failed to {name}: GET {url} ({e})");
                    None
                }
            };
            PeerStatus { name, reply }
        });
    futures::future::join_all(asks).await
}

/// Sends `POST /failsafe` with `body` to every member of `topology` but `me`, concurrently,
/// each bounded by `timeout`. Accepted means 200 with the body `Accepted`, as Patroni counts it.
pub async fn post_failsafe(
    http: &reqwest::Client,
    topology: &BTreeMap<String, String>,
    me: &str,
    body: &Value,
    auth: Option<(&str, &str)>,
    timeout: Duration,
) -> Vec<FailsafeReply> {
    let asks =
        topology
            .iter()
            .filter(|(name, _)| name.as_str() != me)
            .map(|(name, api_url)| async move {
                let url = endpoint_url(api_url, "failsafe");
                let mut req = http.post(&url).json(body).timeout(timeout);
                if let Some((user, password)) = auth {
                    req = req.basic_auth(user, Some(password));
                }
                let (accepted, lsn) = match req.send().await {
                    Ok(resp) => {
                        let code = resp.status().as_u16();
                        let lsn = resp
                            .headers()
                            .get("lsn")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok());
                        match resp.text().await {
                            Ok(text) => {
                                info!("Got response from {name} {url}: {text}");
                                (code == 200 && text == "Accepted", lsn)
                            }
                            Err(e) => {
                                warn!("Request failed to {name}: POST {url} ({e})");
                                (false, None)
                            }
                        }
                    }
                    Err(e) => {
                        warn!("Request failed to {name}: POST {url} ({e})");
                        (false, None)
                    }
                };
                FailsafeReply {
                    name: name.clone(),
                    accepted,
                    lsn,
                }
            });
    futures::future::join_all(asks).await
}

/// `http://host:8008/patroni` → `http://host:8008/<endpoint>` (Patroni's member URLs point at
/// `/patroni`; other endpoints sit next to it).
fn endpoint_url(api_url: &str, endpoint: &str) -> String {
    match api_url.rfind("/patroni") {
        Some(at) => format!("{}/{endpoint}", &api_url[..at]),
        None => format!("{}/{endpoint}", api_url.trim_end_matches('/')),
    }
}

/// Reads a `/patroni` body (ours or a real Patroni's).
pub fn parse_reply(body: &Value) -> PeerReply {
    let xlog = &body["xlog"];
    let tags = body["tags"].as_object();
    let pos = |k: &str| xlog.get(k).and_then(Value::as_u64).unwrap_or(0);
    PeerReply {
        running: body["state"].as_str() == Some("running"),
        is_primary: matches!(body["role"].as_str(), Some("primary") | Some("master")),
        wal_position: pos("location")
            .max(pos("received_location"))
            .max(pos("replayed_location")),
        // Patroni counts a member without its required watchdog out, like nofailover.
        nofailover: tags.is_some_and(nofailover_of) || body["watchdog_failed"] == true,
        failover_priority: tags.map_or(1, failover_priority_of),
        timeline: body["timeline"].as_u64().unwrap_or(0) as u32,
    }
}

/// Another agent already runs under `me`: the member key of that name exists and its REST API
/// answers `GET /liveness` (any HTTP answer counts). A key that still carries our own
/// `api_url` is this agent's previous life (killed before its key expired): nothing else can
/// serve on the address we just bound, so it is not asked.
pub async fn name_taken(
    http: &reqwest::Client,
    cluster: &Cluster,
    me: &str,
    own_api_url: &str,
) -> Option<String> {
    let member = cluster.member(me)?;
    let api_url = member.data.api_url.as_deref()?;
    if api_url == own_api_url {
        return None;
    }
    let liveness = endpoint_url(api_url, "liveness");
    match http.get(&liveness).send().await {
        Ok(_) => Some(api_url.to_string()),
        Err(_) => None,
    }
}

/// How long a request to another member's REST API may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The agent's client to the other members as `cfg` sets it up (`ctl.*`, `restapi.cafile`):
/// at start and on every reload.
pub fn member_client(cfg: &pgha_config::Config) -> anyhow::Result<reqwest::Client> {
    use anyhow::Context as _;
    http_client(&crate::settings::peer_client_tls(cfg), REQUEST_TIMEOUT).context(
        "TLS for requests to the other members (ctl.cacert/certfile/keyfile, restapi.cafile)",
    )
}

/// The agent's HTTP client to the other members' REST APIs (http or https), every TLS file
/// read and checked now.
pub fn http_client(
    tls: &pgha_tls::ClientTls,
    timeout: Duration,
) -> anyhow::Result<reqwest::Client> {
    let tls = tls.client_config()?;
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .use_preconfigured_tls(tls)
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_replica_and_primary_bodies() {
        let r: Value = serde_json::from_str(r#"{"state":"running","role":"replica","xlog":{"received_location":200,"replayed_location":100,"paused":false},"timeline":3,"tags":{"nofailover":true}}"#).unwrap();
        let p = parse_reply(&r);
        assert!(p.running && !p.is_primary && p.nofailover);
        assert_eq!((p.wal_position, p.timeline), (200, 3));
        let m: Value =
            serde_json::from_str(r#"{"state":"running","role":"primary","xlog":{"location":500}}"#)
                .unwrap();
        assert!(parse_reply(&m).is_primary);
        assert!(!parse_reply(&Value::Null).running);
    }

    #[test]
    fn a_peer_without_its_required_watchdog_may_not_promote() {
        let r: Value = serde_json::from_str(
            r#"{"state":"running","role":"replica","xlog":{"received_location":900},"watchdog_failed":true}"#,
        )
        .unwrap();
        assert!(parse_reply(&r).nofailover);
    }

    #[test]
    fn endpoints_sit_next_to_patroni() {
        assert_eq!(
            endpoint_url("http://127.0.0.1:8008/patroni", "failsafe"),
            "http://127.0.0.1:8008/failsafe"
        );
        assert_eq!(
            endpoint_url("http://h:8008/", "failsafe"),
            "http://h:8008/failsafe"
        );
    }
}
