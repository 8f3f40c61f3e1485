//! The lab `scripts/cluster.sh up` made, as the drill sees it: its shape (lab.env), each node's
//! ports, data directory and superuser from node<i>.yml, and the processes it runs, found only
//! through the files the lab records (node<i>.pid, the data directory's postmaster.pid,
//! etcd<k>.pid) and checked before any signal, so a recycled PID is never hit. A lab made with
//! `up --netns` runs each node in its own network namespace; the drill names them as the script
//! does (`pgha-b<B>-node<i>`, root-side veth `pghab<B>n<i>`, B from lab.env).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_yaml_ng::Value;

use crate::config::{self, CtlConfig};

const SCRIPT_BOUND: Duration = Duration::from_secs(60);
/// add-node waits up to 120 s for the clone, restarts HAProxy (up to 30 s more).
const ADD_NODE_BOUND: Duration = Duration::from_secs(200);
const TOOL_BOUND: Duration = Duration::from_secs(60);

/// One PostgreSQL + agent pair of the lab.
#[derive(Debug, Clone)]
pub struct Node {
    /// 1-based, as cluster.sh numbers them (`start-node I`).
    pub index: usize,
    pub name: String,
    pub host: String,
    pub pg_port: u16,
    pub rest_port: u16,
    pub data_dir: PathBuf,
    pub user: String,
    pub password: Option<String>,
    /// The superuser's libpq options (`sslmode`, `sslcert`, ...) of node<i>.yml.
    pub pg_options: std::collections::BTreeMap<String, String>,
    /// `https` when the REST API has a certificate (a `cluster.sh up --tls` lab).
    pub rest_scheme: &'static str,
    /// How pghactl talks to the REST APIs (node1.yml's `ctl.*`).
    pub rest_tls: pgha_tls::ClientTls,
    /// PostgreSQL's programs (`postgresql.bin_dir`, for initdb).
    pub bin_dir: PathBuf,
    /// The agent's log, node<i>.log.
    pub log: PathBuf,
    /// In a netns lab: the node's namespace and the root-side end of its veth pair.
    pub net: Option<NodeNet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNet {
    pub namespace: String,
    pub veth: String,
}

impl NodeNet {
    /// The names `cluster.sh up --netns` gives node `index` of network block `block`.
    pub fn of(block: u16, index: usize) -> NodeNet {
        NodeNet {
            namespace: format!("pgha-b{block}-node{index}"),
            veth: format!("pghab{block}n{index}"),
        }
    }
}

/// What lab.env records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabEnv {
    pub nodes: usize,
    pub etcd_members: usize,
    /// The network block of a netns lab.
    pub netns_block: Option<u16>,
}

#[derive(Debug)]
pub struct Lab {
    /// The lab directory; for a cluster given by its nodes' configuration files, the first
    /// file's directory (shown only).
    pub dir: PathBuf,
    pub nodes: Vec<Node>,
    pub etcd_members: usize,
    pub netns_block: Option<u16>,
    /// Set when the cluster is not a lab but the configuration files of its nodes on this host.
    pub configs: Option<ConfigTarget>,
    /// pghactl's view of node1.yml: the DCS endpoints and the cluster's key prefix.
    pub ctl: CtlConfig,
    pub scope: String,
}

/// A cluster on this host that no `cluster.sh` made, given by its nodes' configuration files
/// (pgha's or Patroni's): the agents are found by the file on their command line, they are
/// started again by the operator's `start_command`, etcd's processes by their PIDs.
#[derive(Debug, Clone)]
pub struct ConfigTarget {
    /// `node.index - 1` → that node's configuration file (canonical path).
    pub files: Vec<PathBuf>,
    /// A shell command starting one node's agent: `{name}`, `{index}` and `{config}` are
    /// replaced by the node's name, number (1-based, in the order given) and file.
    pub start_command: Option<String>,
    pub etcd: Vec<Proc>,
}

/// A process as it was when the drill signalled it: PID plus start time, so a later SIGCONT
/// or SIGKILL reaches that process and no other that got its PID meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    start: String,
}

impl Proc {
    /// `pid` if it is alive now (zombies are dead).
    pub fn of(pid: i32) -> Option<Proc> {
        proc_start(pid).map(|start| Proc { pid, start })
    }

    pub fn alive(&self) -> bool {
        proc_start(self.pid).as_deref() == Some(self.start.as_str())
    }

    /// Sends `sig` if this still is the same process; `false` when it is gone.
    pub fn signal(&self, sig: Signal) -> bool {
        self.alive() && kill(Pid::from_raw(self.pid), sig).is_ok()
    }

    /// Waits up to `bound` for the process to end.
    pub async fn wait_gone(&self, bound: Duration) -> bool {
        let until = tokio::time::Instant::now() + bound;
        while self.alive() {
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }
}

/// Field 22 of /proc/PID/stat (start time in clock ticks) of a live, non-zombie process.
fn proc_start(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(19).map(|s| s.to_string())
}

fn first_line_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

fn cmdline(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

/// `host:port` → (host, port).
fn host_port(s: &str, what: &str) -> Result<(String, u16)> {
    let (h, p) = s
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("{what} {s:?} has no port"))?;
    let port = p
        .parse()
        .with_context(|| format!("{what} {s:?}: bad port"))?;
    Ok((h.to_string(), port))
}

fn text<'a>(doc: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = doc;
    for k in path {
        v = v.get(*k)?;
    }
    v.as_str()
}

/// The numbers of lab.env the drill uses; anything else in it is ignored, as cluster.sh does.
pub fn parse_lab_env(text: &str) -> Result<LabEnv> {
    let (mut nodes, mut etcd, mut netns, mut block) = (None, None, false, 0u16);
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let Ok(n) = v.trim().parse::<usize>() else {
            continue;
        };
        match k.trim() {
            "NODES" => nodes = Some(n),
            "ETCD_MEMBERS" => etcd = Some(n),
            "NETNS" => netns = n == 1,
            "NETNS_BLOCK" => {
                block = u16::try_from(n).map_err(|_| anyhow!("lab.env: NETNS_BLOCK {n}"))?
            }
            _ => {}
        }
    }
    match (nodes, etcd) {
        (Some(n), Some(e)) if n >= 1 && e >= 1 => Ok(LabEnv {
            nodes: n,
            etcd_members: e,
            netns_block: netns.then_some(block),
        }),
        _ => bail!("lab.env lacks NODES or ETCD_MEMBERS"),
    }
}

/// One node from its configuration file;
/// `lab`: its directory (the data directory must lie in it) and netns block.
fn read_node(i: usize, yml: &Path, lab: Option<(&Path, Option<u16>)>) -> Result<Node> {
    let lab_dir = lab.map(|(d, _)| d);
    let raw =
        std::fs::read_to_string(yml).with_context(|| format!("cannot read {}", yml.display()))?;
    let doc: Value = serde_yaml_ng::from_str(&raw)
        .with_context(|| format!("{} is not valid YAML", yml.display()))?;
    let need = |path: &[&str]| {
        text(&doc, path).ok_or_else(|| anyhow!("{} lacks {}", yml.display(), path.join(".")))
    };
    // Where others reach the node: connect_address when set (listen may be `*:5432`).
    let reach = |section: &str| -> Result<(String, u16)> {
        match text(&doc, &[section, "connect_address"]) {
            Some(a) => host_port(a, &format!("{section}.connect_address")),
            None => {
                let (h, port) =
                    host_port(need(&[section, "listen"])?, &format!("{section}.listen"))?;
                let first = h.split(',').next().unwrap_or("").trim();
                let h = match first {
                    "" | "*" | "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
                    h => h,
                };
                Ok((h.to_string(), port))
            }
        }
    };
    let (host, pg_port) = reach("postgresql")?;
    let (_, rest_port) = reach("restapi")?;
    let data_dir = PathBuf::from(need(&["postgresql", "data_dir"])?);
    if let Some(dir) = lab_dir.filter(|d| !data_dir.starts_with(d)) {
        bail!(
            "{}: data_dir {} lies outside the lab {}",
            yml.display(),
            data_dir.display(),
            dir.display()
        );
    }
    let su = ["postgresql", "authentication", "superuser"];
    let pg_options = doc
        .get(su[0])
        .and_then(|v| v.get(su[1]))
        .and_then(|v| v.get(su[2]))
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
        .filter(|(k, _)| k.starts_with("ssl") || k == "gssencmode" || k == "channel_binding")
        .collect();
    let rest_scheme = if text(&doc, &["restapi", "certfile"]).is_some() {
        "https"
    } else {
        "http"
    };
    Ok(Node {
        index: i,
        name: need(&["name"])?.to_string(),
        host,
        pg_port,
        rest_port,
        data_dir,
        user: text(&doc, &[su[0], su[1], su[2], "username"])
            .unwrap_or("postgres")
            .to_string(),
        password: text(&doc, &[su[0], su[1], su[2], "password"]).map(str::to_string),
        pg_options,
        rest_scheme,
        rest_tls: pgha_tls::ClientTls::default(),
        bin_dir: PathBuf::from(
            text(&doc, &["postgresql", "bin_dir"]).unwrap_or("/usr/lib/postgresql/15/bin"),
        ),
        // The lab's node<i>.log; a cluster given by its files has no log the drill knows.
        log: lab_dir
            .map(|d| d.join(format!("node{i}.log")))
            .unwrap_or_default(),
        net: lab.and_then(|(_, b)| b).map(|b| NodeNet::of(b, i)),
    })
}

impl Lab {
    /// Reads the lab in `dir`; fails, touching nothing, when it is not one.
    pub fn open(dir: &Path) -> Result<Lab> {
        if !dir.is_dir() {
            bail!("lab directory {} does not exist", dir.display());
        }
        let dir = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        let env_file = dir.join("lab.env");
        let env_text = std::fs::read_to_string(&env_file).map_err(|_| {
            anyhow!(
                "{} is not a lab made by scripts/cluster.sh up (no lab.env)",
                dir.display()
            )
        })?;
        let env = parse_lab_env(&env_text)
            .with_context(|| format!("{} is not a usable lab", dir.display()))?;
        let (n, etcd_members) = (env.nodes, env.etcd_members);
        if !dir.join("cluster.sh").is_file() {
            bail!(
                "{} has no cluster.sh (the copy `scripts/cluster.sh up` installs since drills exist): \
                 run `PGHA_LAB_DIR={} scripts/cluster.sh up` once, it refreshes the lab's files",
                dir.display(),
                dir.display()
            );
        }
        let mut nodes = Vec::with_capacity(n);
        for i in 1..=n {
            let yml = dir.join(format!("node{i}.yml"));
            nodes.push(read_node(i, &yml, Some((&dir, env.netns_block)))?);
        }
        // The lab's own configuration, not PATRONI_* variables of whoever runs the drill.
        let no_env = |_: &str| None;
        let ctl = config::load(Some(&dir.join("node1.yml")), None, false, &no_env)?;
        let scope = ctl
            .scope
            .clone()
            .ok_or_else(|| anyhow!("node1.yml has no scope"))?;
        for n in &mut nodes {
            n.rest_tls = ctl.rest_tls.clone();
        }
        Ok(Lab {
            dir,
            nodes,
            etcd_members,
            netns_block: env.netns_block,
            configs: None,
            ctl,
            scope,
        })
    }

    /// A cluster given by the configuration files of its nodes, all on this host; fails,
    /// touching nothing, on a file that cannot be read, two files naming one node, an etcd PID
    /// that is no running etcd.
    pub fn from_configs(
        files: &[PathBuf],
        start_command: Option<String>,
        etcd_pids: &[i32],
    ) -> Result<Lab> {
        let Some(first) = files.first() else {
            bail!(
                "give --lab DIR or the nodes' configuration files (--config FILE, once per node)"
            );
        };
        let mut nodes: Vec<Node> = Vec::with_capacity(files.len());
        let mut canon: Vec<PathBuf> = Vec::with_capacity(files.len());
        for (i, f) in files.iter().enumerate() {
            let c = f
                .canonicalize()
                .with_context(|| format!("configuration file {}", f.display()))?;
            let node = read_node(i + 1, &c, None)?;
            if let Some(same) = nodes.iter().find(|n| n.name == node.name) {
                bail!(
                    "{} and {} both configure node {}",
                    canon[same.index - 1].display(),
                    c.display(),
                    node.name
                );
            }
            nodes.push(node);
            canon.push(c);
        }
        let mut etcd = Vec::with_capacity(etcd_pids.len());
        for &pid in etcd_pids {
            let is_etcd = cmdline(pid).is_some_and(|c| {
                c.split_whitespace()
                    .next()
                    .is_some_and(|a| a.rsplit('/').next() == Some("etcd"))
            });
            match Proc::of(pid).filter(|_| is_etcd) {
                Some(p) => etcd.push(p),
                None => bail!("--etcd-pid {pid}: no etcd process runs with that PID"),
            }
        }
        let no_env = |_: &str| None;
        let ctl = config::load(Some(&canon[0]), None, false, &no_env)?;
        let scope = ctl
            .scope
            .clone()
            .ok_or_else(|| anyhow!("{} has no scope", canon[0].display()))?;
        let endpoints = ctl.etcd()?.endpoints().len();
        if !etcd.is_empty() && etcd.len() != endpoints {
            bail!(
                "{} --etcd-pid given, but the DCS of {} has {endpoints} endpoint(s): give one PID per etcd member",
                etcd.len(),
                canon[0].display()
            );
        }
        for n in &mut nodes {
            n.rest_tls = ctl.rest_tls.clone();
        }
        let dir = canon[0]
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| first.clone());
        Ok(Lab {
            dir,
            nodes,
            etcd_members: etcd.len(),
            netns_block: None,
            configs: Some(ConfigTarget {
                files: canon,
                start_command,
                etcd,
            }),
            ctl,
            scope,
        })
    }

    /// What the drill works on, for its messages.
    pub fn describe(&self) -> String {
        match &self.configs {
            None => format!("lab {}", self.dir.display()),
            Some(c) => format!(
                "cluster {} ({})",
                self.scope,
                c.files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Whether agents the drill ended can be started again.
    pub fn can_restart_agents(&self) -> bool {
        self.configs
            .as_ref()
            .is_none_or(|c| c.start_command.is_some())
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// A PID from `file` whose process is alive and mentions the lab directory on its command
    /// line (as cluster.sh's `live_pid` checks).
    fn live_pid(&self, file: &Path) -> Option<Proc> {
        let pid = first_line_pid(file)?;
        let needle = format!("{}/", self.dir.display());
        cmdline(pid)
            .filter(|c| c.contains(&needle))
            .and_then(|_| Proc::of(pid))
    }

    pub fn agent(&self, node: &Node) -> Option<Proc> {
        match &self.configs {
            None => self.live_pid(&self.dir.join(format!("node{}.pid", node.index))),
            Some(c) => agent_with_config(&c.files[node.index - 1]),
        }
    }

    /// The postmaster from postmaster.pid, if that process runs in the data directory.
    pub fn postmaster(&self, node: &Node) -> Option<Proc> {
        let pid = first_line_pid(&node.data_dir.join("postmaster.pid"))?;
        (cwd_of(pid)? == canonical(&node.data_dir)).then_some(())?;
        Proc::of(pid)
    }

    /// Every process running in the node's data directory: the postmaster and its children
    /// (backends, walsender, checkpointer...) all have it as working directory.
    pub fn postgres_processes(&self, node: &Node) -> Vec<Proc> {
        let data = canonical(&node.data_dir);
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| cwd_of(pid).is_some_and(|c| c == data))
            .filter_map(Proc::of)
            .collect()
    }

    pub fn etcd_processes(&self) -> Vec<Proc> {
        if let Some(c) = &self.configs {
            return c.etcd.iter().filter(|p| p.alive()).cloned().collect();
        }
        (1..=self.etcd_members)
            .filter_map(|k| self.live_pid(&self.dir.join(format!("etcd{k}.pid"))))
            .collect()
    }

    /// `cluster.sh start-node I` from the lab's own copy of the script: the agent starts
    /// exactly as `up` starts it (user, session, log, pid file).
    pub async fn start_node(&self, node: &Node) -> Result<()> {
        let Some(c) = &self.configs else {
            return self
                .script(&["start-node", &node.index.to_string()], SCRIPT_BOUND)
                .await;
        };
        let Some(template) = &c.start_command else {
            bail!(
                "cannot start agent {} again: no --start-command was given",
                node.name
            );
        };
        let command = start_command_for(template, node, &c.files[node.index - 1]);
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", &command]);
        run_bounded(cmd, &format!("`{command}`"), SCRIPT_BOUND).await
    }

    /// `cluster.sh add-node`: returns once the new node streams (the script waits for it).
    pub async fn add_node(&self) -> Result<()> {
        self.script(&["add-node"], ADD_NODE_BOUND).await
    }

    pub async fn remove_node(&self, index: usize) -> Result<()> {
        self.script(&["remove-node", &index.to_string()], SCRIPT_BOUND)
            .await
    }

    /// How many nodes lab.env records now (add-node and remove-node change it).
    pub fn recorded_nodes(&self) -> Result<usize> {
        let text = std::fs::read_to_string(self.dir.join("lab.env"))
            .with_context(|| format!("cannot read {}/lab.env", self.dir.display()))?;
        Ok(parse_lab_env(&text)?.nodes)
    }

    async fn script(&self, args: &[&str], bound: Duration) -> Result<()> {
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg(self.dir.join("cluster.sh"))
            .args(args)
            .env("PGHA_LAB_DIR", &self.dir);
        for v in ["PGHA_LAB_NODES", "PGHA_LAB_ETCD", "PGHA_LAB_PORT_OFFSET"] {
            cmd.env_remove(v);
        }
        run_bounded(cmd, &format!("cluster.sh {}", args.join(" ")), bound).await
    }
}

/// Runs a program (ip, iptables, initdb) with a bound; its stderr in the error.
pub async fn run_tool(program: &str, args: &[&str]) -> Result<()> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args);
    run_bounded(cmd, &format!("{program} {}", args.join(" ")), TOOL_BOUND).await
}

/// Runs `cmd` (no stdin, killed if the bound passes) named `what` in errors; a non-zero exit
/// is an error with its stderr.
async fn run_bounded(mut cmd: tokio::process::Command, what: &str, bound: Duration) -> Result<()> {
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(bound, cmd.output())
        .await
        .map_err(|_| anyhow!("{what} did not finish in {}s", bound.as_secs()))?
        .with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `template` with `{name}`, `{index}` and `{config}` of `node` filled in.
fn start_command_for(template: &str, node: &Node, config: &Path) -> String {
    template
        .replace("{name}", &node.name)
        .replace("{index}", &node.index.to_string())
        .replace("{config}", &config.display().to_string())
}

/// The running agent (pgha, or Patroni's `patroni` script) whose command line names `config`.
fn agent_with_config(config: &Path) -> Option<Proc> {
    let me = std::process::id() as i32;
    let want = config.display().to_string();
    let rd = std::fs::read_dir("/proc").ok()?;
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .find(|&pid| {
            let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            is_agent_command(&args, &want, |a| {
                Path::new(a)
                    .canonicalize()
                    .is_ok_and(|c| c == Path::new(&want))
            })
        })
        .and_then(Proc::of)
}

/// Whether `args` run an agent (`pgha`, or `patroni` directly or through python) on the
/// configuration file `want`; `same_file` resolves a relative or linked spelling of it.
fn is_agent_command(args: &[String], want: &str, same_file: impl Fn(&str) -> bool) -> bool {
    let base = |a: &String| a.rsplit('/').next().unwrap_or(a).to_string();
    let program = args
        .iter()
        .take(2)
        .map(base)
        .any(|b| b == "pgha" || b == "patroni");
    // pgha's lease guard (`pgha --lease-guard NAME`) is no agent.
    let guard = args.iter().any(|a| a == "--lease-guard");
    program
        && !guard
        && args
            .iter()
            .skip(1)
            .any(|a| a == want || (a.ends_with(".yml") || a.ends_with(".yaml")) && same_file(a))
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

fn cwd_of(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_env_needs_both_numbers() {
        assert_eq!(
            parse_lab_env("NODES=3\nETCD_MEMBERS=1\nPORT_OFFSET=0\n").unwrap(),
            LabEnv {
                nodes: 3,
                etcd_members: 1,
                netns_block: None
            }
        );
        let netns = parse_lab_env("NODES=4\nETCD_MEMBERS=3\nNETNS=1\nNETNS_BLOCK=15\n").unwrap();
        assert_eq!(netns.netns_block, Some(15));
        assert_eq!(
            NodeNet::of(15, 4),
            NodeNet {
                namespace: "pgha-b15-node4".into(),
                veth: "pghab15n4".into()
            }
        );
        assert!(
            parse_lab_env("NODES=3\nETCD_MEMBERS=1\nNETNS=0\nNETNS_BLOCK=2\n")
                .unwrap()
                .netns_block
                .is_none()
        );
        assert!(parse_lab_env("NODES=3\n").is_err());
        assert!(parse_lab_env("NODES=x\nETCD_MEMBERS=1\n").is_err());
    }

    #[test]
    fn not_a_lab() {
        let missing = Path::new("/nonexistent/pgha-lab");
        let e = Lab::open(missing).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = Lab::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("no lab.env"), "{e}");
        std::fs::write(dir.path().join("lab.env"), "NODES=3\nETCD_MEMBERS=1\n").unwrap();
        let e = Lab::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("no cluster.sh"), "{e}");
    }

    #[test]
    fn agents_are_told_by_program_and_configuration_file() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let never = |_: &str| false;
        let f = "/etc/pgha/node1.yml";
        assert!(is_agent_command(&args(&["/usr/bin/pgha", f]), f, never));
        assert!(is_agent_command(&args(&["pgha", "-c", f]), f, never));
        assert!(is_agent_command(
            &args(&["/opt/venv/bin/python3", "/opt/venv/bin/patroni", f]),
            f,
            never
        ));
        // The drill itself, an editor, the lease guard, another node's agent: not it.
        assert!(!is_agent_command(
            &args(&["pghactl", "drill", "--config", f]),
            f,
            never
        ));
        assert!(!is_agent_command(&args(&["vi", f]), f, never));
        assert!(!is_agent_command(
            &args(&["pgha", "--lease-guard", "node1", f]),
            f,
            never
        ));
        assert!(!is_agent_command(
            &args(&["pgha", "/etc/pgha/node2.yml"]),
            f,
            never
        ));
        // A relative spelling of the same file counts when it resolves to it.
        assert!(is_agent_command(&args(&["pgha", "node1.yml"]), f, |_| true));
    }

    #[test]
    fn start_command_placeholders() {
        let node = Node {
            index: 2,
            name: "db2".into(),
            host: "127.0.0.1".into(),
            pg_port: 5432,
            rest_port: 8008,
            data_dir: "/data".into(),
            user: "postgres".into(),
            password: None,
            pg_options: Default::default(),
            rest_scheme: "http",
            rest_tls: Default::default(),
            bin_dir: "/usr/lib/postgresql/15/bin".into(),
            log: Default::default(),
            net: None,
        };
        assert_eq!(
            start_command_for(
                "systemctl start pgha@{name}; echo {index} {config}",
                &node,
                Path::new("/etc/db2.yml")
            ),
            "systemctl start pgha@db2; echo 2 /etc/db2.yml"
        );
    }

    #[test]
    fn configuration_files_are_checked_before_anything() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.yml");
        let e = format!(
            "{:#}",
            Lab::from_configs(&[missing], None, &[]).unwrap_err()
        );
        assert!(e.contains("nope.yml"), "{e}");
        let one = dir.path().join("a.yml");
        let yml = "scope: s\nname: n1\nrestapi: {listen: '*:8008'}\n\
                   postgresql: {listen: '0.0.0.0:5432', data_dir: /d}\n\
                   etcd3: {hosts: '127.0.0.1:1'}\n";
        std::fs::write(&one, yml).unwrap();
        let two = dir.path().join("b.yml");
        std::fs::write(&two, yml).unwrap();
        let e = format!(
            "{:#}",
            Lab::from_configs(&[one.clone(), two], None, &[]).unwrap_err()
        );
        assert!(e.contains("both configure node n1"), "{e}");
        let lab = Lab::from_configs(std::slice::from_ref(&one), None, &[]).unwrap();
        assert_eq!(lab.nodes[0].host, "127.0.0.1");
        assert_eq!((lab.nodes[0].pg_port, lab.nodes[0].rest_port), (5432, 8008));
        assert!(!lab.can_restart_agents());
        let me = std::process::id() as i32;
        let e = format!("{:#}", Lab::from_configs(&[one], None, &[me]).unwrap_err());
        assert!(e.contains("no etcd process"), "{e}");
    }

    #[test]
    fn own_process_is_found_and_recognised() {
        let me = Proc::of(std::process::id() as i32).unwrap();
        assert!(me.alive());
        let other = Proc {
            pid: me.pid,
            start: "0".into(),
        };
        assert!(!other.alive());
    }
}
