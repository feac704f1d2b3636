#!/usr/bin/env bash
# fiberlb control plane end to end: fiberlb-dataplane (AF_XDP, no --services) and fiberlbd on
# the same shared-memory region in the lb namespace, configured only through fiberlbctl; a real
# client (curl) and three real HTTP backends, in network namespaces this script creates and
# always removes (topology.sh). Prints "PASS name ..." / "FAIL name ..." and "RESULT ..." lines
# and exits non-zero if anything failed.
#
#   FIBERLB_BIN_DIR  directory holding fiberlb-dataplane, fiberlbd, fiberlbctl (default:
#                    target/release)
#   FCP_PREFIX       the network namespaces' name prefix, unique per run (default: fcp<pid>)
#   FE2E_CORE        the data plane worker's core (default 1)
#   FCP_STORE        redb (default) or etcd: fiberlbd keeps its configuration in a real etcd
#                    started in the lb namespace (127.0.0.1:2379 there), and step d2 kills etcd
#                    during a request stream: 0 failed requests, writes refused (UNAVAILABLE),
#                    etcd back: writes accepted and applied.
#
# fiberlbd's health checks go to the backends through the data port l1 (from the lb's own
# address 10.91.2.1), beside the nat traffic: their replies come from a nat backend's
# address:port, and the XDP program passes them to the kernel because they are addressed to one
# of the host's own addresses (its `local_addrs` map) rather than taking them for nat returns.
#
# Root only. Needs ip, ethtool, curl, python3, sha256sum.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
P=${FCP_PREFIX:-fcp$$}
# shellcheck source=topology.sh
. "$HERE/topology.sh"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
D=$BIN_DIR/fiberlbd
CTL_BIN=$BIN_DIR/fiberlbctl

e2e_need_root e2e "network namespaces, XDP, AF_XDP"
e2e_need_tools ip ethtool curl sha256sum
[ "${FCP_STORE:-redb}" = etcd ] && e2e_need_tools etcd etcdctl
for b in "$LB" "$D" "$CTL_BIN"; do e2e_need_bin "$b"; done

e2e_init
SOCK=$WORK/fiberlbd.sock
METRICS=127.0.0.1:9751
HC_INTERVAL_MS=500 FALL=2 RISE=2
BPID=("" "" "") # the backends, stopped and started again by the health checks
D_PID=
T0=$(date +%s)

NS_B4=${P}b4 B4_PID= # section h: the namespace b3's address moves to
STORE=${FCP_STORE:-redb} ETCD_PID=
cleanup_first() { # (e2e_cleanup) fiberlbd and the backends
    local p
    [ -n "$D_PID" ] && kill -TERM "$D_PID" 2>/dev/null
    [ -n "$ETCD_PID" ] && kill "$ETCD_PID" 2>/dev/null && wait "$ETCD_PID" 2>/dev/null
    for p in "${BPID[@]}" $B4_PID; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
    for p in $D_PID "${BPID[@]}" $B4_PID; do wait "$p" 2>/dev/null; done
    ip netns del "$NS_B4" 2>/dev/null
}

ctl() { FIBERLB_SERVER=$SOCK FIBERLB_ORG=e2e FIBERLB_PROJECT=cp "$CTL_BIN" "$@"; }
jget() { "$PY" -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {'d': d}))" "$1"; }

topo_up || { echo "FAIL setup: topology"; exit 1; }

# Backends: the same 12 MB file everywhere, for the drain check's download.
make_big_file 12
start_cp_backend() { # index: started again after its server was stopped
    start_backend "$1"
    BPID[$1]=$BACKEND_PID
    wait_listening 80 "${NS_B[$1]}"
}
for i in 0 1 2; do start_cp_backend $i; done

SEED=7379537652274192929
xdp_dataplane_toml 65536 "${FE2E_CORE:-1}" "hash_seed = $SEED" >"$WORK/dataplane.toml"
start_etcd() { # etcd in the lb namespace, on its own loopback
    ip netns exec "$NS_L" etcd --name fcp --data-dir "$WORK/etcd" \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster fcp=http://127.0.0.1:2380 >>"$WORK/etcd.out" 2>&1 &
    ETCD_PID=$!
    for _ in $(seq 1 100); do
        ip netns exec "$NS_L" etcdctl --endpoints http://127.0.0.1:2379 endpoint health >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "FAIL start: etcd did not start"
    tail -20 "$WORK/etcd.out"
    exit 1
}
STORE_TOML="store_path = \"$WORK/store.redb\""
if [ "$STORE" = etcd ]; then
    start_etcd
    STORE_TOML="store = \"etcd\"
store_path = \"$WORK/store.redb\""
fi
cat >"$WORK/controlplane.toml" <<TOML
listen = "$SOCK"
$STORE_TOML
shm_path = "$SHM"
hash_seed = $SEED
vip_ranges = ["10.91.100.16/28"]
metrics_address = "$METRICS"
[health_defaults]
interval_ms = $HC_INTERVAL_MS
timeout_ms = 400
rise = $RISE
fall = $FALL
TOML
if [ "$STORE" = etcd ]; then
    printf '[etcd]\nendpoints = ["http://127.0.0.1:2379"]\ntimeout_ms = 1000\n' >>"$WORK/controlplane.toml"
fi

start_dataplane() { # log file
    lb_start_or_exit "$1" 5 --config "$WORK/dataplane.toml"
}
start_fiberlbd() { # log file
    rm -f "$SOCK"
    ip netns exec "$NS_L" "$D" --config "$WORK/controlplane.toml" >>"$1" 2>&1 &
    D_PID=$!
    for _ in $(seq 1 100); do
        [ -S "$SOCK" ] && return 0
        kill -0 "$D_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "FAIL start: fiberlbd did not start:"
    show_log "$1" fiberlbd
    exit 1
}
start_dataplane "$WORK/lb.out"
start_fiberlbd "$WORK/d.out"

# --- configuration through fiberlbctl only ---
setup_ok=1
LB_ID=$(ctl -o json lb create --name web | jget "d['load_balancer']['id']") || setup_ok=
VIP=$(ctl -o json lb get "$LB_ID" | jget "d['load_balancer']['vip']") || setup_ok=
HC_ID=$(ctl -o json hc create --name web-http --kind http --http-path / | jget "d['health_check']['id']") || setup_ok=
POOL_ID=$(ctl -o json pool create --name web --health-check "$HC_ID" | jget "d['pool']['id']") || setup_ok=
BE=()
for i in 0 1 2; do
    BE[$i]=$(ctl -o json backend create --pool "$POOL_ID" --address "${IP_B[$i]}" --port 80 \
        --mac "${MAC_B[$i]}" | jget "d['backend']['id']") || setup_ok=
done
L_ID=$(ctl -o json listener create --lb "$LB_ID" --port 80 --protocol tcp --mode nat --pool "$POOL_ID" |
    jget "d['listener']['id']") || setup_ok=
hc_json=$(ctl -o json hc get "$HC_ID")
echo "RESULT setup lb=$LB_ID vip=$VIP pool=$POOL_ID backends=${BE[*]} listener=$L_ID hc=$(echo "$hc_json" | jget "'%sms/rise %s/fall %s' % (d['health_check']['interval_ms'], d['health_check']['rise'], d['health_check']['fall'])")"
case $VIP in
10.91.100.1[6-9] | 10.91.100.2[0-9] | 10.91.100.3[01]) ;;
*) setup_ok= ;;
esac
if [ -n "$setup_ok" ]; then pass "setup: allocated VIP $VIP, pool with health check, 3 backends, nat listener"; else fail "setup: VIP=$VIP ids lb=$LB_ID pool=$POOL_ID backends=${BE[*]} listener=$L_ID"; fi
name_of_id() { # backend id -> b1..b3
    local i
    for i in 0 1 2; do [ "${BE[$i]}" = "$1" ] && echo "b$((i + 1))"; done
}

# Wait until the data plane applied the store's generation.
applied=
for _ in $(seq 1 100); do
    st=$(ctl -o json status 2>/dev/null) || { sleep 0.1; continue; }
    if [ "$(echo "$st" | jget "d.get('attached', False) and d.get('applied_generation', 0) > 0")" = True ]; then
        applied=1; break
    fi
    sleep 0.1
done
[ -n "$applied" ] || fail "setup: the data plane did not apply the configuration: $(ctl status 2>&1 | tr '\n' ' ')"
sleep $(((HC_INTERVAL_MS * RISE + 999) / 1000)) # first health results

clear_logs() { for l in "$WORK"/b[123]/log; do : >"$l"; done; }
served() { # backend name -> client requests for / logged since clear_logs (health checks,
    # from the lb's address 10.91.2.1, are not counted)
    awk '$1 == "tcp" && $2 == "10.91.1.2" && $4 == "/" {n++} END {print n + 0}' "$WORK/$1/log"
}
requests() { # name n -> "ok=N b1=.. b2=.. b3=.."
    local name=$1 n=$2 out=$WORK/$1.curl
    ip netns exec "$NS_C" bash -c "for i in \$(seq 1 $n); do curl -s --max-time 3 http://$VIP/ || echo FAILED; done" >"$out" 2>&1
    echo "ok=$(grep -cx 'b[123]' "$out") $(count_backends "$out")"
}

# a. traffic through the allocated VIP
clear_logs
r=$(requests traffic 150)
echo "RESULT traffic requests=150 $r"
if echo "$r" | grep -q "^ok=150 " && ! echo "$r" | grep -q "=0\b"; then pass "traffic 150/150, every backend served ($r)"; else fail "traffic $r"; fi
# The health checks that kept every backend up came through the data port l1, from the lb's
# own address (not a management interface: there is none).
hc_from_l1=$(for b in b1 b2 b3; do awk '$1 == "tcp" && $2 == "10.91.2.1" {n++} END {print n + 0}' "$WORK/$b/log"; done | tr '\n' ' ')
echo "RESULT health-path checks_from_10.91.2.1=$hc_from_l1"
if [ "$(echo $hc_from_l1 | tr ' ' '\n' | grep -c '^0$')" = 0 ] && [ -z "$(ip -n "$NS_L" -o link show | awk -F': ' '{print $2}' | grep -v '^lo$\|^l0@\|^l1@')" ]; then
    pass "health-path: every backend got health checks from 10.91.2.1 over l1 ($hc_from_l1), no other interface in the lb namespace"
else
    fail "health-path: checks per backend from 10.91.2.1: $hc_from_l1; lb links: $(ip -n "$NS_L" -o link show | awk -F': ' '{print $2}' | tr '\n' ' ')"
fi

# b. health: stop b2's server, it leaves the pool within fall x interval + 1 s; it rejoins
# within rise x interval + 1 s of starting again. With b2's server dead its log is empty
# whatever the data plane does, so the check is the data plane's own count of new flows it
# sent to b2 (fiberlbctl stats, from the workers' per-backend counters): 0 while b2 is down,
# > 0 once it is back.
backend_new_flows() { # backend id -> new_flows the data plane counted for it (-1: not found)
    sleep 0.3 # the workers publish their counters every ~100 ms
    ctl -o json stats | jget "next((b.get('new_flows', 0) for b in d.get('backends', []) if b.get('id') == $1), -1)"
}
kill "${BPID[1]}"; wait "${BPID[1]}" 2>/dev/null; BPID[1]=
sleep $(((HC_INTERVAL_MS * FALL + 1000 + 999) / 1000))
clear_logs
nf0=$(backend_new_flows "${BE[1]}")
r=$(requests health-down 60)
nf1=$(backend_new_flows "${BE[1]}")
down_state=$(ctl -o json backend get "${BE[1]}" | jget "d['backend']['healthy']")
echo "RESULT health-down requests=60 $r b2_healthy=$down_state b2_new_flows=$nf0->$nf1"
if echo "$r" | grep -q "^ok=60 " && [ "$nf0" -ge 0 ] && [ "$nf1" = "$nf0" ] && [ "$down_state" = False ]; then
    pass "health-down: 60/60 after $((HC_INTERVAL_MS * FALL + 1000)) ms, the data plane sent b2 no new flow ($nf0 before and after)"
else
    fail "health-down: $r, b2 new flows $nf0 -> $nf1 in the data plane, healthy=$down_state"
fi
start_cp_backend 1
sleep $(((HC_INTERVAL_MS * RISE + 1000 + 999) / 1000))
clear_logs
nf0=$(backend_new_flows "${BE[1]}")
r=$(requests health-up 60)
nf1=$(backend_new_flows "${BE[1]}")
echo "RESULT health-up requests=60 $r b2_log=$(served b2) b2_new_flows=$nf0->$nf1"
if echo "$r" | grep -q "^ok=60 " && [ "$(served b2)" -gt 0 ] && [ "$nf1" -gt "$nf0" ]; then
    pass "health-up: b2 rejoined ($r; the data plane counted $((nf1 - nf0)) new flows to it)"
else
    fail "health-up: $r, b2 log $(served b2), b2 new flows $nf0 -> $nf1 in the data plane"
fi

# c. drain: a slow download pinned (by lookup) to b1 completes byte-exact while b1 is drained;
# new requests avoid b1.
DL_PORT=
for port in $(seq 46000 46200); do
    b=$(ctl -o json lookup "10.91.1.2:$port" "$VIP:80/tcp" | jget "d['backend']['id']")
    if [ "$b" = "${BE[0]}" ]; then DL_PORT=$port; break; fi
done
ip netns exec "$NS_C" bash -c "curl -s --max-time 30 --limit-rate 4M --local-port $DL_PORT http://$VIP/big | sha256sum" >"$WORK/dl.sha" 2>&1 &
DL=$!
sleep 0.7
ctl backend update "${BE[0]}" --state drained >/dev/null || fail "drain: fiberlbctl update failed"
sleep 0.3
clear_logs
r=$(requests drain 60)
wait $DL
dl_sha=$(cut -d' ' -f1 <"$WORK/dl.sha")
sleep 0.2 # (the backend logs a request after its last byte)
big_served=$(awk '$4 == "/big" {n++} END {print n + 0}' "$WORK/b1/log")
echo "RESULT drain requests=60 $r download_port=$DL_PORT download_sha_ok=$([ "$dl_sha" = "$BIG_SHA" ] && echo yes || echo no) b1_download_logged=$big_served"
if [ "$dl_sha" = "$BIG_SHA" ] && echo "$r" | grep -q "^ok=60 b1=0 " && [ "$(served b1)" = 0 ]; then
    pass "drain: the download to b1 finished byte-exact, 60 new requests avoided b1 ($r)"
else
    fail "drain: sha $dl_sha (want $BIG_SHA), $r, b1 log $(served b1)"
fi
ctl backend update "${BE[0]}" --state enabled >/dev/null

# A background stream of requests, one curl at a time: "stream_start NAME" / "stream_stop".
stream_start() {
    : >"$WORK/$1.stream"
    ip netns exec "$NS_C" bash -c "while :; do curl -s --max-time 3 http://$VIP/ || echo FAILED; sleep 0.02; done" >"$WORK/$1.stream" 2>&1 &
    STREAM=$!
}
stream_stop() { kill "$STREAM" 2>/dev/null; wait "$STREAM" 2>/dev/null; }

# d. restart fiberlbd (kill -9) during a steady stream: nothing fails, no resync.
sleep 0.5
stream_start d-restart
sleep 1
gen_before=$(ctl -o json status | jget "d['applied_generation']")
kill -9 "$D_PID"; wait "$D_PID" 2>/dev/null
n_at_kill=$(wc -l <"$WORK/d-restart.stream")
sleep 1
n_while_down=$(($(wc -l <"$WORK/d-restart.stream") - n_at_kill))
: >"$WORK/d2.out"
start_fiberlbd "$WORK/d2.out"
sleep 1.5
stream_stop
gen_after=$(ctl -o json status | jget "d['applied_generation']")
total=$(wc -l <"$WORK/d-restart.stream")
failed=$(grep -c FAILED "$WORK/d-restart.stream")
noresync=$(grep -c "no resync" "$WORK/d2.out")
echo "RESULT fiberlbd-restart requests=$total failed=$failed while_down=$n_while_down generation_before=$gen_before after=$gen_after no_resync_logged=$noresync"
if [ "$failed" = 0 ] && [ "$n_while_down" -gt 0 ] && [ "$noresync" -ge 1 ] && [ "$gen_before" = "$gen_after" ]; then
    pass "fiberlbd-restart: $total requests, 0 failed ($n_while_down while fiberlbd was down), generation $gen_after kept, no resync"
else
    fail "fiberlbd-restart: $total requests, $failed failed, $n_while_down while down, gen $gen_before -> $gen_after, no-resync lines $noresync"
    show_log "$WORK/d2.out" fiberlbd
fi

# d2. (etcd) kill etcd during a steady stream: nothing fails, writes are refused with
# UNAVAILABLE, the node reports the store unreachable; etcd back: a write is accepted and applied.
if [ "$STORE" = etcd ]; then
    stream_start etcd-outage
    sleep 1
    kill -9 "$ETCD_PID"; wait "$ETCD_PID" 2>/dev/null; ETCD_PID=
    sleep 0.5
    refused=$(ctl pool create --name during-outage 2>&1 >/dev/null)
    sleep 1
    unreachable=$(ctl -o json node status | jget "0 if d.get('store_reachable') else 1")
    sleep 1
    start_etcd
    t_back=$(date +%s%N)
    accepted=
    while [ $(($(date +%s%N) - t_back)) -lt 10000000000 ]; do
        if out=$(ctl -o json pool create --name after-outage 2>/dev/null); then accepted=$out; break; fi
        sleep 0.1
    done
    gen=0
    [ -n "$accepted" ] && gen=$(echo "$accepted" | jget "d.get('generation', 0)")
    applied=
    for _ in $(seq 1 100); do
        [ "$(ctl -o json status | jget "d.get('synced_store_generation', 0)")" -ge "$gen" ] && { applied=1; break; }
        sleep 0.05
    done
    sleep 0.5
    stream_stop
    total=$(wc -l <"$WORK/etcd-outage.stream")
    failed=$(grep -c FAILED "$WORK/etcd-outage.stream")
    echo "RESULT etcd-outage requests=$total failed=$failed unreachable_reported=$unreachable generation_after=$gen applied=${applied:-0}"
    echo "  write while etcd was down: $refused"
    if [ "$failed" = 0 ] && [ "$total" -gt 50 ] && [ "$unreachable" = 1 ] && [ -n "$accepted" ] && [ -n "$applied" ] &&
        echo "$refused" | grep -q "Unavailable\|unavailable"; then
        pass "etcd-outage: $total requests, 0 failed; writes refused while etcd was down; a write after its return applied"
    else
        fail "etcd-outage: $total requests, $failed failed, unreachable=$unreachable, accepted=${accepted:+yes}, applied=${applied:-no}, refusal: $refused"
        show_log "$WORK/d2.out" fiberlbd
    fi
fi

# e. restart the data plane (kill -9, start again): fiberlbd replays, traffic resumes.
old_instance=$(ctl -o json status | jget "d['instance_id']")
kill -9 "$LB_PID"; wait "$LB_PID" 2>/dev/null; LB_PID=
t_start=$(date +%s%N)
start_dataplane "$WORK/lb2.out"
resumed=
while [ $(($(date +%s%N) - t_start)) -lt 10000000000 ]; do
    if [ "$(ip netns exec "$NS_C" curl -s --max-time 0.5 "http://$VIP/")" != "" ]; then resumed=$(($(date +%s%N) - t_start)); break; fi
    sleep 0.05
done
new_instance=$(ctl -o json status | jget "d['instance_id']")
replayed=$(grep -c "restarted; re-attaching and replaying\|attached to data plane $new_instance" "$WORK/d2.out")
ms=$([ -n "$resumed" ] && echo $((resumed / 1000000)) || echo never)
clear_logs
r=$(requests after-dp-restart 30)
echo "RESULT dataplane-restart resumed_ms=$ms old_instance=$old_instance new_instance=$new_instance replay_logged=$replayed $r"
if [ -n "$resumed" ] && [ "$ms" -le 2000 ] && [ "$old_instance" != "$new_instance" ] && [ "$replayed" -ge 1 ] && echo "$r" | grep -q "^ok=30 "; then
    pass "dataplane-restart: new instance replayed, traffic resumed ${ms} ms after the start"
else
    fail "dataplane-restart: resumed=$ms ms, instance $old_instance -> $new_instance, replay lines $replayed, $r"
    show_log "$WORK/lb2.out" lb2
fi

# f. counters per backend (API) and Prometheus metrics.
clear_logs
r=$(requests counters 60)
stats=$(ctl -o json stats)
per=$(echo "$stats" | jget "' '.join('%d=%d' % (b['id'], b.get('packets', 0)) for b in d.get('backends', []))")
nonzero=$(echo "$stats" | jget "sum(1 for b in d.get('backends', []) if b.get('packets', 0) > 0)")
lpk=$(echo "$stats" | jget "sum(l.get('packets', 0) for l in d.get('listeners', []))")
echo "RESULT stats backend_packets $per listener_packets=$lpk"
if [ "$nonzero" = 3 ] && [ "$lpk" -gt 0 ]; then pass "stats: per-backend packets $per"; else fail "stats: $per listener=$lpk"; fi
ctl stats | sed 's/^/  stats: /'
ip netns exec "$NS_L" curl -s --max-time 3 "http://$METRICS/metrics" >"$WORK/metrics"
mb=$(grep -c '^fiberlb_backend_packets_total{' "$WORK/metrics")
mu=$(grep -c '^fiberlb_backend_up{' "$WORK/metrics")
mup=$(grep '^fiberlb_backend_up{' "$WORK/metrics" | awk '{s += $2} END {print s + 0}')
echo "RESULT metrics backend_packets_series=$mb backend_up_series=$mu backends_up=$mup"
if [ "$mb" = 3 ] && [ "$mu" = 3 ] && [ "$mup" = 3 ]; then pass "metrics: Prometheus text with per-backend counters and health"; else fail "metrics: $mb packet series, $mu up series ($mup up)"; fi

# g. lookup names the backend a real curl from that client port reached.
lk_ok=0 lk_n=0
for port in 47001 47002 47003 47004 47005 47006; do
    got=$(ip netns exec "$NS_C" curl -s --max-time 3 --local-port $port "http://$VIP/")
    want=$(name_of_id "$(ctl -o json lookup "10.91.1.2:$port" "$VIP:80/tcp" | jget "d['backend']['id']")")
    lk_n=$((lk_n + 1))
    [ -n "$got" ] && [ "$got" = "$want" ] && lk_ok=$((lk_ok + 1))
    echo "RESULT lookup port=$port curl=$got lookup=$want"
done
if [ $lk_ok = $lk_n ]; then pass "lookup: $lk_ok/$lk_n client ports reached the backend lookup named"; else fail "lookup: $lk_ok/$lk_n agree"; fi

# top: two frames while traffic runs (not a tty: plain frames).
stream_start top
ctl top --count 2 >"$WORK/top.out" 2>&1
top_rc=$?
stream_stop
show_log "$WORK/top.out" top
frames=$(grep -c '^fiberlb top' "$WORK/top.out")
bframes=$(grep -c '^BACKEND' "$WORK/top.out")
live=$(awk '$1 ~ /^[0-9]+$/ && $4 == "up" && $5 != "0" {n++} END {print n + 0}' "$WORK/top.out")
echo "RESULT top rc=$top_rc frames=$frames backend_rows_with_traffic=$live"
if [ $top_rc = 0 ] && [ "$frames" = 2 ] && [ "$bframes" = 2 ] && [ "$live" -ge 2 ] && ! grep -q $'\e' "$WORK/top.out"; then
    pass "top: 2 plain frames, backends with pps"
else
    fail "top: rc=$top_rc frames=$frames backend tables=$bframes rows with traffic=$live"
fi

# h. next hops. The data plane here has no backend gateway MAC, so a backend without a MAC
# can only be reached once its MAC is known. The topology's permanent neighbour entries for
# the backends are removed first: fiberlbd must resolve them itself.
for i in 0 1 2; do ip -n "$NS_L" neigh del "${IP_B[$i]}" dev l1 2>/dev/null; done
drops_nnh() { ctl -o json stats | jget "sum(x.get('packets', 0) for x in d.get('drops_by_reason', []) if x.get('reason') == 'no_next_hop')"; }
nnh0=$(drops_nnh)
# A second load balancer: a pool of the three backends with no MAC given, plus 10.91.2.99,
# which nobody holds (it never resolves), and a nat listener created last. (The first
# listener goes: a nat backend address:port belongs to one listener.)
ctl listener delete "$L_ID" >/dev/null || fail "nexthop: deleting the first listener failed"
LB2_ID=$(ctl -o json lb create --name nexthop | jget "d['load_balancer']['id']")
VIP2=$(ctl -o json lb get "$LB2_ID" | jget "d['load_balancer']['vip']")
POOL2=$(ctl -o json pool create --name nomac | jget "d['pool']['id']")
for a in "${IP_B[@]}" 10.91.2.99; do
    ctl -o json backend create --pool "$POOL2" --address "$a" --port 80 >/dev/null
done
ctl -o json listener create --lb "$LB2_ID" --port 80 --protocol tcp --mode nat --pool "$POOL2" >/dev/null
for _ in $(seq 1 100); do # applied (typically a few ms)
    [ "$(ctl -o json status | jget "d.get('synced_store_generation') == d['store_generation']")" = True ] && break
    sleep 0.02
done
VIP=$VIP2 # requests() goes to $VIP
clear_logs
r=$(requests nexthop 60)
states() { ctl -o json backend list --pool "$POOL2" | jget "' '.join('%s=%s' % (b['address'], b['next_hop']) for b in d['backends'])"; }
want_states="10.91.2.11=resolved 10.91.2.12=resolved 10.91.2.13=resolved 10.91.2.99=unresolved"
states=$(states)
r_late=
if [ "$states" != "$want_states" ]; then
    # The kernel was slow to learn a backend's MAC (a busy machine; seen once in CI): no request
    # may have failed meanwhile (ok=60, no no_next_hop drop, checked below). Give it up to 3 s
    # more, then every backend must serve.
    for _ in $(seq 1 30); do
        sleep 0.1
        states=$(states)
        [ "$states" = "$want_states" ] && break
    done
    r_late=$(requests nexthop-late 30)
fi
nnh1=$(drops_nnh)
unres=$(ctl -o json status | jget "','.join(d.get('unresolved_backends', []))")
ip netns exec "$NS_L" curl -s --max-time 3 "http://$METRICS/metrics" >"$WORK/metrics2"
munres=$(awk '$1 == "fiberlb_backends_unresolved" {print $2}' "$WORK/metrics2")
echo "RESULT nexthop-unresolved vip=$VIP2 requests=60 $r no_next_hop_drops=$nnh0->$nnh1 next_hop: $states status_unresolved=$unres metric=$munres late=${r_late:-none}"
all_served() { # $r, or, when a backend resolved late, the 30 requests after it
    if [ -z "$r_late" ]; then ! echo "$r" | grep -q "=0\b"; else echo "$r_late" | grep -q "^ok=30 " && ! echo "$r_late" | grep -q "=0\b"; fi
}
if echo "$r" | grep -q "^ok=60 " && all_served && [ "$nnh1" = "$nnh0" ] &&
    [ "$states" = "$want_states" ] && [ "$unres" = 10.91.2.99 ] && [ "$munres" = 1 ]; then
    pass "nexthop-unresolved: backends without MACs served at once (60/60, $r), the unresolvable one kept out (no no_next_hop drop), shown as unresolved"
else
    fail "nexthop-unresolved: $r, no_next_hop $nnh0 -> $nnh1, next hops: $states, status: '$unres', metric: '$munres'"
fi

# The backend 10.91.2.13 moves: its address leaves b3 for a new host b4 (another MAC) that
# announces itself with gratuitous ARP, as a migrated VM does. New flows must follow it.
MAC_B4=02:e2:02:00:00:14
ip netns add "$NS_B4"
ip -n "$NS_B4" link set lo up
ip -n "$NS_S" link add s4 type veth peer name e0 address $MAC_B4 netns "$NS_B4"
ip -n "$NS_S" link set s4 master br0
ip -n "$NS_S" link set s4 up
ip netns exec "$NS_B4" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.rp_filter=0
ip netns exec "$NS_B4" ethtool -K e0 tx off >/dev/null
ip -n "$NS_B4" link set e0 up
mkdir -p "$WORK/b4"
ip -n "${NS_B[2]}" addr del "${IP_B[2]}/24" dev e0
ip -n "$NS_B4" addr add "${IP_B[2]}/24" dev e0
ip -n "$NS_B4" route add default via 10.91.2.1
ip -n "$NS_B4" neigh replace 10.91.2.1 lladdr $MAC_L1 dev e0 nud permanent
ip netns exec "$NS_B4" "$PY" "$HERE/backend.py" --name b4 --dir "$WORK/b4" --log "$WORK/b4/log" >>"$WORK/b4/out" 2>&1 &
B4_PID=$!
wait_listening 80 "$NS_B4"
t_move=$(date +%s%N)
ip netns exec "$NS_B4" arping -q -U -c 2 -I e0 "${IP_B[2]}" >/dev/null 2>&1 &
# Followed when the lb's neighbour table and then the data plane name b4's MAC for it.
moved=
while [ $(($(date +%s%N) - t_move)) -lt 5000000000 ]; do
    if ip -n "$NS_L" neigh show "${IP_B[2]}" dev l1 | grep -q "$MAC_B4" &&
        [ "$(ip netns exec "$NS_C" curl -s --max-time 1 --local-port 48000 "http://$VIP2/")" != "" ]; then
        moved=1
        break
    fi
    sleep 0.1
done
sleep 1.2 # one MAC refresh (1 s) after the kernel learnt it
follow_ms=$((($(date +%s%N) - t_move) / 1000000))
: >"$WORK/nexthop2.curl"
ip netns exec "$NS_C" bash -c "for p in \$(seq 48100 48159); do curl -s --max-time 3 --local-port \$p http://$VIP2/ || echo FAILED; done" >"$WORK/nexthop2.curl" 2>&1
ok=$(grep -cx 'b[124]' "$WORK/nexthop2.curl")
b4=$(grep -cx b4 "$WORK/nexthop2.curl")
b3=$(grep -cx b3 "$WORK/nexthop2.curl")
echo "RESULT nexthop-move requests=60 ok=$ok b4=$b4 b3=$b3 neighbour_updated=${moved:-no} checked_after_ms=$follow_ms"
if [ -n "$moved" ] && [ "$ok" = 60 ] && [ "$b4" -gt 0 ] && [ "$b3" = 0 ]; then
    pass "nexthop-move: 10.91.2.13 moved to a new MAC; 60/60 new connections answered, $b4 by its new host (${follow_ms} ms after the move)"
else
    fail "nexthop-move: neighbour updated=${moved:-no}, $ok/60 answered, b4=$b4 b3=$b3"
    ip -n "$NS_L" neigh show dev l1 | sed 's/^/  neigh: /'
fi

echo "RESULT seconds=$(($(date +%s) - T0))"
e2e_finish
