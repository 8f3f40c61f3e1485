#!/usr/bin/env python3
"""pgha against Patroni 4.1.5, side by side, on one machine in one run (issue 5).

Normally started by bench/run.sh, which installs/checks the prerequisites, builds pgha and runs
this file with the Patroni virtualenv's Python (for psycopg). Everything runs on loopback:
one etcd for the whole run, then for each run and each implementation a fresh 3-node cluster
(own scope, own ports, empty data directories) rendered from bench/node.yml.tmpl:

  startup     time from starting the three agents to a healthy cluster: one primary with two
              streaming replicas (pg_stat_replication) AND every agent's REST health endpoint
              agreeing (leader: GET /primary 200, replicas: GET /replica 200)
  idle        (first run only) after a settle period, VmRSS of each agent process and its CPU
              time (utime+stime from /proc/<pid>/stat) over --idle-seconds of idleness
  rest        wrk on GET /primary of the leader and GET /replica of a replica
  switchover  POST /switchover {leader, candidate} on the leader's REST API while bench/writer.py
              inserts a row every 15 ms into whichever node is primary; window = longest gap
              between acknowledged inserts around the switchover; every acknowledged id must be on
              the new primary
  failover    kill -9 of the leader's agent and postmaster under the same write load; time until
              the first acknowledged insert on a new primary

Scenarios: Patroni and pgha at default timings (ttl 30 / loop_wait 10 / retry_timeout 10), and
pgha at its fastest safe timings (ttl 5 / loop_wait 1 / retry_timeout 2: the smallest values pgha accepts), reported separately.
Runs are interleaved (run 1 of every scenario, then run 2, ...) so a change in the background
load of the machine hits every implementation alike.

Process hygiene: the agents run as `postgres` via setpriv (the recorded PID is the agent
itself); every process started is recorded with its /proc start time in <workdir>/pids.tsv and
only those (plus postmasters found through postmaster.pid, and leftover postgres processes whose
cwd is inside <workdir>) are ever signalled. `bench.py --cleanup <workdir>` does the same from a
shell trap. Every wait is bounded; a global alarm (--max-minutes) ends a run that overstays.
"""
import argparse
import datetime
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SU_PASSWORD = "bench-su-pass"
TABLE = "bench_writes"
T_START = time.monotonic()


class BenchError(Exception):
    pass


class Timeout(BaseException):
    """The global time limit (--max-minutes) was reached."""


class Interrupted(BaseException):
    pass


def log(msg):
    print(f"[bench {time.monotonic() - T_START:7.1f}s] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# processes


def proc_starttime(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rindex(")") + 2:].split()[19]  # field 22


def proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rindex(")") + 2:].split()[0]


def same_process(pid, start):
    st = proc_starttime(pid)
    return st is not None and st == start and proc_state(pid) not in (None, "Z", "X")


def wait_gone(pid, start, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not same_process(pid, start):
            return True
        time.sleep(0.05)
    return not same_process(pid, start)


def proc_cwd(pid):
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def proc_uid(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class Registry:
    """Every process this benchmark starts, with its start time, in <workdir>/pids.tsv."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.path = os.path.join(workdir, "pids.tsv")
        self.popens = {}

    def add(self, popen, kind, label):
        start = None
        for _ in range(100):
            start = proc_starttime(popen.pid)
            if start is not None:
                break
            time.sleep(0.01)
        with open(self.path, "a") as f:
            f.write(f"{popen.pid}\t{start}\t{kind}\t{label}\n")
        self.popens[popen.pid] = popen
        return start

    def reap(self):
        for pid, p in list(self.popens.items()):
            if p.poll() is not None:
                del self.popens[pid]


def stop_process(pid, start, name, sig=signal.SIGTERM, grace=20.0, popen=None):
    """Signals one verified process, waits up to `grace` s, then SIGKILL (bounded)."""
    if not same_process(pid, start):
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    if popen is not None:
        try:
            popen.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            pass
    elif wait_gone(pid, start, grace):
        return
    log(f"{name} (pid {pid}) still alive {grace:.0f}s after signal {int(sig)}: SIGKILL")
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if popen is not None:
        try:
            popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log(f"{name} (pid {pid}) survived SIGKILL")
    else:
        wait_gone(pid, start, 10)


def postmaster_of(data_dir):
    """(pid, start, shm) for data_dir's postmaster.pid: pid/start are None unless that process is
    alive with its cwd in data_dir; shm = (segment id, pid in the file) or None. None if no file."""
    try:
        with open(os.path.join(data_dir, "postmaster.pid")) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    try:
        pid = int(lines[0].strip())
    except (ValueError, IndexError):
        return None
    shm = None
    if len(lines) >= 7 and len(lines[6].split()) == 2:
        shm = (lines[6].split()[1], pid)
    start = proc_starttime(pid)
    cwd = proc_cwd(pid)
    if start is None or cwd is None or os.path.realpath(cwd) != os.path.realpath(data_dir):
        return (None, None, shm)
    return (pid, start, shm)


def remove_shm(shm, uid):
    """Removes the SysV segment of a postmaster we stopped or killed when nothing is attached to
    it any more and it is that postmaster's (creator pid and uid match)."""
    if not shm or not shm[0].isdigit():
        return
    try:
        out = subprocess.run(["ipcs", "-m", "-i", shm[0]], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return
    if (re.search(r"\bnattch=0\b", out) and re.search(rf"\bcuid={uid}\b", out)
            and re.search(rf"\bcpid={shm[1]}\b", out)):
        subprocess.run(["ipcrm", "-m", shm[0]], capture_output=True, timeout=5)


def sweep(workdir, uid):
    """SIGKILL leftovers: processes of `uid` whose cwd is inside workdir (orphaned postgres
    backends of a killed postmaster, an agent whose registry entry was lost)."""
    root = os.path.realpath(workdir) + "/"
    n = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        if proc_uid(pid) != uid:
            continue
        cwd = proc_cwd(pid)
        if cwd and (os.path.realpath(cwd) + "/").startswith(root):
            try:
                os.kill(pid, signal.SIGKILL)
                n += 1
            except ProcessLookupError:
                pass
    return n


def cleanup_workdir(workdir, registry=None, remove=True):
    """Stops everything recorded in <workdir>/pids.tsv (agents first, all at once, then
    postmasters, then etcd), sweeps leftovers, removes the directory (or only the data)."""
    path = os.path.join(workdir, "pids.tsv")
    entries = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) >= 4 and parts[0].isdigit():
                    entries.append((int(parts[0]), parts[1], parts[2], parts[3]))
    popens = registry.popens if registry else {}
    agents = [e for e in entries if e[2] in ("agent", "writer", "wrk", "pgbench", "ctl") and same_process(e[0], e[1])]
    for pid, start, _k, _l in agents:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid, start, kind, label in agents:
        stop_process(pid, start, f"{kind} {label}", signal.SIGKILL, 10, popens.get(pid))
    shms = []
    for dirpath, dirnames, filenames in os.walk(workdir):
        if "postmaster.pid" in filenames:
            pm = postmaster_of(dirpath)
            if pm:
                shms.append(pm[2])
                if pm[0]:
                    stop_process(pm[0], pm[1], f"postmaster {dirpath}", signal.SIGQUIT, 5)
        dirnames[:] = [d for d in dirnames if d not in ("base", "pg_wal", "global")]
    import pwd
    uid = pwd.getpwnam("postgres").pw_uid
    if sweep(workdir, uid):
        time.sleep(0.5)
    for sid in shms:
        remove_shm(sid, uid)
    for pid, start, kind, label in entries:
        if kind == "etcd":
            stop_process(pid, start, "etcd", signal.SIGTERM, 10, popens.get(pid))
    if remove:
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# small clients


def http(method, port, path, body=None, timeout=3.0):
    """(status, text); status 0 when there was no HTTP answer."""
    data = None
    headers = {}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        try:
            text = e.read().decode(errors="replace")
        except Exception:  # noqa: BLE001
            text = ""
        return e.code, text
    except (urllib.error.URLError, OSError, socket.timeout) as e:
        return 0, str(e)


def pg_connect(port, timeout=2):
    import psycopg

    return psycopg.connect(
        host="127.0.0.1", port=port, user="postgres", password=SU_PASSWORD, dbname="postgres",
        connect_timeout=timeout, autocommit=True, options="-c statement_timeout=5000",
        application_name="pgha-bench-probe")


def pg_probe(port):
    """('primary', {streaming application_names}) / ('replica', None) / (None, None)."""
    try:
        with pg_connect(port) as c:
            rec = c.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            if rec:
                return "replica", None
            rows = c.execute("SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'").fetchall()
            return "primary", {r[0] for r in rows}
    except Exception:  # noqa: BLE001
        return None, None


def pg_sql(port, sql, params=None):
    with pg_connect(port) as c:
        cur = c.execute(sql, params)
        return cur.fetchall() if cur.description else None


# ---------------------------------------------------------------------------------------------
# ports


class Ports:
    def __init__(self):
        self.next = random.randint(21000, 29000)

    @staticmethod
    def free(port):
        for kind in (socket.SOCK_STREAM,):
            s = socket.socket(socket.AF_INET, kind)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
            finally:
                s.close()
        s = socket.socket()
        s.settimeout(0.2)
        try:
            return s.connect_ex(("127.0.0.1", port)) != 0
        finally:
            s.close()

    def take(self, n):
        out = []
        while len(out) < n:
            p = self.next
            self.next += 1
            if self.next > 32000:
                self.next = 21000
            if self.free(p):
                out.append(p)
        return out


# ---------------------------------------------------------------------------------------------
# /proc figures


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    # fields[11..14] = utime stime cutime cstime (stat fields 14..17)
    return tuple(int(x) for x in fields[11:15])


def sched_ns(pid):
    """{tid: ns on CPU} from /proc/<pid>/task/*/schedstat (nanosecond resolution)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def status_fields(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def kb(v):
    return int(v.split()[0]) if v else 0


def children_of(pid):
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rindex(")") + 2:].split()
        if int(rest[1]) == pid:
            kids.append((int(d), s[s.index("(") + 1:s.rindex(")")]))
    return kids


# ---------------------------------------------------------------------------------------------
# cluster


class Timing:
    def __init__(self, name, ttl, loop_wait, retry_timeout):
        self.name, self.ttl, self.loop_wait, self.retry_timeout = name, ttl, loop_wait, retry_timeout

    def desc(self):
        return f"ttl {self.ttl} / loop_wait {self.loop_wait} / retry_timeout {self.retry_timeout}"


DEFAULT = Timing("default", 30, 10, 10)
FAST = Timing("fast", 10, 1, 3)


class Node:
    def __init__(self, name, pg_port, rest_port, node_dir):
        self.name, self.pg_port, self.rest_port, self.dir = name, pg_port, rest_port, node_dir
        self.data_dir = os.path.join(node_dir, "data")
        self.config = os.path.join(node_dir, f"{name}.yml")
        self.log = os.path.join(node_dir, "agent.log")
        self.popen = None
        self.pid = None
        self.start = None


class Cluster:
    """A cluster of `nodes` configured members of which the first three are started at once
    (a fourth one, when configured, is the new node of the join scenario). `sync_mode` is
    bootstrap.dcs.synchronous_mode: false, true or quorum."""

    def __init__(self, ctx, impl, timing, run, label="", nodes=3, sync_mode="false"):
        self.ctx, self.impl, self.timing, self.run = ctx, impl, timing, run
        self.sync_mode = sync_mode
        self.scope = f"bench-{impl}-{timing.name}{'-' + label if label else ''}-r{run}-{random.randint(1000, 9999)}"
        self.dir = os.path.join(ctx.workdir, self.scope)
        ports = ctx.ports.take(2 * nodes)
        self.nodes = [Node(f"node{i + 1}", ports[i], ports[nodes + i], os.path.join(self.dir, f"node{i + 1}"))
                      for i in range(nodes)]
        self.t_started = None

    def by_name(self, name):
        return next(n for n in self.nodes if n.name == name)

    def by_port(self, port):
        return next((n for n in self.nodes if str(n.pg_port) == str(port)), None)

    def write_configs(self):
        os.makedirs(self.dir, mode=0o755)
        os.chmod(self.dir, 0o755)
        with open(os.path.join(HERE, "node.yml.tmpl")) as f:
            tmpl = string.Template(f.read())
        for n in self.nodes:
            os.makedirs(n.dir, mode=0o700)
            os.chown(n.dir, self.ctx.pg_uid, self.ctx.pg_gid)
            text = tmpl.substitute(
                scope=self.scope, name=n.name, rest_port=n.rest_port, etcd_port=self.ctx.etcd_port,
                ttl=self.timing.ttl, loop_wait=self.timing.loop_wait, retry_timeout=self.timing.retry_timeout,
                pg_port=n.pg_port, data_dir=n.data_dir, bin_dir=self.ctx.pg_bin_dir, node_dir=n.dir,
                su_password=SU_PASSWORD, synchronous_mode=self.sync_mode)
            with open(n.config, "w") as f:
                f.write(text)
            os.chmod(n.config, 0o644)

    def agent_cmd(self, n):
        if self.impl == "pgha":
            return [self.ctx.pgha_bin, n.config]
        return [os.path.join(self.ctx.venv, "bin", "patroni"), n.config]

    def start_agents(self):
        self.t_started = time.monotonic()
        for n in self.nodes[:3]:
            self.start_agent(n)

    def start_agent(self, n):
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": n.dir, "USER": "postgres", "LOGNAME": "postgres",
               "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
        cmd = ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups", "--"] + self.agent_cmd(n)
        logf = open(n.log, "ab")
        try:
            n.popen = subprocess.Popen(cmd, cwd=n.dir, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            logf.close()
        n.pid = n.popen.pid
        n.start = self.ctx.registry.add(n.popen, "agent", f"{self.scope}/{n.name}")

    def agent_alive(self, n):
        return n.popen is not None and n.popen.poll() is None

    def check_agents(self):
        for n in self.nodes:
            if n.popen is not None and n.popen.poll() is not None and not getattr(n, "killed", False):
                raise BenchError(f"{self.impl} agent {n.name} exited with {n.popen.returncode}; see {n.log}")

    def health(self):
        """(leader_name or None, detail): healthy = one primary, both others streaming from it
        (pg_stat_replication), the leader answers GET /primary 200 and both replicas GET /replica
        200. detail: pg_ok, rest_primary_ok, rest_replicas_ok, primaries."""
        live = [n for n in self.nodes if n.popen is not None and not getattr(n, "killed", False)]
        roles = {n.name: pg_probe(n.pg_port) for n in live}
        prim = [name for name, (r, _s) in roles.items() if r == "primary"]
        d = {"pg_ok": False, "rest_primary_ok": False, "rest_replicas_ok": False, "primaries": prim}
        if len(prim) != 1:
            return None, d
        leader = prim[0]
        others = [n for n in live if n.name != leader]
        d["pg_ok"] = {n.name for n in others} <= (roles[leader][1] or set()) and len(live) >= 3
        d["rest_primary_ok"] = http("GET", self.by_name(leader).rest_port, "/primary")[0] == 200
        d["rest_replicas_ok"] = all(http("GET", n.rest_port, "/replica")[0] == 200 for n in others)
        ok = d["pg_ok"] and d["rest_primary_ok"] and d["rest_replicas_ok"]
        return (leader if ok else None), d

    def wait_healthy(self, seconds, what):
        """Polls health() every 0.25 s for up to `seconds`: (leader, t_healthy, first-true times
        of each condition as monotonic times)."""
        end = time.monotonic() + seconds
        first = {}
        last = None
        while time.monotonic() < end:
            self.check_agents()
            leader, d = self.health()
            last = d
            now = time.monotonic()
            for k in ("pg_ok", "rest_primary_ok", "rest_replicas_ok"):
                if d[k] and k not in first:
                    first[k] = now
            if leader:
                return leader, now, first
            time.sleep(0.25)
        raise BenchError(f"{self.impl}/{self.timing.name}: {what}: not healthy within {seconds:.0f}s "
                         f"(last: {last}); logs in {self.dir}/node*/agent.log")

    def primary_port(self):
        for n in self.nodes:
            if n.popen is not None and not getattr(n, "killed", False) and pg_probe(n.pg_port)[0] == "primary":
                return n.pg_port
        return None

    def teardown(self):
        """Kills agents (SIGKILL, all at once: the data is thrown away), then postmasters
        (SIGQUIT, then SIGKILL), sweeps orphaned backends, removes the data directories
        (the logs stay in the work directory until the end of the run)."""
        for n in self.nodes:
            if n.popen is not None and n.popen.poll() is None and same_process(n.pid, n.start):
                try:
                    os.kill(n.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for n in self.nodes:
            if n.popen is not None:
                try:
                    n.popen.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    log(f"agent {n.name} (pid {n.pid}) did not die after SIGKILL")
        shms = []
        for n in self.nodes:
            pm = postmaster_of(n.data_dir)
            if pm:
                shms.append(pm[2])
                if pm[0]:
                    stop_process(pm[0], pm[1], f"postmaster {self.scope}/{n.name}", signal.SIGQUIT, 5)
        if sweep(self.dir, self.ctx.pg_uid):
            time.sleep(0.5)
        for sid in shms:
            remove_shm(sid, self.ctx.pg_uid)
        for n in self.nodes:
            shutil.rmtree(n.data_dir, ignore_errors=True)
        self.ctx.registry.reap()


# ---------------------------------------------------------------------------------------------
# writer


class Writer:
    def __init__(self, ctx, cluster, start_id, tag):
        self.ctx, self.cluster = ctx, cluster
        self.out = os.path.join(cluster.dir, f"writer-{tag}.tsv")
        ports = ",".join(str(n.pg_port) for n in cluster.nodes)
        cmd = [sys.executable, os.path.join(HERE, "writer.py"), "--ports", ports, "--password", SU_PASSWORD,
               "--table", TABLE, "--start-id", str(start_id), "--interval", str(ctx.args.write_interval),
               "--max-seconds", "400", "--out", self.out]
        with open(self.out + ".err", "w") as err:
            self.popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stderr=err)
        self.start = ctx.registry.add(self.popen, "writer", f"{cluster.scope}/{tag}")

    def attempts(self):
        rows = []
        try:
            with open(self.out) as f:
                for line in f:
                    if not line.endswith("\n"):
                        break
                    p = line.rstrip("\n").split("\t")
                    if len(p) < 6:
                        continue
                    rows.append({"id": int(p[0]), "t0": float(p[1]), "t1": float(p[2]), "ok": p[3] == "1",
                                 "port": p[4], "err": p[5]})
        except OSError:
            pass
        return rows

    def wait_for(self, pred, seconds, what):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rows = self.attempts()
            r = pred(rows)
            if r:
                return r
            if self.popen.poll() is not None:
                raise BenchError(f"writer exited ({self.popen.returncode}) while waiting for {what}; see {self.out}.err")
            time.sleep(0.1)
        raise BenchError(f"timed out after {seconds:.0f}s waiting for {what}")

    def stop(self):
        stop_process(self.popen.pid, self.start, "writer", signal.SIGTERM, 10, self.popen)
        return self.attempts()


def ensure_table(cluster, leader):
    port = cluster.by_name(leader).pg_port
    pg_sql(port, f"CREATE TABLE IF NOT EXISTS {TABLE}(id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
    end = time.monotonic() + 30
    for n in cluster.nodes:
        if n.name == leader or n.popen is None or getattr(n, "killed", False):
            continue
        while True:
            try:
                if pg_sql(n.pg_port, "SELECT to_regclass(%s) IS NOT NULL", (TABLE,))[0][0]:
                    break
            except Exception:  # noqa: BLE001
                pass
            if time.monotonic() > end:
                raise BenchError(f"table {TABLE} did not reach {n.name} within 30s")
            time.sleep(0.1)


def ids_on(port, lo, hi):
    rows = pg_sql(port, f"SELECT id FROM {TABLE} WHERE id >= %s AND id < %s", (lo, hi))
    return {r[0] for r in rows}


# ---------------------------------------------------------------------------------------------
# scenario steps


def step_idle(ctx, c):
    settle = max(5, 2 * c.timing.loop_wait) if ctx.args.idle_seconds >= 30 else 3
    log(f"  idle: settle {settle}s, then measure {ctx.args.idle_seconds}s")
    time.sleep(settle)
    before = {}
    sched_before = {}
    for n in c.nodes:
        before[n.name] = cpu_ticks(n.pid)
        sched_before[n.name] = sched_ns(n.pid)
    t0 = time.monotonic()
    time.sleep(ctx.args.idle_seconds)
    wall = time.monotonic() - t0
    agents = []
    for n in c.nodes:
        after = cpu_ticks(n.pid)
        st = status_fields(n.pid)
        d = [a - b for a, b in zip(after, before[n.name])]
        sa, sb = sched_ns(n.pid), sched_before[n.name]
        # Precise figure: per-thread run time; threads that came or went in between are flagged.
        sched_ms = sum(v - sb.get(t, 0) for t, v in sa.items()) / 1e6
        kids = [(pid, comm) for pid, comm in children_of(n.pid)]
        non_pg = [(pid, comm) for pid, comm in kids if comm not in ("postgres", "postmaster")]
        non_pg_rss = 0
        for pid, _comm in non_pg:
            try:
                non_pg_rss += kb(status_fields(pid).get("VmRSS"))
            except OSError:
                pass
        agents.append({
            "node": n.name, "pid": n.pid,
            "rss_kib": kb(st.get("VmRSS")), "hwm_kib": kb(st.get("VmHWM")), "threads": int(st.get("Threads", 0)),
            "rss_anon_kib": kb(st.get("RssAnon")), "rss_file_kib": kb(st.get("RssFile")),
            "rss_shmem_kib": kb(st.get("RssShmem")),
            "cpu_ms": (d[0] + d[1]) * 1000 / CLK_TCK,
            "utime_ms": d[0] * 1000 / CLK_TCK, "stime_ms": d[1] * 1000 / CLK_TCK,
            "children_cpu_ms": (d[2] + d[3]) * 1000 / CLK_TCK,
            "cpu_ms_schedstat": round(sched_ms, 3), "threads_changed": set(sa) != set(sb),
            "children": [f"{comm}({pid})" for pid, comm in kids],
            "non_postgres_children_rss_kib": non_pg_rss,
        })
    leader, _d = c.health()
    return {"seconds": round(wall, 2), "settle_s": settle, "agents": agents, "healthy_after": bool(leader)}


WRK_RE = {
    "rps": re.compile(r"Requests/sec:\s+([\d.]+)"),
    "requests": re.compile(r"(\d+) requests in"),
    "non2xx": re.compile(r"Non-2xx or 3xx responses:\s+(\d+)"),
    "sockerr": re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"),
    "p50": re.compile(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", re.M),
    "p99": re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.M),
}


def wrk(ctx, port, path, label, close=False):
    a = ctx.args
    cmd = ["wrk", f"-t{a.wrk_threads}", f"-c{a.wrk_connections}", f"-d{a.wrk_seconds}s", "--timeout", "5s",
           "--latency"] + (["-H", "Connection: close"] if close else []) + [f"http://127.0.0.1:{port}{path}"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    ctx.registry.add(p, "wrk", label)
    try:
        out, _ = p.communicate(timeout=a.wrk_seconds + 30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)
        raise BenchError(f"wrk {path} did not finish")
    r = {"path": path, "cmd": " ".join(cmd[:-1]) + " URL", "exit": p.returncode, "connection_close": close}
    m = WRK_RE["rps"].search(out)
    if not m:
        raise BenchError(f"could not parse wrk output:\n{out}")
    r["rps"] = float(m.group(1))
    r["requests"] = int(WRK_RE["requests"].search(out).group(1))
    m = WRK_RE["non2xx"].search(out)
    r["non_2xx"] = int(m.group(1)) if m else 0
    m = WRK_RE["sockerr"].search(out)
    r["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()))) if m else {}
    for k in ("p50", "p99"):
        m = WRK_RE[k].search(out)
        if m:
            mult = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            r[f"{k}_ms"] = round(float(m.group(1)) * mult, 3)
    # A throughput of error answers means nothing: count only when the endpoint said 200.
    if r["non_2xx"] > r["requests"] * 0.01:
        r["invalid"] = f"{r['non_2xx']} of {r['requests']} answers were not 2xx"
    return r


def step_rest(ctx, c, leader):
    rep = sorted(n.name for n in c.nodes if n.name != leader)[0]
    res = {}
    for key, node, path, close in (("primary", leader, "/primary", False), ("replica", rep, "/replica", False),
                                   ("primary_close", leader, "/primary", True),
                                   ("replica_close", rep, "/replica", True)):
        r = res[key] = wrk(ctx, c.by_name(node).rest_port, path, f"{c.scope}/{key}", close)
        log(f"  wrk GET {path} on {node}{' (Connection: close)' if close else ''}: {r['rps']:.0f} req/s, "
            f"p99 {r.get('p99_ms', '?')} ms{', INVALID: ' + r['invalid'] if r.get('invalid') else ''}")
    return res


def window_around(rows, t_from, t_first_new):
    oks = [r for r in rows if r["ok"]]
    oks.sort(key=lambda r: r["t1"])
    gaps = [(b["t1"] - a["t1"], a["t1"], b["t1"]) for a, b in zip(oks, oks[1:])
            if b["t1"] > t_from and a["t1"] < t_first_new]
    return max(gaps) if gaps else None


def timeline(rows, t_ref, lo, hi):
    """Compact attempt timeline relative to t_ref (for plots): [t_rel, ok, port]."""
    return [[round(r["t1"] - t_ref, 4), 1 if r["ok"] else 0, r["port"]] for r in rows if lo <= r["t1"] - t_ref <= hi]


class RestWatch:
    """A thread polling GET /primary on some nodes every 0.1 s until one answers 200: when the new
    leader's REST health check (what HAProxy routes writes by) reports it as primary."""

    def __init__(self, ports, seconds):
        import threading
        self.ports = ports
        self.t = None
        self.port = None
        self.deadline = time.monotonic() + seconds
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped and time.monotonic() < self.deadline:
            for port in self.ports:
                if http("GET", port, "/primary", timeout=1)[0] == 200:
                    self.t, self.port = time.monotonic(), port
                    return
            time.sleep(0.1)

    def wait(self):
        self.thread.join(max(0.0, self.deadline - time.monotonic()) + 5)
        self.stopped = True
        return self.t


def step_switchover(ctx, c, leader, cand=None):
    if cand is None:
        cand = sorted(n.name for n in c.nodes if n.name != leader and n.popen is not None)[0]
    ensure_table(c, leader)
    w = Writer(ctx, c, 1, "switchover")
    res = {"leader": leader, "candidate": cand}
    try:
        lport = str(c.by_name(leader).pg_port)
        w.wait_for(lambda rows: sum(1 for r in rows if r["ok"] and r["port"] == lport) >= 50, 30,
                   "50 acknowledged inserts before the switchover")
        watch = RestWatch([c.by_name(cand).rest_port], 90)
        t_req = time.monotonic()
        status, body = http("POST", c.by_name(leader).rest_port, "/switchover",
                            {"leader": leader, "candidate": cand}, timeout=90)
        t_resp = time.monotonic()
        res.update({"http_status": status, "http_body": body.strip()[:200], "http_seconds": round(t_resp - t_req, 3)})
        log(f"  POST /switchover {leader} -> {cand}: {status} {body.strip()[:80]!r} in {t_resp - t_req:.2f}s")
        if status != 200:
            raise BenchError(f"switchover answered {status}: {body.strip()[:200]}")
        cport = str(c.by_name(cand).pg_port)

        def first_new(rows):
            after = [r for r in rows if r["ok"] and r["t1"] > t_req and r["port"] != lport]
            if after and rows[-1]["t1"] - after[0]["t1"] >= 1.0:
                return after[0]
            return None

        fn = w.wait_for(first_new, 120, "acknowledged inserts on the new primary")
    finally:
        rows = w.stop()
    t_rest = watch.wait()
    res["rest_primary_200_after_request_s"] = round(t_rest - t_req, 3) if t_rest else None
    gap = window_around(rows, t_req, fn["t1"])
    res["new_primary_port_is_candidate"] = fn["port"] == cport
    res["window_s"] = round(gap[0], 4)
    res["window_from_request_s"] = [round(gap[1] - t_req, 4), round(gap[2] - t_req, 4)]
    res["first_write_on_new_primary_after_request_s"] = round(fn["t1"] - t_req, 4)
    res["failed_attempts"] = sum(1 for r in rows if not r["ok"] and r["t1"] > t_req)
    acked = {r["id"] for r in rows if r["ok"]}
    present = ids_on(int(fn["port"]), 1, 1_000_000)
    res["acked"] = len(acked)
    res["lost_acked"] = len(acked - present)
    res["lost_ids_sample"] = sorted(acked - present)[:20]
    res["unacked_but_present"] = len(present - acked)
    res["timeline"] = timeline(rows, t_req, -0.5, gap[2] - t_req + 0.5)
    res["_t_req"] = t_req
    log(f"  switchover window {res['window_s'] * 1000:.0f} ms, acked {res['acked']}, lost {res['lost_acked']}; "
        f"candidate's GET /primary 200 after {res['rest_primary_200_after_request_s']} s")
    return res


def wait_for_heartbeat(node, timeout):
    """Waits for a new "the leader with the lock" line in the node's log; seconds waited."""
    t0 = time.monotonic()
    with open(node.log, "rb") as f:
        f.seek(0, os.SEEK_END)
        buf = b""
        while time.monotonic() - t0 < timeout:
            chunk = f.read()
            if chunk:
                buf += chunk
                if b"the leader with the lock" in buf:
                    return time.monotonic() - t0
                buf = buf[-4096:]
            else:
                time.sleep(0.005)
    raise BenchError(f"{node.name} logged no leader heartbeat within {timeout}s")


def step_failover(ctx, c, leader):
    ensure_table(c, leader)
    ln = c.by_name(leader)
    w = Writer(ctx, c, 1_000_000, "failover")
    res = {"leader": leader}
    try:
        lport = str(ln.pg_port)
        w.wait_for(lambda rows: sum(1 for r in rows if r["ok"] and r["port"] == lport) >= 50, 30,
                   "50 acknowledged inserts before the kill")
        # The same phase of the HA loop for both implementations: right after the leader logs
        # its heartbeat, i.e. just after it renewed its lock. A random phase adds up to
        # loop_wait of noise per run that three runs cannot average out (seen: 20.8-30.2 s at
        # loop_wait 10); this way each run measures ttl plus the cluster's reaction.
        delay = wait_for_heartbeat(ln, c.timing.loop_wait * 2 + 10)
        pm = postmaster_of(ln.data_dir)
        if not pm or not pm[0]:
            raise BenchError(f"no live postmaster for {leader} in {ln.data_dir}")
        if not same_process(ln.pid, ln.start):
            raise BenchError(f"agent of {leader} is not running")
        watch = RestWatch([n.rest_port for n in c.nodes if n is not ln], c.timing.ttl + c.timing.loop_wait + 90)
        t_kill = time.monotonic()
        os.kill(ln.pid, signal.SIGKILL)
        os.kill(pm[0], signal.SIGKILL)
        ln.killed = True
        res.update({"kill_phase_delay_s": round(delay, 3), "killed_agent_pid": ln.pid, "killed_postmaster_pid": pm[0]})
        log(f"  kill -9 agent {ln.pid} and postmaster {pm[0]} of {leader}")
        bound = c.timing.ttl + c.timing.loop_wait + 90

        def first_new(rows):
            after = [r for r in rows if r["ok"] and r["t1"] > t_kill and r["port"] != lport]
            if after and rows[-1]["t1"] - after[0]["t1"] >= 0.5:
                return after[0]
            return None

        fn = w.wait_for(first_new, bound, "a new primary to accept writes after the kill")
    finally:
        rows = w.stop()
    t_rest = watch.wait()
    res["rest_primary_200_after_kill_s"] = round(t_rest - t_kill, 3) if t_rest else None
    res["failover_s"] = round(fn["t1"] - t_kill, 4)
    res["_t_kill"] = t_kill
    newn = c.by_port(fn["port"])
    res["new_leader"] = newn.name if newn else fn["port"]
    late = [r for r in rows if r["ok"] and r["t1"] > t_kill and r["port"] == lport]
    res["acks_from_killed_node_after_kill"] = len(late)
    acked = {r["id"] for r in rows if r["ok"]}
    present = ids_on(int(fn["port"]), 1_000_000, 2_000_000)
    res["acked"] = len(acked)
    res["lost_acked"] = len(acked - present)
    res["timeline"] = timeline(rows, t_kill, -0.5, res["failover_s"] + 0.5)
    log(f"  failover: new primary {res['new_leader']} accepts writes {res['failover_s']:.2f}s after the kill "
        f"(acked writes lost: {res['lost_acked']}, synchronous_mode {c.sync_mode}); GET /primary 200 after "
        f"{res['rest_primary_200_after_kill_s']} s")
    return res


# ---------------------------------------------------------------------------------------------
# synchronous replication (issue 10) and recovery paths (issue 13)


def run_tool(ctx, cmd, kind, label, timeout, env_extra=None):
    """Runs a helper command (pgbench, pghactl, patronictl) as root, bounded; (rc, output)."""
    env = dict(os.environ, PGPASSWORD=SU_PASSWORD, LC_ALL="C.UTF-8", LANG="C.UTF-8")
    env.pop("PGHOST", None)
    env.update(env_extra or {})
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         stdin=subprocess.DEVNULL, env=env)
    ctx.registry.add(p, kind, label)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)
        raise BenchError(f"{os.path.basename(cmd[0])} did not finish within {timeout:.0f}s")
    return p.returncode, out


def pgbench(ctx, c, port, args, timeout):
    cmd = [os.path.join(ctx.pg_bin_dir, "pgbench"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"] + args
    rc, out = run_tool(ctx, cmd + ["postgres"], "pgbench", f"{c.scope}/pgbench", timeout)
    if rc != 0:
        raise BenchError(f"pgbench {' '.join(args)} failed ({rc}): {out.strip()[-400:]}")
    return out


TPS_RE = re.compile(r"^tps = ([\d.]+) \(without initial connection time\)", re.M)


def step_tps(ctx, c, leader):
    """pgbench -c 4 -T <s> -N on the primary: commit-bound TPS (every transaction is 3 writes)."""
    port = c.by_name(leader).pg_port
    pgbench(ctx, c, port, ["-i", "-q", "-s", "1"], 300)
    a = ctx.args
    out = pgbench(ctx, c, port, ["-c", str(a.pgbench_clients), "-j", "2", "-T", str(a.pgbench_seconds), "-N"],
                  a.pgbench_seconds + 120)
    m = TPS_RE.search(out)
    if not m:
        raise BenchError(f"could not parse pgbench output:\n{out}")
    return {"tps": float(m.group(1)), "clients": a.pgbench_clients, "seconds": a.pgbench_seconds}


def sync_standbys(c, leader):
    rows = pg_sql(c.by_name(leader).pg_port,
                  "SELECT application_name, sync_state FROM pg_stat_replication WHERE state = 'streaming'")
    return {r[0]: r[1] for r in rows}


def wait_sync(c, leader, seconds):
    """Until the primary replicates synchronously as configured: one `sync` standby
    (synchronous_mode true) or every streaming standby `quorum` (synchronous_mode quorum)."""
    end = time.monotonic() + seconds
    last = None
    while time.monotonic() < end:
        try:
            st = last = sync_standbys(c, leader)
        except Exception:  # noqa: BLE001
            st = {}
        names = None
        if c.sync_mode == "true" and [k for k, v in st.items() if v == "sync"]:
            names = sorted(k for k, v in st.items() if v == "sync")
        if c.sync_mode == "quorum" and len(st) >= 2 and all(v == "quorum" for v in st.values()):
            names = sorted(st)
        # A switchover candidate must also be a synchronous standby in the DCS (/sync key, as
        # GET /cluster reports it): postgres may already replicate synchronously to it before the
        # agent has published that.
        if names:
            try:
                cl = json.loads(http("GET", c.by_name(leader).rest_port, "/cluster")[1])
                dcs = sorted(m["name"] for m in cl.get("members", [])
                             if m.get("role") in ("sync_standby", "quorum_standby"))
            except (ValueError, KeyError, TypeError, AttributeError):
                dcs = []
            if dcs and set(dcs) <= set(names):
                return dcs
        time.sleep(0.25)
    raise BenchError(f"{c.impl}: no synchronous standby (synchronous_mode {c.sync_mode}) within {seconds:.0f}s; "
                     f"pg_stat_replication: {last}")


def run_sync(ctx, impl, run):
    """Issue 10: per synchronous_mode (false, true, quorum) a fresh cluster bootstrapped with it;
    pgbench TPS; with true and quorum also a switchover and a kill -9 failover under writes."""
    res = {"impl": impl, "timing": DEFAULT.name, "run": run, "kind": "sync", "modes": {}, "errors": []}
    for mode in ("false", "true", "quorum"):
        c = Cluster(ctx, impl, DEFAULT, run, label=f"sync{mode}", sync_mode=mode)
        m = res["modes"][mode] = {"scope": c.scope}
        log(f"{impl} / synchronous_mode {mode} / run {run}: scope {c.scope}")
        try:
            c.write_configs()
            c.start_agents()
            leader, t_ok, _f = c.wait_healthy(ctx.args.healthy_timeout, "startup")
            m["startup_s"] = round(t_ok - c.t_started, 3)
            if mode != "false":
                m["sync_standbys"] = wait_sync(c, leader, 90)
            m["pgbench"] = step_tps(ctx, c, leader)
            m["sync_state_after_pgbench"] = sync_standbys(c, leader)
            log(f"  pgbench -N: {m['pgbench']['tps']:.0f} tps (sync states {m['sync_state_after_pgbench']})")
            if mode == "false":
                continue
            cand = wait_sync(c, leader, 90)[0]
            m["switchover"] = step_switchover(ctx, c, leader, cand)
            t0 = m["switchover"].pop("_t_req")
            leader, t1, _p = c.wait_healthy(ctx.args.healthy_timeout, "rejoin after switchover")
            m["healthy_after_switchover_request_s"] = round(t1 - t0, 3)
            m["sync_standbys_before_kill"] = wait_sync(c, leader, 90)
            m["failover"] = step_failover(ctx, c, leader)
            m["failover"].pop("_t_kill", None)
        except Exception as e:  # noqa: BLE001 - one failed mode must not stop the others
            if not isinstance(e, BenchError):
                import traceback
                traceback.print_exc()
                e = f"{type(e).__name__}: {e}"
            log(f"  ERROR: {e}")
            res["errors"].append(f"synchronous_mode {mode}: {e}")
            ctx.failed_dirs.append(c.dir)
        finally:
            c.teardown()
    return res


def replication_row(c, name, since_wall):
    """(primary node, row) where row = (state, replay_lsn = current lsn, walsender started after
    since_wall) for `name` in pg_stat_replication of a primary other than `name`; (None, None)."""
    for n in c.nodes:
        if n.name == name or n.popen is None or getattr(n, "killed", False):
            continue
        try:
            with pg_connect(n.pg_port, timeout=1) as conn:
                if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    continue
                row = conn.execute(
                    "SELECT state, replay_lsn = pg_current_wal_lsn(), backend_start > %s FROM pg_stat_replication "
                    "WHERE application_name = %s ORDER BY backend_start DESC LIMIT 1", (since_wall, name)).fetchone()
                return n, row
        except Exception:  # noqa: BLE001
            continue
    return None, None


def wait_caught_up(c, name, since_wall, seconds, what):
    """Until `name` streams again with lag 0 from a primary: in that primary's pg_stat_replication,
    state streaming and replay_lsn = pg_current_wal_lsn(), over a walsender connection started
    after since_wall (the fault), so a connection from before the fault does not count.
    Monotonic time when seen."""
    end = time.monotonic() + seconds
    last = None
    while time.monotonic() < end:
        c.check_agents()
        prim, row = replication_row(c, name, since_wall)
        last = (prim.name if prim else None, row)
        if row and row[0] == "streaming" and row[1] and row[2]:
            return time.monotonic()
        time.sleep(0.1)
    raise BenchError(f"{c.impl}: {what}: {name} not streaming with lag 0 within {seconds:.0f}s (last: {last}); "
                     f"logs in {c.dir}")


def now_wall():
    return datetime.datetime.now(datetime.timezone.utc)


def log_offset(n):
    try:
        return os.path.getsize(n.log)
    except OSError:
        return 0


def log_mentions(n, offset, needle):
    try:
        with open(n.log, "rb") as f:
            f.seek(offset)
            return needle.encode() in f.read()
    except OSError:
        return False


def recovery_fail(ctx, res, c, e):
    if not isinstance(e, BenchError):
        import traceback
        traceback.print_exc()
        e = f"{type(e).__name__}: {e}"
    log(f"  ERROR: {e}")
    res["errors"].append(str(e))
    ctx.failed_dirs.append(c.dir)


def recovery_rejoins(ctx, impl, run, res):
    """Former leader after a switchover, after a kill -9 failover (agent restarted at once after
    the failover), after SIGSTOP of its agent for 2 x ttl then SIGCONT. Small data."""
    T = DEFAULT
    c = Cluster(ctx, impl, T, run, label="rejoin")
    log(f"{impl} / recovery (rejoin) / run {run}: scope {c.scope}")
    bound = T.ttl + T.loop_wait + ctx.args.healthy_timeout
    try:
        c.write_configs()
        c.start_agents()
        leader, _t, _f = c.wait_healthy(ctx.args.healthy_timeout, "startup")
        ensure_table(c, leader)
        pg_sql(c.by_name(leader).pg_port, f"INSERT INTO {TABLE}(id) SELECT g FROM generate_series(3000000, 3010000) g")

        # 1. switchover: the former leader is demoted and follows the candidate
        cand = sorted(n.name for n in c.nodes if n.name != leader)[0]
        old = c.by_name(leader)
        off = log_offset(old)
        w0 = now_wall()
        t0 = time.monotonic()
        st, body = http("POST", old.rest_port, "/switchover", {"leader": leader, "candidate": cand}, timeout=90)
        if st != 200:
            raise BenchError(f"switchover answered {st}: {body.strip()[:200]}")
        t1 = wait_caught_up(c, leader, w0, bound, "former leader after switchover")
        res["switchover_s"] = round(t1 - t0, 3)
        res["switchover_rewind"] = log_mentions(old, off, "running pg_rewind")
        log(f"  former leader {leader} streaming with lag 0 {res['switchover_s']:.2f}s after the switchover request"
            f"{' (pg_rewind)' if res['switchover_rewind'] else ''}")
        leader, _t, _f = c.wait_healthy(ctx.args.healthy_timeout, "after switchover")

        # 2. kill -9 failover, agent restarted as soon as a new primary takes writes (pg_rewind path)
        old = c.by_name(leader)
        w0 = now_wall()
        fo = step_failover(ctx, c, leader)
        t_kill = time.monotonic() - fo["failover_s"]  # approximately; the exact value is below
        t_kill = fo.pop("_t_kill", t_kill)
        pm = postmaster_of(old.data_dir)
        if pm and pm[0]:
            stop_process(pm[0], pm[1], "orphaned postgres", signal.SIGKILL, 5)
        off = log_offset(old)
        old.killed = False
        t_restart = time.monotonic()
        c.start_agent(old)
        t1 = wait_caught_up(c, leader, w0, bound, "former leader after kill -9 failover")
        res["killed_failover_s"] = fo["failover_s"]
        res["killed_from_kill_s"] = round(t1 - t_kill, 3)
        res["killed_from_restart_s"] = round(t1 - t_restart, 3)
        res["killed_rewind"] = log_mentions(old, off, "running pg_rewind")
        log(f"  former leader {leader} streaming with lag 0 {res['killed_from_restart_s']:.2f}s after its agent's "
            f"restart ({res['killed_from_kill_s']:.2f}s after the kill){' (pg_rewind)' if res['killed_rewind'] else ''}")
        leader, _t, _f = c.wait_healthy(ctx.args.healthy_timeout, "after kill -9 rejoin")

        # 3. SIGSTOP of the leader's agent for 2 x ttl: its postgres stays up as a primary while
        # another member takes the lock; after SIGCONT the agent must demote it and follow.
        old = c.by_name(leader)
        wait_for_heartbeat(old, T.loop_wait * 2 + 10)
        off = log_offset(old)
        w0 = now_wall()
        t_stop = time.monotonic()
        os.kill(old.pid, signal.SIGSTOP)
        try:
            time.sleep(2 * T.ttl)
        finally:
            os.kill(old.pid, signal.SIGCONT)
        t_cont = time.monotonic()
        t1 = wait_caught_up(c, leader, w0, bound, "former leader after SIGSTOP/SIGCONT")
        res["sigstop_from_stop_s"] = round(t1 - t_stop, 3)
        res["sigstop_from_cont_s"] = round(t1 - t_cont, 3)
        res["sigstop_rewind"] = log_mentions(old, off, "running pg_rewind")
        log(f"  former leader {leader} streaming with lag 0 {res['sigstop_from_cont_s']:.2f}s after SIGCONT"
            f"{' (pg_rewind)' if res['sigstop_rewind'] else ''}")
    except Exception as e:  # noqa: BLE001
        recovery_fail(ctx, res, c, e)
    finally:
        c.teardown()


def ctl_cmd(ctx, c, n):
    if c.impl == "pgha":
        return [os.path.join(os.path.dirname(ctx.pgha_bin), "pghactl"), "-c", n.config]
    return [os.path.join(ctx.venv, "bin", "patronictl"), "-c", n.config]


def recovery_data(ctx, impl, run, res):
    """~--data-mb of pgbench data: `reinit` of a replica, a new (4th) node joining, kill -9 of a
    replica's postmaster."""
    T = DEFAULT
    c = Cluster(ctx, impl, T, run, label="data", nodes=4)
    log(f"{impl} / recovery (data) / run {run}: scope {c.scope}")
    bound = ctx.args.healthy_timeout + 600
    try:
        c.write_configs()
        c.start_agents()
        leader, _t, _f = c.wait_healthy(ctx.args.healthy_timeout, "startup")
        scale = max(1, round(ctx.args.data_mb / 15))
        t0 = time.monotonic()
        pgbench(ctx, c, c.by_name(leader).pg_port, ["-i", "-q", "-s", str(scale)], 1800)
        pg_sql(c.by_name(leader).pg_port, "CHECKPOINT")
        size = pg_sql(c.by_name(leader).pg_port, "SELECT pg_database_size('postgres')")[0][0]
        res["data_mb"] = round(size / 1048576)
        res["pgbench_scale"] = scale
        w0 = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        for n in c.nodes[:3]:
            if n.name != leader:
                wait_caught_up(c, n.name, w0, bound, "replicas after loading data")
        log(f"  loaded {res['data_mb']} MiB (pgbench -i -s {scale}) in {time.monotonic() - t0:.0f}s")

        # 1. reinit of a replica (new base backup)
        rep = sorted(n.name for n in c.nodes[:3] if n.name != leader)[0]
        rn = c.by_name(rep)
        w0 = now_wall()
        t0 = time.monotonic()
        rc, out = run_tool(ctx, ctl_cmd(ctx, c, c.by_name(leader)) + ["reinit", c.scope, rep, "--force"], "ctl",
                           f"{c.scope}/reinit", 120)
        res["reinit_output"] = out.strip()[-300:]
        if rc != 0:
            raise BenchError(f"reinit {rep} failed ({rc}): {out.strip()[-300:]}")
        t1 = wait_caught_up(c, rep, w0, bound, "reinit of a replica")
        res["reinit_s"] = round(t1 - t0, 3)
        log(f"  reinit of {rep}: streaming with lag 0 after {res['reinit_s']:.2f}s")
        leader, _t, _f = c.wait_healthy(ctx.args.healthy_timeout, "after reinit")

        # 2. a new node joins (base backup of the whole data set)
        nn = c.nodes[3]
        w0 = now_wall()
        t0 = time.monotonic()
        c.start_agent(nn)
        t1 = wait_caught_up(c, nn.name, w0, bound, "a new node joining")
        res["join_s"] = round(t1 - t0, 3)
        log(f"  new node {nn.name}: streaming with lag 0 {res['join_s']:.2f}s after its agent started")
        leader, _t, _f = c.wait_healthy(ctx.args.healthy_timeout, "after join")

        # 3. kill -9 of a replica's postmaster: crash recovery, then streaming again
        rn = c.by_name(rep)
        pm = postmaster_of(rn.data_dir)
        if not pm or not pm[0]:
            raise BenchError(f"no live postmaster for {rep}")
        w0 = now_wall()
        t0 = time.monotonic()
        os.kill(pm[0], signal.SIGKILL)
        t1 = wait_caught_up(c, rep, w0, bound, "replica after kill -9 of its postgres")
        res["replica_crash_s"] = round(t1 - t0, 3)
        log(f"  replica {rep} after kill -9 of its postmaster: streaming with lag 0 after {res['replica_crash_s']:.2f}s")
    except Exception as e:  # noqa: BLE001
        recovery_fail(ctx, res, c, e)
    finally:
        c.teardown()


def run_recovery(ctx, impl, run):
    """Issue 13: recovery paths, each timed from the fault to the node streaming with lag 0."""
    res = {"impl": impl, "timing": DEFAULT.name, "run": run, "kind": "recovery", "errors": []}
    recovery_rejoins(ctx, impl, run, res)
    recovery_data(ctx, impl, run, res)
    return res


def run_cluster(ctx, impl, timing, run, with_idle, with_rest):
    c = Cluster(ctx, impl, timing, run)
    res = {"impl": impl, "timing": timing.name, "run": run, "scope": c.scope, "errors": []}
    log(f"{impl} / {timing.name} timings ({timing.desc()}) / run {run}: scope {c.scope}")
    try:
        c.write_configs()
        c.start_agents()
        leader, t_ok, first = c.wait_healthy(ctx.args.healthy_timeout, "startup")
        res["startup_s"] = round(t_ok - c.t_started, 3)
        res["startup_first_true_s"] = {k: round(v - c.t_started, 3) for k, v in first.items()}
        res["agent_pids"] = {n.name: n.pid for n in c.nodes}
        log(f"  healthy after {res['startup_s']:.2f}s (leader {leader}; first true: "
            f"{', '.join(f'{k} {v:.2f}s' for k, v in res['startup_first_true_s'].items())})")
        if with_idle:
            res["idle"] = step_idle(ctx, c)
            for a in res["idle"]["agents"]:
                log(f"  idle {a['node']}: VmRSS {a['rss_kib'] / 1024:.1f} MiB (anon {a['rss_anon_kib'] / 1024:.1f}), CPU {a['cpu_ms']:.0f} ms over "
                    f"{res['idle']['seconds']:.0f}s (schedstat {a['cpu_ms_schedstat']:.1f} ms, "
                    f"children {a['children_cpu_ms']:.0f} ms, threads {a['threads']})")
            leader, _t, _p = c.wait_healthy(60, "after idle")
        if with_rest:
            res["rest"] = step_rest(ctx, c, leader)
            leader, _t, _p = c.wait_healthy(60, "after wrk")
        res["switchover"] = step_switchover(ctx, c, leader)
        t0 = res["switchover"].pop("_t_req")
        leader, t1, _p = c.wait_healthy(ctx.args.healthy_timeout, "rejoin after switchover")
        res["healthy_after_switchover_request_s"] = round(t1 - t0, 3)
        log(f"  healthy again {res['healthy_after_switchover_request_s']:.2f}s after the switchover request")
        res["failover"] = step_failover(ctx, c, leader)
        res["failover"].pop("_t_kill", None)
    except Exception as e:  # noqa: BLE001 - one failed run must not stop the others
        if not isinstance(e, BenchError):
            import traceback
            traceback.print_exc()
            e = f"{type(e).__name__}: {e}"
        log(f"  ERROR: {e}")
        res["errors"].append(str(e))
        ctx.failed_dirs.append(c.dir)
    finally:
        c.teardown()
    return res


# ---------------------------------------------------------------------------------------------
# etcd


def start_etcd(ctx):
    client, peer = ctx.ports.take(2)
    d = os.path.join(ctx.workdir, "etcd")
    logf = open(os.path.join(ctx.workdir, "etcd.log"), "ab")
    cmd = ["etcd", "--name", "bench", "--data-dir", d,
           "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
           "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
           "--initial-cluster", f"bench=http://127.0.0.1:{peer}", "--initial-cluster-state", "new"]
    try:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        logf.close()
    ctx.registry.add(p, "etcd", "etcd")
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if p.poll() is not None:
            raise BenchError(f"etcd exited ({p.returncode}); see {ctx.workdir}/etcd.log")
        st, body = http("GET", client, "/health", timeout=1)
        if st == 200 and "true" in body:
            ctx.etcd_port = client
            log(f"etcd {ctx.versions.get('etcd', '')} on 127.0.0.1:{client}")
            return
        time.sleep(0.2)
    raise BenchError(f"etcd not healthy within 30s; see {ctx.workdir}/etcd.log")


# ---------------------------------------------------------------------------------------------
# report


def first_line(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (p.stdout + p.stderr).strip().splitlines()[0].strip()
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "unknown"


def machine(ctx):
    mem = "?"
    cpu = "?"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    osr = "?"
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    osr = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    try:
        load = " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        load = "?"
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory": mem, "kernel": platform.release(), "os": osr,
            "loadavg_at_start": ctx.load_start, "loadavg_at_end": load}


def stats(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return {"min": min(vals), "median": statistics.median(vals), "max": max(vals), "n": len(vals)}


def summarize(results):
    """Rows: figure -> pgha stats, patroni stats, ratio, target, verdict."""
    def runs(impl, timing, scen):
        return [r for r in results if r["impl"] == impl and r["timing"] == timing and r.get("kind", "basic") == scen]

    def pick_(impl, timing, f, scen="basic"):
        out = []
        for r in runs(impl, timing, scen):
            try:
                v = f(r)
            except (KeyError, TypeError):
                v = None
            if isinstance(v, list):
                out.extend(v)
            elif v is not None:
                out.append(v)
        return out

    def idle(key, scale):
        return lambda r: [a[key] * scale for a in r["idle"]["agents"]]

    def cpu(r):
        # Sum of the agent's threads' run time (schedstat, ns) — the same quantity as utime+stime
        # from /proc/<pid>/stat without its 10 ms tick quantization, which swamps an idle agent.
        # Falls back to utime+stime when threads came or went during the window.
        return [a["cpu_ms"] if a.get("threads_changed", True) else a["cpu_ms_schedstat"]
                for a in r["idle"]["agents"]]

    def rest(which):
        def f(r):
            x = r["rest"][which]
            return None if x.get("invalid") else x["rps"]
        return f

    rows = []

    def row(fid, figure, unit, f, target, kind, limit=None, abs_limit=None, timing="default", digits=2, note="",
            scen="basic"):
        def pick(impl, timing, f):
            return pick_(impl, timing, f, scen)
        p = stats(pick("pgha", timing, f))
        q = stats(pick("patroni", timing, f)) if kind != "abs" else None
        ratio = None
        if p and q and q["median"]:
            ratio = p["median"] / q["median"]
        verdict = "n/a"
        if kind == "le" and ratio is not None:
            verdict = "met" if ratio <= limit else "missed"
        elif kind == "ge" and ratio is not None:
            verdict = "met" if ratio >= limit else "missed"
        if kind in ("le", "ge") and abs_limit is not None and p is not None and verdict != "n/a":
            if p["median"] >= abs_limit:
                verdict = "missed"
        if kind == "abs" and p:
            verdict = "met" if p["median"] < abs_limit else "missed"
        if kind == "zero":
            tot_p = sum(pick("pgha", timing, f))
            tot_q = sum(pick("patroni", timing, f))
            have = bool(pick("pgha", timing, f)) and bool(pick("patroni", timing, f))
            verdict = ("met" if tot_p == 0 and tot_q == 0 else "missed") if have else "n/a"
            p = {"min": min(pick("pgha", timing, f), default=None), "median": None,
                 "max": max(pick("pgha", timing, f), default=None), "total": tot_p,
                 "n": len(pick("pgha", timing, f))} if pick("pgha", timing, f) else None
            q = {"min": min(pick("patroni", timing, f), default=None), "median": None,
                 "max": max(pick("patroni", timing, f), default=None), "total": tot_q,
                 "n": len(pick("patroni", timing, f))} if pick("patroni", timing, f) else None
        if kind == "info":
            verdict = "info"
        rows.append({"id": fid, "figure": figure, "unit": unit, "timing": timing, "pgha": p, "patroni": q,
                     "ratio": ratio, "target": target, "verdict": verdict, "digits": digits, "note": note,
                     "section": scen})

    row("idle_rss", "agent resident memory, idle, per node", "MiB", idle("rss_kib", 1 / 1024), "≤ 0.2", "le", 0.2, digits=1)
    row("idle_cpu", "agent CPU time over the idle window, per node", "ms", cpu, "≤ 0.2", "le", 0.2, digits=1)
    row("switchover_window", "planned switchover: write-unavailability window", "s",
        lambda r: r["switchover"]["window_s"], "≤ 0.5 and < 1 s", "le", 0.5, abs_limit=1.0, digits=3)
    row("switchover_lost", "acknowledged writes lost in switchover (sum over runs)", "rows",
        lambda r: r["switchover"]["lost_acked"], "0 for both", "zero", digits=0)
    row("failover_default", "unplanned failover: kill -9 to first write on a new primary", "s",
        lambda r: r["failover"]["failover_s"], "≤ 1.0", "le", 1.0, digits=2)
    row("failover_fast", f"unplanned failover, pgha fastest safe timings ({FAST.desc()})", "s",
        lambda r: r["failover"]["failover_s"], "< 5 s", "abs", abs_limit=5.0, timing="fast", digits=2)
    row("rest_primary", "REST GET /primary on the leader (wrk)", "req/s", rest("primary"), "≥ 10", "ge", 10.0, digits=0)
    row("rest_replica", "REST GET /replica on a replica (wrk)", "req/s", rest("replica"), "≥ 10", "ge", 10.0, digits=0)
    row("startup", "start to healthy 3-node cluster (leader + 2 streaming)", "s",
        lambda r: r["startup_s"], "≤ 1.0", "le", 1.0, digits=2)
    # informational
    row("rest_primary_close", "REST GET /primary, new connection per request (wrk -H 'Connection: close')",
        "req/s", rest("primary_close"), "", "info", digits=0)
    row("rest_replica_close", "REST GET /replica, new connection per request (wrk -H 'Connection: close')",
        "req/s", rest("replica_close"), "", "info", digits=0)
    row("switchover_http", "POST /switchover answered after", "s", lambda r: r["switchover"]["http_seconds"],
        "", "info", digits=2)
    row("switchover_rest", "planned switchover: request until the candidate's GET /primary answers 200", "s",
        lambda r: r["switchover"]["rest_primary_200_after_request_s"], "", "info", digits=2)
    row("failover_rest", "unplanned failover: kill -9 until a new leader's GET /primary answers 200", "s",
        lambda r: r["failover"]["rest_primary_200_after_kill_s"], "", "info", digits=2)
    row("rejoin", "planned switchover: request until healthy again (old leader streaming, REST agreeing)", "s",
        lambda r: r["healthy_after_switchover_request_s"], "", "info", digits=2)
    row("idle_rss_anon", "agent anonymous resident memory (RssAnon), idle, per node", "MiB",
        idle("rss_anon_kib", 1 / 1024), "", "info", digits=1)
    row("failover_lost", "acknowledged writes lost in the kill -9 failover (async replication)", "rows",
        lambda r: r["failover"]["lost_acked"], "", "info", digits=0)
    row("switchover_window_fast", "planned switchover window, pgha fastest safe timings", "s",
        lambda r: r["switchover"]["window_s"], "", "info", timing="fast", digits=3)
    row("startup_fast", "start to healthy cluster, pgha fastest safe timings", "s",
        lambda r: r["startup_s"], "", "info", timing="fast", digits=2)
    row("idle_cpu_ticks", "agent CPU time over the idle window, utime+stime in 10 ms ticks from /proc/<pid>/stat",
        "ms", idle("cpu_ms", 1), "", "info", digits=0)
    row("idle_cpu_fast", "agent CPU time over the idle window, pgha fastest safe timings (loop_wait 1)", "ms",
        cpu, "", "info", timing="fast", digits=1)
    row("idle_rss_fast", "agent resident memory, idle, pgha fastest safe timings", "MiB",
        idle("rss_kib", 1 / 1024), "", "info", timing="fast", digits=1)

    # issue 10: synchronous replication
    def tps(mode):
        return lambda r: r["modes"][mode]["pgbench"]["tps"]

    def tps_ratio(mode):
        return lambda r: r["modes"][mode]["pgbench"]["tps"] / r["modes"]["false"]["pgbench"]["tps"]

    def sm(mode, *path):
        def f(r):
            x = r["modes"][mode]
            for k in path:
                x = x[k]
            return x
        return f

    S = "sync"
    row("tps_async", "pgbench -N TPS, asynchronous (synchronous_mode: false)", "tps", tps("false"), "", "info",
        digits=0, scen=S)
    row("tps_sync", "pgbench -N TPS, synchronous_mode: true", "tps", tps("true"), "", "info", digits=0, scen=S)
    row("tps_quorum", "pgbench -N TPS, synchronous_mode: quorum", "tps", tps("quorum"), "", "info", digits=0, scen=S)
    row("tps_ratio_sync", "TPS ratio synchronous_mode true ÷ async (same run)", "×", tps_ratio("true"), "", "info",
        digits=3, scen=S)
    row("tps_ratio_quorum", "TPS ratio synchronous_mode quorum ÷ async (same run)", "×", tps_ratio("quorum"), "",
        "info", digits=3, scen=S)
    for mode in ("true", "quorum"):
        row(f"sync_{mode}_switchover_window", f"synchronous_mode {mode}: switchover write-unavailability window", "s",
            sm(mode, "switchover", "window_s"), "", "info", digits=3, scen=S)
        row(f"sync_{mode}_switchover_lost", f"synchronous_mode {mode}: acknowledged writes lost in switchover", "rows",
            sm(mode, "switchover", "lost_acked"), "0 for both", "zero", digits=0, scen=S)
        row(f"sync_{mode}_failover", f"synchronous_mode {mode}: kill -9 to first write on a new primary", "s",
            sm(mode, "failover", "failover_s"), "", "info", digits=2, scen=S)
        row(f"sync_{mode}_failover_lost", f"synchronous_mode {mode}: acknowledged writes lost in the kill -9 failover",
            "rows", sm(mode, "failover", "lost_acked"), "0 for both", "zero", digits=0, scen=S)

    # issue 13: recovery paths
    def rv(key):
        return lambda r: r[key]

    R = "recovery"
    for key, figure in (
            ("switchover_s", "former leader after a switchover (from the request)"),
            ("killed_from_restart_s", "former leader after kill -9 failover (from its agent's restart, right after the failover)"),
            ("killed_from_kill_s", "former leader after kill -9 failover (from the kill; includes the ttl wait)"),
            ("sigstop_from_cont_s", "former leader after SIGSTOP of its agent for 2 × ttl (from SIGCONT)"),
            ("sigstop_from_stop_s", "former leader after SIGSTOP of its agent for 2 × ttl (from SIGSTOP)"),
            ("reinit_s", "reinit of a replica (from the ctl command)"),
            ("join_s", "new node joining (from its agent's start; base backup)"),
            ("replica_crash_s", "replica after kill -9 of its postmaster (crash recovery + streaming)")):
        row(f"recovery_{key[:-2]}", figure, "s", rv(key), "", "info", digits=2, scen=R)
    return rows


def fmt_stats(s, digits):
    if not s:
        return "—"
    if "total" in s:
        return f"{s['total']} (max/run {s['max']}, n={s['n']})"

    def f(v):
        return f"{v:.{digits}f}"
    return f"{f(s['min'])} / **{f(s['median'])}** / {f(s['max'])} (n={s['n']})"


def render_md(doc):
    a = doc["config"]
    m = doc["machine"]
    v = doc["versions"]
    L = []
    L.append(f"# pgha vs Patroni 4.1.5 — benchmark {doc['date']}")
    L.append("")
    if doc["smoke"]:
        L.append(f"**Smoke run** (runs={a['runs']}, idle window {a['idle_seconds']} s, wrk {a['wrk_seconds']} s): "
                 "shows the tool works; not the documented full run.")
        L.append("")
    L.append(f"Command: `{doc['command']}` — took {doc['duration_s'] / 60:.1f} min.")
    L.append("")
    L.append("## Machine")
    L.append("")
    L.append(f"- {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, Linux {m['kernel']}, {m['os']}")
    L.append(f"- load average at start {m['loadavg_at_start']}, at end {m['loadavg_at_end']} "
             "(other work was running on this machine: figures are noisy)")
    L.append(f"- pgha: {v['pgha']}; Patroni: {v['patroni']} (Python {v['python']}); "
             f"PostgreSQL: {v['postgresql']}; etcd: {v['etcd']}; wrk: {v['wrk']}")
    L.append("")
    L.append("## Results")
    L.append("")
    L.append("Default timings for both: ttl 30 / loop_wait 10 / retry_timeout 10 (Patroni's minimum ttl is 20). "
             "Cells: min / **median** / max over runs (idle figures: over the 3 agents). "
             "Ratio = median pgha ÷ median Patroni.")
    L.append("")
    L.append("| figure | unit | pgha | Patroni 4.1.5 | ratio | target | result |")
    L.append("| --- | --- | --- | --- | --- | --- | --- |")
    basic = [r for r in doc["summary"] if r.get("section", "basic") == "basic"]
    have_basic = any(r["pgha"] or r["patroni"] for r in basic)
    if not have_basic:
        L[-3:] = ["(The startup/idle/REST/switchover/failover scenarios were not part of this run.)", ""]
    for r in basic if have_basic else []:
        if r["verdict"] == "info":
            continue
        ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else "—"
        verdict = {"met": "✅ met", "missed": "❌ missed", "n/a": "n/a"}[r["verdict"]]
        L.append(f"| {r['figure']} | {r['unit']} | {fmt_stats(r['pgha'], r['digits'])} | "
                 f"{fmt_stats(r['patroni'], r['digits'])} | {ratio} | {r['target']} | {verdict} |")
    L.append("")
    if have_basic:
        L.append("Other figures (no target):")
        L.append("")
        L.append("| figure | unit | pgha | Patroni 4.1.5 | ratio |")
        L.append("| --- | --- | --- | --- | --- |")
    for r in basic if have_basic else []:
        if r["verdict"] != "info":
            continue
        ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else "—"
        L.append(f"| {r['figure']} | {r['unit']} | {fmt_stats(r['pgha'], r['digits'])} | "
                 f"{fmt_stats(r['patroni'], r['digits'])} | {ratio} |")
    L.append("")
    for sec, title, text in (
            ("sync", "Synchronous replication (issue 10)",
             "Per run and per `synchronous_mode` (false, true, quorum; `bootstrap.dcs.synchronous_mode` in the same "
             "YAML) a fresh 3-node cluster: `pgbench -N` TPS on the primary, then (true, quorum) a switchover to a "
             "synchronous standby and a kill -9 failover under the writer, as in the rows above. TPS ratios are "
             "taken per run (sync ÷ async of the same run), then the median."),
            ("recovery", "Recovery paths (issue 13)",
             "Each timed until the node streams again with lag 0: in the primary's `pg_stat_replication`, "
             "`state = streaming` and `replay_lsn = pg_current_wal_lsn()` over a walsender connection started after "
             "the fault. Default timings.")):
        rows = [r for r in doc["summary"] if r.get("section") == sec]
        if not any(r["pgha"] or r["patroni"] for r in rows):
            continue
        L.append(f"## {title}")
        L.append("")
        L.append(text)
        L.append("")
        L.append("| figure | unit | pgha | Patroni 4.1.5 | ratio | result |")
        L.append("| --- | --- | --- | --- | --- | --- |")
        for r in rows:
            ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else "—"
            verdict = {"met": "✅ 0", "missed": "❌ lost writes", "n/a": "n/a", "info": ""}[r["verdict"]]
            L.append(f"| {r['figure']} | {r['unit']} | {fmt_stats(r['pgha'], r['digits'])} | "
                     f"{fmt_stats(r['patroni'], r['digits'])} | {ratio} | {verdict} |")
        L.append("")
    errs = [(r["impl"], r["timing"], r["run"], e) for r in doc["runs"] for e in r["errors"]]
    if errs:
        L.append("## Errors")
        L.append("")
        for impl, timing, run, e in errs:
            L.append(f"- {impl} / {timing} / run {run}: {e}")
        L.append("")
    L.append("## Per run")
    L.append("")
    L.append("| impl | timings | run | startup s | switchover window s | POST /switchover s | lost (sw) | "
             "failover s | lost (kill -9) | /primary req/s | /replica req/s |")
    L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")

    def g(r, *path, d=2):
        x = r
        for p in path:
            if not isinstance(x, dict) or p not in x:
                return "—"
            x = x[p]
        return f"{x:.{d}f}" if isinstance(x, float) else str(x)

    for r in doc["runs"]:
        if r.get("kind", "basic") != "basic":
            continue
        L.append(f"| {r['impl']} | {r['timing']} | {r['run']} | {g(r, 'startup_s')} | "
                 f"{g(r, 'switchover', 'window_s', d=3)} | {g(r, 'switchover', 'http_seconds')} | "
                 f"{g(r, 'switchover', 'lost_acked')} | {g(r, 'failover', 'failover_s')} | "
                 f"{g(r, 'failover', 'lost_acked')} | {g(r, 'rest', 'primary', 'rps', d=0)} | "
                 f"{g(r, 'rest', 'replica', 'rps', d=0)} |")
    L.append("")
    sync_runs = [r for r in doc["runs"] if r.get("kind") == "sync"]
    if sync_runs:
        L.append("Synchronous replication, per run:")
        L.append("")
        L.append("| impl | run | mode | startup s | pgbench tps | switchover window s | lost (sw) | failover s | "
                 "lost (kill -9) | new leader was sync standby |")
        L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in sync_runs:
            for mode, m in r["modes"].items():
                fo = m.get("failover", {})
                was = (fo.get("new_leader") in m.get("sync_standbys_before_kill", [])) if fo else "—"
                L.append(f"| {r['impl']} | {r['run']} | {mode} | {g(m, 'startup_s')} | {g(m, 'pgbench', 'tps', d=0)} | "
                         f"{g(m, 'switchover', 'window_s', d=3)} | {g(m, 'switchover', 'lost_acked')} | "
                         f"{g(m, 'failover', 'failover_s')} | {g(m, 'failover', 'lost_acked')} | {was} |")
        L.append("")
    rec_runs = [r for r in doc["runs"] if r.get("kind") == "recovery"]
    if rec_runs:
        L.append("Recovery paths, per run (s; `rw` = the agent's log shows `running pg_rewind`):")
        L.append("")
        L.append("| impl | run | after switchover | after kill -9 (from restart / from kill) | "
                 "after SIGSTOP (from SIGCONT / from SIGSTOP) | data MiB | reinit | join | replica postgres kill -9 |")
        L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")

        def rw(r, k):
            return " rw" if r.get(k) else ""
        for r in rec_runs:
            L.append(f"| {r['impl']} | {r['run']} | {g(r, 'switchover_s')}{rw(r, 'switchover_rewind')} | "
                     f"{g(r, 'killed_from_restart_s')} / {g(r, 'killed_from_kill_s')}{rw(r, 'killed_rewind')} | "
                     f"{g(r, 'sigstop_from_cont_s')} / {g(r, 'sigstop_from_stop_s')}{rw(r, 'sigstop_rewind')} | "
                     f"{g(r, 'data_mb')} | {g(r, 'reinit_s')} | {g(r, 'join_s')} | {g(r, 'replica_crash_s')} |")
        L.append("")
    L.append("## Method")
    L.append("")
    L.append(f"- One etcd 3.4 (loopback) for the whole run; each run of each scenario builds a fresh 3-node cluster "
             f"(own scope, empty data directories) from the same YAML template (`bench/node.yml.tmpl`, Patroni's "
             f"schema, read unchanged by both). Agents run as `postgres` (setpriv), so the PID measured is the agent "
             f"(for Patroni, the python process). Runs are interleaved across implementations.")
    L.append("- Startup: from launching the three agents to: exactly one primary with both other members in "
             "`pg_stat_replication` as `streaming`, and the leader answering `GET /primary` 200 and both replicas "
             "`GET /replica` 200.")
    L.append(f"- Idle: after a settle period (2 × loop_wait), per agent (first run only): VmRSS from "
             f"`/proc/<pid>/status` (RssAnon/RssFile in the JSON) and the CPU time used over {a['idle_seconds']} s, "
             "as the sum of the agent's threads' run time from `/proc/<pid>/task/*/schedstat` (ns); utime+stime "
             "from `/proc/<pid>/stat` counts 10 ms ticks, too coarse for an idle agent, and is listed below the "
             "table. CPU of reaped helper processes (cutime+cstime) is in the JSON.")
    L.append(f"- REST: `wrk -t{a['wrk_threads']} -c{a['wrk_connections']} -d{a['wrk_seconds']}s` on the leader's "
             "`/primary` and a replica's `/replica`. Patroni answers HTTP/1.0 and closes the connection after every "
             "response (wrk counts those as read errors and reconnects); pgha keeps connections alive, so the same "
             "is also measured with `-H 'Connection: close'` (a new connection per request, as HAProxy's checks "
             "do). A result with more than 1 % non-2xx answers is discarded.")
    L.append(f"- Writes: `bench/writer.py` inserts one row per autocommit transaction every "
             f"{a['write_interval'] * 1000:.0f} ms into whichever node is primary (libpq multi-host, "
             "`target_session_attrs=read-write`, independent of either REST API) and logs every attempt.")
    L.append("- Switchover: `POST /switchover {\"leader\", \"candidate\"}` on the leader's own REST API. Window = the "
             "longest gap between consecutive acknowledged inserts from the request until the first acknowledged "
             "insert on the new primary. Lost = acknowledged ids missing on the new primary.")
    L.append("- Failover: right after the leader logs its heartbeat (`the leader with the lock`, just after it "
             "renewed its lock; the same phase of the HA loop for both implementations), `kill -9` of the leader's "
             "agent and then its postmaster; time until the first acknowledged insert on another node. The lock's "
             "lease then runs its full ttl, so the figure is ttl plus the cluster's reaction; etcd revokes expired "
             "leases on a 0.5 s tick.")
    L.append("")
    return "\n".join(L)


def render_svg(doc):
    """Timeline of write attempts around the first switchover of each implementation (default
    timings): green = acknowledged, red = failed. Plain SVG, no dependencies."""
    lanes = []
    for impl in ("pgha", "patroni"):
        for r in doc["runs"]:
            if r["impl"] == impl and r["timing"] == "default" and "switchover" in r and "timeline" in r["switchover"]:
                lanes.append((f"{impl} run {r['run']}", r["switchover"]["timeline"]))
                break
    if not lanes:
        return None
    tmax = max(max((p[0] for p in tl), default=1) for _, tl in lanes)
    tmin = -0.5
    W, H, left, lane_h = 900, 60 + 50 * len(lanes), 140, 50

    def x(t):
        return left + (t - tmin) / (tmax - tmin) * (W - left - 20)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="10" y="18">Write attempts around POST /switchover (t = 0), default timings; '
           f'green = acknowledged, red = failed</text>']
    step = 0.5 if tmax - tmin < 6 else (1 if tmax - tmin < 15 else 5)
    t = 0.0
    while t <= tmax:
        out.append(f'<line x1="{x(t):.1f}" y1="28" x2="{x(t):.1f}" y2="{H - 20}" stroke="#ddd"/>')
        out.append(f'<text x="{x(t):.1f}" y="{H - 5}" text-anchor="middle">{t:g}s</text>')
        t += step
    for i, (name, tl) in enumerate(lanes):
        y = 40 + i * lane_h
        out.append(f'<text x="10" y="{y + 20}">{name}</text>')
        for t, ok, _port in tl:
            col = "#2a2" if ok else "#d22"
            yy = y + (8 if ok else 24)
            out.append(f'<line x1="{x(t):.1f}" y1="{yy}" x2="{x(t):.1f}" y2="{yy + 14}" stroke="{col}"/>')
    out.append("</svg>")
    return "\n".join(out)


def write_results(doc, base, results_dir):
    """Summary into doc, then <base>.json, <base>.md, <base>-switchover.svg, latest.md."""
    doc["summary"] = summarize(doc["runs"])
    md = render_md(doc)
    svg = render_svg(doc)
    if svg:
        with open(base + "-switchover.svg", "w") as f:
            f.write(svg)
        md += f"\n![write attempts around the switchover]({os.path.basename(base)}-switchover.svg)\n"
    if doc.get("aborted"):
        md = md.replace("## Machine", f"**Run aborted:** {doc['aborted']}\n\n## Machine", 1)
    with open(base + ".json", "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    with open(base + ".md", "w") as f:
        f.write(md)
    if doc.get("aborted") or not any(r.get("kind", "basic") == "basic" for r in doc["runs"]):
        # latest.md is the table of the basic scenarios; a run without them does not replace it
        log(f"results: {base}.md, {base}.json (latest.md left as it was)")
        return md
    with open(os.path.join(results_dir, "latest.md"), "w") as f:
        f.write(md)
    log(f"results: {base}.md, {base}.json, {os.path.join(results_dir, 'latest.md')}")
    return md


# ---------------------------------------------------------------------------------------------
# main


class Ctx:
    pass


# --scenarios name -> (implementation, timings, kind); kind basic = startup/idle/REST/
# switchover/failover, sync = issue 10, recovery = issue 13.
SCENARIOS = {
    "patroni": ("patroni", DEFAULT, "basic"), "pgha": ("pgha", DEFAULT, "basic"), "pgha-fast": ("pgha", FAST, "basic"),
    "patroni-sync": ("patroni", DEFAULT, "sync"), "pgha-sync": ("pgha", DEFAULT, "sync"),
    "patroni-recovery": ("patroni", DEFAULT, "recovery"), "pgha-recovery": ("pgha", DEFAULT, "recovery"),
}


def estimate_seconds(a, impls):
    """Rough runtime estimate: per scenario run startup, wrk, switchover, rejoin, failover (lease
    expiry), teardown; plus the idle window once per scenario."""
    total = 10
    for impl, timing, kind in impls:
        if kind == "sync":
            # three clusters, pgbench each, two switchovers and two lease expiries
            total += a.runs * (3 * (20 + a.pgbench_seconds + 10) + 2 * (30 + timing.ttl + 20))
            continue
        if kind == "recovery":
            # switchover, lease expiry, 2 x ttl stopped, data load (~1 min/GB here), two base backups
            total += a.runs * (60 + 3 * timing.ttl + 4 * timing.loop_wait + 3 * 60 * a.data_mb / 1000 + 60)
            continue
        per = 20 + 10 + (timing.loop_wait + 10) + (timing.ttl + 10)
        if timing is DEFAULT:
            per += 4 * (a.wrk_seconds + 1)
        total += a.runs * per + (a.idle_seconds + (max(5, 2 * timing.loop_wait) if a.idle_seconds >= 30 else 3))
    return total


def main():
    ap = argparse.ArgumentParser(description="pgha vs Patroni 4.1.5 benchmark (see bench/README.md)")
    ap.add_argument("--runs", type=int, default=3, help="repeats of each timing scenario (default 3)")
    ap.add_argument("--idle-seconds", type=int, default=60, help="idle CPU window (default 60)")
    ap.add_argument("--wrk-seconds", type=int, default=10)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--wrk-connections", type=int, default=16)
    ap.add_argument("--write-interval", type=float, default=0.015, help="seconds between inserts (default 0.015)")
    ap.add_argument("--healthy-timeout", type=float, default=180)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help=f"comma-separated subset of {','.join(SCENARIOS)}; 'sync' and 'recovery' stand for "
                    "both implementations' (default: all)")
    ap.add_argument("--pgbench-seconds", type=int, default=15, help="pgbench -T of the sync scenarios (default 15)")
    ap.add_argument("--pgbench-clients", type=int, default=4, help="pgbench -c of the sync scenarios (default 4)")
    ap.add_argument("--data-mb", type=int, default=1000,
                    help="data set of the reinit/join/replica-crash recovery paths, in MB (default 1000)")
    ap.add_argument("--fast-timings", default="5/1/2", metavar="TTL/LOOP_WAIT/RETRY_TIMEOUT",
                    help="pgha's fastest safe timings for the pgha-fast scenario (default 5/1/2)")
    ap.add_argument("--max-minutes", type=float, default=0, help="hard limit (default: 2 × estimate + 10 min)")
    ap.add_argument("--workdir", required=False, help="(run.sh) empty world-traversable work directory")
    ap.add_argument("--pgha-bin", help="(run.sh) directory with pgha and pghactl")
    ap.add_argument("--venv", default="/tmp/pgha-patroni-venv")
    ap.add_argument("--pg-bin-dir", default="/usr/lib/postgresql/15/bin")
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    ap.add_argument("--tag", default="", help="suffix for the result file names (default: 'smoke' for a "
                    "shortened run, none for a full one)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs) even on success")
    ap.add_argument("--command", default="bench/run.sh", help="(run.sh) the command line to record")
    ap.add_argument("--cleanup", metavar="WORKDIR", help="stop everything recorded in WORKDIR and exit")
    ap.add_argument("--render", metavar="JSON", help="re-render the summary and markdown of a results JSON and exit")
    a = ap.parse_args()

    if a.cleanup:
        if os.path.isdir(a.cleanup):
            cleanup_workdir(a.cleanup, remove=False)
        return 0
    if a.render:
        with open(a.render) as f:
            doc = json.load(f)
        t = doc["config"]["timings"]["fast"]
        FAST.ttl, FAST.loop_wait, FAST.retry_timeout = t["ttl"], t["loop_wait"], t["retry_timeout"]
        write_results(doc, a.render[:-len(".json")] if a.render.endswith(".json") else a.render,
                      os.path.dirname(os.path.abspath(a.render)))
        return 0
    if os.geteuid() != 0:
        print("bench.py: must run as root (agents run as the postgres user via setpriv)", file=sys.stderr)
        return 2
    if not a.workdir or not a.pgha_bin:
        print("bench.py: --workdir and --pgha-bin are required (use bench/run.sh)", file=sys.stderr)
        return 2
    if a.runs < 1 or a.idle_seconds < 1 or a.wrk_seconds < 1:
        print("bench.py: --runs, --idle-seconds and --wrk-seconds must be >= 1", file=sys.stderr)
        return 2

    ctx = Ctx()
    ctx.args = a
    ctx.workdir = os.path.realpath(a.workdir)
    ctx.registry = Registry(ctx.workdir)
    ctx.ports = Ports()
    ctx.failed_dirs = []
    ctx.venv = a.venv
    ctx.pg_bin_dir = a.pg_bin_dir
    import pwd
    pw = pwd.getpwnam("postgres")
    ctx.pg_uid, ctx.pg_gid = pw.pw_uid, pw.pw_gid
    ctx.load_start = " ".join(open("/proc/loadavg").read().split()[:3])

    bindir = os.path.join(ctx.workdir, "bin")
    os.makedirs(bindir, exist_ok=True)
    for b in ("pgha", "pghactl"):
        shutil.copy2(os.path.join(a.pgha_bin, b), os.path.join(bindir, b))
        os.chmod(os.path.join(bindir, b), 0o755)
    ctx.pgha_bin = os.path.join(bindir, "pgha")

    git = first_line(["git", "-C", REPO, "describe", "--always", "--dirty"])
    ctx.versions = {
        "pgha": f"{first_line([ctx.pgha_bin, '--version'])} (git {git})",
        "patroni": first_line([os.path.join(a.venv, "bin", "patroni"), "--version"]),
        "python": platform.python_version(),
        "postgresql": first_line([os.path.join(a.pg_bin_dir, "postgres"), "--version"]),
        "etcd": first_line(["etcd", "--version"]).replace("etcd Version: ", ""),
        "wrk": first_line(["wrk", "-v"]).split(" Copyright")[0],
    }

    try:
        ttl, lw, rt = (int(x) for x in a.fast_timings.split("/"))
    except ValueError:
        print("bench.py: --fast-timings wants TTL/LOOP_WAIT/RETRY_TIMEOUT, e.g. 10/1/3", file=sys.stderr)
        return 2
    FAST.ttl, FAST.loop_wait, FAST.retry_timeout = ttl, lw, rt
    wanted = []
    for x in (x.strip() for x in a.scenarios.split(",")):
        wanted += {"sync": ["patroni-sync", "pgha-sync"], "recovery": ["patroni-recovery", "pgha-recovery"]}.get(x, [x])
    wanted = [x for x in wanted if x]
    bad = [x for x in wanted if x not in SCENARIOS]
    if bad or not wanted:
        print(f"bench.py: unknown scenario(s) {bad}; choose from {', '.join(SCENARIOS)}, sync, recovery",
              file=sys.stderr)
        return 2
    scenarios = [SCENARIOS[x] for x in SCENARIOS if x in wanted]
    est = estimate_seconds(a, scenarios)
    limit = a.max_minutes * 60 if a.max_minutes > 0 else 2 * est + 600
    log(f"scenarios: {', '.join(f'{i}/{k}/{t.name}' for i, t, k in scenarios)}; runs {a.runs}; "
        f"estimated runtime ~{est / 60:.0f} min, hard limit {limit / 60:.0f} min")
    log(f"work directory {ctx.workdir}")

    def on_alarm(_s, _f):
        raise Timeout()

    def on_term(_s, _f):
        raise Interrupted()

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_term)
    signal.alarm(int(limit))

    results = []
    status = 0
    started_wall = datetime.datetime.now(datetime.timezone.utc)
    aborted = None
    try:
        start_etcd(ctx)
        for run in range(1, a.runs + 1):
            for impl, timing, kind in scenarios:
                if kind == "sync":
                    res = run_sync(ctx, impl, run)
                elif kind == "recovery":
                    res = run_recovery(ctx, impl, run)
                else:
                    res = run_cluster(ctx, impl, timing, run, with_idle=(run == 1), with_rest=(timing is DEFAULT))
                results.append(res)
    except Timeout:
        aborted = f"hard time limit of {limit / 60:.0f} min reached"
    except Interrupted:
        aborted = "interrupted by a signal"
    except BenchError as e:
        aborted = str(e)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if aborted:
            log(f"ABORTED: {aborted}; cleaning up")
            status = 1
        cleanup_workdir(ctx.workdir, ctx.registry, remove=False)

    any_err = any(r["errors"] for r in results)
    if results:
        date = started_wall.strftime("%Y-%m-%d")
        doc = {
            "date": started_wall.strftime("%Y-%m-%d %H:%M UTC"),
            "command": a.command,
            "smoke": (a.runs < 3 or a.idle_seconds < 60 or a.wrk_seconds < 10 or a.pgbench_seconds < 15
                      or a.data_mb < 1000),
            "aborted": aborted,
            "duration_s": round(time.monotonic() - T_START, 1),
            "machine": machine(ctx),
            "versions": ctx.versions,
            "config": {"runs": a.runs, "idle_seconds": a.idle_seconds, "wrk_seconds": a.wrk_seconds,
                       "wrk_threads": a.wrk_threads, "wrk_connections": a.wrk_connections,
                       "write_interval": a.write_interval, "pgbench_seconds": a.pgbench_seconds,
                       "pgbench_clients": a.pgbench_clients, "data_mb": a.data_mb, "scenarios": wanted,
                       "timings": {t.name: {"ttl": t.ttl, "loop_wait": t.loop_wait, "retry_timeout": t.retry_timeout}
                                   for t in (DEFAULT, FAST)}},
            "runs": results,
        }
        os.makedirs(a.results, exist_ok=True)
        tag = a.tag or ("smoke" if doc["smoke"] else "")
        base = os.path.join(a.results, date + (f"-{tag}" if tag else ""))
        md = write_results(doc, base, a.results)
        print(md)
    if any_err or aborted:
        status = 1
    if any_err or aborted or a.keep:
        shutil.rmtree(os.path.join(ctx.workdir, "etcd"), ignore_errors=True)
        log(f"logs kept in {ctx.workdir} (remove it when done)")
    else:
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
