#!/usr/bin/env bash
# pgha against Patroni 4.1.5, side by side, in one run: the one command of issue 5.
#
#   bench/run.sh                      # full run: 3 runs per timing scenario, 60 s idle window
#   bench/run.sh --runs 1 --idle-seconds 10 --wrk-seconds 3    # smoke run
#   bench/run.sh --help               # every option (bench/bench.py)
#
# Needs root (the agents run as the `postgres` user via setpriv) and Debian packages
# postgresql-15, etcd-server, wrk, python3-venv (installed with apt-get when missing). Installs
# Patroni 4.1.5 + psycopg from PyPI into a private virtualenv ($PGHA_BENCH_VENV, default
# /tmp/pgha-patroni-venv, reused by later runs), builds pgha (release) unless $PGHA_BENCH_BIN_DIR
# names a directory holding pgha and pghactl, and writes bench/results/<date>.{md,json} and
# bench/results/latest.md. Everything runs on 127.0.0.1 under a fresh directory in /tmp that is
# removed at the end (kept, with the logs, when something failed).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
VENV="${PGHA_BENCH_VENV:-/tmp/pgha-patroni-venv}"
PG_BIN_DIR="${PGHA_BENCH_PG_BIN_DIR:-/usr/lib/postgresql/15/bin}"
PATRONI_VERSION=4.1.5

log() { echo "bench/run.sh: $*" >&2; }
die() { log "error: $*"; exit 2; }

for a in "$@"; do
    if [[ "$a" == -h || "$a" == --help ]]; then
        exec /usr/bin/python3 "$HERE/bench.py" --help
    fi
done

[[ "$(id -u)" == 0 ]] || die "run as root: the agents are started as the postgres user with setpriv"

apt_install() {
    log "installing Debian packages: $*"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq || die "apt-get update failed"
    timeout 900 apt-get install -y -qq --no-install-recommends "$@" || die "apt-get install $* failed"
}

missing=()
[[ -x "$PG_BIN_DIR/postgres" ]] || missing+=(postgresql-15)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
command -v ipcs >/dev/null 2>&1 || missing+=(util-linux)
[[ -x /usr/bin/python3 ]] || missing+=(python3)
/usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if [[ -z "${PGHA_BENCH_BIN_DIR:-}" ]]; then
    # Building pgha (etcd-client) needs protoc and the well-known .proto files.
    command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
    [[ -f /usr/include/google/protobuf/descriptor.proto ]] || missing+=(libprotobuf-dev)
fi
if ((${#missing[@]})); then
    apt_install $(printf '%s\n' "${missing[@]}" | sort -u)
fi
[[ -x "$PG_BIN_DIR/postgres" ]] || die "no PostgreSQL 15 in $PG_BIN_DIR"
id postgres >/dev/null 2>&1 || die "no postgres user (install postgresql-15)"
for t in etcd wrk setpriv ipcs; do
    command -v "$t" >/dev/null 2>&1 || die "$t not found"
done

# Patroni in a private virtualenv that the postgres user can run (world-readable, /tmp).
venv_ok() {
    [[ -x "$VENV/bin/patroni" ]] &&
        [[ "$(timeout 60 "$VENV/bin/patroni" --version 2>/dev/null)" == "patroni $PATRONI_VERSION" ]] &&
        timeout 60 "$VENV/bin/python" -c 'import psycopg, etcd' >/dev/null 2>&1
}
if ! venv_ok; then
    log "creating the Patroni $PATRONI_VERSION virtualenv in $VENV"
    rm -rf "$VENV"
    (umask 022 && /usr/bin/python3 -m venv "$VENV") || die "python3 -m venv $VENV failed"
    (umask 022 && timeout 900 "$VENV/bin/pip" install -q --disable-pip-version-check \
        "patroni[etcd3]==$PATRONI_VERSION" 'psycopg[binary]') || die "pip install of Patroni failed"
    chmod -R a+rX "$VENV"
    venv_ok || die "Patroni $PATRONI_VERSION not usable from $VENV after installing"
fi
timeout 60 setpriv --reuid=postgres --regid=postgres --clear-groups -- "$VENV/bin/patroni" --version >/dev/null 2>&1 ||
    die "the postgres user cannot run $VENV/bin/patroni (permissions?)"

# pgha
if [[ -n "${PGHA_BENCH_BIN_DIR:-}" ]]; then
    BIN="$PGHA_BENCH_BIN_DIR"
    log "using pgha from $BIN (PGHA_BENCH_BIN_DIR)"
else
    command -v cargo >/dev/null 2>&1 || die "cargo not found (or set PGHA_BENCH_BIN_DIR)"
    log "building pgha (cargo build --release -p pgha-agent -p pgha-ctl)"
    (cd "$REPO" && timeout 3600 cargo build --release -q -p pgha-agent -p pgha-ctl) || die "cargo build failed"
    BIN="${CARGO_TARGET_DIR:-$REPO/target}/release"
fi
[[ -x "$BIN/pgha" && -x "$BIN/pghactl" ]] || die "no pgha/pghactl in $BIN"

WORK="$(mktemp -d /tmp/pgha-bench.XXXXXX)"
chmod 0755 "$WORK"
cleanup() {
    local rc=$?
    # bench.py stops everything itself; this catches a bench.py that was killed outright.
    if [[ -d "$WORK" ]]; then
        timeout 120 /usr/bin/python3 "$HERE/bench.py" --cleanup "$WORK" || true
        ((rc == 0)) || log "work directory with the logs kept: $WORK (remove it when done)"
    fi
    exit "$rc"
}
trap cleanup EXIT

cmdline="bench/run.sh"
(($#)) && cmdline+=" $*"
# bench.py bounds its own runtime (--max-minutes, default 2 x its estimate + 10 min) and cleans
# up on SIGINT/SIGTERM; run it in the background so a signal to this script is passed on at once.
set +e
"$VENV/bin/python" "$HERE/bench.py" --workdir "$WORK" --pgha-bin "$BIN" \
    --venv "$VENV" --pg-bin-dir "$PG_BIN_DIR" --command "$cmdline" "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' INT TERM HUP
while :; do
    wait "$child"
    rc=$?
    kill -0 "$child" 2>/dev/null || break
done
exit "$rc"
