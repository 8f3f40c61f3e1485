#!/usr/bin/env bash
# Test "hosts" for the Ansible playbook, made of Linux namespaces on this one machine (root only).
#
#   netns-hosts.sh up DIR N [UNREACHABLE...]   N hosts node1..nodeN at 10.202.0.11.., each a
#                                              network namespace with its own address and sshd
#   netns-hosts.sh down DIR                    removes everything `up` recorded in DIR/created
#
# Each host: a network namespace (veth onto the bridge pghaansbr0, 10.202.0.1/24 on this side)
# and, inside it, a private mount namespace in which sshd runs: /etc and /usr/local are overlays
# (copy-on-write over the real ones), /var/lib/postgresql, /var/lib/etcd and /var/log are empty
# private directories, /run is a fresh tmpfs. So the playbook runs with the role's real default
# paths, and what it writes on one host neither collides with the others nor touches this
# machine. Every process Ansible starts over ssh (the daemons of `pgha_service_manager: direct`)
# inherits both namespaces. Packages come from this machine (/usr is shared, read-only in use).
#
# `up` writes DIR/ssh/id_ed25519 (the key root logs in with) and DIR/inventory-hosts.yml (the
# hosts: block of an inventory). `down` kills only the processes inside the namespaces it
# created (`ip netns pids`), deletes those namespaces and the bridge, and leaves DIR alone.
set -euo pipefail

PREFIX="${PGHA_NETNS_PREFIX:-pghaans}"
BRIDGE="${PREFIX}br0"
NET="10.202.0"

die() { echo "netns-hosts.sh: $*" >&2; exit 1; }

record() { echo "$*" >>"$DIR/created"; }

# shellcheck source=hosts-net.sh
source "$(dirname "${BASH_SOURCE[0]}")/hosts-net.sh"

up() {
    local n="$1"
    [[ "$(id -u)" == 0 ]] || die "must run as root"
    [[ ! -e "$DIR/created" ]] || die "$DIR/created exists: run down first"
    mkdir -p "$DIR/ssh" "$DIR/hosts"
    : >"$DIR/created"
    hosts_bridge_up

    ssh-keygen -q -t ed25519 -N '' -C pgha-ansible-test -f "$DIR/ssh/id_ed25519"
    ssh-keygen -q -t ed25519 -N '' -C pgha-ansible-test-host -f "$DIR/ssh/host_ed25519_key"
    cp "$DIR/ssh/id_ed25519.pub" "$DIR/ssh/authorized_keys"
    chmod 0600 "$DIR/ssh/authorized_keys"

    : >"$DIR/inventory-hosts.yml"
    local i
    for ((i = 1; i <= n; i++)); do
        local ns="$PREFIX$i" addr="$NET.$((10 + i))" h="$DIR/hosts/node$i"
        hosts_netns_add "$ns" "$addr"

        mkdir -p "$h"/{etc.up,etc.wk,usrlocal.up,usrlocal.wk,varlib-postgresql,varlib-etcd,varlog}
        # The private directories look like the real ones (owner, mode) before the role runs.
        chown --reference=/var/lib/postgresql "$h/varlib-postgresql"
        chmod --reference=/var/lib/postgresql "$h/varlib-postgresql"
        chown --reference=/var/lib/etcd "$h/varlib-etcd"
        chmod --reference=/var/lib/etcd "$h/varlib-etcd"
        chmod --reference=/var/log "$h/varlog"
        cat >"$h/sshd_config" <<CONF
ListenAddress $addr
Port 22
HostKey $DIR/ssh/host_ed25519_key
PidFile /run/sshd.pid
AuthorizedKeysFile $DIR/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp /usr/lib/openssh/sftp-server
CONF
        # The mount namespace lives as long as a process is in it: sshd, then the daemons.
        ip netns exec "$ns" unshare --mount --propagation private -- /bin/bash -c '
            set -e
            h="$1"
            mount -t tmpfs -o mode=0755 tmpfs /run
            mkdir -p /run/sshd
            mount -t overlay overlay -o "lowerdir=/etc,upperdir=$h/etc.up,workdir=$h/etc.wk" /etc
            mount -t overlay overlay -o "lowerdir=/usr/local,upperdir=$h/usrlocal.up,workdir=$h/usrlocal.wk" /usr/local
            mount --bind "$h/varlib-postgresql" /var/lib/postgresql
            mount --bind "$h/varlib-etcd" /var/lib/etcd
            mount --bind "$h/varlog" /var/log
            exec /usr/sbin/sshd -D -e -f "$h/sshd_config"
        ' netns-host "$h" </dev/null >"$h/sshd.log" 2>&1 &
        cat >>"$DIR/inventory-hosts.yml" <<INV
    node$i:
      ansible_host: $addr
INV
    done
    shift
    for extra in "$@"; do
        # Named in the inventory, nothing behind the address: an unreachable host.
        cat >>"$DIR/inventory-hosts.yml" <<INV
    $extra:
      ansible_host: $NET.99
INV
    done

    # Bounded wait for every sshd to accept connections.
    for ((i = 1; i <= n; i++)); do
        local addr="$NET.$((10 + i))"
        hosts_wait_ssh "$addr" 10 "$DIR/hosts/node$i/sshd.log" "sshd on node$i ($addr)"
    done
}

down() {
    [[ -f "$DIR/created" ]] || return 0
    local kind name pids
    # Namespaces first (their processes, then the namespace), the bridge last.
    while read -r kind name; do
        [[ "$kind" == netns ]] || continue
        pids="$(ip netns pids "$name" 2>/dev/null || true)"
        if [[ -n "$pids" ]]; then
            # shellcheck disable=SC2086
            kill -TERM $pids 2>/dev/null || true
            for _ in $(seq 50); do
                pids="$(ip netns pids "$name" 2>/dev/null || true)"
                [[ -z "$pids" ]] && break
                sleep 0.2
            done
            # shellcheck disable=SC2086
            [[ -z "$pids" ]] || kill -KILL $pids 2>/dev/null || true
        fi
        for _ in $(seq 25); do
            [[ -z "$(ip netns pids "$name" 2>/dev/null || true)" ]] && break
            sleep 0.2
        done
        ip netns del "$name" 2>/dev/null || true
    done < <(tac "$DIR/created")
    while read -r kind name; do
        [[ "$kind" == bridge ]] && ip link del "$name" 2>/dev/null || true
    done <"$DIR/created"
    rm -f "$DIR/created"
}

cmd="${1:-}"
DIR="${2:-}"
[[ -n "$cmd" && -n "$DIR" ]] || die "usage: $0 up DIR N [UNREACHABLE...] | down DIR"
DIR="$(realpath -m "$DIR")"
case "$cmd" in
    up) shift 2; [[ -n "${1:-}" ]] || die "up needs the number of hosts"; up "$@" ;;
    down) down ;;
    *) die "unknown command $cmd" ;;
esac
