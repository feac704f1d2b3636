#!/usr/bin/env bash
# Instructions per packet of the forwarding pipeline alone, counted by valgrind's callgrind: a
# figure that does not move with the machine's load (unlike ns/packet on a shared VM).
#
# Method: `fiberlb-pktgen pipeline --packets N` (memory ports, one worker, 64-byte UDP, every
# flow already in the flow table) runs under `valgrind --tool=callgrind` twice per mode and
# flow count, with N1 and N2 packets; the figure is (Ir(N2) - Ir(N1)) / (N2 - N1), so start-up,
# the snapshot's Maglev builds and the flow-table warm-up cancel. A run counts the memory
# port's per-packet work too (the 64-byte copy into a receive buffer a NIC's DMA would do,
# rx_burst, free), as `cargo bench --bench pipeline` does; the same count with
# `--harness-only` (every burst received and freed, not processed) measures that work alone,
# and the table's first figure — the pipeline, parse to TX descriptor — is the difference.
# Nothing is transmitted. For nat at 1k flows it also
# prints where the instructions go (callgrind_annotate, self cost per inlined source file,
# differenced the same way). Instruction counts, not time: cache misses (what 1M flows costs
# in ns) do not show here.
#
# Usage: bench/instructions.sh [--quick] [--baseline REV] [--no-build]
#   --quick          1k flows only (~20 s); default 1k and 1M flows (~3 min on 2 cores)
#   --baseline REV   also measure commit REV (git worktree, own target dir; REV must have
#                    `pipeline --packets`) and print the difference
#   --no-build       use $FIBERLB_BIN_DIR/fiberlb-pktgen as it is
# Env: FIBERLB_BIN_DIR (default $CARGO_TARGET_DIR/release or target/release), MODES ("dsr nat
#      tunnel gue"), N1/N2 (packets, default 32000/96000; rounded up to bursts of 32).
# Writes results/instructions-*/{table.md,instructions.tsv,instructions.json,breakdown-nat-1k.txt}
# and points results/instructions-latest at it. No speed assertion: it only reports.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
QUICK=0 BASELINE= BUILD=1
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1 ;;
        --baseline) BASELINE=$2; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n "2,25p" "$0"; exit 0 ;;
        *) echo "unknown argument $1 (see --help)"; exit 2 ;;
    esac
    shift
done
for t in valgrind callgrind_annotate python3 git; do
    command -v $t >/dev/null || { echo "needs $t (scripts/setup.sh installs it)"; exit 1; }
done
MODES=${MODES:-dsr nat tunnel gue}
N1=${N1:-32000} N2=${N2:-96000}
FLOWS_LIST="1000 1000000"
[ $QUICK = 1 ] && FLOWS_LIST=1000
[ "$N2" -gt "$N1" ] || { echo "N2 must be larger than N1"; exit 2; }

# The commit (and whether the measured code differs from it) before building: what is built.
COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD)
DIRTY=$(cd "$ROOT" && git status --porcelain -- bench/src bench/Cargo.toml dataplane shared Cargo.lock | grep -q . && echo "+changes" || true)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN_DIR=${FIBERLB_BIN_DIR:-$TARGET/release}
if [ $BUILD = 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p fiberlb-bench --bin fiberlb-pktgen \
        --target-dir "$TARGET")
    BIN_DIR=$TARGET/release
fi
PKTGEN=$BIN_DIR/fiberlb-pktgen
[ -x "$PKTGEN" ] || { echo "no $PKTGEN (drop --no-build)"; exit 1; }
"$PKTGEN" pipeline --help | grep -q -- --packets ||
    { echo "$PKTGEN has no 'pipeline --packets': rebuild it"; exit 1; }

RES=$ROOT/results/instructions-$(date +%Y%m%d-%H%M%S)
mkdir -p "$RES/callgrind"
: >"$RES/runs.tsv"

# measure LABEL BINARY: every mode and flow count, N1 and N2 packets, into runs.tsv.
measure() {
    local label=$1 bin=$2 flows mode n out json
    for flows in $FLOWS_LIST; do
        for mode in $MODES harness; do
            for n in $N1 $N2; do
                out=$RES/callgrind/$label-$mode-$flows-$n
                # harness: the memory port's inject, receive and free alone (no pipeline).
                args=(--mode "$mode")
                [ "$mode" = harness ] && args=(--mode nat --harness-only)
                valgrind --tool=callgrind --callgrind-out-file="$out.out" --log-file="$out.log" \
                    "$bin" pipeline "${args[@]}" --flows "$flows" --packets "$n" --cores 0 >"$out.json" ||
                    { echo "$label $mode $flows flows $n packets failed: see $out.log"; return 1; }
                printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$mode" "$flows" "$n" \
                    "$(sed -n 's/.*refs: *//p' "$out.log" | tr -d ,)" "$out" >>"$RES/runs.tsv"
            done
            json=$RES/callgrind/$label-$mode-$flows-$N2.json
            printf '  %-8s %-7s %8s flows: %s\n' "$label" "$mode" "$flows" \
                "$(python3 - "$RES/runs.tsv" "$label" "$mode" "$flows" "$json" <<'EOF'
import json, sys
rows = [l.split("\t") for l in open(sys.argv[1]) if l.strip()]
pts = [(int(r[3]), int(r[4])) for r in rows if r[:3] == sys.argv[2:5]]
(a, ia), (b, ib) = pts[-2:]
# --packets rounds up to bursts of 32; both counts are multiples of 32 by default.
a, b = -(-a // 32) * 32, -(-b // 32) * 32
r = json.load(open(sys.argv[5]))
nf, miss = r["not_forwarded"], r.get("flow_misses", 0)
print(f"{(ib - ia) / (b - a):.1f} instructions/packet" + (f"  ({nf} NOT FORWARDED)" if nf else "")
      + (f"  ({miss} flow-table misses)" if miss else ""))
EOF
)"
        done
    done
}

echo "instructions per packet (callgrind, $N1 and $N2 packets per run, commit $COMMIT$DIRTY):"
measure current "$PKTGEN"

if [ -n "$BASELINE" ]; then
    BREV=$(cd "$ROOT" && git rev-parse --short "$BASELINE")
    WT=$(mktemp -d /tmp/fiberlb-baseline.XXXXXX)
    (cd "$ROOT" && git worktree add -q --detach "$WT" "$BREV")
    # Own target dir: the baseline's build must not replace the current binary.
    (cd "$WT" && cargo build --release -q -p fiberlb-bench --bin fiberlb-pktgen \
        --target-dir "$TARGET/instructions-baseline") || { (cd "$ROOT" && git worktree remove --force "$WT"); exit 1; }
    cp "$TARGET/instructions-baseline/release/fiberlb-pktgen" "$RES/fiberlb-pktgen-$BREV"
    (cd "$ROOT" && git worktree remove --force "$WT")
    "$RES/fiberlb-pktgen-$BREV" pipeline --help | grep -q -- --packets ||
        { echo "baseline $BREV has no 'pipeline --packets' (added with bench/instructions.sh)"; exit 1; }
    echo "baseline $BREV:"
    measure "$BREV" "$RES/fiberlb-pktgen-$BREV"
fi

# Per-stage breakdown for nat at 1k flows: callgrind_annotate's self cost per (inlined source
# file, function), N2 minus N1, per packet, grouped into pipeline stages.
BD=
if [[ " $MODES " == *" nat "* ]]; then
    BD=$RES/breakdown-nat-1k.txt
    for n in $N1 $N2; do
        callgrind_annotate --auto=no --threshold=100 "$RES/callgrind/current-nat-1000-$n.out" \
            >"$RES/callgrind/annotate-nat-1000-$n.txt"
    done
fi

python3 - "$RES" "$COMMIT$DIRTY" "$N1" "$N2" "${BREV:-}" "$BD" <<'EOF'
import json, re, sys, datetime
res, commit, n1, n2, brev, bd = sys.argv[1:7]
n1, n2 = (-(-int(x) // 32) * 32 for x in (n1, n2))
rows = [l.rstrip("\n").split("\t") for l in open(f"{res}/runs.tsv") if l.strip()]
ir = {}
for label, mode, flows, n, refs, _ in rows:
    ir[(label, mode, int(flows), -(-int(n) // 32) * 32)] = int(refs)
per = {}
for (label, mode, flows, n) in ir:
    if n == n1 and (label, mode, flows, n2) in ir:
        per[(label, mode, flows)] = (ir[(label, mode, flows, n2)] - ir[(label, mode, flows, n1)]) / (n2 - n1)
modes = list(dict.fromkeys(m for (_, m, _) in per if m != "harness"))
flows = sorted({f for (_, _, f) in per})
name = {"dsr": "dsr", "nat": "nat", "tunnel": "tunnel IPIP", "gue": "tunnel GUE"}
fl = lambda f: "1M" if f == 1000000 else "1k" if f == 1000 else str(f)
date = datetime.date.today().isoformat()
# The pipeline alone: each run minus the harness-only run (inject, receive, free) of the same
# flow count, both counted in this run. The bench's own loop is the same in both.
def alone(label, m, f):
    v, h = per.get((label, m, f)), per.get((label, "harness", f))
    return None if v is None or h is None else v - h
out = [f"Instructions per packet (`bench/instructions.sh`, callgrind, commit {commit}, {date}; 64-byte",
       f"UDP, flow-table hits, {n1} vs {n2} packets). Pipeline = parse, listener, flow table, Maglev,",
       "rewrite, TX descriptor: the run minus a harness-only run (the memory port's frame copy,",
       "receive and free, which a NIC's DMA and driver do); with the harness in parentheses:", "",
       "| mode | " + " | ".join(f"{fl(f)} flows" for f in flows) + " |",
       "|---|" + "---|" * len(flows)]
for m in modes:
    cells = []
    for f in flows:
        v = alone("current", m, f)
        c = "" if v is None else f"{v:.0f} ({per[('current', m, f)]:.0f})"
        b = alone(brev, m, f) if brev else None
        if v is not None and b is not None:
            c += f" [{brev}: {b:.0f}, {100 * (v - b) / b:+.1f} %]"
        cells.append(c)
    out.append(f"| {name.get(m, m)} | " + " | ".join(cells) + " |")
out.append("| harness alone | " + " | ".join(
    f"{per[('current', 'harness', f)]:.0f}" if ("current", "harness", f) in per else "" for f in flows) + " |")
table = "\n".join(out) + "\n"
open(f"{res}/table.md", "w").write(table)
with open(f"{res}/instructions.tsv", "w") as t:
    t.write("commit\tmode\tflows\tinstructions_per_packet\tpipeline_alone\n")
    for (label, m, f), v in sorted(per.items()):
        a = alone(label, m, f) if m != "harness" else None
        t.write(f"{commit if label == 'current' else label}\t{m}\t{f}\t{v:.2f}\t{'' if a is None else f'{a:.2f}'}\n")
json.dump({"commit": commit, "date": date, "packets": [n1, n2], "baseline": brev or None,
           "instructions_per_packet": [{"commit": commit if l == "current" else l, "mode": m,
                                        "flows": f, "instructions": round(v, 2),
                                        "pipeline_alone": None if m == "harness" or alone(l, m, f) is None
                                        else round(alone(l, m, f), 2)}
                                       for (l, m, f), v in sorted(per.items())]},
          open(f"{res}/instructions.json", "w"), indent=2)
print()
print(table)

if bd:
    def load(path):
        d = {}
        for line in open(path):
            mm = re.match(r"\s*([\d,]+) \([^)]*\)\s+(\S.*?)(?: \[.*\])?$", line)
            if mm and "PROGRAM TOTALS" not in line:
                k = mm.group(2)
                d[k] = d.get(k, 0) + int(mm.group(1).replace(",", ""))
        return d
    a = load(f"{res}/callgrind/annotate-nat-1000-{n1}.txt")
    b = load(f"{res}/callgrind/annotate-nat-1000-{n2}.txt")
    # (source file of the instruction, inlined or not) then (non-inlined function) -> stage.
    files = [("/pipeline/parse.rs", "parse"), ("/wire/checksum.rs", "rewrite"), ("/wire/", "parse"),
             ("xxhash", "flow hash"), ("/flow_table.rs", "flow table"), ("/flow_table/", "flow table"),
             ("/snapshot/listener_index.rs", "listener lookup"),
             ("hashbrown", "listener lookup"), ("rustc-hash", "listener lookup"),
             ("/maglev.rs", "Maglev"), ("/pipeline/rewrite.rs", "rewrite"),
             ("/pipeline/counters.rs", "process_burst loop, counters"),
             # All of process_burst is inlined into the bench's worker: pipeline/mod.rs is the
             # burst loop, the dispatch and the flow-path logic together.
             ("/pipeline/mod.rs", "process_burst loop, counters"),
             ("/snapshot/mod.rs", "dispatch (forward)"),
             ("/nic/memory.rs", "memory port (harness)"), ("/nic/mod.rs", "burst buffers (desc -> PacketBuf)"),
             ("/src/packet.rs", "burst buffers (desc -> PacketBuf)"), ("/pktgen/", "memory port (harness)"),
             ("memmove", "memory port (harness)"), ("memcpy", "memory port (harness)"),
             ("/vec_deque/", "memory port (harness)")]
    # Only MemoryPort (the harness) uses a VecDeque; std code inlined into the bench's worker
    # closure (where process_burst, rx_burst and free are all inlined) otherwise counts for
    # "process_burst loop": an upper bound for that line, a lower bound for the harness.
    funcs = [("new_or_existing_flow", "flow table"), ("send_to_backend", "rewrite"),
             ("MemoryPort::", "memory port (harness)"), ("::maglev", "Maglev"),
             ("process_burst::{{closure}}", "dispatch (forward)"),
             ("pipeline::worker", "process_burst loop, counters")]
    stage, detail = {}, {}
    for k in set(a) | set(b):
        v = (b.get(k, 0) - a.get(k, 0)) / (n2 - n1)
        if abs(v) < 0.05:
            continue
        file, _, fn = k.partition(":")
        s = next((s for pat, s in files if pat in file), None)
        if s is None:
            s = next((s for pat, s in funcs if pat in fn), "other")
        stage[s] = stage.get(s, 0) + v
        short = re.sub(r"^.*/(src/)", "", file) + " in " + fn.split("::")[-1 if not fn.endswith("}}") else -2]
        detail[(s, short)] = detail.get((s, short), 0) + v
    total = sum(stage.values())
    lines = [f"Where nat's {total:.0f} instructions/packet go (1k flows, commit {commit}; callgrind self",
             "cost per source file of the inlined code, attributed by file, else by the enclosing",
             "non-inlined function; library code inlined into a stage counts for it):", "",
             "| stage | instructions/packet | share |", "|---|---|---|"]
    for s, v in sorted(stage.items(), key=lambda x: -x[1]):
        lines.append(f"| {s} | {v:.0f} | {100 * v / total:.0f} % |")
    lines += ["", "Detail (source file in non-inlined function: instructions/packet):"]
    for (s, d), v in sorted(detail.items(), key=lambda x: (x[0][0], -x[1])):
        if v >= 2:
            lines.append(f"  {s:34} {v:6.1f}  {d}")
    text = "\n".join(lines) + "\n"
    open(bd, "w").write(text)
    print(text)
EOF
ln -sfn "$(basename "$RES")" "$ROOT/results/instructions-latest"
echo "results in $RES (table.md, instructions.tsv, instructions.json${BD:+, breakdown-nat-1k.txt}, callgrind/)"
