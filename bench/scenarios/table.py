"""Builds results/.../table.md and the plot inputs from rows.tsv (called by bench/run.sh).

Every row is shown as pps and as ratios to the baselines of the same frame size from the
same run: (b) Linux ip_forward and Linux DNAT, (c) dpdk-testpmd. NDR rows (names ending in
-ndr) are compared with the baselines' NDR rows.
"""
import csv
import os
import re
import sys

res, quick, secs = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
rows = [r for r in csv.reader(open(os.path.join(res, "rows.tsv")), delimiter="\t") if r]
val = {r[0]: float(r[5]) for r in rows if len(r) > 5 and r[5]}


def base(kind, size, flows, suffix):
    for f in (flows, "1000"):
        v = val.get(f"{kind}-{f}f-{size}B{suffix}")
        if v:
            return v
    return None


def ratio(v, b):
    return f"{v / b:.2f}" if b else "-"


def verdict(v, goal):
    """'met' / 'NOT met' for a measured value against an upper bound (None: not measured)."""
    if v is None:
        return "not measured"
    return "met" if v <= goal else "NOT met"


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def duration_ms(s):
    """A Rust Duration's Debug form (412.3µs, 1.1ms, 2s) in ms."""
    m = re.fullmatch(r"([0-9.]+)(ns|µs|us|ms|s)", s or "")
    if not m:
        return None
    return float(m.group(1)) * {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


out = [f"# fiberlb benchmark ({'quick' if quick else 'full'} run, {secs} s trials)\n"]
out.append(open(os.path.join(res, "env.txt")).read())
out.append(
    "\nThroughput = packets/s received by the sink in a max-rate trial (UDP, one VIP:port, 4 "
    "backends), or the NDR (highest zero-loss rate, binary search of 1 s trials) for rows "
    "ending in -ndr. Ratios: to the baselines of the same frame size measured in this run — "
    "(b) Linux ip_forward and Linux DNAT (iptables-nft + conntrack), (c) dpdk-testpmd "
    "mac-forwarding on net_af_xdp. (d) pipeline rows are the pipeline alone on memory ports "
    "(no I/O). Loss and p99 of max-rate rows describe the overload, not a working point. "
    "'>=' marks max-rate rows without loss: the generator (whose core also does l0's receive "
    "work) was the limit, so the forwarder's capacity is at least that; ratios against such a "
    "row overstate the other side. Forwarder ns/pkt: CPU time of the forwarder's packet "
    "threads (fiberlb's workers, testpmd's lcore) over the trial per packet the sink received, "
    "kernel/user; a busy poller's user time includes its empty polls. 'vs testpmd' only for "
    "rows placed as testpmd is (one forwarding thread on core 1): a 2-worker row puts its "
    "second worker on the generator's core, where testpmd is not measured.\n"
)
if rows:  # (none when only the instructions/maglev/update scenarios ran)
    out.append(
        "| scenario | group | size B | flows | workers | rx kpps | offered kpps | loss % | p99 us "
        "| flows moved | vs linux fwd | vs linux DNAT | vs testpmd | forwarder ns/pkt kernel/user "
        "| where it ran |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        name, group, size, flows, workers, rx, tx, loss, p99, moved, place, kns = (r + [""] * 12)[:12]
        v = float(rx) if rx else 0.0
        sfx = "-ndr" if name.endswith("-ndr") else ""
        size_b = "64" if group == "pipeline" else size
        fwd = base("linux-forward", size_b, flows, sfx)
        dnat = base("linux-dnat", size_b, flows, sfx)
        # testpmd forwards on one lcore: compare rows with the same placement only.
        tp = base("testpmd", size_b, "1000", sfx) if group != "fiberlb" or workers == "1" else None
        k = lambda x: f"{float(x) / 1000:.0f}" if x else ""
        # No loss in a max-rate trial: the generator, not the forwarder, was the limit.
        lower = ">= " if (not sfx and group != "pipeline" and loss and float(loss) == 0.0) else ""
        out.append(
            f"| {name} | {group} | {size} | {flows} | {workers} | {lower}{k(rx)} | {k(tx)} | {loss} | {p99} "
            f"| {moved} | {ratio(v, fwd)} | {ratio(v, dnat)} | {ratio(v, tp)} | {kns or '-'} | {place} |"
        )
# Target 1 of the performance work: fiberlb on AF_XDP >= testpmd, same placement, same run.
cmp = []
for size in ("64", "1500"):
    t = val.get(f"testpmd-1000f-{size}B")
    for mode in ("dsr", "nat"):
        f = val.get(f"fiberlb-{mode}-1w-1000f-{size}B")
        if t and f:
            cmp.append((f"{mode} {size} B", f / t))
if cmp:
    low = min(r for _, r in cmp)
    out.append("\n## Against testpmd (1 worker, same placement)\n")
    out.append(
        "- " + ", ".join(f"{n} {r:.2f}x" for n, r in cmp)
        + f"; lowest {low:.2f}x (goal >= 1.00 on every row: {'met' if low >= 1.0 else 'NOT met'} in this run)"
    )
ins = os.path.join(res, "instructions.tsv")
if os.path.exists(ins):
    out.append("\n## Instructions per packet (pipeline alone, callgrind)\n")
    out.append(open(os.path.join(res, "instructions.md")).read().rstrip())
    nat = [r for r in csv.DictReader(open(ins), delimiter="\t") if r["mode"] == "nat" and r["flows"] == "1000"]
    if nat and nat[0]["pipeline_alone"]:
        v = float(nat[0]["pipeline_alone"])
        out.append(f"\n- nat at 1k flows: {v:.0f} (goal <= 400: {'met' if v <= 400 else 'NOT met'})")
mg = os.path.join(res, "maglev.txt")
if os.path.exists(mg):
    out.append("\n## Maglev build (M = 65537, 1000 backends, same process)\n")
    line = open(mg).read().strip()
    out.append(f"- {line}")
    m = re.search(r"ratio ([0-9.]+)", line)
    if m:
        r = float(m.group(1))
        # The goal (<= 1 ms where the paper reports 1.8 ms) as a ratio to the paper's loop, run
        # here in the same process: a figure that holds on a loaded machine.
        out.append(
            f"- fiberlb / paper loop = {r:.2f}: at the paper's 1.8 ms that is {1.8 * r:.2f} ms "
            f"(goal <= 1 ms, i.e. ratio <= 0.56: {'met' if r <= 1 / 1.8 else 'NOT met'} in this run)"
        )
up = os.path.join(res, "update.txt")
if os.path.exists(up):
    kv = dict(x.split("=", 1) for line in open(up) for x in line.split())
    out.append("\n## Updates\n")
    out.append(
        f"- commit -> Applied (every worker on the new snapshot), idle: p50 "
        f"{kv.get('update_idle_p50_us')} us, p99 {kv.get('update_idle_p99_us')} us, max "
        f"{kv.get('update_idle_max_us')} us (goal p99 <= 1000 us: "
        f"{verdict(num(kv.get('update_idle_p99_us')), 1000)}); one Maglev table built "
        f"(cache miss): {kv.get('update_cold_us')} us"
    )
    out.append(
        f"- at full load (generator unthrottled, worker busy-polling): p50 "
        f"{kv.get('update_full_p50_us')} us, p99 {kv.get('update_full_p99_us')} us "
        f"(goal p99 <= 2000 us: {verdict(num(kv.get('update_full_p99_us')), 2000)})"
    )
    out.append(
        f"- under load: {kv.get('update_load_swaps')} swaps of the nat pool between 4 and 3 "
        f"backends, commit -> Applied p50 {kv.get('update_load_p50_us')} us, max "
        f"{kv.get('update_load_max_us')} us; generator at {kv.get('update_load_rate')} pps: sent "
        f"{kv.get('update_load_sent')}, **lost {kv.get('update_load_lost')}** (must be 0; the "
        f"same load without swaps lost {kv.get('update_control_lost')}), flows moved "
        f"{kv.get('update_load_flows_moved')} (flows seen at more than one backend)"
    )
ap = os.path.join(res, "api.txt")
if os.path.exists(ap):
    kv = dict(x.split("=", 1) for line in open(ap) for x in line.split())
    out.append(
        f"- API write -> data plane applied through fiberlbd ({kv.get('api_writes')} weight "
        f"changes, redb store): from the write's reply p50 {kv.get('api_returned_p50')}, p99 "
        f"{kv.get('api_returned_p99')}; from the request p50 {kv.get('api_sent_p50')}, p99 "
        f"{kv.get('api_sent_p99')} (goal p99 <= 3 ms, taken from the request: "
        f"{verdict(duration_ms(kv.get('api_sent_p99')), 3.0)})"
    )
open(os.path.join(res, "table.md"), "w").write("\n".join(out) + "\n")
# Two plots: the I/O path (kpps) and the pipeline alone (Mpps) differ by 50x.
with open(os.path.join(res, "plot.tsv"), "w") as io, open(os.path.join(res, "plot-pipeline.tsv"), "w") as pl:
    for r in rows:
        if len(r) > 5 and r[5]:
            (pl if r[1] == "pipeline" else io).write(f"{r[0]}\t{r[5]}\t{r[1]}\n")
