#!/usr/bin/env bash
# A local three-node pgha cluster on loopback behind HAProxy, for trying things out: the stand
# the Patroni how-tos build by hand on several machines, in one command.
#
#   scripts/cluster.sh up       # install missing packages (as root), build, start, wait, list
#   scripts/cluster.sh status   # pghactl list + HAProxy's view of the servers
#   scripts/cluster.sh down     # stop everything and remove the directory
#
# Layout (PGHA_LAB_DIR, default /tmp/pgha-lab): pgha, pghactl, node{1,2,3}.yml, node{1,2,3}.log,
# node{1,2,3}.pid, etcd.pid, etcd.log, etcd/ (data), node{1,2,3}/ (data dir, pgpass, socket),
# haproxy.cfg, haproxy.pid, haproxy.log.
# etcd listens on 127.0.0.1:2379 (peer 2380), PostgreSQL on 5441-5443, the REST APIs on
# 8011-8013; HAProxy (configured by `pghactl haproxy-config`) on 127.0.0.1:5000 (primary, checks
# /primary), 5001 (replicas, checks /replica) and 7000 (stats page). As root, the agents (and so
# PostgreSQL) run as the `postgres` user.
# PGHA_LAB_BIN_DIR=DIR uses the pgha/pghactl found in DIR instead of building release binaries.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE="${PGHA_LAB_DIR:-/tmp/pgha-lab}"
SCOPE="pgha-lab"
ETCD_PORT=2379
ETCD_PEER_PORT=2380
PG_PORTS=(5441 5442 5443)
REST_PORTS=(8011 8012 8013)
HAPROXY_PRIMARY_PORT=5000
HAPROXY_REPLICA_PORT=5001
HAPROXY_STATS_PORT=7000
HAPROXY_BIN="${PGHA_LAB_HAPROXY:-/usr/sbin/haproxy}"
BIN_DIR=/usr/lib/postgresql/15/bin
WAIT_SECONDS=90

log() { echo "cluster.sh: $*" >&2; }
die() { log "$*"; exit 1; }

is_root() { [[ "$(id -u)" == 0 ]]; }

# PID in file $1 if that process is alive and its command line mentions $BASE (so a recycled
# PID is never taken for ours); empty otherwise.
live_pid() {
    local f="$1" pid
    [[ -f "$f" ]] || return 0
    pid="$(head -n1 "$f" | tr -dc '0-9')"
    [[ -n "$pid" && -d "/proc/$pid" ]] || return 0
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$BASE"; then
        echo "$pid"
    fi
}

# The live postmaster of data dir $1 (pid from postmaster.pid, cwd = the data dir).
live_postmaster() {
    local data="$1" pid
    [[ -f "$data/postmaster.pid" ]] || return 0
    pid="$(head -n1 "$data/postmaster.pid" | tr -dc '0-9')"
    [[ -n "$pid" && -d "/proc/$pid" ]] || return 0
    if [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$(readlink -f "$data")" ]]; then
        echo "$pid"
    fi
}

# Waits up to $2 seconds for PID $1 to disappear.
wait_gone() {
    local pid="$1" i
    for ((i = 0; i < $2 * 10; i++)); do
        [[ -d "/proc/$pid" ]] || return 0
        # A zombie child of ours counts as gone.
        [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && return 0
        sleep 0.1
    done
    return 1
}

stop_pid() { # pid, name, signal, grace seconds
    local pid="$1" name="$2" sig="$3" grace="$4"
    kill "-$sig" "$pid" 2>/dev/null || return 0
    if ! wait_gone "$pid" "$grace"; then
        log "$name (pid $pid) still running after SIG$sig + ${grace}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 5 || log "$name (pid $pid) survived SIGKILL"
    fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ctl() { "$BASE/pghactl" -c "$BASE/node1.yml" "$@"; }

ensure_packages() {
    local missing=()
    [[ -x "$BIN_DIR/postgres" ]] || missing+=(postgresql-15)
    command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
    command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
    [[ -x "$HAPROXY_BIN" ]] || missing+=(haproxy)
    ((${#missing[@]} == 0)) && return 0
    is_root || die "missing packages: ${missing[*]} (run as root to install them, or apt-get install them)"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
}

write_config() { # index (1-based)
    local i="$1" name="node$1" dir="$BASE/node$1"
    local pg="${PG_PORTS[$((i - 1))]}" rest="${REST_PORTS[$((i - 1))]}"
    cat >"$BASE/$name.yml" <<YAML
# node configuration written by scripts/cluster.sh
scope: "$SCOPE"
namespace: "/service/"
name: "$name"
restapi:
  listen: "127.0.0.1:$rest"
  connect_address: "127.0.0.1:$rest"
etcd3:
  hosts:
    - "127.0.0.1:$ETCD_PORT"
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 1
    retry_timeout: 3
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: "replica"
        hot_standby: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_log_hints: "on"
        max_connections: 100
        shared_buffers: "64MB"
  initdb:
    - encoding: "UTF8"
    - locale: "C.UTF-8"
    - "data-checksums"
postgresql:
  listen: "127.0.0.1:$pg"
  connect_address: "127.0.0.1:$pg"
  data_dir: "$dir/data"
  bin_dir: "$BIN_DIR"
  pgpass: "$dir/pgpass"
  authentication:
    superuser:
      username: "postgres"
      password: "lab-su-pass"
    replication:
      username: "replicator"
      password: "lab-repl-pass"
    rewind:
      username: "rewind_user"
      password: "lab-rewind-pass"
  parameters:
    unix_socket_directories: "$dir"
  pg_hba:
    - "local all all trust"
    - "host replication replicator 127.0.0.1/32 md5"
    - "host all all 127.0.0.1/32 md5"
tags:
  nofailover: false
  noloadbalance: false
  clonefrom: false
  nosync: false
YAML
    chmod 0644 "$BASE/$name.yml"
}

# Runs "$@" in the background in a new session (so neither Ctrl-C nor a closing terminal reaches
# it) with its output appended to log $1 and its own PID (not setsid's or runuser's) written to
# pid file $2; as user $3 when that is not empty.
spawn_detached() {
    local logf="$1" pidfile="$2" user="$3" what="$4"
    shift 3
    : >"$pidfile"
    [[ -n "$user" ]] && chown "$user": "$pidfile"
    local inner='echo $$ > "$0"; exec "$@"'
    if [[ -n "$user" ]]; then
        (exec setsid runuser -u "$user" -- sh -c "$inner" "$pidfile" "$@") </dev/null >>"$logf" 2>&1 &
    else
        (exec setsid sh -c "$inner" "$pidfile" "$@") </dev/null >>"$logf" 2>&1 &
    fi
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -s "$pidfile" ]] && return 0
        sleep 0.1
    done
    die "could not start $what (no pid in $pidfile)"
}

start_agent() {
    local name="node$1" user=""
    is_root && user=postgres
    (cd "$BASE/$name" && spawn_detached "$BASE/$name.log" "$BASE/$name.pid" "$user" \
        "$BASE/pgha" "$BASE/$name.yml")
}

healthy() {
    local out
    out="$(ctl list 2>/dev/null)" || return 1
    [[ "$(grep -cE '^\| *node[0-9]+ *\|[^|]*\| *Leader *\| *running *\|' <<<"$out")" == 1 ]] &&
        [[ "$(grep -cE '^\| *node[0-9]+ *\|[^|]*\| *Replica *\| *streaming *\|' <<<"$out")" == 2 ]]
}

# HAProxy's configuration from the members in etcd, checked by HAProxy itself.
write_haproxy_config() {
    ctl haproxy-config "$SCOPE" --bind 127.0.0.1 \
        --primary-port "$HAPROXY_PRIMARY_PORT" --replica-port "$HAPROXY_REPLICA_PORT" \
        --stats-port "$HAPROXY_STATS_PORT" \
        >"$BASE/haproxy.cfg.new" || die "pghactl haproxy-config failed"
    "$HAPROXY_BIN" -c -q -f "$BASE/haproxy.cfg.new" >"$BASE/haproxy.check" 2>&1 ||
        die "HAProxy rejects the generated configuration: $(cat "$BASE/haproxy.check")"
    rm -f "$BASE/haproxy.check"
    mv "$BASE/haproxy.cfg.new" "$BASE/haproxy.cfg"
}

start_haproxy() {
    local p
    for p in "$HAPROXY_PRIMARY_PORT" "$HAPROXY_REPLICA_PORT" "$HAPROXY_STATS_PORT"; do
        port_in_use "$p" && die "port 127.0.0.1:$p (HAProxy) is already in use; stop what listens there (ss -ltnp 'sport = :$p') and run up again"
    done
    write_haproxy_config
    log "starting HAProxy: primary 127.0.0.1:$HAPROXY_PRIMARY_PORT, replicas :$HAPROXY_REPLICA_PORT, stats :$HAPROXY_STATS_PORT"
    # -db: stay in the foreground, so the PID we record is HAProxy's own.
    (cd "$BASE" && spawn_detached "$BASE/haproxy.log" "$BASE/haproxy.pid" "" \
        "$HAPROXY_BIN" -db -f "$BASE/haproxy.cfg")
    local i
    for ((i = 0; i < 50; i++)); do
        port_in_use "$HAPROXY_STATS_PORT" && break
        [[ -n "$(live_pid "$BASE/haproxy.pid")" ]] || die "HAProxy exited; see $BASE/haproxy.log"
        sleep 0.1
    done
    ((i < 50)) || die "HAProxy did not open port $HAPROXY_STATS_PORT; see $BASE/haproxy.log"
    # HAProxy starts with every server UP until its first failed check: wait until the checks
    # have sorted them (one primary) before telling anyone to connect.
    for ((i = 0; i < 150; i++)); do
        [[ "$(haproxy_states 2>/dev/null | grep -cE '^  primary +node[0-9]+ +UP')" == 1 ]] && return 0
        sleep 0.1
    done
    log "HAProxy does not route to exactly one primary yet:"
    haproxy_states || true
}

# GET http://127.0.0.1:$1$2 (curl when present, else bash's /dev/tcp).
http_get() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsS --max-time 3 "http://127.0.0.1:$1$2"
        return
    fi
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
    timeout 3 cat <&3 | sed '1,/^\r\{0,1\}$/d'
    exec 3<&-
}

# HAProxy's state of each server, from the stats page's CSV (pxname, svname, ..., status).
haproxy_states() {
    local csv
    csv="$(http_get "$HAPROXY_STATS_PORT" '/;csv')" || { log "HAProxy stats page not answering"; return 1; }
    awk -F, 'NR > 1 && $1 != "stats" && $2 != "FRONTEND" {
                 printf "  %-9s %-8s %s\n", $1, ($2 == "BACKEND" ? "(all)" : $2), $18 }' <<<"$csv"
}

cmd_up() {
    if [[ -n "$(live_pid "$BASE/etcd.pid")" ]]; then
        log "already running in $BASE"
        [[ -n "$(live_pid "$BASE/haproxy.pid")" ]] || start_haproxy
        cmd_status || true
        return 0
    fi
    ensure_packages
    if is_root; then
        id postgres >/dev/null 2>&1 || die "no postgres user (install postgresql-15)"
    fi
    local p
    for p in "$ETCD_PORT" "$ETCD_PEER_PORT" "${PG_PORTS[@]}" "${REST_PORTS[@]}" \
        "$HAPROXY_PRIMARY_PORT" "$HAPROXY_REPLICA_PORT" "$HAPROXY_STATS_PORT"; do
        port_in_use "$p" && die "port 127.0.0.1:$p is already in use (another etcd/PostgreSQL/HAProxy/cluster?); stop it first"
    done
    [[ -e "$BASE" ]] && die "$BASE exists but nothing of ours runs there: remove it (scripts/cluster.sh down) first"

    local target
    if [[ -n "${PGHA_LAB_BIN_DIR:-}" ]]; then
        target="$PGHA_LAB_BIN_DIR"
        log "using the binaries in $target (PGHA_LAB_BIN_DIR), not building"
    else
        log "building (cargo build --release -p pgha-agent -p pgha-ctl)"
        (cd "$REPO" && cargo build --release -p pgha-agent -p pgha-ctl)
        target="${CARGO_TARGET_DIR:-$REPO/target}/release"
    fi
    [[ -x "$target/pgha" && -x "$target/pghactl" ]] || die "no pgha/pghactl in $target"

    mkdir -p "$BASE"
    chmod 0755 "$BASE"
    install -m 0755 "$target/pgha" "$target/pghactl" "$BASE/"

    log "starting etcd on 127.0.0.1:$ETCD_PORT"
    (cd "$BASE" && spawn_detached "$BASE/etcd.log" "$BASE/etcd.pid" "" \
        etcd --name default --data-dir "$BASE/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT")
    local i
    for ((i = 0; i < 100; i++)); do
        ETCDCTL_API=3 etcdctl --endpoints="http://127.0.0.1:$ETCD_PORT" --dial-timeout=1s \
            endpoint health >/dev/null 2>&1 && break
        [[ -n "$(live_pid "$BASE/etcd.pid")" ]] || die "etcd exited; see $BASE/etcd.log"
        sleep 0.2
    done
    ((i < 100)) || die "etcd did not become healthy; see $BASE/etcd.log"

    for i in 1 2 3; do
        mkdir -p "$BASE/node$i"
        chmod 0755 "$BASE/node$i"
        is_root && chown postgres: "$BASE/node$i"
        write_config "$i"
    done
    for i in 1 2 3; do
        start_agent "$i"
    done

    log "waiting (up to ${WAIT_SECONDS}s) for a leader and two streaming replicas"
    local start=$SECONDS
    until healthy; do
        if ((SECONDS - start > WAIT_SECONDS)); then
            ctl list || true
            die "not healthy after ${WAIT_SECONDS}s; logs: $BASE/node{1,2,3}.log (stop with: scripts/cluster.sh down)"
        fi
        sleep 2
    done
    start_haproxy
    ctl list
    cat <<EOF

pgha cluster '$SCOPE' is up in $BASE (took $((SECONDS - start))s after start).
  list:     $BASE/pghactl -c $BASE/node1.yml list
  primary:  PGPASSWORD=lab-su-pass psql -h 127.0.0.1 -p $HAPROXY_PRIMARY_PORT -U postgres   (HAProxy, read-write)
  replicas: PGPASSWORD=lab-su-pass psql -h 127.0.0.1 -p $HAPROXY_REPLICA_PORT -U postgres   (HAProxy, read-only)
  stats:    http://127.0.0.1:$HAPROXY_STATS_PORT/
  nodes:    PGPASSWORD=lab-su-pass psql -h 127.0.0.1 -p 5441 -U postgres   (5441-5443)
  REST:     curl http://127.0.0.1:8011/patroni                             (8011-8013)
  metrics:  curl http://127.0.0.1:8011/metrics
  logs:     $BASE/node{1,2,3}.log, $BASE/etcd.log, $BASE/haproxy.log
  stop:     scripts/cluster.sh down
EOF
}

cmd_down() {
    if [[ ! -d "$BASE" ]]; then
        log "nothing to stop: $BASE does not exist"
        return 0
    fi
    local i p pid pids=()
    pid="$(live_pid "$BASE/haproxy.pid")"
    [[ -n "$pid" ]] && { log "stopping HAProxy (pid $pid)"; stop_pid "$pid" haproxy TERM 5; }
    # All agents at once (one by one, each stop of a leader would start a failover).
    for i in 1 2 3; do
        pid="$(live_pid "$BASE/node$i.pid")"
        [[ -n "$pid" ]] || continue
        log "stopping agent node$i (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid:node$i")
    done
    for p in "${pids[@]}"; do
        stop_pid "${p%%:*}" "agent ${p#*:}" TERM 30
    done
    for i in 1 2 3; do
        pid="$(live_postmaster "$BASE/node$i/data")"
        [[ -n "$pid" ]] && { log "stopping postgres of node$i (pid $pid)"; stop_pid "$pid" "postgres node$i" QUIT 5; }
    done
    pid="$(live_pid "$BASE/etcd.pid")"
    [[ -n "$pid" ]] && { log "stopping etcd (pid $pid)"; stop_pid "$pid" etcd TERM 10; }
    rm -rf "$BASE"
    log "stopped; removed $BASE"
}

cmd_status() {
    if [[ -z "$(live_pid "$BASE/etcd.pid")" ]]; then
        log "not running (no etcd of ours in $BASE)"
        return 1
    fi
    local i pid
    for i in 1 2 3; do
        pid="$(live_pid "$BASE/node$i.pid")"
        if [[ -n "$pid" ]]; then log "agent node$i: running, pid $pid"; else log "agent node$i: NOT running"; fi
    done
    ctl list
    pid="$(live_pid "$BASE/haproxy.pid")"
    if [[ -z "$pid" ]]; then
        log "HAProxy: NOT running (scripts/cluster.sh up starts it)"
        return 0
    fi
    echo "HAProxy (pid $pid): primary :$HAPROXY_PRIMARY_PORT, replicas :$HAPROXY_REPLICA_PORT, stats http://127.0.0.1:$HAPROXY_STATS_PORT/"
    haproxy_states || true
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 up|down|status" >&2
        exit 2
        ;;
esac
