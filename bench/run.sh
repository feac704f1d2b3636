#!/usr/bin/env bash
# fiberlb against its baselines, in ONE run on a namespace topology this script builds and
# always removes (see bench/scenarios/lib.sh and bench/README.md):
#   fiberlb   (a) fiberlb-dataplane on AF_XDP: dsr, nat (+ tunnel), 1 and 2 workers, 1k (+ 1M)
#                 flows, 64- and 1500-byte frames
#   kernel    (b) Linux ip_forward and Linux DNAT (iptables-nft + conntrack)
#   testpmd   (c) dpdk-testpmd mac forwarding on net_af_xdp vdevs: the ceiling (if installed)
#   pipeline  (d) the pipeline alone on memory ports, 1 and 2 worker threads
#   update        commit -> Applied latency, and loss while Maglev tables swap under load
# Every throughput is the sink's received rate of a max-rate trial, shown as a ratio to (b) and
# (c) measured in the same run. Writes results/run-*/{table.md,plot.svg,rows.tsv,json/} and
# points results/latest at it.
#
# Usage: bench/run.sh [--quick] [--secs N] [scenario...]   (root; --quick < 5 min on 2 cores)
# Env: FIBERLB_BIN_DIR (default target/release; built when missing or with --build);
#      PERF=1 profiles every trial (perf -e cpu-clock, all CPUs) into results/.../perf-*.txt.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
QUICK=0 SECS= BUILD=0 SCENARIOS=()
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1 ;;
        --secs) SECS=$2; shift ;;
        --build) BUILD=1 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        fiberlb|kernel|testpmd|pipeline|update) SCENARIOS+=("$1") ;;
        *) echo "unknown argument $1 (scenarios: fiberlb kernel testpmd pipeline update)"; exit 2 ;;
    esac
    shift
done
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(pipeline fiberlb kernel testpmd update)
[ -n "$SECS" ] || SECS=$((QUICK ? 3 : 5))
[ "$(id -u)" = 0 ] || { echo "bench/run.sh needs root (network namespaces, XDP, AF_XDP)"; exit 1; }
for t in ip ethtool python3; do command -v $t >/dev/null || { echo "needs $t"; exit 1; }; done

BIN_DIR=${FIBERLB_BIN_DIR:-$ROOT/target/release}
if [ $BUILD = 1 ] || [ ! -x "$BIN_DIR/fiberlb-dataplane" ] || [ ! -x "$BIN_DIR/fiberlb-pktgen" ]; then
    (cd "$ROOT" && cargo build --release -q -p fiberlb-dataplane --bin fiberlb-dataplane \
        -p fiberlb-bench --bin fiberlb-pktgen)
fi
LB=$BIN_DIR/fiberlb-dataplane
PKTGEN=$BIN_DIR/fiberlb-pktgen

RES=$ROOT/results/run-$(date +%Y%m%d-%H%M%S)
mkdir -p "$RES/json"
: >"$RES/rows.tsv"

. "$HERE/scenarios/lib.sh"
. "$HERE/scenarios/fiberlb.sh"
. "$HERE/scenarios/kernel.sh"
. "$HERE/scenarios/testpmd.sh"
. "$HERE/scenarios/pipeline.sh"
. "$HERE/scenarios/update.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

START=$(date +%s)
topology_up
{
    echo "kernel $(uname -r), $(nproc) CPUs, $(date -u +%FT%TZ), commit $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo ?)"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "threaded NAPI: $(ip netns exec $L cat /sys/class/net/l0/threaded) on l0, $(ip netns exec $L cat /sys/class/net/l1/threaded) on l1 (0 = veth receive work runs on the sender's CPU)"
} >"$RES/env.txt"
cat "$RES/env.txt"
for s in "${SCENARIOS[@]}"; do
    "scenario_$s" || echo "scenario $s failed"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RES/env.txt"

# The table: ratios to the kernel peers and to testpmd of the same frame size, same run.
python3 - "$RES" "$QUICK" "$SECS" <<'PY'
import csv, sys, os
res, quick, secs = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
rows = [r for r in csv.reader(open(os.path.join(res, "rows.tsv")), delimiter="\t") if r]
val = {r[0]: float(r[5]) for r in rows if r[5]}
def base(kind, size, flows):
    for f in (flows, "1000"):
        v = val.get(f"{kind}-{f}f-{size}B")
        if v:
            return v
    return None
def ratio(v, b):
    return f"{v / b:.2f}" if b else "-"
out = []
out.append(f"# fiberlb benchmark ({'quick' if quick else 'full'} run, {secs} s trials)\n")
out.append(open(os.path.join(res, "env.txt")).read())
out.append("\nThroughput = packets/s received by the sink during a max-rate trial (UDP, 1 VIP:port, "
           "4 backends). Ratios are to the baselines of the same frame size measured in this run: "
           "(b) Linux ip_forward and Linux DNAT (iptables-nft + conntrack), (c) dpdk-testpmd "
           "mac-forwarding on net_af_xdp. (d) = the pipeline alone on memory ports.\n")
out.append("| scenario | group | size B | flows | workers | rx kpps | offered kpps | loss % | p99 us | flows moved | vs linux fwd | vs linux DNAT | vs testpmd | where it ran |")
out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    name, group, size, flows, workers, rx, tx, loss, p99, moved, place = (r + [""] * 11)[:11]
    v = float(rx) if rx else 0.0
    size_b = "64" if group == "pipeline" else size
    fwd, dnat, tp = base("linux-forward", size_b, flows), base("linux-dnat", size_b, flows), base("testpmd", size_b, "1000")
    k = lambda x: f"{float(x) / 1000:.0f}" if x else ""
    out.append(f"| {name} | {group} | {size} | {flows} | {workers} | {k(rx)} | {k(tx)} | {loss} | {p99} | {moved} | "
               f"{ratio(v, fwd)} | {ratio(v, dnat)} | {ratio(v, tp)} | {place} |")
up = os.path.join(res, "update.txt")
if os.path.exists(up):
    kv = dict(x.split("=", 1) for line in open(up) for x in line.split())
    out.append("\n## Updates\n")
    out.append(f"- commit -> Applied (every worker on the new snapshot), idle: p50 {kv.get('update_idle_p50_us')} us, max {kv.get('update_idle_max_us')} us")
    out.append(f"- under load: {kv.get('update_load_swaps')} swaps of every pool between 4 and 3 backends, "
               f"commit -> Applied p50 {kv.get('update_load_p50_us')} us, max {kv.get('update_load_max_us')} us; "
               f"generator at {kv.get('update_load_rate')} pps: sent {kv.get('update_load_sent')}, "
               f"**lost {kv.get('update_load_lost')}** (must be 0), flows moved {kv.get('update_load_flows_moved')} "
               f"(flows that reached more than one backend during the swaps); the same load without swaps lost {kv.get('update_control_lost')}")
open(os.path.join(res, "table.md"), "w").write("\n".join(out) + "\n")
with open(os.path.join(res, "plot.tsv"), "w") as f:
    for r in rows:
        if r[5]:
            f.write(f"{r[0]}\t{r[5]}\t{r[1]}\n")
PY
"$PKTGEN" plot --input "$RES/plot.tsv" --output "$RES/plot.svg" \
    --title "fiberlb vs baselines, same run (pps received)" || echo "plot failed"
ln -sfn "$(basename "$RES")" "$ROOT/results/latest"
echo
cat "$RES/table.md"
echo
echo "results in $RES (table.md, plot.svg, json/) — $(($(date +%s) - START)) s"
