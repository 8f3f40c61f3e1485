#!/usr/bin/env bash
# A local pgha cluster on loopback behind HAProxy, for trying things out: the stand the Patroni
# how-tos build by hand on several machines, in one command.
#
#   scripts/cluster.sh up [--nodes N] [--etcd 1|3|5] [--port-offset K] [--tls] [--monitoring]
#                         [--netns]
#                               # install missing packages (as root), build, start, wait, list;
#                               # --monitoring adds Prometheus (and Grafana when one is found);
#                               # --netns gives every node its own network namespace (see below)
#   scripts/cluster.sh status   # what runs, pghactl list, HAProxy's view of the servers
#   scripts/cluster.sh stop     # stop every process, keep the data (`up` starts them again)
#   scripts/cluster.sh down     # stop every process and remove the directory
#   scripts/cluster.sh stop-node I   # stop node I's agent (SIGTERM: it stops PostgreSQL cleanly)
#   scripts/cluster.sh start-node I  # start node I's agent again, as `up` starts it
#   scripts/cluster.sh add-node      # a new node N+1 in a running lab: it clones from the leader
#   scripts/cluster.sh remove-node I # stop node I (the last one) and remove it from the lab
#
# Settings (flags win over the environment; `up` records them in the lab directory, so
# status/stop/down and a later `up` need none of them):
#   PGHA_LAB_DIR=DIR           where everything lives (default /tmp/pgha-lab)
#   PGHA_LAB_NODES=N           --nodes: PostgreSQL + agent pairs, node1..nodeN (default 3)
#   PGHA_LAB_ETCD=M            --etcd: etcd members, 1 (default), 3 or 5
#   PGHA_LAB_PORT_OFFSET=K     --port-offset: added to every port below (default 0), so a second
#                              lab (a test, say) can run next to yours
#   PGHA_LAB_BIN_DIR=DIR       use the pgha/pghactl found in DIR instead of a release build
#   PGHA_LAB_SYNC=true|false   synchronous_mode of a new lab (default true: with the lease guard,
#                              a failover loses no acknowledged write; README "Safety")
#   PGHA_GRAFANA_HOME=DIR      with --monitoring: the Grafana (an unpacked release) to start; else
#                              a grafana / grafana-server on PATH, else Prometheus only
#   PGHA_LAB_TLS=1             --tls: a new lab with TLS on every link (see "TLS" below)
#   PGHA_LAB_NETNS=1           --netns: a new lab with a network namespace per node (see below)
#   PGHA_LAB_TTL=S             ttl of a new lab's cluster (default 20; at least 7 with the lab's
#                              loop_wait 1 and retry_timeout 3)
#
# Network namespaces (--netns, as root, for a new lab; the lab keeps it): node i's agent and
# PostgreSQL run in the namespace pgha-b<B>-node<i>, whose eth0 (address 10.201.0.(16B+1+i)/28)
# is one end of a veth pair; the other end, pghab<B>n<i>, is a port of the bridge pghabr<B>
# (10.201.0.(16B+1)) in the root namespace. B, the lab's block, is (port offset / 250) mod 16,
# so labs at different offsets get different bridges and /28s of 10.201.0.0/24 (up at most 13
# nodes). etcd and HAProxy stay in the root namespace, listening on the bridge address too (the
# agents reach etcd there, a client in a namespace HAProxy); each node's PostgreSQL and REST API
# listen on (and advertise) the node's own address, where HAProxy checks them and the other
# nodes replicate from them. Two
# iptables rules in the root namespace (comment pgha-lab-b<B>) accept the bridge's traffic in
# INPUT and FORWARD. `pghactl drill` cuts a node's link or drops its packets there; `down`
# removes the namespaces, the veths, the bridge and those rules. Not with --tls (the lab's
# certificates name 127.0.0.1 only).
#
# TLS (--tls, for a new lab; the lab keeps it): `pghactl lab-certs` makes a private CA and one
# certificate per node (for node<i>, localhost and 127.0.0.1) in tls/. etcd serves clients and
# peers over https and wants client certificates; each agent's REST API is https with
# verify_client: required; PostgreSQL runs with ssl on and pg_hba takes TCP connections only as
# `hostssl ... clientcert=verify-ca`; every database user connects with sslmode verify-full and
# the node's certificate; pghactl uses ctl.* of node1.yml; HAProxy checks the REST APIs with
# check-ssl, verifying them against the CA and presenting tls/haproxy.pem; with --monitoring,
# Prometheus scrapes the agents and etcd over https with tls/prometheus.crt.
#
# Ports (all on 127.0.0.1, each + K; with --netns a node's on its own address): etcd member k (1..M) listens for clients on 2279+100k
# (2379, 2479, 2579, ...) and for peers on 2280+100k (2380, 2480, ...); node i (1..N) runs
# PostgreSQL on 5440+i (5441, 5442, ...) and its REST API on 8010+i (8011, 8012, ...); HAProxy
# (configured by `pghactl haproxy-config`) serves the primary on 5000 (checks /primary), the
# replicas on 5001 (checks /replica) and its stats page on 7000. With --monitoring, Prometheus
# listens on 7090 and Grafana on 7030 (see "monitoring" below).
#
# Layout of the lab directory: lab.env (N, M, K, the ttl, whether the nodes have namespaces and
# their block, as `up` and add-node / remove-node left them), pgha, pghactl, cluster.sh
# (a copy of this script, so tools such as `pghactl drill` restart an agent exactly as `up` does),
# node<i>.yml, node<i>.log, node<i>.pid, node<i>/ (data dir, pgpass, socket), etcd<k>.pid,
# etcd<k>.log, etcd<k>/ (data), haproxy.cfg, haproxy.pid, haproxy.log.
# Every process the script starts is recorded in a .pid file and stopped through it (after
# checking that PID still runs a command mentioning the lab directory); PostgreSQL, which the
# agents start, is found through its data directory's postmaster.pid. As root, the agents (and
# so PostgreSQL) run as the `postgres` user.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE="${PGHA_LAB_DIR:-/tmp/pgha-lab}"
[[ "$BASE" == /* ]] || BASE="$PWD/$BASE"
BASE="${BASE%/}"
STATE="$BASE/lab.env"
SCOPE="pgha-lab"
HAPROXY_BIN="${PGHA_LAB_HAPROXY:-/usr/sbin/haproxy}"
PG_BIN_DIR=/usr/lib/postgresql/15/bin
MAX_NODES=20

log() { echo "cluster.sh: $*" >&2; }
die() {
    log "$*"
    exit 1
}

usage() {
    cat >&2 <<EOF
usage: $0 up [--nodes N] [--etcd 1|3|5] [--port-offset K] [--tls] [--monitoring] [--netns]
       $0 status | stop | down
       $0 stop-node I | start-node I
       $0 add-node | remove-node I
Environment: PGHA_LAB_DIR (default /tmp/pgha-lab), PGHA_LAB_NODES, PGHA_LAB_ETCD,
PGHA_LAB_PORT_OFFSET, PGHA_LAB_BIN_DIR, PGHA_GRAFANA_HOME, PGHA_LAB_TLS, PGHA_LAB_NETNS,
PGHA_LAB_TTL; see the top of this script.
EOF
    exit 2
}

is_root() { [[ "$(id -u)" == 0 ]]; }

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

# ----- settings and ports -----

# What the caller asked for (empty = not asked); resolved against lab.env by load_layout.
WANT_NODES="${PGHA_LAB_NODES:-}"
WANT_ETCD="${PGHA_LAB_ETCD:-}"
WANT_OFFSET="${PGHA_LAB_PORT_OFFSET:-}"
WANT_TTL="${PGHA_LAB_TTL:-}"
NODES=""
ETCD_MEMBERS=""
OFFSET=""
TTL=20
NETNS=0
NETNS_BLOCK=0
LEGACY=0 # a lab made by the three-node version of this script (no lab.env, etcd.pid)

# Reads lab.env without sourcing it: only the known keys, only numbers. TTL and NETNS* are
# missing in labs made before they existed: those have the defaults.
read_state() {
    local k v
    while IFS='=' read -r k v; do
        is_uint "$v" || continue
        case "$k" in
            NODES) NODES="$v" ;;
            ETCD_MEMBERS) ETCD_MEMBERS="$v" ;;
            PORT_OFFSET) OFFSET="$v" ;;
            TTL) TTL="$v" ;;
            NETNS) NETNS="$v" ;;
            NETNS_BLOCK) NETNS_BLOCK="$v" ;;
        esac
    done <"$STATE"
    [[ -n "$NODES" && -n "$ETCD_MEMBERS" && -n "$OFFSET" ]] || die "$STATE is incomplete"
}

write_state() {
    printf 'NODES=%s\nETCD_MEMBERS=%s\nPORT_OFFSET=%s\nTTL=%s\nNETNS=%s\nNETNS_BLOCK=%s\n' \
        "$NODES" "$ETCD_MEMBERS" "$OFFSET" "$TTL" "$NETNS" "$NETNS_BLOCK" >"$STATE.new"
    mv "$STATE.new" "$STATE"
}

# Settles NODES / ETCD_MEMBERS / OFFSET: those recorded by `up` when the lab exists (a request
# for something else is an error for `up`, which cannot reshape a lab, and ignored otherwise),
# else the requested ones or the defaults.
load_layout() {
    local cmd="$1"
    if [[ -f "$STATE" ]]; then
        read_state
    elif [[ -f "$BASE/node1.yml" && -f "$BASE/etcd.pid" ]]; then
        NODES=3 ETCD_MEMBERS=1 OFFSET=0 LEGACY=1
    fi
    if [[ -n "$NODES" ]]; then
        local what want have
        for what in "nodes:$WANT_NODES:$NODES" "etcd:$WANT_ETCD:$ETCD_MEMBERS" \
            "port-offset:$WANT_OFFSET:$OFFSET" "ttl (PGHA_LAB_TTL):$WANT_TTL:$TTL"; do
            IFS=: read -r what want have <<<"$what"
            [[ -z "$want" || "$want" == "$have" ]] && continue
            [[ "$cmd" == up ]] &&
                die "the lab in $BASE was created with --$what $have, not $want: run 'scripts/cluster.sh down' first to change it"
            log "note: the lab in $BASE has --$what $have; ignoring $want"
        done
        return 0
    fi
    NODES="${WANT_NODES:-3}"
    ETCD_MEMBERS="${WANT_ETCD:-1}"
    OFFSET="${WANT_OFFSET:-0}"
    is_uint "$NODES" && NODES=$((10#$NODES)) && ((NODES >= 1 && NODES <= MAX_NODES)) ||
        die "--nodes / PGHA_LAB_NODES must be a number from 1 to $MAX_NODES, not '$NODES'"
    [[ "$ETCD_MEMBERS" =~ ^[135]$ ]] ||
        die "--etcd / PGHA_LAB_ETCD must be 1, 3 or 5 (an odd etcd cluster), not '$ETCD_MEMBERS'"
    is_uint "$OFFSET" && OFFSET=$((10#$OFFSET)) && ((OFFSET + 8010 + NODES <= 65535)) ||
        die "--port-offset / PGHA_LAB_PORT_OFFSET must be a number keeping every port under 65536, not '$OFFSET'"
    TTL="${WANT_TTL:-20}"
    # The agents refuse a ttl below loop_wait + 2 * retry_timeout (1 + 2 * 3 in the lab).
    is_uint "$TTL" && TTL=$((10#$TTL)) && ((TTL >= 7 && TTL <= 3600)) ||
        die "PGHA_LAB_TTL must be a number of seconds from 7 to 3600, not '$TTL'"
    NETNS="$WANT_NETNS"
    NETNS_BLOCK=$((OFFSET / 250 % 16))
    if ((NETNS && NODES > NETNS_MAX_NODES)); then
        die "--netns gives the nodes a /28: at most $NETNS_MAX_NODES nodes, not $NODES"
    fi
}

# ----- network namespaces (up --netns) -----

WANT_NETNS="${PGHA_LAB_NETNS:-0}"
[[ "$WANT_NETNS" == 1 ]] || WANT_NETNS=0
# A /28 per lab: .0 network, .1 bridge, .2 to .14 the nodes, .15 broadcast.
NETNS_MAX_NODES=13

ns_name() { echo "pgha-b$NETNS_BLOCK-node$1"; }
veth_name() { echo "pghab${NETNS_BLOCK}n$1"; }
bridge_name() { echo "pghabr$NETNS_BLOCK"; }
bridge_addr() { echo "10.201.0.$((16 * NETNS_BLOCK + 1))"; }
net_cidr() { echo "10.201.0.$((16 * NETNS_BLOCK))/28"; }
# The comment marking the iptables rules of this lab's block, so `down` finds exactly them.
rule_tag() { echo "pgha-lab-b$NETNS_BLOCK"; }

# Where node $1's PostgreSQL and REST API listen; where the agents reach etcd.
node_addr() {
    if ((NETNS)); then echo "10.201.0.$((16 * NETNS_BLOCK + 1 + $1))"; else echo 127.0.0.1; fi
}
etcd_host() {
    if ((NETNS)); then bridge_addr; else echo 127.0.0.1; fi
}

# --netns asks for a new lab: an existing one keeps what it was made with.
check_netns_request() {
    [[ -f "$STATE" ]] || return 0
    if ((WANT_NETNS && !NETNS)); then
        die "the lab in $BASE was created without --netns: run 'scripts/cluster.sh down' first to change it"
    fi
}

# Before a netns lab is created: root, iproute2 and iptables there, the block free.
netns_preflight() {
    ((NETNS)) || return 0
    is_root || die "--netns needs root (it creates network namespaces, veths, a bridge)"
    command -v ip >/dev/null 2>&1 || die "--netns needs ip (Debian package iproute2)"
    command -v iptables >/dev/null 2>&1 || die "--netns needs iptables (Debian package iptables)"
    ((WANT_TLS)) && die "--netns and --tls do not go together yet (the lab's certificates name 127.0.0.1 only)"
    [[ -e "/sys/class/net/$(bridge_name)" ]] &&
        die "the bridge $(bridge_name) exists: another lab uses network block $NETNS_BLOCK ($(net_cidr)); the block is (port offset / 250) mod 16: choose another --port-offset"
    local i
    for ((i = 1; i <= NODES; i++)); do
        [[ -e "/run/netns/$(ns_name "$i")" ]] &&
            die "the network namespace $(ns_name "$i") exists already: not touching it"
    done
    return 0
}

# An iptables rule of the root namespace, added once.
add_rule() { # chain, match...
    local chain="$1"
    shift
    iptables -C "$chain" "$@" -m comment --comment "$(rule_tag)" -j ACCEPT 2>/dev/null ||
        iptables -I "$chain" "$@" -m comment --comment "$(rule_tag)" -j ACCEPT ||
        die "iptables -I $chain $* failed"
}

# The bridge with its address and the root namespace's rules; nothing when they are there.
bridge_up() {
    local br
    br="$(bridge_name)"
    if [[ ! -e "/sys/class/net/$br" ]]; then
        log "network: bridge $br $(bridge_addr) ($(net_cidr))"
        ip link add "$br" type bridge || die "cannot create the bridge $br"
        ip addr add "$(bridge_addr)/28" dev "$br"
    fi
    ip link set "$br" up
    # A host firewall (a DROP policy) must not cut the lab in two.
    add_rule INPUT -i "$br"
    add_rule FORWARD -i "$br" -o "$br"
}

# Node $1's namespace and veth, made when missing, and its link up.
node_net_up() {
    local i="$1" ns veth
    ns="$(ns_name "$i")" veth="$(veth_name "$i")"
    if [[ ! -e "/run/netns/$ns" ]]; then
        ip netns add "$ns" || die "cannot create the network namespace $ns"
    fi
    if [[ ! -e "/sys/class/net/$veth" ]]; then
        log "network: node$i in namespace $ns, $(node_addr "$i") on $veth"
        ip link add "$veth" type veth peer name eth0 netns "$ns" ||
            die "cannot create the veth pair $veth / $ns eth0"
        ip -n "$ns" addr add "$(node_addr "$i")/28" dev eth0
    fi
    ip link set "$veth" master "$(bridge_name)" up
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
}

net_up() {
    ((NETNS)) || return 0
    bridge_up
    local i
    for ((i = 1; i <= NODES; i++)); do node_net_up "$i"; done
}

# Node $1's namespace removed (its veth pair goes with it), once nothing runs in it.
node_net_down() {
    local ns
    ns="$(ns_name "$1")"
    [[ -e "/run/netns/$ns" ]] || return 0
    [[ -z "$(ip netns pids "$ns" 2>/dev/null)" ]] ||
        die "processes still run in the network namespace $ns (ip netns pids $ns): not removing it"
    ip netns del "$ns" || die "cannot remove the network namespace $ns"
    # The kernel removes the veth pair with the namespace, a moment later: wait for that, and
    # delete it ourselves only if it stays.
    local veth k
    veth="$(veth_name "$1")"
    for ((k = 0; k < 30; k++)); do
        [[ -e "/sys/class/net/$veth" ]] || return 0
        sleep 0.1
    done
    ip link del "$veth" 2>/dev/null || true
    [[ ! -e "/sys/class/net/$veth" ]] || die "cannot remove the veth $veth"
}

# Everything net_up made: every namespace of the block (also one a failed remove-node left),
# the bridge, the tagged rules.
net_down() {
    ((NETNS)) || return 0
    local ns i rule
    for ns in /run/netns/pgha-b"$NETNS_BLOCK"-node*; do
        [[ -e "$ns" ]] || continue
        i="${ns##*-node}"
        is_uint "$i" && node_net_down "$i"
    done
    if [[ -e "/sys/class/net/$(bridge_name)" ]]; then
        ip link del "$(bridge_name)" || die "cannot remove the bridge $(bridge_name)"
    fi
    local words
    while read -r rule; do
        [[ -n "$rule" ]] || continue
        # `iptables -S` prints "-A CHAIN match...": the same words after -D delete it.
        read -ra words <<<"${rule#-A }"
        iptables -D "${words[@]}" || log "could not delete the iptables rule: $rule"
    done < <(iptables -S 2>/dev/null | grep -F -- "--comment $(rule_tag)" || true)
    log "network: removed the namespaces, the bridge $(bridge_name) and the iptables rules of block $NETNS_BLOCK"
}

etcd_client_port() { echo $((2279 + 100 * $1 + OFFSET)); }
etcd_peer_port() { echo $((2280 + 100 * $1 + OFFSET)); }
pg_port() { echo $((5440 + $1 + OFFSET)); }
rest_port() { echo $((8010 + $1 + OFFSET)); }

set_haproxy_ports() {
    HAPROXY_PRIMARY_PORT=$((5000 + OFFSET))
    HAPROXY_REPLICA_PORT=$((5001 + OFFSET))
    HAPROXY_STATS_PORT=$((7000 + OFFSET))
}

# "http://127.0.0.1:P1,http://127.0.0.1:P2,..." of every etcd member.
etcd_endpoints() {
    local k out=()
    for ((k = 1; k <= ETCD_MEMBERS; k++)); do
        out+=("$(scheme)://127.0.0.1:$(etcd_client_port "$k")")
    done
    local IFS=,
    echo "${out[*]}"
}

# ----- processes -----

# PID in file $1 if that process is alive and its command line mentions "$BASE/" (so a recycled
# PID is never taken for ours); empty otherwise.
live_pid() {
    local f="$1" pid cmd
    [[ -f "$f" ]] || return 0
    pid="$(head -n1 "$f" | tr -dc '0-9')"
    [[ -n "$pid" && -d "/proc/$pid" ]] || return 0
    cmd="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" || return 0
    [[ "$cmd" == *"$BASE/"* ]] && echo "$pid"
    return 0
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

# PIDs (and command lines) of live processes mentioning "$BASE/" on their command line, found
# with bash alone: an external grep would see the directory in its own arguments.
processes_mentioning_base() {
    local d pid args
    for d in /proc/[0-9]*; do
        pid="${d#/proc/}"
        [[ "$pid" == "$$" || "$pid" == "$BASHPID" ]] && continue
        mapfile -d '' -t args 2>/dev/null <"$d/cmdline" || continue
        [[ "${args[*]}" == *"$BASE/"* ]] && echo "$pid ${args[*]}"
    done
    return 0
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

# Dies naming the port and what the lab wanted it for.
need_port() { # port, purpose
    port_in_use "$1" || return 0
    die "port 127.0.0.1:$1 (wanted for $2) is already in use: see what listens there with
    ss -ltnp 'sport = :$1'
and stop it, or move the whole lab with PGHA_LAB_PORT_OFFSET=K (or --port-offset K)"
}

# The user the agents (and PostgreSQL) run as: postgres as root, else whoever runs this.
AGENT_USER=""
is_root && AGENT_USER=postgres

# The command prefix running a program as $AGENT_USER (nothing when that is the current user).
# setpriv and env exec rather than fork, so a PID taken inside is the final program's.
agent_prefix() {
    AGENT_PREFIX=()
    [[ -n "$AGENT_USER" ]] || return 0
    local home
    home="$(getent passwd "$AGENT_USER" | cut -d: -f6)"
    AGENT_PREFIX=(setpriv --reuid="$AGENT_USER" --regid="$AGENT_USER" --clear-groups --
        env HOME="${home:-/}" USER="$AGENT_USER" LOGNAME="$AGENT_USER")
}

# Runs "$@" in the background in a new session (so neither Ctrl-C nor a closing terminal reaches
# it) with its output appended to log $1 and its own PID (not setsid's or setpriv's) written to
# pid file $2; as $AGENT_USER when $3 is "agent"; in network namespace $SPAWN_NETNS when set. $4
# names it in errors. Every step execs (`ip netns exec` too), so no shell of ours stays behind
# waiting for it.
SPAWN_NETNS=""
spawn_detached() {
    local logf="$1" pidfile="$2" who="$3" what="$4"
    shift 4
    : >"$pidfile"
    AGENT_PREFIX=()
    if [[ "$who" == agent ]]; then
        agent_prefix
        [[ -n "$AGENT_USER" ]] && chown "$AGENT_USER": "$pidfile"
    fi
    local inner='echo $$ > "$0"; exec "$@"'
    local ns=()
    [[ -n "$SPAWN_NETNS" ]] && ns=(ip netns exec "$SPAWN_NETNS")
    (exec ${ns[@]+"${ns[@]}"} ${AGENT_PREFIX[@]+"${AGENT_PREFIX[@]}"} setsid sh -c "$inner" "$pidfile" "$@") \
        </dev/null >>"$logf" 2>&1 &
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -s "$pidfile" ]] && return 0
        sleep 0.1
    done
    die "could not start $what (no pid in $pidfile; see $logf)"
}

ctl() { "$BASE/pghactl" -c "$BASE/node1.yml" "$@"; }

# ----- TLS (up --tls) -----

WANT_TLS="${PGHA_LAB_TLS:-0}"
[[ "$WANT_TLS" == 1 ]] || WANT_TLS=0
TLS_DIR="$BASE/tls"

# A TLS lab has tls/ca.pem (written last by `pghactl lab-certs`).
lab_tls() { [[ -f "$TLS_DIR/ca.pem" ]]; }
scheme() { if lab_tls; then echo https; else echo http; fi; }

# --tls asks for a new lab: an existing one keeps what it was made with.
check_tls_request() {
    [[ -f "$STATE" ]] || return 0
    if ((WANT_TLS)) && ! lab_tls; then
        die "the lab in $BASE was created without --tls: run 'scripts/cluster.sh down' first to change it"
    fi
}

# The CA and certificates: etcd's, one per node (its key owned by the agents' user: the agent,
# its PostgreSQL and pghactl use it), and HAProxy's client certificate with its key in one file.
make_tls() {
    local i names=(etcd haproxy prometheus)
    for ((i = 1; i <= NODES; i++)); do names+=("node$i"); done
    log "making a private CA and certificates in $TLS_DIR (pghactl lab-certs)"
    rm -rf "$TLS_DIR"
    "$BASE/pghactl" lab-certs --dir "$TLS_DIR" "${names[@]}" || die "pghactl lab-certs failed"
    chmod 0755 "$TLS_DIR"
    (umask 077 && cat "$TLS_DIR/haproxy.crt" "$TLS_DIR/haproxy.key" >"$TLS_DIR/haproxy.pem")
    if [[ -n "$AGENT_USER" ]]; then
        for ((i = 1; i <= NODES; i++)); do chown "$AGENT_USER": "$TLS_DIR/node$i.key"; done
    fi
}

# YAML of node $2 for part $1 of write_config; nothing in a lab without TLS.
tls_yaml() {
    lab_tls || ((WANT_TLS)) || return 0
    local t="$TLS_DIR" n="node$2"
    case "$1" in
        restapi)
            printf '  certfile: "%s"\n  keyfile: "%s"\n  cafile: "%s"\n  verify_client: required\n' \
                "$t/$n.crt" "$t/$n.key" "$t/ca.pem"
            ;;
        ctl)
            printf 'ctl:\n  cacert: "%s"\n  certfile: "%s"\n  keyfile: "%s"\n' \
                "$t/ca.pem" "$t/$n.crt" "$t/$n.key"
            ;;
        etcd3)
            printf '  protocol: https\n  cacert: "%s"\n  cert: "%s"\n  key: "%s"\n' \
                "$t/ca.pem" "$t/$n.crt" "$t/$n.key"
            ;;
        user)
            printf '      sslmode: verify-full\n      sslrootcert: "%s"\n      sslcert: "%s"\n      sslkey: "%s"\n' \
                "$t/ca.pem" "$t/$n.crt" "$t/$n.key"
            ;;
        parameters)
            printf '    ssl: "on"\n    ssl_cert_file: "%s"\n    ssl_key_file: "%s"\n    ssl_ca_file: "%s"\n' \
                "$t/$n.crt" "$t/$n.key" "$t/ca.pem"
            ;;
    esac
}

# The TCP rules of pg_hba: in a TLS lab only over TLS, with a client certificate of the CA.
hba_yaml() {
    if lab_tls || ((WANT_TLS)); then
        printf '    - "%s"\n' "hostssl replication replicator 127.0.0.1/32 md5 clientcert=verify-ca" \
            "hostssl all all 127.0.0.1/32 md5 clientcert=verify-ca"
    else
        printf '    - "%s"\n' "host replication replicator 127.0.0.1/32 md5" \
            "host all all 127.0.0.1/32 md5"
        # The other nodes, and the root namespace through the bridge.
        if ((NETNS)); then
            printf '    - "%s"\n' "host replication replicator $(net_cidr) md5" \
                "host all all $(net_cidr) md5"
        fi
    fi
}

# Prometheus scrapes a TLS lab over https with a client certificate (agents and etcd ask for one).
tls_prometheus_yaml() {
    lab_tls || return 0
    printf '    scheme: https\n    tls_config:\n      ca_file: "%s"\n      cert_file: "%s"\n      key_file: "%s"\n' \
        "$TLS_DIR/ca.pem" "$TLS_DIR/prometheus.crt" "$TLS_DIR/prometheus.key"
}

# etcd's TLS flags (clients and peers, both with certificates); none without TLS.
etcd_tls_flags() {
    ETCD_TLS_FLAGS=()
    lab_tls || return 0
    local t="$TLS_DIR"
    ETCD_TLS_FLAGS=(--cert-file "$t/etcd.crt" --key-file "$t/etcd.key"
        --trusted-ca-file "$t/ca.pem" --client-cert-auth
        --peer-cert-file "$t/etcd.crt" --peer-key-file "$t/etcd.key"
        --peer-trusted-ca-file "$t/ca.pem" --peer-client-cert-auth)
}

# etcdctl's TLS options.
etcdctl_tls_flags() {
    ETCDCTL_TLS_FLAGS=()
    lab_tls || return 0
    ETCDCTL_TLS_FLAGS=(--cacert "$TLS_DIR/ca.pem" --cert "$TLS_DIR/etcd.crt" --key "$TLS_DIR/etcd.key")
}

# pghactl haproxy-config's: checks over TLS, verified, with HAProxy's client certificate.
haproxy_tls_flags() {
    HAPROXY_TLS_FLAGS=()
    lab_tls || return 0
    HAPROXY_TLS_FLAGS=(--ssl --check-cert "$TLS_DIR/haproxy.pem" --check-ca "$TLS_DIR/ca.pem")
}

# libpq's environment and curl's options for connecting to a TLS lab as node1.
tls_psql_env() {
    local t="$TLS_DIR"
    echo "PGSSLMODE=verify-full PGSSLROOTCERT=$t/ca.pem PGSSLCERT=$t/node1.crt PGSSLKEY=$t/node1.key"
}
tls_curl_opts() { echo "--cacert $TLS_DIR/ca.pem --cert $TLS_DIR/node1.crt --key $TLS_DIR/node1.key"; }

# What else `up` says about a TLS lab.
tls_notes() {
    lab_tls || return 0
    local t="$TLS_DIR"
    cat <<EOF
  TLS:      on every link; CA $t/ca.pem, certificates $t/node<i>.crt and .key (pg_hba: hostssl only)
  etcdctl:  etcdctl --endpoints=$(etcd_endpoints) --cacert $t/ca.pem --cert $t/etcd.crt --key $t/etcd.key endpoint health
EOF
}

# ----- up -----

# What `up` says about the addresses of a netns lab's nodes.
netns_note() {
    ((NETNS)) || return 0
    echo ", node i on 10.201.0.$((16 * NETNS_BLOCK + 1))+i, namespace $(ns_name "<i>")"
}

ensure_packages() {
    local missing=()
    [[ -x "$PG_BIN_DIR/postgres" ]] || missing+=(postgresql-15)
    command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
    command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
    [[ -x "$HAPROXY_BIN" ]] || missing+=(haproxy)
    command -v setsid >/dev/null 2>&1 || missing+=(util-linux)
    # Building the binaries (etcd-client) needs protoc and the well-known .proto files.
    if [[ -z "${PGHA_LAB_BIN_DIR:-}" ]]; then
        command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
        [[ -f /usr/include/google/protobuf/descriptor.proto ]] || missing+=(libprotobuf-dev)
    fi
    ((${#missing[@]} == 0)) && return 0
    is_root || die "missing Debian package(s): ${missing[*]}. Run this script as root (it installs them), or install them: sudo apt-get install ${missing[*]}"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
}

write_config() { # node index (1-based)
    local i="$1" name="node$1" dir="$BASE/node$1" k hosts=""
    for ((k = 1; k <= ETCD_MEMBERS; k++)); do
        hosts+="    - \"$(etcd_host):$(etcd_client_port "$k")\""$'\n'
    done
    cat >"$BASE/$name.yml" <<YAML
# node configuration written by scripts/cluster.sh
scope: "$SCOPE"
namespace: "/service/"
name: "$name"
restapi:
  listen: "$(node_addr "$i"):$(rest_port "$i")"
  connect_address: "$(node_addr "$i"):$(rest_port "$i")"
$(tls_yaml restapi "$i")
$(tls_yaml ctl "$i")
etcd3:
$(tls_yaml etcd3 "$i")
  hosts:
${hosts%$'\n'}
bootstrap:
  dcs:
    ttl: $TTL
    loop_wait: 1
    retry_timeout: 3
    maximum_lag_on_failover: 1048576
    synchronous_mode: ${PGHA_LAB_SYNC:-true}
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: "replica"
        hot_standby: "on"
        max_wal_senders: $((NODES + 8))
        max_replication_slots: $((NODES + 8))
        wal_log_hints: "on"
        max_connections: 100
        shared_buffers: "64MB"
  initdb:
    - encoding: "UTF8"
    - locale: "C.UTF-8"
    - "data-checksums"
postgresql:
  listen: "$(node_addr "$i"):$(pg_port "$i")"
  connect_address: "$(node_addr "$i"):$(pg_port "$i")"
  data_dir: "$dir/data"
  bin_dir: "$PG_BIN_DIR"
  pgpass: "$dir/pgpass"
  authentication:
    superuser:
      username: "postgres"
      password: "lab-su-pass"
$(tls_yaml user "$i")
    replication:
      username: "replicator"
      password: "lab-repl-pass"
$(tls_yaml user "$i")
    rewind:
      username: "rewind_user"
      password: "lab-rewind-pass"
$(tls_yaml user "$i")
  parameters:
    unix_socket_directories: "$dir"
$(tls_yaml parameters "$i")
  pg_hba:
    - "local all all trust"
$(hba_yaml)
tags:
  nofailover: false
  noloadbalance: false
  clonefrom: false
  nosync: false
YAML
    chmod 0644 "$BASE/$name.yml"
}

# A copy of this script in the lab, refreshed by every `up`: what restarts a node from inside the
# lab (`pghactl drill`) then runs the same code as `up`, wherever the repository is.
install_script() {
    local self
    self="$(readlink -f "${BASH_SOURCE[0]}")"
    [[ "$self" == "$BASE/cluster.sh" ]] || install -m 0755 "$self" "$BASE/cluster.sh"
}

# First `up`: directory, binaries, configuration; no process yet.
create_lab() {
    ensure_packages
    if is_root; then
        id postgres >/dev/null 2>&1 || die "no postgres user (install postgresql-15)"
    fi
    netns_preflight
    # Every port before anything is created, so a clash leaves nothing behind (a node in its
    # own namespace has its ports to itself).
    local k i
    for ((k = 1; k <= ETCD_MEMBERS; k++)); do
        need_port "$(etcd_client_port "$k")" "the client port of etcd member etcd$k"
        need_port "$(etcd_peer_port "$k")" "the peer port of etcd member etcd$k"
    done
    for ((i = 1; i <= NODES; i++)); do
        ((NETNS)) && break
        need_port "$(pg_port "$i")" "PostgreSQL of node$i"
        need_port "$(rest_port "$i")" "the REST API of node$i"
    done
    need_port "$HAPROXY_PRIMARY_PORT" "HAProxy's primary (read-write) listener"
    need_port "$HAPROXY_REPLICA_PORT" "HAProxy's replica (read-only) listener"
    need_port "$HAPROXY_STATS_PORT" "HAProxy's stats page"

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
    # Recorded first, so `down` knows the shape even if the rest of `up` fails.
    write_state
    agent_prefix
    ${AGENT_PREFIX[@]+"${AGENT_PREFIX[@]}"} test -x "$BASE" ||
        die "$AGENT_USER cannot reach $BASE (a parent directory is not world-traversable): choose another PGHA_LAB_DIR, then 'PGHA_LAB_DIR=$BASE scripts/cluster.sh down'"
    install -m 0755 "$target/pgha" "$target/pghactl" "$BASE/"
    install_script
    if ((WANT_TLS)); then make_tls; fi
    for ((k = 1; k <= ETCD_MEMBERS; k++)); do
        mkdir -p "$BASE/etcd$k"
        chmod 0700 "$BASE/etcd$k"
    done
    for ((i = 1; i <= NODES; i++)); do make_node_dir "$i"; done
}

make_node_dir() { # node index
    mkdir -p "$BASE/node$1"
    chmod 0755 "$BASE/node$1"
    [[ -n "$AGENT_USER" ]] && chown "$AGENT_USER": "$BASE/node$1"
    write_config "$1"
}

start_etcd_member() { # member index
    local k="$1" name="etcd$1" peers="" j sch
    sch="$(scheme)"
    etcd_tls_flags
    for ((j = 1; j <= ETCD_MEMBERS; j++)); do
        peers+="${peers:+,}etcd$j=$sch://127.0.0.1:$(etcd_peer_port "$j")"
    done
    need_port "$(etcd_client_port "$k")" "the client port of etcd member $name"
    need_port "$(etcd_peer_port "$k")" "the peer port of etcd member $name"
    # In a netns lab the agents reach etcd on the bridge (and only know it there).
    local client_urls="$sch://127.0.0.1:$(etcd_client_port "$k")" advertise
    advertise="$client_urls"
    if ((NETNS)); then
        advertise="$sch://$(bridge_addr):$(etcd_client_port "$k")"
        client_urls+=",$advertise"
    fi
    log "starting etcd member $name on $client_urls (peer :$(etcd_peer_port "$k"))"
    # --initial-cluster* only matter on the first start; later starts use the data dir.
    (cd "$BASE" && spawn_detached "$BASE/$name.log" "$BASE/$name.pid" root "etcd member $name" \
        etcd --name "$name" --data-dir "$BASE/$name" \
        --listen-client-urls "$client_urls" \
        --advertise-client-urls "$advertise" \
        --listen-peer-urls "$sch://127.0.0.1:$(etcd_peer_port "$k")" \
        --initial-advertise-peer-urls "$sch://127.0.0.1:$(etcd_peer_port "$k")" \
        --initial-cluster "$peers" \
        --initial-cluster-token "$SCOPE-$OFFSET" \
        --initial-cluster-state new ${ETCD_TLS_FLAGS[@]+"${ETCD_TLS_FLAGS[@]}"})
}

wait_etcd_healthy() {
    local i k endpoints
    endpoints="$(etcd_endpoints)"
    etcdctl_tls_flags
    for ((i = 0; i < 150; i++)); do
        ETCDCTL_API=3 etcdctl --endpoints="$endpoints" --dial-timeout=1s --command-timeout=2s \
            ${ETCDCTL_TLS_FLAGS[@]+"${ETCDCTL_TLS_FLAGS[@]}"} endpoint health >/dev/null 2>&1 && return 0
        for ((k = 1; k <= ETCD_MEMBERS; k++)); do
            [[ -n "$(live_pid "$BASE/etcd$k.pid")" ]] || die "etcd member etcd$k exited; see $BASE/etcd$k.log"
        done
        sleep 0.2
    done
    die "etcd ($endpoints) not healthy after 30s; see $BASE/etcd*.log (stop with: scripts/cluster.sh down)"
}

start_agent() { # node index
    local i="$1" name="node$1" where=""
    if ((NETNS)); then
        node_net_up "$i"
        SPAWN_NETNS="$(ns_name "$i")"
        where=" in namespace $SPAWN_NETNS"
    else
        # A postmaster left running without its agent keeps its port: the agent adopts it.
        [[ -n "$(live_postmaster "$BASE/$name/data")" ]] || need_port "$(pg_port "$i")" "PostgreSQL of $name"
        need_port "$(rest_port "$i")" "the REST API of $name"
    fi
    log "starting agent $name$where (PostgreSQL $(node_addr "$i"):$(pg_port "$i"), REST :$(rest_port "$i"))"
    (cd "$BASE/$name" && spawn_detached "$BASE/$name.log" "$BASE/$name.pid" agent "agent $name" \
        "$BASE/pgha" "$BASE/$name.yml")
    SPAWN_NETNS=""
}

# One leader running and every other node streaming, per `pghactl list`.
healthy() {
    local out
    out="$(ctl list 2>/dev/null)" || return 1
    [[ "$(grep -cE '^\| *node[0-9]+ *\|[^|]*\| *Leader *\| *running *\|' <<<"$out")" == 1 ]] &&
        [[ "$(grep -cE '^\| *node[0-9]+ *\|[^|]*\| *(Replica|Sync Standby|Quorum Standby) *\| *streaming *\|' <<<"$out")" == $((NODES - 1)) ]]
}

# HAProxy's configuration from the members in etcd, checked by HAProxy itself.
write_haproxy_config() {
    haproxy_tls_flags
    ctl haproxy-config "$SCOPE" --bind 127.0.0.1 ${HAPROXY_TLS_FLAGS[@]+"${HAPROXY_TLS_FLAGS[@]}"} \
        --primary-port "$HAPROXY_PRIMARY_PORT" --replica-port "$HAPROXY_REPLICA_PORT" \
        --stats-port "$HAPROXY_STATS_PORT" \
        >"$BASE/haproxy.cfg.new" || die "pghactl haproxy-config failed"
    # A netns lab's HAProxy serves the namespaces too: each listener also on the bridge address.
    if ((NETNS)); then
        sed -i "s/^\( *\)bind 127\.0\.0\.1:\([0-9]*\)\(.*\)\$/&\n\1bind $(bridge_addr):\2\3/" \
            "$BASE/haproxy.cfg.new"
    fi
    "$HAPROXY_BIN" -c -q -f "$BASE/haproxy.cfg.new" >"$BASE/haproxy.check" 2>&1 ||
        die "HAProxy rejects the generated configuration: $(cat "$BASE/haproxy.check")"
    rm -f "$BASE/haproxy.check"
    mv "$BASE/haproxy.cfg.new" "$BASE/haproxy.cfg"
}

start_haproxy() {
    need_port "$HAPROXY_PRIMARY_PORT" "HAProxy's primary (read-write) listener"
    need_port "$HAPROXY_REPLICA_PORT" "HAProxy's replica (read-only) listener"
    need_port "$HAPROXY_STATS_PORT" "HAProxy's stats page"
    write_haproxy_config
    log "starting HAProxy: primary 127.0.0.1:$HAPROXY_PRIMARY_PORT, replicas :$HAPROXY_REPLICA_PORT, stats :$HAPROXY_STATS_PORT$( ((NETNS)) && echo " (also on $(bridge_addr))")"
    # -db: stay in the foreground, so the PID we record is HAProxy's own.
    (cd "$BASE" && spawn_detached "$BASE/haproxy.log" "$BASE/haproxy.pid" root HAProxy \
        "$HAPROXY_BIN" -db -f "$BASE/haproxy.cfg")
    local i
    for ((i = 0; i < 50; i++)); do
        port_in_use "$HAPROXY_STATS_PORT" && break
        [[ -n "$(live_pid "$BASE/haproxy.pid")" ]] || die "HAProxy exited; see $BASE/haproxy.log"
        sleep 0.1
    done
    ((i < 50)) || die "HAProxy did not open port $HAPROXY_STATS_PORT; see $BASE/haproxy.log"
    # HAProxy starts with every server UP until failed checks take it out (inter 3s, fall 3):
    # wait until they have sorted them before telling anyone to connect.
    for ((i = 0; i < 150; i++)); do
        haproxy_sorted && return 0
        sleep 0.2
    done
    log "HAProxy does not route to one primary and $((NODES - 1)) replica(s) yet:"
    haproxy_states || true
}

# HAProxy has settled: every server plainly UP or DOWN (not "UP 1/3", going down), one primary
# UP and every other node UP as a replica.
haproxy_sorted() {
    local states
    states="$(haproxy_states 2>/dev/null)" || return 1
    ! grep -qE '^  (primary|replicas) +node[0-9]+ +(UP|DOWN) ' <<<"$states" &&
        [[ "$(grep -cE '^  primary +node[0-9]+ +UP$' <<<"$states")" == 1 ]] &&
        [[ "$(grep -cE '^  replicas +node[0-9]+ +UP$' <<<"$states")" == $((NODES - 1)) ]]
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
    csv="$(http_get "$HAPROXY_STATS_PORT" '/;csv')" || {
        log "HAProxy stats page not answering"
        return 1
    }
    awk -F, 'NR > 1 && $1 != "stats" && $2 != "FRONTEND" {
                 printf "  %-9s %-8s %s\n", $1, ($2 == "BACKEND" ? "(all)" : $2), $18 }' <<<"$csv"
}

# Is every process of the lab running?
all_running() {
    local k i
    for ((k = 1; k <= ETCD_MEMBERS; k++)); do
        [[ -n "$(live_pid "$BASE/etcd$k.pid")" ]] || return 1
    done
    for ((i = 1; i <= NODES; i++)); do
        [[ -n "$(live_pid "$BASE/node$i.pid")" ]] || return 1
    done
    [[ -n "$(live_pid "$BASE/haproxy.pid")" ]]
}

cmd_up() {
    if [[ -d "$BASE" && ! -f "$STATE" ]]; then
        ((LEGACY)) && die "$BASE was made by an older scripts/cluster.sh: 'scripts/cluster.sh down' first"
        die "$BASE exists but is no lab directory (no lab.env): remove it or choose another PGHA_LAB_DIR"
    fi
    check_tls_request
    check_netns_request
    if [[ -f "$STATE" ]] && all_running && monitoring_running; then
        log "already running in $BASE; nothing to do"
        cmd_status || true
        return 0
    fi
    local start=$SECONDS k i
    monitoring_preflight
    if [[ -f "$STATE" ]]; then
        install_script
        log "starting what is not running in $BASE ($NODES nodes, $ETCD_MEMBERS etcd member(s), port offset $OFFSET)"
    else
        create_lab
    fi

    # The bridge first: etcd listens on its address.
    net_up
    # Every member before waiting: a member of a cluster of three waits for its peers.
    for ((k = 1; k <= ETCD_MEMBERS; k++)); do
        [[ -n "$(live_pid "$BASE/etcd$k.pid")" ]] || start_etcd_member "$k"
    done
    wait_etcd_healthy
    for ((i = 1; i <= NODES; i++)); do
        [[ -n "$(live_pid "$BASE/node$i.pid")" ]] || start_agent "$i"
    done

    # The budget counts from here: on a fresh machine the release build alone (in create_lab)
    # takes minutes, and counting it left the agents a few seconds to bootstrap.
    local wait_seconds=$((60 + 15 * NODES)) wait_start=$SECONDS
    log "waiting (up to ${wait_seconds}s) for a leader and $((NODES - 1)) streaming replica(s)"
    until healthy; do
        if ((SECONDS - wait_start > wait_seconds)); then
            ctl list || true
            # What each agent was doing when we gave up: the cause is usually in its last lines.
            for ((i = 1; i <= NODES; i++)); do
                echo "---- last lines of $BASE/node$i.log ----" >&2
                tail -n 15 "$BASE/node$i.log" >&2 2>/dev/null || true
            done
            die "not healthy after ${wait_seconds}s; logs: $BASE/node*.log (stop with: scripts/cluster.sh down)"
        fi
        sleep 1
    done
    [[ -n "$(live_pid "$BASE/haproxy.pid")" ]] || start_haproxy
    start_monitoring
    ctl list
    local last=$((NODES)) pgenv="PGPASSWORD=lab-su-pass" curlopt="" sch
    sch="$(scheme)"
    if lab_tls; then
        pgenv="$(tls_psql_env) $pgenv"
        curlopt="$(tls_curl_opts) "
    fi
    cat <<EOF

pgha cluster '$SCOPE' is up in $BASE (took $((SECONDS - start))s): $NODES node(s), $ETCD_MEMBERS etcd member(s), port offset $OFFSET.
  list:     $BASE/pghactl -c $BASE/node1.yml list
  primary:  $pgenv psql -h 127.0.0.1 -p $HAPROXY_PRIMARY_PORT -U postgres   (HAProxy, read-write)
  replicas: $pgenv psql -h 127.0.0.1 -p $HAPROXY_REPLICA_PORT -U postgres   (HAProxy, read-only)
  stats:    http://127.0.0.1:$HAPROXY_STATS_PORT/
  nodes:    $pgenv psql -h $(node_addr 1) -p $(pg_port 1) -U postgres   (ports $(pg_port 1)-$(pg_port "$last")$(netns_note))
  REST:     curl $curlopt$sch://$(node_addr 1):$(rest_port 1)/patroni                             (ports $(rest_port 1)-$(rest_port "$last"))
  metrics:  curl $curlopt$sch://$(node_addr 1):$(rest_port 1)/metrics
  etcd:     $(etcd_endpoints)
  logs:     $BASE/node*.log, $BASE/etcd*.log, $BASE/haproxy.log
  stop:     scripts/cluster.sh stop (keeps the data) | down (removes $BASE)
EOF
    tls_notes
    monitoring_summary
}

# ----- monitoring (up --monitoring) -----
#
# Prometheus (Debian's `prometheus`) on 127.0.0.1:7090+K scraping every agent's /metrics and every
# etcd member's, and Grafana on 127.0.0.1:7030+K with the Prometheus datasource and
# packaging/grafana/pgha.json provisioned. Debian has no Grafana package: Grafana starts only
# when a `grafana` / `grafana-server` binary is found (PATH, or PGHA_GRAFANA_HOME=the directory
# of an unpacked Grafana release). Files: prometheus.yml (its presence means the lab has
# monitoring: a later `up` starts it again), prometheus.pid/.log, prometheus/ (the TSDB),
# grafana.ini, grafana.pid/.log, grafana/ (data, provisioning, the dashboard).

WANT_MONITORING=0
PROMETHEUS_BIN=prometheus
GRAFANA_BIN=""
GRAFANA_HOME=""
GRAFANA_ADMIN_PASSWORD="lab-grafana-pass"
DASHBOARD_JSON="$REPO/packaging/grafana/pgha.json"

prometheus_port() { echo $((7090 + OFFSET)); }
grafana_port() { echo $((7030 + OFFSET)); }

# Asked for now, or set up by an earlier `up --monitoring`.
monitoring_wanted() { ((WANT_MONITORING)) || [[ -f "$BASE/prometheus.yml" ]]; }

# Monitoring is not wanted, or what it needs runs (Grafana only counts when it was started).
monitoring_running() {
    monitoring_wanted || return 0
    [[ -n "$(live_pid "$BASE/prometheus.pid")" ]] || return 1
    if find_grafana; then
        [[ -n "$(live_pid "$BASE/grafana.pid")" ]] || return 1
    fi
    return 0
}

# GRAFANA_BIN / GRAFANA_HOME (its homepath, holding conf/defaults.ini and public/), or false.
find_grafana() {
    GRAFANA_BIN="" GRAFANA_HOME=""
    local c home="${PGHA_GRAFANA_HOME:-}"
    if [[ -n "$home" ]]; then
        for c in "$home/bin/grafana" "$home/bin/grafana-server"; do
            [[ -x "$c" ]] && GRAFANA_BIN="$c" && break
        done
        [[ -n "$GRAFANA_BIN" ]] || die "PGHA_GRAFANA_HOME=$home has no bin/grafana or bin/grafana-server"
    else
        GRAFANA_BIN="$(command -v grafana || command -v grafana-server || true)"
        [[ -n "$GRAFANA_BIN" ]] || return 1
        # Grafana's own .deb installs its homepath there; an unpacked release is its bin/'s parent.
        home=/usr/share/grafana
        [[ -f "$home/conf/defaults.ini" ]] || home="$(dirname "$(dirname "$(readlink -f "$GRAFANA_BIN")")")"
    fi
    if [[ ! -f "$home/conf/defaults.ini" ]]; then
        log "$GRAFANA_BIN looks like no Grafana server (no conf/defaults.ini in $home): set PGHA_GRAFANA_HOME to Grafana's directory"
        GRAFANA_BIN=""
        return 1
    fi
    GRAFANA_HOME="$home"
}

# Before anything starts: Prometheus installed (as root: installed now), the ports free.
monitoring_preflight() {
    monitoring_wanted || return 0
    if ! command -v "$PROMETHEUS_BIN" >/dev/null 2>&1; then
        is_root || die "--monitoring needs Prometheus: sudo apt-get install prometheus (or run this script as root, it installs it)"
        log "installing prometheus"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus ||
            die "could not install the Debian package prometheus"
    fi
    [[ -n "$(live_pid "$BASE/prometheus.pid")" ]] || need_port "$(prometheus_port)" "Prometheus"
    if find_grafana; then
        [[ -n "$(live_pid "$BASE/grafana.pid")" ]] || need_port "$(grafana_port)" "Grafana"
    fi
}

write_prometheus_config() {
    local i k agents="" etcds=""
    for ((i = 1; i <= NODES; i++)); do agents+="          - \"$(node_addr "$i"):$(rest_port "$i")\""$'\n'; done
    for ((k = 1; k <= ETCD_MEMBERS; k++)); do etcds+="          - \"127.0.0.1:$(etcd_client_port "$k")\""$'\n'; done
    cat >"$BASE/prometheus.yml.new" <<YAML
# written by scripts/cluster.sh up --monitoring
global:
  # The lab's HA loop runs every second: a short interval shows a failover as it happens.
  scrape_interval: 5s
  evaluation_interval: 5s
scrape_configs:
  - job_name: pgha
    metrics_path: /metrics
$(tls_prometheus_yaml)
    static_configs:
      - targets:
${agents%$'\n'}
  - job_name: etcd
$(tls_prometheus_yaml)
    static_configs:
      - targets:
${etcds%$'\n'}
YAML
    if command -v promtool >/dev/null 2>&1; then
        promtool check config "$BASE/prometheus.yml.new" >"$BASE/prometheus.check" 2>&1 ||
            die "promtool rejects the generated configuration: $(cat "$BASE/prometheus.check")"
        rm -f "$BASE/prometheus.check"
    fi
    mv "$BASE/prometheus.yml.new" "$BASE/prometheus.yml"
}

# Waits up to $3 seconds for GET 127.0.0.1:$1$2 to answer 2xx while pid file $4's process lives.
wait_http_ready() {
    local i
    for ((i = 0; i < $3 * 5; i++)); do
        http_get "$1" "$2" >/dev/null 2>&1 && return 0
        [[ -n "$(live_pid "$4")" ]] || return 1
        sleep 0.2
    done
    return 1
}

start_prometheus() {
    local port
    port="$(prometheus_port)"
    need_port "$port" "Prometheus"
    write_prometheus_config
    mkdir -p "$BASE/prometheus"
    log "starting Prometheus on 127.0.0.1:$port (scraping $NODES agent(s) and $ETCD_MEMBERS etcd member(s) every 5s)"
    (cd "$BASE" && spawn_detached "$BASE/prometheus.log" "$BASE/prometheus.pid" root Prometheus \
        "$PROMETHEUS_BIN" --config.file="$BASE/prometheus.yml" \
        --storage.tsdb.path="$BASE/prometheus" --web.listen-address="127.0.0.1:$port")
    wait_http_ready "$port" /-/ready 30 "$BASE/prometheus.pid" ||
        die "Prometheus not ready on 127.0.0.1:$port after 30s; see $BASE/prometheus.log (the cluster itself runs)"
}

write_grafana_config() {
    local g="$BASE/grafana"
    mkdir -p "$g/data" "$g/logs" "$g/plugins" "$g/provisioning/datasources" \
        "$g/provisioning/dashboards" "$g/dashboards"
    install -m 0644 "$DASHBOARD_JSON" "$g/dashboards/pgha.json"
    cat >"$BASE/grafana.ini" <<INI
; written by scripts/cluster.sh up --monitoring
[paths]
data = $g/data
logs = $g/logs
plugins = $g/plugins
provisioning = $g/provisioning
[server]
http_addr = 127.0.0.1
http_port = $(grafana_port)
[security]
admin_user = admin
admin_password = $GRAFANA_ADMIN_PASSWORD
[auth.anonymous]
; a lab on loopback: the dashboard opens without a login (editing still needs admin)
enabled = true
org_role = Viewer
[analytics]
reporting_enabled = false
check_for_updates = false
check_for_plugin_updates = false
[news]
news_feed_enabled = false
[dashboards]
default_home_dashboard_path = $g/dashboards/pgha.json
INI
    cat >"$g/provisioning/datasources/pgha.yml" <<YAML
apiVersion: 1
datasources:
  - name: Prometheus
    uid: pgha-prometheus
    type: prometheus
    access: proxy
    url: http://127.0.0.1:$(prometheus_port)
    isDefault: true
YAML
    cat >"$g/provisioning/dashboards/pgha.yml" <<YAML
apiVersion: 1
providers:
  - name: pgha
    type: file
    allowUiUpdates: true
    options:
      path: $g/dashboards
YAML
}

start_grafana() {
    local port args
    port="$(grafana_port)"
    need_port "$port" "Grafana"
    write_grafana_config
    # Grafana 10+ ships one `grafana` binary (`grafana server`); older ones `grafana-server`.
    args=(--homepath "$GRAFANA_HOME" --config "$BASE/grafana.ini")
    [[ "$(basename "$GRAFANA_BIN")" == grafana ]] && args=(server "${args[@]}")
    log "starting Grafana ($GRAFANA_BIN) on 127.0.0.1:$port with the pgha dashboard"
    (cd "$BASE" && spawn_detached "$BASE/grafana.log" "$BASE/grafana.pid" root Grafana \
        "$GRAFANA_BIN" "${args[@]}")
    wait_http_ready "$port" /api/health 60 "$BASE/grafana.pid" ||
        die "Grafana not ready on 127.0.0.1:$port after 60s; see $BASE/grafana.log (the cluster and Prometheus run)"
}

start_monitoring() {
    monitoring_wanted || return 0
    [[ -n "$(live_pid "$BASE/prometheus.pid")" ]] || start_prometheus
    if find_grafana; then
        [[ -n "$(live_pid "$BASE/grafana.pid")" ]] || start_grafana
    else
        log "no Grafana found (Debian has no package for it): starting Prometheus only. To get the
    dashboard in Grafana, unpack a Grafana release (grafana.com, 'Standalone Linux binaries') and
    run 'PGHA_GRAFANA_HOME=/path/to/grafana scripts/cluster.sh up --monitoring', or import
    packaging/grafana/pgha.json into your own Grafana (README, Monitoring)"
    fi
}

monitoring_summary() {
    monitoring_wanted || return 0
    echo "  prometheus: http://127.0.0.1:$(prometheus_port)/   (scrapes the agents' /metrics and etcd every 5s)"
    if [[ -n "$(live_pid "$BASE/grafana.pid")" ]]; then
        echo "  grafana:    http://127.0.0.1:$(grafana_port)/d/pgha/   (dashboard pgha; admin / $GRAFANA_ADMIN_PASSWORD)"
    else
        echo "  grafana:    not running (no Grafana binary found; PGHA_GRAFANA_HOME=DIR to use one)"
    fi
}

monitoring_status() {
    [[ -f "$BASE/prometheus.yml" ]] || return 0
    local pid rc=0 name file port
    for name in Prometheus Grafana; do
        file="$BASE/${name,,}.pid"
        [[ "$name" == Grafana && ! -f "$BASE/grafana.ini" ]] && continue
        port="$("${name,,}_port")"
        pid="$(live_pid "$file")"
        if [[ -n "$pid" ]]; then
            echo "$name: running, pid $pid, http://127.0.0.1:$port/"
        else
            echo "$name: NOT running (scripts/cluster.sh up starts it)"
            rc=1
        fi
    done
    return "$rc"
}

stop_monitoring() {
    local name pid
    for name in grafana prometheus; do
        pid="$(live_pid "$BASE/$name.pid")"
        [[ -n "$pid" ]] || continue
        log "stopping $name (pid $pid)"
        stop_pid "$pid" "$name" TERM 15
    done
}

# ----- stop / down / status -----

# Stops every process of the lab through its PID file (HAProxy, then all agents at once, then
# any postmaster left without its agent, then etcd). $1: signal for such a postmaster (INT =
# fast clean shutdown to keep the data, QUIT when it is about to be deleted).
stop_all() {
    local pm_sig="$1" i k p pid pids=()
    stop_monitoring
    pid="$(live_pid "$BASE/haproxy.pid")"
    if [[ -n "$pid" ]]; then
        log "stopping HAProxy (pid $pid)"
        stop_pid "$pid" haproxy TERM 5
    fi
    # All agents at once (one by one, each stop of a leader would start a failover).
    for ((i = 1; i <= NODES; i++)); do
        pid="$(live_pid "$BASE/node$i.pid")"
        [[ -n "$pid" ]] || continue
        log "stopping agent node$i (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid:node$i")
    done
    for p in ${pids[@]+"${pids[@]}"}; do
        stop_pid "${p%%:*}" "agent ${p#*:}" TERM 30
    done
    for ((i = 1; i <= NODES; i++)); do
        pid="$(live_postmaster "$BASE/node$i/data")"
        if [[ -n "$pid" ]]; then
            log "stopping postgres of node$i (pid $pid)"
            stop_pid "$pid" "postgres node$i" "$pm_sig" 10
        fi
    done
    local files=()
    for ((k = 1; k <= ETCD_MEMBERS; k++)); do files+=("$BASE/etcd$k.pid"); done
    ((LEGACY)) && files+=("$BASE/etcd.pid")
    for p in "${files[@]}"; do
        pid="$(live_pid "$p")"
        if [[ -n "$pid" ]]; then
            log "stopping $(basename "$p" .pid) (pid $pid)"
            stop_pid "$pid" "$(basename "$p" .pid)" TERM 10
        fi
    done
    # An agent killed by a drill leaves its lease guard armed until the old deadline (up to a
    # ttl); every postgres of the lab is stopped now, so there is nothing left for it to fence.
    local line
    while read -r line; do
        [[ "$line" == *" $BASE/pgha --lease-guard "* ]] || continue
        log "stopping lease guard (pid ${line%% *})"
        kill -TERM "${line%% *}" 2>/dev/null || true
    done < <(processes_mentioning_base)
    # Children of the agents (pg_basebackup, pg_rewind...) end with them; give them a moment.
    local left=""
    for ((i = 0; i < 50; i++)); do
        left="$(processes_mentioning_base)"
        [[ -z "$left" ]] && return 0
        sleep 0.1
    done
    log "processes of $BASE still running (not started by this script, so not killed):"
    log "$left"
    return 1
}

cmd_stop() {
    if [[ ! -f "$STATE" ]] && ((!LEGACY)); then
        log "nothing to stop: no lab in $BASE"
        return 0
    fi
    stop_all INT || die "stopped what this script started, but something is left (see above)"
    log "stopped; the data stays in $BASE ('scripts/cluster.sh up' starts it again, 'down' removes it)"
}

cmd_down() {
    if [[ ! -e "$BASE" ]]; then
        log "nothing to stop: $BASE does not exist"
        return 0
    fi
    [[ -f "$STATE" ]] || ((LEGACY)) ||
        die "$BASE is no lab directory (no lab.env): not touching it"
    stop_all QUIT || die "not removing $BASE while those run; stop them and run down again"
    net_down
    rm -rf "$BASE"
    log "stopped; removed $BASE"
}

cmd_status() {
    if [[ ! -f "$STATE" ]]; then
        log "no lab in $BASE (scripts/cluster.sh up creates one)"
        return 1
    fi
    echo "lab $BASE: $NODES node(s), $ETCD_MEMBERS etcd member(s), port offset $OFFSET, ttl $TTL"
    if ((NETNS)); then
        echo "network: a namespace per node (pgha-b$NETNS_BLOCK-node<i>) on bridge $(bridge_name) $(bridge_addr), $(net_cidr)"
    fi
    local i k pid rc=0 etcd_up=0
    for ((k = 1; k <= ETCD_MEMBERS; k++)); do
        pid="$(live_pid "$BASE/etcd$k.pid")"
        if [[ -n "$pid" ]]; then
            echo "etcd$k: running, pid $pid, 127.0.0.1:$(etcd_client_port "$k")"
            etcd_up=$((etcd_up + 1))
        else
            echo "etcd$k: NOT running"
            rc=1
        fi
    done
    for ((i = 1; i <= NODES; i++)); do
        pid="$(live_pid "$BASE/node$i.pid")"
        if [[ -n "$pid" ]]; then
            echo "node$i: agent running, pid $pid, PostgreSQL $(node_addr "$i"):$(pg_port "$i"), REST :$(rest_port "$i")"
        else
            echo "node$i: agent NOT running"
            rc=1
        fi
    done
    # pghactl waits for etcd a while before giving up: only ask it when a member runs.
    if ((etcd_up > 0)); then
        ctl list || rc=1
    fi
    monitoring_status || rc=1
    pid="$(live_pid "$BASE/haproxy.pid")"
    if [[ -z "$pid" ]]; then
        echo "HAProxy: NOT running (scripts/cluster.sh up starts it)"
        return 1
    fi
    echo "HAProxy (pid $pid): primary :$HAPROXY_PRIMARY_PORT, replicas :$HAPROXY_REPLICA_PORT, stats http://127.0.0.1:$HAPROXY_STATS_PORT/"
    haproxy_states || rc=1
    return "$rc"
}

# ----- one node -----

# The node index given to start-node / stop-node, checked against the lab's shape.
node_arg() {
    [[ -f "$STATE" ]] || die "no lab in $BASE (scripts/cluster.sh up creates one)"
    [[ -n "$NODE_ARG" ]] || die "$CMD needs a node number (1 to $NODES)"
    NODE_ARG="${NODE_ARG#node}"
    is_uint "$NODE_ARG" && ((10#$NODE_ARG >= 1 && 10#$NODE_ARG <= NODES)) ||
        die "no node '$NODE_ARG' in $BASE: it has node1 to node$NODES"
    NODE_ARG=$((10#$NODE_ARG))
}

cmd_start_node() {
    node_arg
    local i="$NODE_ARG" pid
    pid="$(live_pid "$BASE/node$i.pid")"
    if [[ -n "$pid" ]]; then
        log "agent node$i already runs (pid $pid); nothing to do"
        return 0
    fi
    start_agent "$i"
}

# SIGTERM to the agent (which stops PostgreSQL cleanly and gives up the leader key), then a
# postmaster left without its agent, as `stop` does for every node.
cmd_stop_node() {
    node_arg
    local i="$NODE_ARG" pid
    pid="$(live_pid "$BASE/node$i.pid")"
    if [[ -n "$pid" ]]; then
        log "stopping agent node$i (pid $pid)"
        stop_pid "$pid" "agent node$i" TERM 30
    else
        log "agent node$i is not running"
    fi
    pid="$(live_postmaster "$BASE/node$i/data")"
    if [[ -n "$pid" ]]; then
        log "stopping postgres of node$i (pid $pid)"
        stop_pid "$pid" "postgres node$i" INT 10
    fi
}

# ----- a node more or less -----

# HAProxy's configuration written again from the members in etcd, and HAProxy restarted on it
# (it runs in the foreground without a master process: a restart is its reload).
refresh_haproxy() {
    local pid
    pid="$(live_pid "$BASE/haproxy.pid")"
    [[ -n "$pid" ]] || return 0
    log "restarting HAProxy (pid $pid) with the lab's $NODES node(s)"
    stop_pid "$pid" haproxy TERM 5
    start_haproxy
}

# Prometheus re-reads its configuration on SIGHUP.
refresh_prometheus() {
    local pid
    pid="$(live_pid "$BASE/prometheus.pid")"
    [[ -n "$pid" ]] || return 0
    write_prometheus_config
    kill -HUP "$pid" 2>/dev/null || true
}

# Node N+1 joins the running cluster: its directory and configuration, its namespace (--netns),
# its agent, which clones from the leader; then HAProxy and Prometheus learn about it.
cmd_add_node() {
    [[ -f "$STATE" ]] || die "no lab in $BASE (scripts/cluster.sh up creates one)"
    lab_tls && die "add-node does not work in a --tls lab: its CA signed the certificates of the first nodes only and was not kept"
    local i=$((NODES + 1)) limit=$MAX_NODES wait_start
    ((NETNS)) && limit=$NETNS_MAX_NODES
    ((i <= limit)) || die "the lab has $NODES nodes, the most it can have"
    [[ -e "$BASE/node$i" || -e "$BASE/node$i.yml" ]] &&
        die "$BASE/node$i exists already although the lab has $NODES nodes: remove it (and node$i.yml) first"
    healthy || die "the cluster in $BASE is not healthy (one leader, every node streaming; scripts/cluster.sh status): add-node joins a running cluster"
    if ((!NETNS)); then
        need_port "$(pg_port "$i")" "PostgreSQL of node$i"
        need_port "$(rest_port "$i")" "the REST API of node$i"
    fi
    NODES=$i
    make_node_dir "$i"
    # Recorded before the agent starts, so stop/down know the node whatever happens next.
    write_state
    start_agent "$i"
    wait_start=$SECONDS
    log "waiting (up to 120s) for node$i to clone from the leader and stream"
    until healthy; do
        if ((SECONDS - wait_start > 120)); then
            ctl list || true
            tail -n 15 "$BASE/node$i.log" >&2 2>/dev/null || true
            die "node$i does not stream after 120s; see $BASE/node$i.log (scripts/cluster.sh remove-node $i removes it)"
        fi
        sleep 1
    done
    refresh_haproxy
    refresh_prometheus
    ctl list
    log "node$i added ($((SECONDS - wait_start))s): PostgreSQL $(node_addr "$i"):$(pg_port "$i"), REST :$(rest_port "$i")"
}

# The last node stopped (its agent, then a postmaster left behind), its member key deleted (so
# the cluster need not wait a ttl for it to expire), its files and namespace removed.
cmd_remove_node() {
    node_arg
    local i="$NODE_ARG"
    ((i == NODES)) ||
        die "remove-node removes the last node, node$NODES (so the nodes stay node1 to node$((NODES - 1))), not node$i"
    ((NODES > 1)) || die "node1 is the lab's only node: use 'scripts/cluster.sh down'"
    cmd_stop_node
    [[ -z "$(live_pid "$BASE/node$i.pid")" && -z "$(live_postmaster "$BASE/node$i/data")" ]] ||
        die "node$i still runs; not removing it"
    etcdctl_tls_flags
    ETCDCTL_API=3 etcdctl --endpoints="$(etcd_endpoints)" --dial-timeout=2s --command-timeout=5s \
        ${ETCDCTL_TLS_FLAGS[@]+"${ETCDCTL_TLS_FLAGS[@]}"} del "/service/$SCOPE/members/node$i" >/dev/null ||
        log "could not delete the member key of node$i; it expires after ttl (${TTL}s)"
    NODES=$((i - 1))
    write_state
    rm -rf "${BASE:?}/node$i" "$BASE/node$i.yml" "$BASE/node$i.pid"
    ((NETNS)) && node_net_down "$i"
    refresh_haproxy
    refresh_prometheus
    log "node$i removed; the lab has $NODES node(s) (its log stays in $BASE/node$i.log)"
}

NODE_ARG=""
CMD=""

main() {
    local cmd="${1:-}"
    [[ -n "$cmd" ]] || usage
    shift
    while (($#)); do
        case "$1" in
            --nodes) WANT_NODES="${2:?--nodes needs a number}" && shift ;;
            --nodes=*) WANT_NODES="${1#*=}" ;;
            --etcd) WANT_ETCD="${2:?--etcd needs 1, 3 or 5}" && shift ;;
            --etcd=*) WANT_ETCD="${1#*=}" ;;
            --port-offset) WANT_OFFSET="${2:?--port-offset needs a number}" && shift ;;
            --port-offset=*) WANT_OFFSET="${1#*=}" ;;
            --tls) WANT_TLS=1 ;;
            --monitoring) WANT_MONITORING=1 ;;
            --netns) WANT_NETNS=1 ;;
            -h | --help) usage ;;
            [0-9]* | node[0-9]*)
                [[ "$cmd" == start-node || "$cmd" == stop-node || "$cmd" == remove-node ]] &&
                    [[ -z "$NODE_ARG" ]] || {
                    log "unknown argument: $1"
                    usage
                }
                NODE_ARG="$1"
                ;;
            *)
                log "unknown argument: $1"
                usage
                ;;
        esac
        shift
    done
    case "$cmd" in
        up | down | stop | status | start-node | stop-node | add-node | remove-node) ;;
        -h | --help | help) usage ;;
        *)
            log "unknown command: $cmd"
            usage
            ;;
    esac
    CMD="$cmd"
    load_layout "$cmd"
    set_haproxy_ports
    "cmd_${cmd//-/_}"
}

main "$@"
