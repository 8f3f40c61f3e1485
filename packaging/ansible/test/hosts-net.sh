# Network plumbing shared by netns-hosts.sh and nspawn-hosts.sh (sourced, not run). The caller
# defines die, record, DIR, BRIDGE and NET; everything made here is recorded for its `down`.

# The bridge BRIDGE with NET.1/24 on this side; refused when it exists (another run's).
hosts_bridge_up() {
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
        die "bridge $BRIDGE exists already (another run?): not touching it"
    fi
    ip link add "$BRIDGE" type bridge
    record bridge "$BRIDGE"
    ip addr add "$NET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
}

# Network namespace NS with eth0 at ADDR/24, its veth peer NSh on the bridge, lo up.
hosts_netns_add() {
    local ns="$1" addr="$2"
    ip netns list | grep -qw "$ns" && die "network namespace $ns exists already: not touching it"
    ip netns add "$ns"
    record netns "$ns"
    ip link add "${ns}h" type veth peer name eth0 netns "$ns"
    ip link set "${ns}h" master "$BRIDGE" up
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
}

# Bounded wait (SECONDS) for root's ssh login on ADDR with DIR/ssh/id_ed25519; on a timeout the
# end of LOG, then "WHAT did not accept a login within SECONDS s".
hosts_wait_ssh() {
    local addr="$1" seconds="$2" log="$3" what="$4" tries=0
    until ssh -i "$DIR/ssh/id_ed25519" -o BatchMode=yes -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null -o ConnectTimeout=2 -o LogLevel=ERROR \
        "root@$addr" true </dev/null 2>/dev/null; do
        tries=$((tries + 1))
        if ((tries > seconds * 5)); then
            tail -n 40 "$log" >&2 || true
            die "$what did not accept a login within $seconds s"
        fi
        sleep 0.2
    done
}
