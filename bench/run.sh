#!/usr/bin/env bash
# fiberlb against its baselines, in ONE run on a namespace topology this script builds and
# always removes (see bench/scenarios/lib.sh and bench/README.md):
#   fiberlb   (a) fiberlb-dataplane on AF_XDP: dsr, nat (+ tunnel), 1 and 2 workers, 1k (+ 1M)
#                 flows, 64- and 1500-byte frames
#   kernel    (b) Linux ip_forward and Linux DNAT (iptables-nft + conntrack)
#   testpmd   (c) dpdk-testpmd mac forwarding on net_af_xdp vdevs: the ceiling (if installed)
#   pipeline  (d) the pipeline alone on memory ports, 1 and 2 worker threads
#   update        commit -> Applied latency, and loss while Maglev tables swap under load
#   instructions  instructions per packet of the pipeline alone (bench/instructions.sh, callgrind)
#   maglev        Maglev build (M = 65537, 1000 backends) against the paper's loop, same process
#   api           API write -> applied through fiberlbd (controlplane/tests/apply_latency.rs,
#                 release build; its own data plane and namespace)
# Every throughput is the sink's received rate of a max-rate trial, shown as a ratio to (b) and
# (c) measured in the same run. Writes results/run-*/{table.md,plot.svg,plot-pipeline.svg,rows.tsv,json/} and
# points results/latest at it.
#
# Usage: bench/run.sh [--quick] [--secs N] [--build] [scenario...]   (root; --quick < 5 min on 2 cores)
# Full runs add tunnel (GUE), 1M flows and NDR/PDR searches (NDR=1 adds the searches to --quick).
# Env: FIBERLB_BIN_DIR (default target/release; built when missing or with --build);
#      PERF=1 profiles every trial (perf -e cpu-clock, all CPUs) into results/.../perf-*.txt;
#      BENCH_MODES ("dsr nat"), BENCH_SIZES ("64 1500"), BENCH_WORKERS ("1 2") narrow the
#      fiberlb scenario's rows; BENCH_FILL_RING sets its [umem] fill_ring (default 2048).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
QUICK=0 SECS= BUILD=0 SCENARIOS=()
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1 ;;
        --secs) SECS=$2; shift ;;
        --build) BUILD=1 ;;
        -h|--help) sed -n "2,23p" "$0"; exit 0 ;;
        fiberlb|kernel|testpmd|pipeline|update|api|instructions|maglev) SCENARIOS+=("$1") ;;
        *) echo "unknown argument $1 (scenarios: fiberlb kernel testpmd pipeline update api instructions maglev)"; exit 2 ;;
    esac
    shift
done
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(pipeline instructions maglev fiberlb kernel testpmd update api)
[ -n "$SECS" ] || SECS=$((QUICK ? 3 : 5))
[ "$(id -u)" = 0 ] || { echo "bench/run.sh needs root (network namespaces, XDP, AF_XDP)"; exit 1; }
for t in ip ethtool python3; do command -v $t >/dev/null || { echo "needs $t"; exit 1; }; done

BIN_DIR=${FIBERLB_BIN_DIR:-$ROOT/target/release}
if [ $BUILD = 1 ] || [ ! -x "$BIN_DIR/fiberlb-dataplane" ] || [ ! -x "$BIN_DIR/fiberlb-pktgen" ]; then
    (cd "$ROOT" && cargo build --release -q -p fiberlb-dataplane --bin fiberlb-dataplane \
        -p fiberlb-bench --bin fiberlb-pktgen)
fi
# The maglev scenario's timing program (an example of the shared crate), only when it runs.
if [[ " ${SCENARIOS[*]} " == *" maglev "* ]] && { [ $BUILD = 1 ] || [ ! -x "$BIN_DIR/examples/maglev_build" ]; }; then
    (cd "$ROOT" && cargo build --release -q -p fiberlb-shared --example maglev_build)
    BIN_EXAMPLES=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples
fi
LB=$BIN_DIR/fiberlb-dataplane
PKTGEN=$BIN_DIR/fiberlb-pktgen
MAGLEV=${BIN_EXAMPLES:-$BIN_DIR/examples}/maglev_build

RES=$ROOT/results/run-$(date +%Y%m%d-%H%M%S)
mkdir -p "$RES/json"
: >"$RES/rows.tsv"

. "$HERE/scenarios/lib.sh"
. "$HERE/scenarios/fiberlb.sh"
. "$HERE/scenarios/kernel.sh"
. "$HERE/scenarios/testpmd.sh"
. "$HERE/scenarios/pipeline.sh"
. "$HERE/scenarios/update.sh"
. "$HERE/scenarios/cost.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

START=$(date +%s)
topology_up
{
    echo "kernel $(uname -r), $(nproc) CPUs, $(date -u +%FT%TZ), commit $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo ?)"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); pktgen, fiberlb and testpmd run under '$NICE'"
    echo "threaded NAPI: $(ip netns exec $L cat /sys/class/net/l0/threaded) on l0, $(ip netns exec $L cat /sys/class/net/l1/threaded) on l1 (0 = veth receive work runs on the sender's CPU)"
} >"$RES/env.txt"
cat "$RES/env.txt"
FAILED=()
for s in "${SCENARIOS[@]}"; do
    "scenario_$s" || { echo "scenario $s failed"; FAILED+=("$s"); }
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RES/env.txt"

# The table (ratios to the kernel peers and to testpmd of the same frame size, same run) and
# the plots: the I/O path and the pipeline alone apart (they differ by 50x).
python3 "$HERE/scenarios/table.py" "$RES" "$QUICK" "$SECS"
if [ -s "$RES/plot.tsv" ]; then # (empty when only pipeline/update scenarios ran)
    "$PKTGEN" plot --input "$RES/plot.tsv" --output "$RES/plot.svg" \
        --title "fiberlb vs baselines on veth, same run (Mpps received)" || echo "plot failed"
fi
if [ -s "$RES/plot-pipeline.tsv" ]; then
    "$PKTGEN" plot --input "$RES/plot-pipeline.tsv" --output "$RES/plot-pipeline.svg" \
        --title "pipeline alone on memory ports (Mpps)" || echo "plot failed"
fi
ln -sfn "$(basename "$RES")" "$ROOT/results/latest"
echo
cat "$RES/table.md"
echo
echo "results in $RES (table.md, plot.svg, json/) — $(($(date +%s) - START)) s"
# A scenario that failed (a trial that did not run, loss during the update swaps) fails the run,
# after the table so that what did run is still shown.
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "bench/run.sh: FAILED scenarios: ${FAILED[*]}" >&2
    exit 1
fi
