#!/usr/bin/env bash
# fiberlb quickstart: from a fresh machine to balanced traffic in one command (as root; a user
# with sudo is re-run through sudo).
#
#   scripts/quickstart.sh            # run the demo, then remove everything it made
#   scripts/quickstart.sh --keep     # leave it running; stop it later with --stop
#   scripts/quickstart.sh --stop     # remove a kept (or interrupted) demo
#   options: --requests N (default 60), --no-setup (skip scripts/setup.sh),
#            --bin-dir DIR (use the binaries in DIR instead of building)
#
# What it does: installs what is missing (scripts/setup.sh), builds in release, creates a
# demo network in namespaces (a client, the fiberlb node, three real HTTP backends on one L2
# segment), runs `fiberlb-dataplane doctor` on the node, starts fiberlb-dataplane (AF_XDP on
# two veths, idle back-off on: it shares the machine) and fiberlbd (same shared-memory region,
# a temporary store), creates a load balancer with fiberlbctl (VIP allocated from a range, a
# pool of three backends, a nat listener on port 80), sends real HTTP requests through the VIP
# (each on a new connection) and a short fiberlb-pktgen UDP burst, and prints which backend
# answered each, the data plane's and the control plane's counters and a few Prometheus metrics.
#
# Everything lives in namespaces named fqs-* and files named /dev/shm/fiberlb-quickstart*
# and /tmp/fiberlb-quickstart.*; a previous run's leftovers (an interrupted run, or --keep)
# are removed first, so it works any number of times in a row. Exits non-zero unless every
# request succeeded and every backend served.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ARGS=("$@")

KEEP=0 STOP=0 SETUP=1 REQUESTS=60 BIN=
while [ $# -gt 0 ]; do
    case $1 in
    --keep) KEEP=1 ;;
    --stop) STOP=1 ;;
    --no-setup) SETUP=0 ;;
    --bin-dir) BIN=$(cd "${2:?--bin-dir needs a directory}" && pwd); shift ;;
    --requests) REQUESTS=${2:?--requests needs a number}; shift ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "quickstart.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
# Root (it creates network namespaces, attaches XDP programs and installs packages): a root shell
# runs it as it is, a user is re-run through sudo.
# shellcheck source=as-root.sh
. "$ROOT/scripts/as-root.sh"
as_root "$ROOT/scripts/quickstart.sh" "${ARGS[@]}"

P=fqs-                                   # namespace prefix: fqs-c, fqs-l, fqs-s, fqs-b1..3
SHM=/dev/shm/fiberlb-quickstart.region
STATE=/run/fiberlb-quickstart.dir        # remembers the work dir of a kept run
# shellcheck source=../tests/e2e/topology.sh
. "$ROOT/tests/e2e/topology.sh"          # topo_up/topo_down, names, addresses and MACs

say() { printf '\n==> [%ss] %s\n' "$SECONDS" "$*"; }

# Removes whatever a previous run (kept, interrupted or killed) left: processes in its
# namespaces (ours by construction), the namespaces, the region and the work directory.
clean_stale() {
    local ns pids
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$P" || true); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        if [ -n "$pids" ]; then
            # shellcheck disable=SC2086
            kill -TERM $pids 2>/dev/null || true
        fi
    done
    for _ in $(seq 1 50); do # fiberlb-dataplane detaches its XDP programs on SIGTERM
        local left=
        for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$P" || true); do
            [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] && left=1
        done
        [ -z "$left" ] && break
        sleep 0.1
    done
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$P" || true); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        if [ -n "$pids" ]; then
            # shellcheck disable=SC2086
            kill -KILL $pids 2>/dev/null || true
        fi
        ip netns del "$ns" 2>/dev/null || true
    done
    if [ -f "$STATE" ]; then
        rm -rf "$(cat "$STATE")"
        rm -f "$STATE"
    fi
    rm -f "$SHM" "$SHM".*
}

if [ $STOP = 1 ]; then
    clean_stale
    echo "quickstart.sh: stopped; no fqs-* namespaces left"
    exit 0
fi

if [ $SETUP = 1 ]; then
    say "setting up the machine (scripts/setup.sh: packages, bpffs, hugepages)"
    if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null; then
        # A minimal Debian has no curl to fetch rustup with.
        if ! command -v curl >/dev/null; then
            DEBIAN_FRONTEND=noninteractive apt-get update -q
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends curl ca-certificates
        fi
        echo "installing Rust (rustup, stable 1.95) ..."
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
            sh -s -- -y --profile minimal --default-toolchain 1.95
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    bash scripts/setup.sh
fi

if [ -z "$BIN" ]; then
    say "building fiberlb (release)"
    # The same command as scripts/test.sh and demo.sh: the same feature set, so after them this
    # is a no-op (a -p subset can unify features differently and rebuild everything).
    cargo build --release -q --workspace --bins
    BIN=$ROOT/target/release
fi
LB=$BIN/fiberlb-dataplane
CTL_BIN=$BIN/fiberlbctl

clean_stale
WORK=$(mktemp -d /tmp/fiberlb-quickstart.XXXXXX)
echo "$WORK" >"$STATE"
LB_PID= D_PID=
PIDS=()
finish() {
    local rc=$?
    if [ $KEEP = 1 ] && [ "$rc" = 0 ]; then
        return
    fi
    [ -n "$D_PID" ] && kill -TERM "$D_PID" 2>/dev/null
    [ -n "$LB_PID" ] && kill -TERM "$LB_PID" 2>/dev/null
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in $D_PID $LB_PID "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    clean_stale
    if [ "$rc" = 0 ]; then
        echo "cleaned up: namespaces, processes and files removed"
    else
        echo "quickstart.sh: failed (exit $rc); cleaned up" >&2
    fi
}
trap finish EXIT
trap 'exit 130' INT TERM

say "demo network in namespaces ${P}c (client), ${P}l (fiberlb), ${P}s (switch), ${P}b1..3 (backends)"
topo_up
cat <<EOF
  client ${P}c  10.91.1.2 ── 10.91.1.1 [l0]  fiberlb ${P}l  [l1] 10.91.2.1 ── bridge ── backends
                                                                         b1 ${IP_B[0]}  b2 ${IP_B[1]}  b3 ${IP_B[2]}
EOF
for i in 0 1 2; do
    d=$WORK/b$((i + 1))
    mkdir -p "$d"
    : >"$d/big.bin"
    ip netns exec "${NS_B[$i]}" python3 "$ROOT/tests/e2e/backend.py" --name "b$((i + 1))" \
        --dir "$d" --log "$d/log" >"$d/out" 2>&1 &
    PIDS+=($!)
done

# The kernel reports a veth's carrier up to a second after both ends are up.
for _ in $(seq 1 50); do
    [ "$(ip netns exec "$NS_L" cat /sys/class/net/l0/operstate)" = up ] &&
        [ "$(ip netns exec "$NS_L" cat /sys/class/net/l1/operstate)" = up ] && break
    sleep 0.1
done

CORE=1
[ "$(nproc)" -lt 2 ] && CORE=0
SEED=7379537652274192929
cat >"$WORK/dataplane.toml" <<TOML
# The quickstart's node: client port l0, backend port l1, one worker sharing core $CORE.
[[ports]]
name = "client"
interface = "l0"
role = "client"
gateway_mac = "$MAC_C0"
[[ports]]
name = "backend"
interface = "l1"
role = "backend"
[workers]
cores = [$CORE]
idle_backoff = true
[shm]
path = "$SHM"
[umem]
frames = 4096
chunk_size = 2048
[forwarding]
hash_seed = $SEED
flow_capacity = 65536
TOML
cat >"$WORK/controlplane.toml" <<TOML
listen = "$WORK/fiberlbd.sock"
store_path = "$WORK/store.redb"
shm_path = "$SHM"
hash_seed = $SEED
vip_ranges = ["10.91.100.16/28"]
metrics_address = "127.0.0.1:9750"
TOML

say "fiberlb-dataplane doctor --config dataplane.toml (in ${P}l)"
ip netns exec "$NS_L" "$LB" doctor --config "$WORK/dataplane.toml" | sed 's/^/  /' ||
    { echo "doctor found errors: fiberlb cannot run here"; exit 1; }

say "starting fiberlb-dataplane (AF_XDP on l0 and l1, 1 worker on core $CORE, idle back-off)"
ip netns exec "$NS_L" "$LB" run --config "$WORK/dataplane.toml" >"$WORK/dataplane.log" 2>&1 &
LB_PID=$!
for _ in $(seq 1 150); do
    grep -q "forwarding on" "$WORK/dataplane.log" && break
    kill -0 "$LB_PID" 2>/dev/null || break
    sleep 0.1
done
if ! grep -q "forwarding on" "$WORK/dataplane.log"; then
    echo "fiberlb-dataplane did not start:"; sed 's/^/  /' "$WORK/dataplane.log"; exit 1
fi
sed 's/^/  /' "$WORK/dataplane.log"

say "starting fiberlbd (region $SHM, store in $WORK)"
ip netns exec "$NS_L" "$BIN/fiberlbd" --config "$WORK/controlplane.toml" >"$WORK/fiberlbd.log" 2>&1 &
D_PID=$!
for _ in $(seq 1 100); do
    [ -S "$WORK/fiberlbd.sock" ] && break
    kill -0 "$D_PID" 2>/dev/null || break
    sleep 0.1
done
[ -S "$WORK/fiberlbd.sock" ] || { echo "fiberlbd did not start:"; sed 's/^/  /' "$WORK/fiberlbd.log"; exit 1; }

export FIBERLB_SERVER=$WORK/fiberlbd.sock FIBERLB_ORG=demo FIBERLB_PROJECT=quickstart
ctl() { echo "  \$ fiberlbctl $*" >&2; "$CTL_BIN" "$@"; }
# The first value of key $1 anywhere in a JSON document on stdin (replies nest the object).
json_field() {
    python3 -c '
import json, sys
def find(v, k):
    if isinstance(v, dict):
        if k in v:
            return v[k]
        v = list(v.values())
    if isinstance(v, list):
        for x in v:
            r = find(x, k)
            if r is not None:
                return r
    return None
r = find(json.load(sys.stdin), sys.argv[1])
sys.exit(1) if r is None else print(r)' "$1"
}

say "creating a load balancer with fiberlbctl"
LB_JSON=$(ctl -o json lb create --name web)
LB_ID=$(echo "$LB_JSON" | json_field id)
VIP=$(echo "$LB_JSON" | json_field vip)
echo "  load balancer $LB_ID: VIP $VIP (allocated from 10.91.100.16/28)"
POOL_ID=$(ctl -o json pool create --name web-pool | json_field id)
for i in 0 1 2; do
    ctl -o json backend create --pool "$POOL_ID" --address "${IP_B[$i]}" --port 80 --mac "${MAC_B[$i]}" >/dev/null
done
ctl -o json listener create --lb "$LB_ID" --port 80 --protocol tcp --mode nat --pool "$POOL_ID" >/dev/null
ctl backend list --pool "$POOL_ID" | sed 's/^/  /'

# The data plane has the configuration once its applied generation reaches the store's.
applied=
for _ in $(seq 1 100); do
    st=$("$CTL_BIN" -o json status 2>/dev/null || true)
    if [ -n "$st" ] && echo "$st" | python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if s.get("attached") and s.get("synced_store_generation") == s.get("store_generation") else 1)'; then
        applied=1; break
    fi
    sleep 0.1
done
ctl status | sed 's/^/  /'
[ -n "$applied" ] || { echo "the data plane did not apply the configuration:"; tail -20 "$WORK/fiberlbd.log"; exit 1; }

for _ in $(seq 1 50); do # backends listening?
    n=0
    for i in 0 1 2; do ip netns exec "${NS_B[$i]}" ss -ltn | grep -q ':80 ' && n=$((n + 1)); done
    [ $n = 3 ] && break
    sleep 0.1
done

say "$REQUESTS HTTP requests to http://$VIP/ from ${P}c, each on a new connection"
echo "  \$ ip netns exec ${P}c curl http://$VIP/   (x$REQUESTS, client ports 40000+)"
# Fixed, distinct client ports: every request is a new flow (no TIME_WAIT reuse).
ip netns exec "$NS_C" bash -c "for i in \$(seq 0 $((REQUESTS - 1))); do
    curl -sS --max-time 10 --local-port \$((40000 + i)) http://$VIP/ || echo FAILED; done" >"$WORK/answers" 2>"$WORK/curl.err"
ok=$(grep -cx 'b[123]' "$WORK/answers" || true)
echo "  $ok/$REQUESTS answered; which backend served them:"
if [ -s "$WORK/curl.err" ]; then sed 's/^/    curl: /' "$WORK/curl.err" | head -5; fi
served=0
for b in b1 b2 b3; do
    n=$(grep -cx "$b" "$WORK/answers" || true)
    bar=$(printf '%*s' "$n" '' | tr ' ' '#')
    printf '    %s %-15s %3d  %s\n' "$b" "${IP_B[${b#b} - 1]}" "$n" "$bar"
    [ "$n" -gt 0 ] && served=$((served + 1))
done
echo "  which backend a new flow gets, as the control plane computes it (Maglev):"
ctl lookup 10.91.1.2:40000 "$VIP:80/tcp" | sed 's/^/    /'

PKTGEN=$BIN/fiberlb-pktgen
# The build above makes fiberlb-pktgen (bench/ is a workspace member); with --bin-dir it may be
# absent, and then the burst is skipped and said so. When it runs, a loss fails the demo.
pktgen_result=ok pktgen_note=
if ! [ -x "$PKTGEN" ]; then
    pktgen_note=" (no fiberlb-pktgen in $BIN: burst skipped)"
else
    say "a short pktgen burst: 1 s of UDP at 20 kpps, 1000 flows, to $VIP:9 (nat listener, pool udp-pool)"
    UDP_POOL=$(ctl -o json pool create --name udp-pool | json_field id)
    for i in 0 1 2; do
        "$CTL_BIN" -o json backend create --pool "$UDP_POOL" --address "${IP_B[$i]}" --port 9 \
            --mac "${MAC_B[$i]}" >/dev/null
    done
    ctl -o json listener create --lb "$LB_ID" --port 9 --protocol udp --mode nat --pool "$UDP_POOL" >/dev/null
    # Until the data plane holds the store's generation (the listener is live in every worker).
    for _ in $(seq 1 50); do
        "$CTL_BIN" -o json status 2>/dev/null | python3 -c 'import json, sys
d = json.load(sys.stdin)
sys.exit(0 if d.get("attached") and (d.get("synced_store_generation") or 0) >= d["store_generation"] else 1)' && break
        sleep 0.1
    done
    # Generator on the client's veth, sink on the switch's port towards fiberlb (it captures
    # the rewritten packets to the backends' addresses).
    echo "  \$ fiberlb-pktgen run --tx-netns ${P}c --tx-iface c0 --rx-netns ${P}s --rx-iface s0 --vip $VIP --dport 9 --rate 20000 --duration 1 --flows 1000"
    if "$PKTGEN" run --tx-netns "$NS_C" --tx-iface c0 --tx-cores 0 --src-mac "$MAC_C0" --dst-mac "$MAC_L0" \
        --rx-netns "$NS_S" --rx-iface s0 --rx-core 0 --capture "${IP_B[0]}" --capture "${IP_B[1]}" \
        --capture "${IP_B[2]}" --vip "$VIP" --dport 9 --rate 20000 --duration 1 --flows 1000 --quiet \
        --json "$WORK/pktgen.json" >"$WORK/pktgen.out" 2>&1; then
        if python3 - "$WORK/pktgen.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
s = d["sink"]
print(f"  sent {d['tx_packets']} packets ({d['tx_pps']:.0f} pps), received {s['rx_packets']} at the "
      f"backends, lost {d['lost_packets']} ({100 * d['loss_ratio']:.2f} %); {s['flows_seen']} flows, "
      f"{s['inconsistent_flows']} split across backends")
for b in sorted(s.get("backends", []), key=lambda b: b["addr"]):
    print(f"    {b['addr']}:{b['port']:<5} {b['packets']:>7} packets")
lat = s.get("latency", {})
if lat:
    print(f"  latency through fiberlb (shared 2-core VM): p50 {lat['p50_us']:.0f} us, p99 {lat['p99_us']:.0f} us")
bad = []
if d["lost_packets"] != 0:
    bad.append(f"{d['lost_packets']} packets lost")
if s["inconsistent_flows"] != 0:
    bad.append(f"{s['inconsistent_flows']} flows split across backends")
if s["flows_seen"] != 1000:
    bad.append(f"{s['flows_seen']} of 1000 flows reached a backend")
if len(s.get("backends", [])) != 3:
    bad.append(f"{len(s.get('backends', []))} of 3 backends received packets")
if bad:
    print("  pktgen burst: " + ", ".join(bad))
    sys.exit(1)
PY
        then pktgen_result=ok; else pktgen_result="lost packets, split flows or unserved backends (above)"; fi
    else
        pktgen_result="fiberlb-pktgen failed"
        echo "  fiberlb-pktgen failed:"; tail -5 "$WORK/pktgen.out" | sed 's/^/    /'
    fi
fi

sleep 1 # the counter publisher runs a few times a second
say "counters"
echo "  \$ fiberlb-dataplane stats --shm $SHM"
ip netns exec "$NS_L" "$LB" stats --shm "$SHM" | sed 's/^/    /'
echo "  \$ fiberlbctl stats"
"$CTL_BIN" stats | sed 's/^/    /'

say "metrics (Prometheus text on 127.0.0.1:9750 in ${P}l)"
echo "  \$ ip netns exec ${P}l curl -s http://127.0.0.1:9750/metrics"
if ip netns exec "$NS_L" curl -sf --max-time 5 http://127.0.0.1:9750/metrics >"$WORK/metrics" 2>/dev/null; then
    { grep -v '^#' "$WORK/metrics" | grep -E 'rx_packets|forwarded|backend' || true; } | head -12 | sed 's/^/    /'
    echo "    ... $(grep -vc '^#' "$WORK/metrics" || true) samples in all"
else
    echo "    (no answer from fiberlbd's metrics_address; the same counters are in"
    echo "     \`fiberlb-dataplane stats --json\` and \`fiberlbctl -o json stats\`)"
fi

cat <<EOF

  Watch it live:
    watch -n1 ip netns exec ${P}l $LB stats --shm $SHM
    FIBERLB_SERVER=$WORK/fiberlbd.sock FIBERLB_ORG=demo FIBERLB_PROJECT=quickstart watch -n1 $CTL_BIN stats
EOF
if "$CTL_BIN" top --help >/dev/null 2>&1; then
    echo "    FIBERLB_SERVER=$WORK/fiberlbd.sock FIBERLB_ORG=demo FIBERLB_PROJECT=quickstart $CTL_BIN top"
else
    echo "  (this fiberlbctl has no live 'top' view: watch 'fiberlbctl stats' instead)"
fi
cat <<EOF
  Metrics: curl http://127.0.0.1:9750/metrics in ${P}l (metrics_address in controlplane.toml).
EOF

if [ "$ok" != "$REQUESTS" ] || [ $served != 3 ]; then
    echo "RESULT: FAIL — $ok/$REQUESTS requests answered, $served of 3 backends served" >&2
    exit 1
fi
if [ "$pktgen_result" != ok ]; then
    echo "RESULT: FAIL — pktgen burst through VIP $VIP: $pktgen_result" >&2
    exit 1
fi
echo
echo "RESULT: OK — $ok/$REQUESTS requests answered through VIP $VIP, all 3 backends served$pktgen_note"

if [ $KEEP = 1 ]; then
    cat <<EOF

Kept running (--keep): fiberlb-dataplane pid $LB_PID, fiberlbd pid $D_PID, namespaces ${P}*.
  try:  ip netns exec ${P}c curl http://$VIP/
        FIBERLB_SERVER=$WORK/fiberlbd.sock FIBERLB_ORG=demo FIBERLB_PROJECT=quickstart $CTL_BIN lb list
  stop: $ROOT/scripts/quickstart.sh --stop   (as root)
EOF
fi
