# shellcheck shell=bash
# What fiberlb's end-to-end scripts share: the report, setup checks, cleanup, starting and
# stopping fiberlb-dataplane, backends, and the client checks that are the same everywhere.
# Source it after setting HERE (this folder); it sets ROOT, BIN_DIR ($FIBERLB_BIN_DIR, else
# the workspace's $E2E_DEFAULT_BIN_DIR when the script set it, else target/release), LB
# (fiberlb-dataplane there) and PY (python3). The functions use the topology's names (NS_C, NS_L, NS_B, IP_B, ...:
# topology.sh or the script's own) and, after e2e_init, WORK, SHM, PIDS, LB_PID and FAILS.
#
# The report: "PASS name ...", "FAIL name ...", "RESULT ..." lines (pass, fail, result), then
# "RESULT fails=N" (e2e_finish). When MODE is set, every check name is prefixed "MODE/"
# (dpdk.sh: one run per vdev kind).

ROOT=$(cd "$HERE/../.." && pwd)
BIN_DIR=${FIBERLB_BIN_DIR:-$ROOT/${E2E_DEFAULT_BIN_DIR:-target/release}}
LB=$BIN_DIR/fiberlb-dataplane
PY=$(command -v python3)

pass() { echo "PASS ${MODE:+$MODE/}$*"; }
fail() {
    echo "FAIL ${MODE:+$MODE/}$*"
    FAILS=$((FAILS + 1))
}
result() { echo "RESULT ${MODE:+$MODE/}$*"; }

# e2e_finish: the final line; the script's exit status (last command) is 0 only without fails.
e2e_finish() {
    echo "RESULT fails=$FAILS"
    [ "$FAILS" = 0 ]
}

# --- setup checks ---

# e2e_need_root NAME WHY: without root, a "SKIP NAME: needs root (WHY)" line and exit 0.
e2e_need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "SKIP $1: needs root ($2)"
        exit 0
    fi
}

# e2e_need_tools TOOL...: each must be installed, else "FAIL setup" and exit 1.
e2e_need_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || {
            echo "FAIL setup: $tool not installed"
            exit 1
        }
    done
}

# e2e_need_bin PATH [HINT]: the binary must be built, else "FAIL setup" (with HINT) and exit 1.
e2e_need_bin() {
    [ -x "$1" ] || {
        echo "FAIL setup: $1 not built${2:+ ($2)}"
        exit 1
    }
}

# --- work space and cleanup ---

# e2e_init: WORK (a fresh folder), SHM (the data plane's region), PIDS (background processes,
# killed at the end), LB_PID (the data plane, sent SIGTERM at the end), FAILS; the cleanup on
# exit. P (the run's prefix) must be set.
e2e_init() {
    WORK=$(mktemp -d "/tmp/${P}.XXXX")
    SHM=/dev/shm/${P}.region
    PIDS=()
    LB_PID=
    FAILS=0
    trap e2e_cleanup EXIT
    trap 'exit 130' INT TERM
}

# Stops what the script started, removes the namespaces (topo_down) and the files. A script
# with more to stop first (fiberlbd, ...) defines cleanup_first.
e2e_cleanup() {
    if declare -F cleanup_first >/dev/null; then cleanup_first; fi
    if [ -n "$LB_PID" ]; then kill -TERM "$LB_PID" 2>/dev/null; fi
    stop_pids
    if [ -n "$LB_PID" ]; then wait "$LB_PID" 2>/dev/null; fi
    topo_down
    rm -rf "$WORK" "$SHM" "$SHM.slots.json" "$SHM.ports.json"
}

# stop_pids: kills the background processes of PIDS, waits for them and empties PIDS.
stop_pids() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    PIDS=()
}

# --- the data plane ---

# show_log LOG [LABEL]: the log, each line indented and labelled (default "lb").
show_log() { sed "s/^/  ${2:-lb}: /" "$1"; }

# lb_start LOG SECONDS RUN-ARGS...: starts `fiberlb-dataplane run RUN-ARGS` in the lb namespace
# (LB_PID), its output in LOG, and waits up to SECONDS for its "forwarding on". Returns 1 when
# it exited or did not get there in time.
lb_start() {
    local log=$1 tries=$(($2 * 20)) _
    shift 2
    ip netns exec "$NS_L" "$LB" run "$@" >"$log" 2>&1 &
    LB_PID=$!
    for _ in $(seq 1 "$tries"); do
        grep -q "forwarding on" "$log" && return 0
        kill -0 "$LB_PID" 2>/dev/null || break
        sleep 0.05
    done
    return 1
}

# lb_start_or_exit LOG SECONDS RUN-ARGS...: lb_start; when it fails, "FAIL start" with the log,
# and exit 1.
lb_start_or_exit() {
    lb_start "$@" && return 0
    echo "FAIL start: fiberlb-dataplane did not start:"
    show_log "$1"
    exit 1
}

# lb_stop LOG: SIGTERM to the data plane; waits for it (exit status in LB_RC), prints LOG.
lb_stop() {
    kill -TERM "$LB_PID"
    wait "$LB_PID"
    # shellcheck disable=SC2034 # (for the caller)
    LB_RC=$?
    LB_PID=
    show_log "$1"
}

# check_second_instance CONFIG OUT [PASS-TEXT]: a second data plane on the region of CONFIG
# must be refused ("already owns") before it touches anything. Check "second-instance".
check_second_instance() {
    if ip netns exec "$NS_L" "$LB" run --config "$1" >"$2" 2>&1; then
        fail "second-instance: a second data plane started on the same region"
    elif grep -q "already owns" "$2"; then
        pass "second-instance refused${3:-: $(head -c 160 "$2")}"
    else
        fail "second-instance: unexpected error: $(cat "$2")"
    fi
}

# xdp_dataplane_toml FLOW_CAPACITY CORES [FORWARDING-LINE]: the data plane's config for the two
# AF_XDP ports l0 (client side, gateway MAC_C0) and l1 (backend side), region SHM. CORES is the
# workers' list ("1" or "0, 1"); FORWARDING-LINE one more [forwarding] setting.
xdp_dataplane_toml() {
    cat <<TOML
[forwarding]
flow_capacity = $1
${3:-}
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
cores = [$2]
idle_backoff = true
[shm]
path = "$SHM"
[umem]
frames = 4096
chunk_size = 2048
TOML
}

# services_yaml all|without-b3: topology.sh's nat and dsr VIPs, HTTP :80 and UDP :5353 each,
# to b1..b3; "without-b3" leaves b3 out of the nat-http pool (dataplane.sh, dpdk.sh and their
# reconfig.sh).
services_yaml() {
    local i pool ids
    echo "loadbalancers:"
    echo "  - {name: natlb, vip: $VIP_NAT, listeners: [{port: 80, protocol: tcp, mode: nat, pool: nat-http}, {port: 5353, protocol: udp, mode: nat, pool: nat-udp}]}"
    echo "  - {name: dsrlb, vip: $VIP_DSR, listeners: [{port: 80, protocol: tcp, mode: dsr, pool: dsr-http}, {port: 5353, protocol: udp, mode: dsr, pool: dsr-udp}]}"
    echo "pools:"
    # Object ids follow the file's order: nat-http goes last and b3 last in it, so leaving b3
    # out changes no other object's id.
    for pool in nat-udp:5353 dsr-http:80 dsr-udp:5353 nat-http:80; do
        echo "  - name: ${pool%%:*}"
        echo "    backends:"
        ids="0 1 2"
        [ "$1" = without-b3 ] && [ "${pool%%:*}" = nat-http ] && ids="0 1"
        for i in $ids; do
            echo "      - {address: ${IP_B[$i]}, port: ${pool##*:}, mac: \"${MAC_B[$i]}\"}"
        done
    done
}

# --- backends ---

# make_big_file MIB: $WORK/big.bin, MIB MiB of random bytes (BIG_BYTES, BIG_SHA), which every
# backend serves as /big (so a download is checkable whoever serves it).
make_big_file() {
    BIG_BYTES=$(($1 * 1024 * 1024))
    head -c "$BIG_BYTES" /dev/urandom >"$WORK/big.bin"
    BIG_SHA=$(sha256sum <"$WORK/big.bin" | cut -d' ' -f1)
}

# start_backend I [backend.py options]: backend b<I+1> (backend.py, HTTP :80) in its namespace,
# serving $WORK/b<I+1>/ (big.bin: a hard link to $WORK/big.bin, or empty) and logging every
# request to the log there; its pid in BACKEND_PID.
start_backend() {
    local i=$1 d=$WORK/b$(($1 + 1))
    shift
    mkdir -p "$d"
    if [ ! -e "$d/big.bin" ]; then
        if [ -e "$WORK/big.bin" ]; then ln "$WORK/big.bin" "$d/big.bin"; else : >"$d/big.bin"; fi
    fi
    ip netns exec "${NS_B[$i]}" "$PY" "$HERE/backend.py" --name "b$((i + 1))" --dir "$d" \
        --log "$d/log" "$@" >>"$d/out" 2>&1 &
    BACKEND_PID=$!
}

# start_backends [backend.py options]: b1..b3 (start_backend), each also answering UDP :5353
# on its own address; their pids go to PIDS.
start_backends() {
    local i
    for i in 0 1 2; do
        start_backend $i --udp "${IP_B[$i]}" "$@"
        PIDS+=("$BACKEND_PID")
    done
}

# wait_listening PORT NS...: waits (5 s at most) until each namespace listens on TCP PORT.
wait_listening() {
    local port=$1 ns n _
    shift
    for _ in $(seq 1 50); do
        n=0
        for ns in "$@"; do ip netns exec "$ns" ss -ltn | grep -q ":$port " && n=$((n + 1)); done
        [ $n = $# ] && return 0
        sleep 0.1
    done
    return 1
}

# --- client checks ---

# count_backends FILE: "b1=N b2=N b3=N", how many lines of FILE (curl output) each answered.
count_backends() {
    local f=$1
    echo "b1=$(grep -cx b1 "$f") b2=$(grep -cx b2 "$f") b3=$(grep -cx b3 "$f")"
}

# url_host ADDRESS: the address as a URL's host ([ADDRESS] for IPv6).
url_host() {
    case $1 in
    *:*) echo "[$1]" ;;
    *) echo "$1" ;;
    esac
}

# http_spread NAME VIP FIRST-PORT [N MIN% MAX%]: N (300) requests from the client to
# http://VIP/, a new connection each, each from its own fixed client port (FIRST-PORT + i, so
# that no port is reused and every request is a new flow). Every one must be answered and each
# backend get between MIN% (20) and MAX% (47). With SPREAD_SOURCE_PORTS set (the default), the
# backends' logs are cleared first and must show N distinct client source ports.
SPREAD_SOURCE_PORTS=1
http_spread() {
    local name=$1 vip=$2 base=$3 n=${4:-300} lo=${5:-20} hi=${6:-47}
    local out=$WORK/${MODE:+$MODE-}$1.curl ok counts bad='' c v l ports
    if [ -n "$SPREAD_SOURCE_PORTS" ]; then
        for l in "$WORK"/b[123]/log; do : >"$l"; done # (the servers append)
    fi
    ip netns exec "$NS_C" bash -c "for i in \$(seq 0 $((n - 1))); do
        curl -s --max-time 5 --local-port \$(($base + i)) http://$(url_host "$vip")/ || echo FAILED; done" >"$out" 2>"$out.err"
    ok=$(grep -cx 'b[123]' "$out")
    counts=$(count_backends "$out")
    result "$name requests=$n ok=$ok $counts"
    [ "$ok" = "$n" ] || bad="only $ok/$n succeeded"
    for c in $counts; do
        v=${c#*=}
        if [ "$v" -lt $((n * lo / 100)) ] || [ "$v" -gt $((n * hi / 100)) ]; then
            bad="$bad ${c%%=*} got $v (outside $lo%-$hi%)"
        fi
    done
    if [ -n "$SPREAD_SOURCE_PORTS" ]; then
        # distinct client source ports, as the backends saw them
        ports=$(cat "$WORK"/b[123]/log | awk '$1 == "tcp" {print $3}' | sort -u | wc -l)
        result "$name distinct_source_ports=$ports"
        [ "$ports" = "$n" ] || bad="$bad only $ports distinct source ports"
    fi
    if [ -z "$bad" ]; then pass "$name $ok/$n $counts"; else fail "$name:$bad"; fi
}

# download NAME VIP: http://VIP/big from the client must be big.bin, byte for byte (sha256).
download() {
    local name=$1 vip=$2 sha t0 t1
    t0=$(date +%s.%N)
    sha=$(ip netns exec "$NS_C" curl -s --max-time 60 "http://$(url_host "$vip")/big" | sha256sum | cut -d' ' -f1)
    t1=$(date +%s.%N)
    result "$name bytes=$BIG_BYTES seconds=$(echo "$t1 - $t0" | bc -l | cut -c1-6)"
    if [ "$sha" = "$BIG_SHA" ]; then pass "$name sha256 matches"; else fail "$name sha256 $sha != $BIG_SHA"; fi
}

# udp_check NAME VIP: 60 UDP requests from the client to VIP:5353 (udp_client.py): every one
# answered, by two backends at least.
udp_check() {
    local name=$1 vip=$2 r nb
    r=$(ip netns exec "$NS_C" "$PY" "$HERE/udp_client.py" "$vip" 5353 60)
    result "$name $r"
    nb=$(echo "$r" | grep -o 'b[123]=' | wc -l)
    if echo "$r" | grep -q "ok=60 fail=0" && [ "$nb" -ge 2 ]; then pass "$name $r"; else fail "$name $r"; fi
}

# vip_checks: dataplane.sh's (and dpdk.sh's) client checks through topology.sh's nat and dsr
# VIPs: HTTP spread, byte-exact download and UDP, each through both.
vip_checks() {
    http_spread nat-http "$VIP_NAT" 42000
    http_spread dsr-http "$VIP_DSR" 43000
    download nat-download "$VIP_NAT"
    download dsr-download "$VIP_DSR"
    udp_check nat-udp "$VIP_NAT"
    udp_check dsr-udp "$VIP_DSR"
}

# stats_workers FILE KEY: the sum of KEY over the workers of FILE (`fiberlb-dataplane stats
# --json`: workers[].KEY, the counters the workers publish themselves — not the NIC's port
# counters, which count packets the workers may never have seen); -1 when FILE has no workers
# or is not JSON.
stats_workers() {
    "$PY" - "$1" "$2" <<'PYEOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    key = sys.argv[2]
    vals = [w[key] for w in d["workers"]]
    ok = vals and all(isinstance(v, int) for v in vals)
    print(sum(vals) if ok else -1)
except Exception:
    print(-1)
PYEOF
}

# port_stats_check [PORT]: `fiberlb-dataplane stats --json` (in the lb namespace) must show the
# port PORT (default "client") of the ports file live (not stale), its link up and
# rx_packets > 0 — the NIC counters the data plane publishes every second. Check "port-stats".
port_stats_check() {
    local port=${1:-client} out=$WORK/${MODE:+$MODE-}port-stats.json r
    ip netns exec "$NS_L" "$LB" stats --shm "$SHM" --json >"$out" 2>&1
    r=$("$PY" - "$out" "$port" <<'PYEOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print("bad", "stats --json is not JSON:", e)
    sys.exit()
ports = {p["name"]: p for p in d.get("ports", [])}
p = ports.get(sys.argv[2])
age, stale = d.get("ports_age_ms"), d.get("ports_stale")
if p is None:
    print("bad", "no port", sys.argv[2], "in ports", sorted(ports), "age_ms", age, "stale", stale)
elif stale or not p["link_up"] or p["rx_packets"] <= 0:
    print("bad", json.dumps(p), "stale", stale)
else:
    print("ok", "%s (%s %s) link up, rx_packets=%d tx_packets=%d rx_missed=%d%s, age %s ms" % (
        p["name"], p["driver"], p["device"], p["rx_packets"], p["tx_packets"], p["rx_missed"],
        "" if p.get("rx_nombuf") is None else " rx_nombuf=%d" % p["rx_nombuf"], age))
PYEOF
)
    result "port-stats ${r#* }"
    case $r in
    ok*) pass "port-stats ${r#ok }" ;;
    *) fail "port-stats: ${r#bad } $(head -c 300 "$out")" ;;
    esac
}
