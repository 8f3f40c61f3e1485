#!/usr/bin/env bash
# Runs the whole test suite: unit tests of every crate and the end-to-end scenarios of
# crates/pgha-e2e (real etcd + PostgreSQL 15; run as root, the agents then run as `postgres`).
#
#   scripts/test.sh                  # everything
#   scripts/test.sh -p pgha-e2e      # extra arguments go to cargo nextest / cargo test
#
# Environment: PGHA_E2E_KEEP=1 keeps each scenario's /tmp/pgha-e2e-* dir, PGHA_E2E_SKIP=1 skips
# the scenarios. At most two end-to-end scenarios run at once (two file-lock slots; the ones
# that need the machine to themselves take both, see .config/nextest.toml), beside the unit
# tests on two cores.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The e2e harness copies target/debug/{pgha,pghactl}: build them before any test runs.
cargo build --workspace --bins

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
mkdir -p "$target_dir"
export PGHA_E2E_REPORT="$target_dir/pgha-e2e-report.txt"
rm -f "$PGHA_E2E_REPORT"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

rc=0
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || rc=$?
    summary="$(grep -E '^ *Summary \[' "$log" | tail -n1 || true)"
else
    cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || rc=$?
    summary="$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
                   END { if (NR) printf "%d passed, %d failed", p, f }' "$log")"
fi

if [[ -s "$PGHA_E2E_REPORT" ]]; then
    echo
    echo "==== end-to-end measurements ($PGHA_E2E_REPORT) ===="
    cat "$PGHA_E2E_REPORT"
fi
# The test runner's own closing line last, so the result is the last thing in the log.
if [[ -n "${summary:-}" ]]; then
    echo
    echo "$summary"
fi
exit "$rc"
