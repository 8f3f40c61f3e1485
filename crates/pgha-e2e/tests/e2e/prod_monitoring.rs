//! Monitoring as an operator sets it up: `scripts/cluster.sh up --monitoring` (Prometheus on
//! 127.0.0.1:7090+K scraping every agent's /metrics and etcd's, Grafana on 7030+K when a Grafana
//! binary is found) and the dashboard `packaging/grafana/pgha.json`:
//! (a) every expression of every panel, with the template variables substituted as Grafana does
//!     with "All" selected, returns data from the lab's Prometheus (`/api/v1/query`), and every
//!     metric the dashboard names is one the lab really serves;
//! (b) the "Role per member" expression shows one primary, and follows a switchover (the new
//!     primary's role and timeline change in Prometheus);
//! (c) a headless Chromium screenshot is kept in `<target>/pgha-e2e-artifacts/dashboard.png`
//!     (with the queried values in `dashboard-queries.txt`): of the Grafana dashboard when the
//!     lab started Grafana, else of Prometheus's own graph page for the dashboard's key
//!     expressions (Debian has no Grafana package);
//! (d) `down` stops Prometheus (and Grafana) with the rest.
//!
//! Skipped, saying why, without Prometheus (Debian `prometheus`); the screenshot alone is skipped
//! without Chromium (Debian `chromium`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use pgha_e2e::client::runtime;
use pgha_e2e::cluster::exclusive_lock;
use pgha_e2e::proc::run_with_timeout;
use pgha_e2e::{locate_binaries, report, wait_until};
use serde_json::Value;

use crate::common::skip;
use crate::prod_lab::{listening_ports, missing_packages, reap_stale_labs, Lab, Shape};
use crate::prod_support::no_haproxy;

const NAME: &str = "monitoring_dashboard_queries_return_data";
/// The scope scripts/cluster.sh gives its cluster.
const LAB_SCOPE: &str = "pgha-lab";
pub(crate) const NODES: u16 = 3;
/// Panels whose first expression the Prometheus-only screenshot shows.
const KEY_PANELS: &[&str] = &[
    "Role history",
    "Replication lag",
    "Timeline",
    "HA loop duration",
];
/// What issue 12 asks the dashboard to show, by panel title.
const REQUIRED_PANELS: &[&str] = &[
    "Role per member",
    "Role history",
    "Replication lag",
    "Timeline",
    "HA loop duration",
    "DCS errors",
    "Pending restart",
    "Paused",
    "Failsafe active",
    "PostgreSQL running",
    "WAL positions",
];
/// Value of the role expression for the primary (see the dashboard's value mappings).
const ROLE_PRIMARY: f64 = 4.0;

fn dashboard_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/grafana/pgha.json")
}

pub(crate) fn prometheus_port(offset: u16) -> u16 {
    7090 + offset
}

fn grafana_port(offset: u16) -> u16 {
    7030 + offset
}

/// `<target>/pgha-e2e-artifacts` (the test binary is `<target>/<profile>/deps/e2e-<hash>`), or
/// $PGHA_E2E_ARTIFACTS.
fn artifacts_dir() -> Result<PathBuf> {
    if let Ok(d) = std::env::var("PGHA_E2E_ARTIFACTS") {
        return Ok(PathBuf::from(d));
    }
    let exe = std::env::current_exe()?;
    let target = exe
        .ancestors()
        .nth(3)
        .ok_or_else(|| anyhow!("no target directory above {}", exe.display()))?;
    Ok(target.join("pgha-e2e-artifacts"))
}

/// A program on PATH (or at an absolute path), if present.
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    if name.starts_with('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// One query of one panel.
#[derive(Debug, Clone)]
struct PanelQuery {
    panel: String,
    ref_id: String,
    expr: String,
}

/// Panels in order, those inside collapsed rows included.
fn all_panels(dash: &Value) -> Vec<&Value> {
    fn walk<'a>(ps: &'a [Value], out: &mut Vec<&'a Value>) {
        for p in ps {
            out.push(p);
            if let Some(inner) = p.get("panels").and_then(Value::as_array) {
                walk(inner, out);
            }
        }
    }
    let mut out = Vec::new();
    if let Some(ps) = dash.get("panels").and_then(Value::as_array) {
        walk(ps, &mut out);
    }
    out
}

/// An expression as Grafana sends it with `scope` selected and every member ("All", whose
/// allValue is `.*`); Grafana's interval variables get the values of a 5 s scrape interval.
/// Any `$` left is a variable this test does not know: an error, not a silent pass.
fn substitute(expr: &str, scope: &str) -> Result<String> {
    let mut e = expr.to_string();
    for (var, value) in [
        ("${scope}", scope),
        ("$scope", scope),
        ("${member}", ".*"),
        ("$member", ".*"),
        ("$__rate_interval", "1m"),
        ("$__interval", "5s"),
        ("$__range", "5m"),
    ] {
        e = e.replace(var, value);
    }
    ensure!(
        !e.contains('$'),
        "unknown template variable in {expr:?} (after substitution: {e:?})"
    );
    Ok(e)
}

/// Every query of the dashboard, substituted.
fn dashboard_queries(dash: &Value, scope: &str) -> Result<Vec<PanelQuery>> {
    let mut out = Vec::new();
    for p in all_panels(dash) {
        let title = p["title"].as_str().unwrap_or_default().to_string();
        for t in p
            .get("targets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let expr = t["expr"]
                .as_str()
                .ok_or_else(|| anyhow!("panel {title:?}: a target without expr"))?;
            out.push(PanelQuery {
                panel: title.clone(),
                ref_id: t["refId"].as_str().unwrap_or_default().to_string(),
                expr: substitute(expr, scope)?,
            });
        }
    }
    Ok(out)
}

/// Metric names (`patroni_*`, `pgha_*`, `etcd_*`) an expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut i = 0;
    while i < bytes.len() {
        if is_ident(bytes[i]) && (i == 0 || !is_ident(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && is_ident(bytes[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            // A label value inside quotes is no metric; the dashboard quotes only variables.
            let quoted = start > 0 && bytes[start - 1] == b'"';
            if !quoted
                && ["patroni_", "pgha_", "etcd_"]
                    .iter()
                    .any(|p| word.starts_with(p))
            {
                out.insert(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The structure Grafana needs to import the file as is, and the panels issue 12 lists.
fn check_dashboard_shape(dash: &Value) -> Result<()> {
    ensure!(
        dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion missing or too old: {}",
        dash["schemaVersion"]
    );
    ensure!(dash["uid"].as_str() == Some("pgha"), "uid: {}", dash["uid"]);
    ensure!(dash["title"].as_str().is_some(), "no title");
    ensure!(
        dash.get("id").is_none_or(Value::is_null),
        "a dashboard to import carries no id"
    );
    let vars = dash["templating"]["list"]
        .as_array()
        .ok_or_else(|| anyhow!("no templating.list"))?;
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .ok_or_else(|| anyhow!("no template variable {name}"))
    };
    let ds = var("datasource")?;
    ensure!(
        ds["type"] == "datasource" && ds["query"] == "prometheus",
        "datasource variable: {ds}"
    );
    for name in ["scope", "member"] {
        let v = var(name)?;
        ensure!(
            v["type"] == "query"
                && v["datasource"]["uid"] == "${datasource}"
                && v["query"]
                    .as_str()
                    .is_some_and(|q| q.starts_with("label_values(")),
            "variable {name}: {v}"
        );
    }
    let mut ids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for p in all_panels(dash) {
        let title = p["title"].as_str().unwrap_or_default();
        let id = p["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("panel {title:?} has no id"))?;
        ensure!(ids.insert(id), "panel id {id} used twice");
        ensure!(
            ["h", "w", "x", "y"]
                .iter()
                .all(|k| p["gridPos"][k].is_u64()),
            "panel {title:?} has no gridPos"
        );
        titles.insert(title.to_string());
        if p["type"] == "row" {
            continue;
        }
        ensure!(
            p["datasource"]["uid"] == "${datasource}",
            "panel {title:?} does not use the datasource variable: {}",
            p["datasource"]
        );
        let targets = p["targets"]
            .as_array()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| anyhow!("panel {title:?} has no query"))?;
        for t in targets {
            ensure!(
                t["datasource"]["uid"] == "${datasource}" && t["refId"].is_string(),
                "panel {title:?}: target {t}"
            );
        }
    }
    for want in REQUIRED_PANELS {
        ensure!(titles.contains(*want), "no panel titled {want:?}");
    }
    Ok(())
}

fn http_client() -> &'static reqwest::Client {
    static C: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("build the HTTP client")
    })
}

/// GET 127.0.0.1:`port``path` with `query` parameters; the body as JSON.
fn get_json(port: u16, path: &str, query: &[(&str, &str)]) -> Result<Value> {
    let url = format!("http://127.0.0.1:{port}{path}");
    runtime().block_on(async {
        let resp = http_client()
            .get(&url)
            .query(query)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let body = resp.text().await?;
        ensure!(status.is_success(), "GET {url} {query:?}: {status}: {body}");
        serde_json::from_str(&body).with_context(|| format!("GET {url}: not JSON: {body}"))
    })
}

/// One instant-query result: the series' labels and value.
#[derive(Debug, Clone)]
struct Series {
    labels: serde_json::Map<String, Value>,
    value: f64,
}

/// `/api/v1/query?query=expr` (an instant vector or a scalar).
fn prom_query(port: u16, expr: &str) -> Result<Vec<Series>> {
    let v = get_json(port, "/api/v1/query", &[("query", expr)])?;
    ensure!(v["status"] == "success", "query {expr:?}: {v}");
    let data = &v["data"];
    let parse = |x: &Value| -> Result<f64> {
        x.as_str()
            .ok_or_else(|| anyhow!("value {x}"))?
            .parse::<f64>()
            .map_err(|e| anyhow!("value {x}: {e}"))
    };
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .ok_or_else(|| anyhow!("no result: {v}"))?
            .iter()
            .map(|s| {
                Ok(Series {
                    labels: s["metric"].as_object().cloned().unwrap_or_default(),
                    value: parse(&s["value"][1])?,
                })
            })
            .collect(),
        Some("scalar") => Ok(vec![Series {
            labels: Default::default(),
            value: parse(&data["result"][1])?,
        }]),
        other => bail!("query {expr:?}: result type {other:?}"),
    }
}

/// `{name: value}` of a per-member expression.
fn by_member(series: &[Series]) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = series
        .iter()
        .map(|s| {
            (
                s.labels
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                s.value,
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Every active target of the lab's Prometheus is up: one per agent (job pgha) and the etcd
/// member (job etcd).
pub(crate) fn wait_targets_up(port: u16) -> Result<()> {
    wait_until(
        "Prometheus to scrape every agent and etcd",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let v = get_json(port, "/api/v1/targets", &[("state", "active")])?;
            let targets = v["data"]["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let seen: Vec<String> = targets
                .iter()
                .map(|t| {
                    format!(
                        "{} {} {} {}",
                        t["labels"]["job"], t["labels"]["instance"], t["health"], t["lastError"]
                    )
                })
                .collect();
            let up = |job: &str| {
                targets
                    .iter()
                    .filter(|t| t["labels"]["job"] == job && t["health"] == "up")
                    .count()
            };
            ensure!(
                up("pgha") == NODES as usize && up("etcd") == 1,
                "targets: {seen:?}"
            );
            Ok(())
        },
    )
}

/// A port offset (as prod_lab's free_offset) where the lab's ports and Prometheus's and
/// Grafana's are all free.
pub(crate) fn monitoring_offset() -> Result<u16> {
    let listening = listening_ports();
    let free = |p: u16| !listening.contains(&p) && TcpListener::bind(("127.0.0.1", p)).is_ok();
    for offset in (20000..=24000).step_by(250) {
        let shape = Shape {
            nodes: NODES,
            etcd: 1,
            offset,
        };
        if shape.ports().iter().all(|(p, _)| free(*p))
            && free(prometheus_port(offset))
            && free(grafana_port(offset))
        {
            return Ok(offset);
        }
    }
    bail!("no port offset in 20000..=24000 leaves every lab and monitoring port free")
}

/// Waits until every query returns at least one series; returns them with their results.
fn wait_all_queries(port: u16, queries: &[PanelQuery]) -> Result<Vec<(PanelQuery, Vec<Series>)>> {
    wait_until(
        "every dashboard query to return data from Prometheus",
        Duration::from_secs(90),
        Duration::from_secs(2),
        || {
            let mut out = Vec::new();
            let mut empty = Vec::new();
            for q in queries {
                let res = prom_query(port, &q.expr)?;
                if res.is_empty() {
                    empty.push(format!("{} [{}]: {}", q.panel, q.ref_id, q.expr));
                }
                out.push((q.clone(), res));
            }
            ensure!(empty.is_empty(), "no data for {empty:#?}");
            Ok(out)
        },
    )
}

/// A PNG from Chromium: `--screenshot` of `url` after the page's scripts ran.
fn screenshot(chromium: &Path, url: &str, out: &Path, size: (u32, u32)) -> Result<()> {
    let profile = out.with_extension("chromium-profile");
    let _ = fs::remove_dir_all(&profile);
    fs::create_dir_all(&profile)?;
    let _ = fs::remove_file(out);
    let res = run_with_timeout(
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--window-size={},{}", size.0, size.1))
            // Time for the page's own queries to Prometheus/Grafana to come back and render.
            .arg("--virtual-time-budget=20000")
            .arg(format!("--screenshot={}", out.display()))
            .arg(url),
        None,
        Duration::from_secs(120),
    );
    let _ = fs::remove_dir_all(&profile);
    let res = res?;
    let png = fs::read(out).with_context(|| {
        format!(
            "chromium wrote no {} ({}): {}",
            out.display(),
            res.status,
            String::from_utf8_lossy(&res.stderr)
        )
    })?;
    ensure!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
        "{} is no real screenshot ({} bytes)",
        out.display(),
        png.len()
    );
    Ok(())
}

/// Prometheus's classic graph page with one graph per key panel, over the last `range`.
fn prometheus_graph_url(port: u16, queries: &[PanelQuery], range: &str) -> Result<String> {
    let mut params: Vec<(String, String)> = Vec::new();
    for (i, title) in KEY_PANELS.iter().enumerate() {
        let q = queries
            .iter()
            .find(|q| q.panel == *title)
            .ok_or_else(|| anyhow!("no panel {title:?}"))?;
        params.push((format!("g{i}.expr"), q.expr.clone()));
        params.push((format!("g{i}.tab"), "0".into()));
        params.push((format!("g{i}.range_input"), range.into()));
    }
    let url = reqwest::Url::parse_with_params(
        &format!("http://127.0.0.1:{port}/classic/graph"),
        &params,
    )?;
    Ok(url.to_string())
}

fn run_scenario(lab: &mut Lab, chromium: Option<&Path>) -> Result<String> {
    let offset = lab.shape.offset;
    let prom = prometheus_port(offset);
    let t0 = Instant::now();
    let out = lab.up(&["--monitoring"], &[])?;
    let up_secs = t0.elapsed().as_secs_f64();
    ensure!(
        out.contains(&format!("prometheus: http://127.0.0.1:{prom}/")),
        "up --monitoring does not name Prometheus's address:\n{out}"
    );
    let grafana = lab.dir.join("grafana.pid").is_file();
    ensure!(
        grafana || out.contains("starting Prometheus only"),
        "without Grafana, up --monitoring must say it starts Prometheus only:\n{out}"
    );
    let leader = lab.wait_healthy(Duration::from_secs(10))?;

    // (a) every query has data, every metric named is served.
    let dash: Value = serde_json::from_str(&fs::read_to_string(dashboard_path())?)?;
    check_dashboard_shape(&dash)?;
    let queries = dashboard_queries(&dash, LAB_SCOPE)?;
    wait_targets_up(prom)?;
    let served: BTreeSet<String> = get_json(prom, "/api/v1/label/__name__/values", &[])?["data"]
        .as_array()
        .ok_or_else(|| anyhow!("no metric names"))?
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    for q in &queries {
        let unknown: Vec<String> = metric_names(&q.expr)
            .into_iter()
            .filter(|m| !served.contains(m))
            .collect();
        ensure!(
            unknown.is_empty(),
            "panel {:?} reads {unknown:?}, which the lab does not serve",
            q.panel
        );
    }
    let results = wait_all_queries(prom, &queries)?;
    let t_data = t0.elapsed().as_secs_f64();

    // (b) the role panel: one primary, the leader pghactl names; then it follows a switchover.
    let role_expr = &queries
        .iter()
        .find(|q| q.panel == "Role per member")
        .ok_or_else(|| anyhow!("no role panel"))?
        .expr;
    let timeline_expr = &queries
        .iter()
        .find(|q| q.panel == "Timeline")
        .ok_or_else(|| anyhow!("no timeline panel"))?
        .expr;
    let roles = by_member(&prom_query(prom, role_expr)?);
    let primaries: Vec<&str> = roles
        .iter()
        .filter(|(_, v)| *v == ROLE_PRIMARY)
        .map(|(n, _)| n.as_str())
        .collect();
    ensure!(
        primaries == [leader.member.as_str()] && roles.len() == NODES as usize,
        "role per member {roles:?}, pghactl's leader {}",
        leader.member
    );
    let candidate = roles
        .iter()
        .map(|(n, _)| n.clone())
        .find(|n| *n != leader.member)
        .ok_or_else(|| anyhow!("no other member"))?;
    let sw = run_with_timeout(
        Command::new(lab.dir.join("pghactl"))
            .arg("-c")
            .arg(lab.dir.join("node1.yml"))
            .args([
                "switchover",
                LAB_SCOPE,
                "--leader",
                &leader.member,
                "--candidate",
                &candidate,
                "--force",
            ]),
        None,
        Duration::from_secs(90),
    )?;
    ensure!(
        sw.status.success(),
        "pghactl switchover: {}{}",
        String::from_utf8_lossy(&sw.stdout),
        String::from_utf8_lossy(&sw.stderr)
    );
    let t_sw = Instant::now();
    wait_until(
        "Prometheus to show the new primary on timeline 2",
        Duration::from_secs(90),
        Duration::from_secs(1),
        || {
            let roles = by_member(&prom_query(prom, role_expr)?);
            let tl = by_member(&prom_query(prom, timeline_expr)?);
            let primaries: Vec<&String> = roles
                .iter()
                .filter(|(_, v)| *v == ROLE_PRIMARY)
                .map(|(n, _)| n)
                .collect();
            let cand_tl = tl.iter().find(|(n, _)| *n == candidate).map(|(_, v)| *v);
            ensure!(
                primaries == [&candidate] && cand_tl == Some(2.0),
                "roles {roles:?}, timelines {tl:?}"
            );
            Ok(())
        },
    )?;
    let sw_secs = t_sw.elapsed().as_secs_f64();
    lab.wait_healthy(Duration::from_secs(60))?;

    // (c) the screenshot and what the queries returned, kept for a reviewer.
    let dir = artifacts_dir()?;
    fs::create_dir_all(&dir)?;
    let mut text = format!(
        "Dashboard packaging/grafana/pgha.json against a lab's Prometheus (127.0.0.1:{prom}), \
         scope {LAB_SCOPE}, all members; switchover {} -> {candidate} after the first check.\n\n",
        leader.member
    );
    for (q, res) in &results {
        let _ = writeln!(text, "[{}] {} ({})", q.panel, q.ref_id, q.expr);
        for s in res {
            let labels: Vec<String> = s
                .labels
                .iter()
                .filter(|(k, _)| !["job", "instance", "scope"].contains(&k.as_str()))
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            let _ = writeln!(text, "    {{{}}} {}", labels.join(","), s.value);
        }
    }
    fs::write(dir.join("dashboard-queries.txt"), &text)?;
    let png = dir.join("dashboard.png");
    let shot = match chromium {
        None => "screenshot skipped (no chromium: apt-get install chromium)".to_string(),
        Some(chromium) if grafana => {
            let url = format!(
                "http://127.0.0.1:{}/d/pgha/pgha?orgId=1&from=now-5m&to=now&kiosk",
                grafana_port(offset)
            );
            screenshot(chromium, &url, &png, (1600, 2000))?;
            format!("Grafana dashboard screenshot {}", png.display())
        }
        Some(chromium) => {
            let url = prometheus_graph_url(prom, &queries, "1m")?;
            screenshot(chromium, &url, &png, (1400, 3100))?;
            format!(
                "no Grafana here: screenshot of Prometheus's graph page for {KEY_PANELS:?} {}",
                png.display()
            )
        }
    };

    // (d) down stops Prometheus (and Grafana) too.
    let pids = lab.recorded_pids();
    ensure!(
        pids.contains_key("prometheus"),
        "no prometheus.pid in {}: {pids:?}",
        lab.dir.display()
    );
    let down_secs = lab.down_and_check()?;
    let listening = listening_ports();
    for (port, what) in [(prom, "Prometheus"), (grafana_port(offset), "Grafana")] {
        ensure!(
            !listening.contains(&port),
            "{what}'s port {port} still listens after down"
        );
    }
    lab.passed = true;
    Ok(format!(
        "up --monitoring {up_secs:.1}s, all {} dashboard queries had data {t_data:.1}s after up \
         started, roles/timeline followed a switchover in {sw_secs:.1}s, down {down_secs:.1}s; {shot}",
        queries.len()
    ))
}

#[test]
fn monitoring_dashboard_queries_return_data() -> Result<()> {
    if skip(NAME) || no_haproxy(NAME) || missing_packages(NAME) {
        return Ok(());
    }
    if find_program("prometheus").is_none() {
        report(&format!(
            "{NAME}: skipped (no prometheus: apt-get install prometheus)"
        ));
        return Ok(());
    }
    let chromium = find_program("chromium");
    if chromium.is_none() {
        report(&format!(
            "{NAME}: the screenshot will be skipped (no chromium: apt-get install chromium)"
        ));
    }
    let _lock = exclusive_lock()?;
    let bin = locate_binaries()?;
    reap_stale_labs(&bin);
    let shape = Shape {
        nodes: NODES,
        etcd: 1,
        offset: monitoring_offset()?,
    };
    let mut lab = Lab::new("monitoring", shape, &bin)?;
    let summary = run_scenario(&mut lab, chromium.as_deref())?;
    report(&format!("monitoring: {summary}"));
    Ok(())
}

/// The file itself, without a lab: importable structure, the panels issue 12 lists, and
/// expressions that substitute to plain PromQL naming only metrics pgha, Patroni or etcd serve.
#[test]
fn monitoring_dashboard_file_is_importable() -> Result<()> {
    let dash: Value = serde_json::from_str(&fs::read_to_string(dashboard_path())?)
        .context("packaging/grafana/pgha.json is not JSON")?;
    check_dashboard_shape(&dash)?;
    let queries = dashboard_queries(&dash, LAB_SCOPE)?;
    ensure!(queries.len() >= REQUIRED_PANELS.len(), "{queries:?}");
    for q in &queries {
        ensure!(
            !metric_names(&q.expr).is_empty(),
            "panel {:?} reads no pgha/patroni/etcd metric: {}",
            q.panel,
            q.expr
        );
    }
    Ok(())
}

#[test]
fn monitoring_metric_names_and_substitution() -> Result<()> {
    assert_eq!(
        metric_names(
            r#"max by (scope) (patroni_xlog_location{scope=~"$scope"}) - on (scope) rate(pgha_ha_loop_cycles_total[1m])"#
        ),
        ["patroni_xlog_location", "pgha_ha_loop_cycles_total"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        substitute(
            r#"increase(pgha_dcs_errors_total{scope=~"$scope",name=~"$member"}[$__rate_interval])"#,
            "pgha-lab"
        )?,
        r#"increase(pgha_dcs_errors_total{scope=~"pgha-lab",name=~".*"}[1m])"#
    );
    assert!(substitute("up{x=\"$unknown\"}", "s").is_err());
    Ok(())
}
