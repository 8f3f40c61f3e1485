//! Request dispatch, Patroni style: the method and the first path segment pick a named handler
//! (`GET /patroni/anything` is `/patroni`); other `GET` paths, and all `HEAD` / `OPTIONS`
//! requests, are health checks; unsafe methods go to [`crate::ops`].

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::Value;

use crate::cluster_json::empty_cluster_json;
use crate::health::{health_code, liveness_code, readiness_code};
use crate::query::Query;
use crate::wire::{error_page, json_response, status_only, text_response};
use crate::{cluster_json, metrics_text, ops, patroni_json, ApiState, NodeStatus};

#[derive(Clone)]
struct Shared {
    api: ApiState,
    /// Stands in for the HA loop's heartbeat until the first cycle completes.
    started: Instant,
}

/// The REST API. Serve it with `axum::serve(listener, router(state))`.
pub fn router(state: ApiState) -> Router {
    let shared = Arc::new(Shared {
        api: state,
        started: Instant::now(),
    });
    Router::new()
        .fallback(dispatch)
        .layer(axum::middleware::map_response_with_state(
            shared.clone(),
            extra_headers,
        ))
        .with_state(shared)
}

/// `restapi.http_extra_headers` / `https_extra_headers` on every answer; a configured header
/// replaces one of the same name the handler set.
async fn extra_headers(State(shared): State<Arc<Shared>>, mut r: Response) -> Response {
    for (name, value) in &shared.api.extra_headers {
        r.headers_mut().insert(name.clone(), value.clone());
    }
    r
}

async fn dispatch(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = Query::parse(parts.uri.query());
    let segment = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let method = parts.method;

    if matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return ops::handle(
            &shared.api,
            &method,
            segment,
            &parts.headers,
            &parts.extensions,
            body,
        )
        .await;
    }

    // Cheap: clones the Arc of the last published status; never waits for the HA loop.
    let mut status: Arc<NodeStatus> = shared.api.status.borrow().clone();
    if method == Method::GET && segment == "patroni" {
        status = with_fresh_wal(&shared.api, status).await;
    }
    let now = Instant::now();
    match method {
        Method::GET => get(&status, &path, segment, &query, shared.started, now),
        Method::HEAD | Method::OPTIONS => {
            let code = health_code(&status, &path, &query, shared.started, now);
            status_only(code_of(code))
        }
        _ => {
            let msg = format!("Unsupported method ('{}')", method.as_str());
            error_page(StatusCode::NOT_IMPLEMENTED, Some(&msg))
        }
    }
}

/// The status with the WAL positions postgres reports now, when it answers and is still in the
/// role the snapshot shows (a promotion in between keeps the snapshot as it is).
async fn with_fresh_wal(api: &ApiState, status: Arc<NodeStatus>) -> Arc<NodeStatus> {
    let Some(admin) = &api.admin else {
        return status;
    };
    if status.state != "running" {
        return status;
    }
    let Some(now) = admin.wal_positions().await else {
        return status;
    };
    let replica = status.received_location.is_some() || status.replayed_location.is_some();
    let mut s = (*status).clone();
    match (replica, now.in_recovery) {
        (true, true) => {
            s.received_location = now.received.or(s.received_location);
            s.replayed_location = now.replayed.or(s.replayed_location);
        }
        (false, false) if s.xlog_location.is_some() => {
            s.xlog_location = now.location.or(s.xlog_location);
        }
        _ => return status,
    }
    Arc::new(s)
}

fn get(
    s: &NodeStatus,
    path: &str,
    segment: &str,
    q: &Query,
    started: Instant,
    now: Instant,
) -> Response {
    match segment {
        "patroni" => json_response(StatusCode::OK, &patroni_json(s)),
        "cluster" => {
            let body = match &s.cluster {
                Some(c) => cluster_json(c, &s.scope),
                None => empty_cluster_json(&s.scope),
            };
            json_response(StatusCode::OK, &body)
        }
        "history" => {
            let lines = s
                .cluster
                .as_ref()
                .map(|c| c.history.iter().map(|h| h.to_json()).collect())
                .unwrap_or_default();
            json_response(StatusCode::OK, &Value::Array(lines))
        }
        "config" => match s.cluster.as_ref().and_then(|c| c.config.as_ref()) {
            Some(cfg) => json_response(StatusCode::OK, &Value::Object(cfg.0.clone())),
            None => error_page(StatusCode::BAD_GATEWAY, None),
        },
        "failsafe" => failsafe(s),
        // pgha's own: the other members' half of the proof that the leader is dead.
        "leader-refusing" => json_response(
            StatusCode::OK,
            &serde_json::json!({ "leader": s.leader_refusing }),
        ),
        "metrics" => {
            let mut r = text_response(StatusCode::OK, metrics_text(s));
            r.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("text/plain"),
            );
            r
        }
        "liveness" => status_only(code_of(liveness_code(s, started, now))),
        "readiness" => status_only(code_of(readiness_code(s, q, started, now))),
        _ => {
            let code = health_code(s, path, q, started, now);
            json_response(code_of(code), &patroni_json(s))
        }
    }
}

/// `GET /failsafe`: the content of the `failsafe` key (member name → api_url) when the last DCS
/// view (or, while the DCS is down, the last one seen) holds one that is a JSON object, else 502. As in Patroni the answer does not depend on
/// `failsafe_mode`: a key left from a time it was on is shown.
fn failsafe(s: &NodeStatus) -> Response {
    let key = match s.cluster.as_ref() {
        Some(c) => c.failsafe.as_ref(),
        // The DCS is down: the key as last seen, as Patroni keeps it.
        None => s.failsafe_key.as_ref(),
    };
    match key {
        Some(members) => {
            let map = members
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect();
            json_response(StatusCode::OK, &Value::Object(map))
        }
        None => error_page(StatusCode::BAD_GATEWAY, None),
    }
}

fn code_of(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Admin, LocalAnswer, LocalRequest, WalPositions};
    use futures::future::BoxFuture;
    use pgha_types::{Cluster, Failover};

    struct Wal(Option<WalPositions>);

    impl Admin for Wal {
        fn load_cluster(&self) -> BoxFuture<'_, Result<Cluster, String>> {
            Box::pin(async { Err("unused".into()) })
        }
        fn write_failover(&self, _: Option<Failover>) -> BoxFuture<'_, Result<(), String>> {
            Box::pin(async { Err("unused".into()) })
        }
        fn write_config(&self, _: String, _: Option<i64>) -> BoxFuture<'_, Result<bool, String>> {
            Box::pin(async { Err("unused".into()) })
        }
        fn local(&self, _: LocalRequest) -> BoxFuture<'_, LocalAnswer> {
            Box::pin(async {
                LocalAnswer {
                    status: 503,
                    text: "unused".into(),
                }
            })
        }
        fn loop_wait(&self) -> u64 {
            1
        }
        fn wal_positions(&self) -> BoxFuture<'_, Option<WalPositions>> {
            let w = self.0;
            Box::pin(async move { w })
        }
    }

    fn replica() -> NodeStatus {
        NodeStatus {
            state: "running".into(),
            received_location: Some(100),
            replayed_location: Some(90),
            ..NodeStatus::default()
        }
    }

    fn api(status: NodeStatus, wal: Option<WalPositions>) -> ApiState {
        let (_tx, rx) = tokio::sync::watch::channel(Arc::new(status));
        ApiState::new(rx, None).with_admin(Arc::new(Wal(wal)))
    }

    fn standby_at(received: u64, replayed: u64) -> Option<WalPositions> {
        Some(WalPositions {
            in_recovery: true,
            location: None,
            received: Some(received),
            replayed: Some(replayed),
        })
    }

    #[tokio::test]
    async fn a_replica_reports_its_positions_of_now_not_of_the_last_loop() {
        let a = api(replica(), standby_at(300, 250));
        let s = with_fresh_wal(&a, a.status.borrow().clone()).await;
        assert_eq!(
            (s.received_location, s.replayed_location),
            (Some(300), Some(250))
        );
    }

    #[tokio::test]
    async fn the_snapshot_stays_when_postgres_cannot_say_or_changed_role() {
        let a = api(replica(), None);
        let s = with_fresh_wal(&a, a.status.borrow().clone()).await;
        assert_eq!(s.received_location, Some(100));
        // Promoted since the snapshot: a replica's answer with a primary's position would mix
        // two roles, so the snapshot stays until the loop publishes the new role.
        let promoted = Some(WalPositions {
            in_recovery: false,
            location: Some(500),
            received: None,
            replayed: None,
        });
        let a = api(replica(), promoted);
        let s = with_fresh_wal(&a, a.status.borrow().clone()).await;
        assert_eq!((s.received_location, s.xlog_location), (Some(100), None));
    }
}
