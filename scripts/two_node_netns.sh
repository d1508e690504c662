#!/bin/sh
# Two "machines" on one host: two network namespaces joined by a veth pair. Starts
# `tandem run --nnodes 2 --node-rank {0,1}` in each (2 processes per node, 4 ranks) and checks
# every collective (dist-selftest compares against values computed locally).
# Needs root (ip netns); prints SKIP and exits 0 where network namespaces are not permitted.
# Usage: scripts/two_node_netns.sh [path/to/tandem]
set -eu
TANDEM=$(realpath "${1:-.build/debug/tandem}")
A=tgnode0-$$
B=tgnode1-$$
VA=tga$$
VB=tgb$$
LOGS=$(mktemp -d)
cleanup() {
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
    rm -rf "$LOGS"
}
if ! ip netns add "$A" 2>/dev/null; then
    echo "SKIP: network namespaces are not permitted here (needs root and CAP_SYS_ADMIN)"
    rm -rf "$LOGS"
    exit 0
fi
trap cleanup EXIT
ip netns add "$B"
ip link add "$VA" type veth peer name "$VB"
ip link set "$VA" netns "$A"
ip link set "$VB" netns "$B"
ip -n "$A" addr add 10.231.0.1/24 dev "$VA"
ip -n "$B" addr add 10.231.0.2/24 dev "$VB"
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
ip -n "$A" link set "$VA" up
ip -n "$B" link set "$VB" up

node() { # namespace node-rank interface ("" picks the address that routes to the master)
    ip netns exec "$1" env TANDEM_SOCKET_IFNAME="$3" timeout 60 "$TANDEM" run --nnodes 2 --node-rank "$2" \
        --nproc-per-node 2 --master-addr 10.231.0.1 --master-port 29555 -- \
        "$(dirname "$TANDEM")/tandem-selftest" dist-selftest --count 1000 --timeout-ms 20000
}
check() { # interface-for-node-0 interface-for-node-1
    node "$A" 0 "$1" > "$LOGS/node0.log" 2>&1 &
    PID0=$!
    node "$B" 1 "$2" > "$LOGS/node1.log" 2>&1 && RC1=0 || RC1=$?
    wait "$PID0" && RC0=0 || RC0=$?
    cat "$LOGS/node0.log" "$LOGS/node1.log"
    if [ "$RC0" -ne 0 ] || [ "$RC1" -ne 0 ]; then
        echo "FAIL: node 0 exited $RC0, node 1 exited $RC1"
        exit 1
    fi
    for r in 0 1 2 3; do
        grep -q "dist-selftest rank $r/4: ok" "$LOGS/node0.log" "$LOGS/node1.log" || { echo "FAIL: rank $r did not report ok"; exit 1; }
    done
}
check "$VA" "$VB"
check "" ""
echo "PASS: 4 ranks on 2 network namespaces, with TANDEM_SOCKET_IFNAME and without"
