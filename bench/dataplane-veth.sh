#!/usr/bin/env bash
# Throughput of fiberlb-dataplane on the veth path, against Linux's own forwarding on the same
# topology in the same run (see ../shared/BASELINES.md):
#
#   gen ns [g0 198.18.1.1] ── [l0 198.18.1.2]  lb ns  [l1 198.18.2.1] ── [b0 198.18.2.2] be ns (sink)
#
# Generator: the AF_XDP flooder `xsk_reflect flood` (dataplane/examples) on g0, pinned to core
# 0: 60-byte UDP frames, ~8k source ports (flows). Sink: an XDP_DROP program on b0 (compiled
# here with clang); the count is b0's XDP drop counter, i.e. packets that made it through.
# Forwarders, each on core 1:
#   fiberlb dsr / nat: fiberlb-dataplane, 1 worker on core 1, busy-polling, AF_XDP on l0 and l1
#     (copy mode: veth has no zero-copy);
#   linux: ip_forward with RPS steering l0's receive work to core 1 (the baseline's setup);
#   linux-norps: the same without RPS (everything on core 0, with the generator).
# Where receive work runs: veth does it on the SENDER's CPU. So l0's receive (XDP redirect into
# the AF_XDP socket, or the kernel's forwarding without RPS) runs on core 0 with the generator;
# b0's receive (the sink) runs on core 1 with the forwarder, which transmits to it. With
# fiberlb the generator therefore shares core 0 with l0's XDP redirect and the copy into the
# UMEM, which caps what it can offer: compare "sink" with "generator" (what was offered).
#
# Usage: bench/dataplane-veth.sh [SECONDS per run, default 5] [RUNS, default 3]
# Env: FIBERLB_BIN_DIR (default target/release; binaries are built when missing).
set -eu
SECS=${1:-5}
RUNS=${2:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN_DIR=${FIBERLB_BIN_DIR:-$ROOT/target/release}
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 1; }
if [ ! -x "$BIN_DIR/fiberlb-dataplane" ] || [ ! -x "$BIN_DIR/examples/xsk_reflect" ]; then
    (cd "$ROOT" && cargo build --release -q -p fiberlb-dataplane --bin fiberlb-dataplane --example xsk_reflect)
fi
LB=$BIN_DIR/fiberlb-dataplane
GEN=$BIN_DIR/examples/xsk_reflect

P=fbench$$
G=${P}g L=${P}l B=${P}b
MAC_G0=02:b0:01:00:00:01 MAC_L0=02:b0:01:00:00:02 MAC_L1=02:b0:02:00:00:01 MAC_B0=02:b0:02:00:00:02
VIP_DSR=198.18.100.1 VIP_NAT=198.18.100.2
WORK=$(mktemp -d /tmp/$P.XXXX)
LB_PID=

cleanup() {
    if [ -n "$LB_PID" ]; then kill -TERM "$LB_PID" 2>/dev/null || true; wait "$LB_PID" 2>/dev/null || true; fi
    for ns in $G $L $B; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$WORK" /dev/shm/$P.region /dev/shm/$P.region.slots.json
}
trap cleanup EXIT

for ns in $G $L $B; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n $L link add l0 address $MAC_L0 type veth peer name g0 address $MAC_G0 netns $G
ip -n $L link add l1 address $MAC_L1 type veth peer name b0 address $MAC_B0 netns $B
ip -n $G addr add 198.18.1.1/24 dev g0
ip -n $L addr add 198.18.1.2/24 dev l0
ip -n $L addr add 198.18.2.1/24 dev l1
ip -n $B addr add 198.18.2.2/24 dev b0
ip -n $B addr add $VIP_DSR/32 dev lo
for x in "$G g0" "$L l0" "$L l1" "$B b0"; do set -- $x; ip -n "$1" link set "$2" up; done
ip -n $G neigh replace 198.18.1.2 lladdr $MAC_L0 dev g0 nud permanent
ip -n $L neigh replace 198.18.1.1 lladdr $MAC_G0 dev l0 nud permanent
ip -n $L neigh replace 198.18.2.2 lladdr $MAC_B0 dev l1 nud permanent
ip -n $B neigh replace 198.18.2.1 lladdr $MAC_L1 dev b0 nud permanent
ip netns exec $L sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.l0.rp_filter=0
ip netns exec $B sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.b0.rp_filter=0
# The sink: XDP_DROP on b0 (this kernel has neither tc matchall nor nftables).
cat >"$WORK/xdp_drop.c" <<'C'
#include <linux/bpf.h>
__attribute__((section("xdp"), used)) int xdp_drop(struct xdp_md *ctx) { return XDP_DROP; }
char _license[] __attribute__((section("license"), used)) = "GPL";
C
clang -O2 -target bpf -I/usr/include/"$(uname -m)"-linux-gnu -c "$WORK/xdp_drop.c" -o "$WORK/xdp_drop.o"
ip -n $B link set dev b0 xdp obj "$WORK/xdp_drop.o" sec xdp

# Packets that reached the sink: b0's XDP drop counter (veth counts XDP drops per queue).
rx_b0() { ip netns exec $B ethtool -S b0 | awk '/xdp_drops/ {s += $2} END {print s + 0}'; }

# One measurement: flood DST for SECS seconds; prints "sink_pps gen_pps".
measure() {
    local dst=$1 before after out
    before=$(rx_b0)
    out=$(ip netns exec $G taskset -c 0 "$GEN" flood g0 $MAC_G0 $MAC_L0 198.18.1.1 "$dst" 9 "$SECS")
    sleep 0.3
    after=$(rx_b0)
    echo "$(( (after - before) / SECS )) $(echo "$out" | sed -n 's/.*: \([0-9]*\) pps/\1/p')"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A SINK GENR
run_mode() { # name dst
    local name=$1 dst=$2 i r s=() g=()
    for i in $(seq 1 "$RUNS"); do
        r=$(measure "$dst")
        s+=("${r% *}"); g+=("${r#* }")
        echo "  $name run $i: sink ${r% *} pps, generator ${r#* } pps"
    done
    SINK[$name]=$(printf '%s\n' "${s[@]}" | median)
    GENR[$name]=$(printf '%s\n' "${g[@]}" | median)
}

cat >"$WORK/services.yaml" <<YAML
loadbalancers:
  - {name: dsr, vip: $VIP_DSR, listeners: [{port: 9, protocol: udp, mode: dsr, pool: p}]}
  - {name: nat, vip: $VIP_NAT, listeners: [{port: 9, protocol: udp, mode: nat, pool: p}]}
pools:
  - {name: p, backends: [{address: 198.18.2.2, port: 9, mac: "$MAC_B0"}]}
YAML
cat >"$WORK/dataplane.toml" <<TOML
[forwarding]
flow_capacity = 65536
[[ports]]
interface = "l0"
role = "client"
gateway_mac = "$MAC_G0"
[[ports]]
interface = "l1"
role = "backend"
[workers]
cores = [1]
idle_backoff = false
[shm]
path = "/dev/shm/$P.region"
TOML

echo "fiberlb-dataplane (1 worker, core 1, busy-poll):"
ip netns exec $L "$LB" run --config "$WORK/dataplane.toml" --services "$WORK/services.yaml" >"$WORK/lb.out" 2>&1 &
LB_PID=$!
for _ in $(seq 1 100); do grep -q "forwarding on" "$WORK/lb.out" && break; sleep 0.1; done
grep -q "forwarding on" "$WORK/lb.out" || { cat "$WORK/lb.out"; exit 1; }
run_mode fiberlb-dsr $VIP_DSR
run_mode fiberlb-nat $VIP_NAT
kill -TERM "$LB_PID"; wait "$LB_PID" || true; LB_PID=
grep "worker 0" "$WORK/lb.out" | sed 's/^/  /'

echo "Linux ip_forward (RPS: l0 receive work on core 1):"
echo 2 | ip netns exec $L tee /sys/class/net/l0/queues/rx-0/rps_cpus >/dev/null
run_mode linux-forward 198.18.2.2
echo 0 | ip netns exec $L tee /sys/class/net/l0/queues/rx-0/rps_cpus >/dev/null
echo "Linux ip_forward without RPS (all of it on core 0, the generator's, like l0's XDP work for fiberlb):"
run_mode linux-norps 198.18.2.2

echo
printf '%-16s %12s %14s %8s\n' forwarder "sink pps" "generator pps" "vs linux"
for m in fiberlb-dsr fiberlb-nat linux-forward linux-norps; do
    printf '%-16s %12s %14s %8s\n' $m "${SINK[$m]}" "${GENR[$m]}" \
        "$(echo "scale=2; ${SINK[$m]} / ${SINK[linux-forward]}" | bc)"
done
echo "(medians of $RUNS runs of ${SECS}s; 60-byte UDP frames; generator pinned to core 0, forwarder on core 1)"
