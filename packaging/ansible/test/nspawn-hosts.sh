#!/usr/bin/env bash
# Test "hosts" for the Ansible playbook that run a real systemd as PID 1 (root only): each one a
# systemd-nspawn container booting a Debian bookworm rootfs, so the playbook's default
# `pgha_service_manager: systemd` path (unit files, systemctl enable --now, Restart=) runs for
# real.
#
#   nspawn-hosts.sh rootfs                  builds the cached rootfs if missing, prints its path
#   nspawn-hosts.sh up DIR N                N hosts node1..nodeN at 10.203.0.11.., booted, sshd up
#   nspawn-hosts.sh boot DIR I              nodeI again, on its own overlay, once its container
#                                           ended (a `systemctl reboot` inside ends it); sshd up
#   nspawn-hosts.sh down DIR                stops everything `up` recorded in DIR/created
#
# The rootfs (debootstrap --variant=minbase with systemd, sshd, python3 and the packages the
# roles install, so their apt tasks change nothing and need no network) is built once into
# $PGHA_NSPAWN_CACHE (default /var/cache/pgha-e2e) and never written to: each host boots an
# overlay of it (DIR/hosts/nodeI/{up,root}). Each host: a network namespace with a veth onto the
# bridge pghansdbr0 (10.203.0.1/24 on this side), which systemd-nspawn joins; root logs in over
# ssh with DIR/ssh/id_ed25519, and so does `deploy`, who may sudo anything without a password.
# Nothing is registered with machined (there is no systemd here).
# `down` shuts each container down (SIGTERM to systemd-nspawn, i.e. a clean poweroff), kills
# what is left by PID, unmounts the overlays, deletes the namespaces and the bridge.
set -euo pipefail

PREFIX="${PGHA_NSPAWN_PREFIX:-pghansd}"
BRIDGE="${PREFIX}br0"
NET="10.203.0"
CACHE="${PGHA_NSPAWN_CACHE:-/var/cache/pgha-e2e}"
MIRROR="${PGHA_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="systemd,systemd-sysv,dbus,openssh-server,python3,python3-apt,iproute2,procps,sudo,etcd-server,etcd-client,postgresql-15,haproxy"
# The unprivileged login (ssh key of the run, passwordless sudo) the playbook can run as with
# `ansible_become`, as on hosts where root does not log in.
SUDOER="deploy"
# The rootfs's name changes with its package list and login, so an edit here builds a new one.
ROOTFS="$CACHE/bookworm-$(echo "$PACKAGES $SUDOER" | md5sum | cut -c1-8)"

die() { echo "nspawn-hosts.sh: $*" >&2; exit 1; }

record() { echo "$*" >>"$DIR/created"; }

# shellcheck source=hosts-net.sh
source "$(dirname "${BASH_SOURCE[0]}")/hosts-net.sh"

rootfs() {
    [[ "$(id -u)" == 0 ]] || die "must run as root"
    command -v debootstrap >/dev/null || die "debootstrap missing (Debian: apt-get install debootstrap)"
    mkdir -p "$CACHE"
    # One builder at a time; a killed build leaves only ROOTFS.tmp, never a half ROOTFS.
    exec 9>"$CACHE/.lock"
    flock -w 900 9 || die "another rootfs build holds $CACHE/.lock"
    if [[ ! -x "$ROOTFS/lib/systemd/systemd" ]]; then
        rm -rf "$ROOTFS.tmp"
        debootstrap --variant=minbase --include="$PACKAGES" bookworm "$ROOTFS.tmp" "$MIRROR" \
            >"$CACHE/debootstrap.log" 2>&1 || die "debootstrap failed: see $CACHE/debootstrap.log"
        # No apt timers or getty in a test host; apt would try to reach the network.
        for unit in apt-daily.timer apt-daily-upgrade.timer console-getty.service; do
            ln -sf /dev/null "$ROOTFS.tmp/etc/systemd/system/$unit"
        done
        chroot "$ROOTFS.tmp" useradd --create-home --shell /bin/bash "$SUDOER" \
            || die "useradd $SUDOER in the rootfs failed"
        echo "$SUDOER ALL=(ALL:ALL) NOPASSWD: ALL" >"$ROOTFS.tmp/etc/sudoers.d/$SUDOER"
        chmod 0440 "$ROOTFS.tmp/etc/sudoers.d/$SUDOER"
        mv "$ROOTFS.tmp" "$ROOTFS"
    fi
    echo "$ROOTFS"
}

up() {
    local n="$1"
    [[ "$(id -u)" == 0 ]] || die "must run as root"
    command -v systemd-nspawn >/dev/null || die "systemd-nspawn missing (Debian: apt-get install systemd-container)"
    [[ ! -e "$DIR/created" ]] || die "$DIR/created exists: run down first"
    local root
    root="$(rootfs)"
    mkdir -p "$DIR/ssh" "$DIR/hosts"
    : >"$DIR/created"
    hosts_bridge_up
    ssh-keygen -q -t ed25519 -N '' -C pgha-ansible-systemd-test -f "$DIR/ssh/id_ed25519"

    local i
    for ((i = 1; i <= n; i++)); do
        local ns="$PREFIX$i" addr="$NET.$((10 + i))" h="$DIR/hosts/node$i"
        hosts_netns_add "$ns" "$addr"

        mkdir -p "$h"/{up,wk,root}
        mount -t overlay overlay -o "lowerdir=$root,upperdir=$h/up,workdir=$h/wk" "$h/root"
        record mount "$h/root"
        echo "node$i" >"$h/root/etc/hostname"
        printf '127.0.0.1 localhost\n%s node%s\n' "$addr" "$i" >"$h/root/etc/hosts"
        # Each host its own machine id (journal, D-Bus), not the one debootstrap made.
        od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$h/root/etc/machine-id"
        install -d -m 0700 "$h/root/root/.ssh"
        install -m 0600 "$DIR/ssh/id_ed25519.pub" "$h/root/root/.ssh/authorized_keys"
        local ids
        ids="$(awk -F: -v u="$SUDOER" '$1 == u { print $3 ":" $4 }' "$h/root/etc/passwd")"
        [[ -n "$ids" ]] || die "no user $SUDOER in $root"
        install -d -m 0700 -o "${ids%:*}" -g "${ids#*:}" "$h/root/home/$SUDOER/.ssh"
        install -m 0600 -o "${ids%:*}" -g "${ids#*:}" "$DIR/ssh/id_ed25519.pub" \
            "$h/root/home/$SUDOER/.ssh/authorized_keys"

        start_container "$i"
    done
    for ((i = 1; i <= n; i++)); do
        wait_sshd "$i"
    done
}

# Boots nodeI's container on its overlay and records systemd-nspawn's pid.
start_container() {
    local i="$1"
    local h="$DIR/hosts/node$i"
    # --keep-unit/--register=no: no systemd/machined on this side to talk to.
    systemd-nspawn --quiet --keep-unit --register=no --machine="$PREFIX-node$i" \
        --directory="$h/root" --network-namespace-path="/run/netns/$PREFIX$i" \
        --console=read-only --boot </dev/null >>"$h/console.log" 2>&1 &
    record nspawn "$!" "$PREFIX-node$i"
}

# Bounded wait for nodeI to boot as far as sshd.
wait_sshd() {
    local addr="$NET.$((10 + $1))"
    hosts_wait_ssh "$addr" 30 "$DIR/hosts/node$1/console.log" "node$1 ($addr), booting,"
}

# nodeI again after its container ended: a reboot inside makes systemd-nspawn exit (status 133)
# rather than boot it again. Its overlay, i.e. everything the host wrote, is kept.
boot() {
    local i="$1" machine="$PREFIX-node$1" kind name extra pid=""
    [[ -f "$DIR/created" ]] || die "$DIR/created missing: nothing was brought up"
    while read -r kind name extra; do
        if [[ "$kind" == nspawn && "$extra" == "$machine" ]]; then pid="$name"; fi
    done <"$DIR/created"
    [[ -n "$pid" ]] || die "no container node$i recorded in $DIR/created"
    local tries=0
    while kill -0 "$pid" 2>/dev/null; do
        tries=$((tries + 1))
        ((tries <= 600)) || die "node$i (systemd-nspawn $pid) still running after 120 s"
        sleep 0.2
    done
    # The old pid goes from the record: `down` must never signal a reused pid.
    sed -i "/^nspawn $pid $machine\$/d" "$DIR/created"
    rmdir "/run/systemd/nspawn/propagate/$machine" 2>/dev/null || true
    start_container "$i"
    wait_sshd "$i"
}

down() {
    [[ -f "$DIR/created" ]] || return 0
    local kind name extra pids
    # Containers first: SIGTERM makes systemd-nspawn power the container off cleanly.
    while read -r kind name extra; do
        [[ "$kind" == nspawn ]] || continue
        kill -TERM "$name" 2>/dev/null || true
    done <"$DIR/created"
    while read -r kind name extra; do
        [[ "$kind" == nspawn ]] || continue
        for _ in $(seq 150); do
            kill -0 "$name" 2>/dev/null || break
            sleep 0.2
        done
        # Killing systemd-nspawn kills the container's PID 1, and with it the whole PID namespace.
        kill -KILL "$name" 2>/dev/null || true
        rmdir "/run/systemd/nspawn/propagate/$extra" 2>/dev/null || true
    done <"$DIR/created"
    while read -r kind name extra; do
        case "$kind" in
            netns)
                pids="$(ip netns pids "$name" 2>/dev/null || true)"
                # shellcheck disable=SC2086
                [[ -z "$pids" ]] || kill -KILL $pids 2>/dev/null || true
                for _ in $(seq 25); do
                    [[ -z "$(ip netns pids "$name" 2>/dev/null || true)" ]] && break
                    sleep 0.2
                done
                ip netns del "$name" 2>/dev/null || true
                ;;
            mount)
                umount "$name" 2>/dev/null || umount -l "$name" 2>/dev/null || true
                ;;
        esac
    done < <(tac "$DIR/created")
    while read -r kind name extra; do
        [[ "$kind" == bridge ]] && ip link del "$name" 2>/dev/null || true
    done <"$DIR/created"
    rm -f "$DIR/created"
}

cmd="${1:-}"
case "$cmd" in
    rootfs) rootfs; exit 0 ;;
esac
DIR="${2:-}"
[[ -n "$cmd" && -n "$DIR" ]] || die "usage: $0 rootfs | up DIR N | boot DIR I | down DIR"
DIR="$(realpath -m "$DIR")"
case "$cmd" in
    up) shift 2; [[ -n "${1:-}" ]] || die "up needs the number of hosts"; up "$@" ;;
    boot) shift 2; [[ "${1:-}" =~ ^[0-9]+$ ]] || die "boot needs a host number"; boot "$1" ;;
    down) down ;;
    *) die "unknown command $cmd" ;;
esac
