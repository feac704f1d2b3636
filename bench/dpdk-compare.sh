#!/usr/bin/env bash
# Throughput of fiberlb on DPDK vs fiberlb on AF_XDP vs dpdk-testpmd io-forwarding, on the same
# veths in one run (topology and generator of bench/dataplane-veth.sh):
#
#   gen ns [g0 198.18.1.1] ── [l0]  lb ns  [l1] ── [b0 198.18.2.2] be ns (XDP_DROP sink)
#
# Generator: `xsk_reflect flood` on g0, core 0, 60-byte UDP frames to a dsr VIP. Sink: b0's XDP
# drop counter (packets that made it through). Forwarders, one at a time, busy-polling on core 1:
#   fiberlb-afxdp      fiberlb-dataplane on AF_XDP (its own XDP program), dsr listener
#   fiberlb-dpdk-xdp   fiberlb-dataplane on DPDK net_af_xdp vdevs (start_queue=0,queue_count=1)
#   fiberlb-dpdk-pkt   fiberlb-dataplane on DPDK net_af_packet vdevs
#   testpmd-io-xdp     dpdk-testpmd --forward-mode=io on the same net_af_xdp vdevs (the ceiling
#                      of the DPDK packet path: no parsing, no rewrite)
# Ratios are against testpmd-io-xdp. A DPDK port takes l0/l1 down when it exits; the links and
# neighbours are restored after each DPDK run.
#
# Usage: bench/dpdk-compare.sh [SECONDS per run, default 5] [RUNS, default 1]
# Env: MODES (space-separated subset of the forwarders above, default all),
#      TESTPMD_ARGS (extra testpmd application arguments, e.g. "--burst=64 --rxd=2048").
# Env: FIBERLB_BIN_DIR (default target/dpdk/release, built with --features dpdk when missing).
set -eu
SECS=${1:-5}
RUNS=${2:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN_DIR=${FIBERLB_BIN_DIR:-$ROOT/target/dpdk/release}
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 1; }
command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd missing (Debian package dpdk-dev)"; exit 1; }
if [ ! -x "$BIN_DIR/fiberlb-dataplane" ] || [ ! -x "$BIN_DIR/examples/xsk_reflect" ]; then
    (cd "$ROOT" && CARGO_TARGET_DIR=$ROOT/target/dpdk cargo build --release -q -p fiberlb-dataplane \
        --features dpdk --bin fiberlb-dataplane --example xsk_reflect)
fi
LB=$BIN_DIR/fiberlb-dataplane
GEN=$BIN_DIR/examples/xsk_reflect

P=fdcmp$$
G=${P}g L=${P}l B=${P}b
MAC_G0=02:b1:01:00:00:01 MAC_L0=02:b1:01:00:00:02 MAC_L1=02:b1:02:00:00:01 MAC_B0=02:b1:02:00:00:02
VIP_DSR=198.18.100.1
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
ip -n $B addr add 198.18.2.2/24 dev b0
ip -n $B addr add $VIP_DSR/32 dev lo
restore() {
    local x
    for x in "$G g0" "$L l0" "$L l1" "$B b0"; do set -- $x; ip -n "$1" link set "$2" up; done
    ip -n $G neigh replace 198.18.1.2 lladdr $MAC_L0 dev g0 nud permanent
    ip -n $G route replace $VIP_DSR/32 via 198.18.1.2 dev g0 onlink
}
restore
cat >"$WORK/xdp_drop.c" <<'C'
#include <linux/bpf.h>
__attribute__((section("xdp"), used)) int xdp_drop(struct xdp_md *ctx) { return XDP_DROP; }
char _license[] __attribute__((section("license"), used)) = "GPL";
C
clang -O2 -target bpf -I/usr/include/"$(uname -m)"-linux-gnu -c "$WORK/xdp_drop.c" -o "$WORK/xdp_drop.o"
ip -n $B link set dev b0 xdp obj "$WORK/xdp_drop.o" sec xdp
rx_b0() { ip netns exec $B ethtool -S b0 | awk '/xdp_drops/ {s += $2} END {print s + 0}'; }

measure() { # prints "sink_pps gen_pps"
    local before after out
    before=$(rx_b0)
    out=$(ip netns exec $G taskset -c 0 "$GEN" flood g0 $MAC_G0 $MAC_L0 198.18.1.1 $VIP_DSR 9 "$SECS")
    sleep 0.3
    after=$(rx_b0)
    echo "$(( (after - before) / SECS )) $(echo "$out" | sed -n 's/.*: \([0-9]*\) pps/\1/p')"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
best() { sort -n | tail -1; }
declare -A SINKS GENS
record() { # name -> measures once, appends to the lists
    local r
    r=$(measure)
    SINKS[$1]="${SINKS[$1]:-} ${r% *}"
    GENS[$1]="${GENS[$1]:-} ${r#* }"
    echo "  $1: sink ${r% *} pps, generator ${r#* } pps"
}

cat >"$WORK/services.yaml" <<YAML
loadbalancers:
  - {name: dsr, vip: $VIP_DSR, listeners: [{port: 9, protocol: udp, mode: dsr, pool: p}]}
pools:
  - {name: p, backends: [{address: 198.18.2.2, port: 9, mac: "$MAC_B0"}]}
YAML
toml() { # afxdp | af_xdp | af_packet
    echo "[forwarding]"; echo "flow_capacity = 65536"
    local i dev
    for i in 0 1; do
        echo "[[ports]]"
        if [ "$1" = afxdp ]; then
            echo "interface = \"l$i\""
        else
            dev=net_${1}$i
            echo "driver = \"dpdk\""; echo "device = \"$dev\""
        fi
        [ $i = 0 ] && echo "role = \"client\"" && echo "gateway_mac = \"$MAC_G0\""
        [ $i = 1 ] && echo "role = \"backend\""
    done
    printf '[workers]\ncores = [1]\nidle_backoff = false\n[shm]\npath = "/dev/shm/%s.region"\n' $P
    if [ "$1" != afxdp ]; then
        local q=""
        [ "$1" = af_xdp ] && q=",start_queue=0,queue_count=1"
        printf '[dpdk]\ncores = [0]\nfile_prefix = "%slb"\nlog_level = "warning"\n' $P
        printf 'vdevs = ["net_%s0,iface=l0%s", "net_%s1,iface=l1%s"]\n' "$1" "$q" "$1" "$q"
    fi
}

fiberlb() { # name kind
    toml "$2" >"$WORK/$1.toml"
    ip netns exec $L "$LB" run --config "$WORK/$1.toml" --services "$WORK/services.yaml" >"$WORK/$1.out" 2>&1 &
    LB_PID=$!
    for _ in $(seq 1 100); do grep -q "forwarding on" "$WORK/$1.out" && break; sleep 0.1; done
    grep -q "forwarding on" "$WORK/$1.out" || { cat "$WORK/$1.out"; exit 1; }
    sleep 1
    record "$1"
    kill -TERM "$LB_PID"; wait "$LB_PID" || true; LB_PID=
    grep "worker 0" "$WORK/$1.out" | sed 's/^/    /'
    restore
}

MODES=${MODES:-fiberlb-afxdp fiberlb-dpdk-xdp fiberlb-dpdk-pkt testpmd-io-xdp}
testpmd() {
# shellcheck disable=SC2086
ip netns exec $L dpdk-testpmd --lcores=0@0,1@1 --no-pci --file-prefix ${P}tp --in-memory -m 256 \
    --vdev net_af_xdp0,iface=l0,start_queue=0,queue_count=1 \
    --vdev net_af_xdp1,iface=l1,start_queue=0,queue_count=1 -- \
    --forward-mode=io --nb-cores=1 --total-num-mbufs=16384 --stats-period 1 ${TESTPMD_ARGS:-} >"$WORK/testpmd.out" 2>&1 &
LB_PID=$!
for _ in $(seq 1 100); do grep -q "Port statistics" "$WORK/testpmd.out" && break; sleep 0.1; done
sleep 1
record testpmd-io-xdp
kill -INT "$LB_PID"; wait "$LB_PID" || true; LB_PID=
restore
}
# Rounds interleave the forwarders (A B C D, A B C D, ...) so that load from other tenants of
# a shared machine hits all of them alike; noise only ever slows a run down, so the best run
# of each forwarder is reported beside the median.
for round in $(seq 1 "$RUNS"); do
    echo "round $round:"
    for m in $MODES; do
        case $m in
        fiberlb-afxdp) fiberlb fiberlb-afxdp afxdp ;;
        fiberlb-dpdk-xdp) fiberlb fiberlb-dpdk-xdp af_xdp ;;
        fiberlb-dpdk-pkt) fiberlb fiberlb-dpdk-pkt af_packet ;;
        testpmd-io-xdp) testpmd ;;
        *) echo "unknown forwarder $m"; exit 2 ;;
        esac
    done
done
declare -A SINK GENR BEST
for m in $MODES; do
    SINK[$m]=$(printf '%s\n' ${SINKS[$m]} | median)
    GENR[$m]=$(printf '%s\n' ${GENS[$m]} | median)
    BEST[$m]=$(printf '%s\n' ${SINKS[$m]} | best)
done

echo
printf '%-18s %12s %14s %10s %12s %10s\n' forwarder "median sink" "generator" "vs testpmd" "best sink" "vs testpmd"
for m in $MODES; do
    ratio=- bratio=-
    if [ -n "${SINK[testpmd-io-xdp]:-}" ]; then
        ratio=$(echo "scale=2; ${SINK[$m]} / ${SINK[testpmd-io-xdp]}" | bc)
        bratio=$(echo "scale=2; ${BEST[$m]} / ${BEST[testpmd-io-xdp]}" | bc)
    fi
    printf '%-18s %12s %14s %10s %12s %10s\n' $m "${SINK[$m]}" "${GENR[$m]}" "$ratio" "${BEST[$m]}" "$bratio"
done
echo "(pps; median and best of $RUNS interleaved run(s) of ${SECS}s; 60-byte UDP frames to a dsr VIP; generator core 0, forwarder core 1)"
