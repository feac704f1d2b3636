#!/usr/bin/env bash
# Soak: fiberlb-dataplane (AF_XDP) and fiberlbd for SOAK_SECS under mixed traffic while the
# configuration changes every few seconds and a backend's health flaps — in network namespaces
# this script creates and always removes. Traffic, all through one allocated VIP (nat):
#   - a stream of short HTTP requests, one connection each (curl);
#   - UDP request/response to port 5353 (udp_client.py, new source port per request);
#   - long connections: downloads read slowly for ~8 s each (slow_reader.py), one after
#     another on 4 parallel lanes — established connections that live across many changes.
# Changes: every 3 s backend b1's weight alternates 1/2 (new Maglev tables); every 10 s b3's
# health checks are blocked or let through (iptables in b3: its health flaps, its client
# traffic does not). Checks:
#   - 0 long connections lost on b1/b2 (the backends that stayed up); those on b3 are moved
#     when b3 is declared down, by design, and are counted apart;
#   - short requests failed <= the number of times b3 went down (at most the one request in
#     flight to b3 at that moment); 0 UDP requests failed (each retried up to 3 times);
#   - memory flat: RSS of fiberlb-dataplane grows < 4 MiB and of fiberlbd < 16 MiB from the end
#     of the warm-up to the end;
#   - no counter drift: per-worker sums equal the data plane's totals, and fiberlbd's view
#     (gRPC) equals the data plane's own (shared memory), once traffic stopped.
# Prints PASS/FAIL/RESULT lines; exits non-zero if anything failed.
#
#   SOAK_SECS        duration (default 120; bench/soak.sh runs 1800)
#   FIBERLB_BIN_DIR  directory holding fiberlb-dataplane, fiberlbd, fiberlbctl
#   FSK_PREFIX       namespace prefix, unique per run (default: fsk<pid>)
#
# Root only. Needs ip, ethtool, curl, iptables, python3.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
P=${FSK_PREFIX:-fsk$$}
# shellcheck source=topology.sh
. "$HERE/topology.sh"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
D=$BIN_DIR/fiberlbd
CTL_BIN=$BIN_DIR/fiberlbctl
SOAK_SECS=${SOAK_SECS:-120}

e2e_need_root soak "network namespaces, XDP, AF_XDP"
e2e_need_tools ip ethtool curl iptables
for b in "$LB" "$D" "$CTL_BIN"; do e2e_need_bin "$b"; done
e2e_init
SOCK=$WORK/fiberlbd.sock
D_PID=
LOADS=()
cleanup_first() {
    local p
    for p in "${LOADS[@]}"; do kill "$p" 2>/dev/null; done
    [ -n "$D_PID" ] && kill -TERM "$D_PID" 2>/dev/null
    for p in "${LOADS[@]}" $D_PID; do wait "$p" 2>/dev/null; done
}
ctl() { FIBERLB_SERVER=$SOCK FIBERLB_ORG=soak FIBERLB_PROJECT=soak "$CTL_BIN" "$@"; }
jget() { "$PY" -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {'d': d}))" "$1"; }
rss_kb() { awk '$1 == "VmRSS:" {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

topo_up || { echo "FAIL setup: topology"; exit 1; }
make_big_file 4
for i in 0 1 2; do
    start_backend "$i" --udp "${IP_B[$i]}"
    PIDS+=("$BACKEND_PID")
done
wait_listening 80 "${NS_B[@]}"

xdp_dataplane_toml 65536 1 >"$WORK/dataplane.toml"
cat >"$WORK/controlplane.toml" <<TOML
listen = "$SOCK"
store_path = "$WORK/store.redb"
shm_path = "$SHM"
vip_ranges = ["10.91.100.16/28"]
[health_defaults]
interval_ms = 500
timeout_ms = 400
rise = 2
fall = 2
TOML
lb_start_or_exit "$WORK/lb.out" 10 --config "$WORK/dataplane.toml"
ip netns exec "$NS_L" "$D" --config "$WORK/controlplane.toml" >"$WORK/d.out" 2>&1 &
D_PID=$!
for _ in $(seq 1 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
[ -S "$SOCK" ] || { echo "FAIL start: fiberlbd"; show_log "$WORK/d.out" fiberlbd; exit 1; }

LB_ID=$(ctl -o json lb create --name soak | jget "d['load_balancer']['id']")
VIP=$(ctl -o json lb get "$LB_ID" | jget "d['load_balancer']['vip']")
HC=$(ctl -o json hc create --name web --kind http --http-path / | jget "d['health_check']['id']")
POOL=$(ctl -o json pool create --name web --health-check "$HC" | jget "d['pool']['id']")
UPOOL=$(ctl -o json pool create --name udp | jget "d['pool']['id']")
BE=()
for i in 0 1 2; do
    BE[$i]=$(ctl -o json backend create --pool "$POOL" --address "${IP_B[$i]}" --port 80 \
        --mac "${MAC_B[$i]}" | jget "d['backend']['id']")
    ctl -o json backend create --pool "$UPOOL" --address "${IP_B[$i]}" --port 5353 \
        --mac "${MAC_B[$i]}" >/dev/null
done
ctl -o json listener create --lb "$LB_ID" --port 80 --protocol tcp --mode nat --pool "$POOL" >/dev/null
ctl -o json listener create --lb "$LB_ID" --port 5353 --protocol udp --mode nat --pool "$UPOOL" >/dev/null
sleep 2 # applied, first health results
if [ "$(ip netns exec "$NS_C" curl -s --max-time 3 "http://$VIP/")" = "" ]; then
    fail "setup: no answer from http://$VIP/"
    show_log "$WORK/d.out" fiberlbd
    exit 1
fi
pass "setup: VIP $VIP, tcp/80 and udp/5353 nat listeners, 3 backends, http health checks"

END=$(($(date +%s) + SOAK_SECS))
# Short requests: "OK|FAILED time".
(
    while [ "$(date +%s)" -lt $END ]; do
        if ip netns exec "$NS_C" curl -s --max-time 3 -o /dev/null "http://$VIP/"; then r=OK; else r=FAILED; fi
        echo "$r $(date +%s%N)"
        sleep 0.02
    done
) >"$WORK/short.log" &
LOADS+=($!)
# UDP: batches of 20.
(
    while [ "$(date +%s)" -lt $END ]; do
        ip netns exec "$NS_C" "$PY" "$HERE/udp_client.py" "$VIP" 5353 20 | head -1
        sleep 0.2
    done
) >"$WORK/udp.log" &
LOADS+=($!)
# Long connections: 4 lanes of slow readers, each from its own client port.
for lane in 0 1 2 3; do
    (
        k=0
        while [ $(($(date +%s) + 10)) -lt $END ]; do
            port=$((44000 + lane * 1000 + k))
            ip netns exec "$NS_C" "$PY" "$HERE/slow_reader.py" --host "$VIP" \
                --local-port $port --slow-seconds 8 --interval 0.3 >"$WORK/long-$port.out" &
            reader=$!
            # Which backend holds it (the backends log a request only after its last byte).
            sleep 1
            on=none
            for i in 0 1 2; do
                ip netns exec "${NS_B[$i]}" ss -tnH state established "( dport = :$port )" |
                    grep -q . && on=b$((i + 1))
            done
            wait $reader
            echo "$port $on $(cat "$WORK/long-$port.out")"
            k=$((k + 1))
        done
    ) >"$WORK/long$lane.log" &
    LOADS+=($!)
done

# Changes.
sleep 10
RSS_DP0=$(rss_kb "$LB_PID") RSS_D0=$(rss_kb "$D_PID")
t=10 downs=0 blocked= changes=0
while [ "$(date +%s)" -lt $END ]; do
    sleep 1
    t=$((t + 1))
    if [ $((t % 3)) = 0 ]; then
        ctl backend update "${BE[0]}" --weight $((1 + (t / 3) % 2)) >/dev/null && changes=$((changes + 1))
    fi
    if [ $((t % 10)) = 0 ]; then
        if [ -z "$blocked" ]; then
            ip netns exec "${NS_B[2]}" iptables -A INPUT -s 10.91.2.1 -p tcp --dport 80 -j DROP
            blocked=1 downs=$((downs + 1))
        else
            ip netns exec "${NS_B[2]}" iptables -D INPUT -s 10.91.2.1 -p tcp --dport 80 -j DROP
            blocked=
        fi
    fi
done
RSS_DP1=$(rss_kb "$LB_PID") RSS_D1=$(rss_kb "$D_PID")
for p in "${LOADS[@]}"; do wait "$p" 2>/dev/null; done
LOADS=()
[ -n "$blocked" ] && ip netns exec "${NS_B[2]}" iptables -D INPUT -s 10.91.2.1 -p tcp --dport 80 -j DROP

# Long connections: "PORT BACKEND OK sha len" or "PORT BACKEND BROKEN reason".
long_total=0 long_lost=0 long_b3=0 long_b3_broken=0
while read -r port served status sha rest; do
    long_total=$((long_total + 1))
    ok=0
    [ "$status" = OK ] && [ "$sha" = "$BIG_SHA" ] && ok=1
    case $served in
    b3)
        long_b3=$((long_b3 + 1))
        [ $ok = 1 ] || long_b3_broken=$((long_b3_broken + 1))
        ;;
    *)
        if [ $ok = 0 ]; then
            long_lost=$((long_lost + 1))
            echo "  soak: lost long connection: port $port $status $sha $rest (served by: ${served:-none})"
        fi
        ;;
    esac
done < <(cat "$WORK"/long*.log)
short_total=$(wc -l <"$WORK/short.log")
short_failed=$(grep -c ^FAILED "$WORK/short.log")
udp_ok=$(awk -F'[ =]' '{for (i = 1; i < NF; i++) if ($i == "ok") s += $(i + 1)} END {print s + 0}' "$WORK/udp.log")
udp_fail=$(awk -F'[ =]' '{for (i = 1; i < NF; i++) if ($i == "fail") s += $(i + 1)} END {print s + 0}' "$WORK/udp.log")
result "soak-run seconds=$SOAK_SECS config_changes=$changes b3_down_events=$downs"
result "soak-long connections=$long_total lost_on_b1_b2=$long_lost on_b3=$long_b3 broken_on_b3=$long_b3_broken"
result "soak-short requests=$short_total failed=$short_failed udp_ok=$udp_ok udp_failed=$udp_fail"
if [ "$long_total" -ge 8 ] && [ "$long_lost" = 0 ]; then
    pass "soak-long: $long_total long connections, 0 lost on backends that stayed up ($long_b3_broken of $long_b3 on b3 moved when it was declared down)"
else
    fail "soak-long: $long_total long connections, $long_lost lost on b1/b2"
fi
if [ "$short_total" -ge 100 ] && [ "$short_failed" -le "$downs" ] && [ "$udp_fail" = 0 ] && [ "$udp_ok" -gt 0 ]; then
    pass "soak-short: $short_total short requests, $short_failed failed (<= $downs b3 down events), $udp_ok UDP requests, 0 failed"
else
    fail "soak-short: $short_total short requests, $short_failed failed (allowed $downs), UDP ok=$udp_ok failed=$udp_fail"
fi

# Memory.
result "soak-memory rss_kb dataplane=$RSS_DP0->$RSS_DP1 fiberlbd=$RSS_D0->$RSS_D1"
if [ $((RSS_DP1 - RSS_DP0)) -lt 4096 ] && [ $((RSS_D1 - RSS_D0)) -lt 16384 ] && [ "$RSS_DP1" -gt 0 ] && [ "$RSS_D1" -gt 0 ]; then
    pass "soak-memory: flat (data plane $((RSS_DP1 - RSS_DP0)) KiB, fiberlbd $((RSS_D1 - RSS_D0)) KiB over the run)"
else
    fail "soak-memory: data plane $RSS_DP0 -> $RSS_DP1 KiB, fiberlbd $RSS_D0 -> $RSS_D1 KiB"
fi

# Counters, once traffic stopped (the workers publish every ~100 ms).
sleep 1
ip netns exec "$NS_L" "$LB" stats --shm "$SHM" --json >"$WORK/stats.json" 2>&1
ctl -o json stats >"$WORK/ctl-stats.json" 2>&1
drift=$("$PY" - "$WORK/stats.json" "$WORK/ctl-stats.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
c = json.load(open(sys.argv[2]))
bad = []
for k in ("rx_packets", "tx_packets", "rx_bytes"):
    w = sum(x[k] for x in s["workers"])
    if w != s["totals"][k]:
        bad.append(f"workers' {k} {w} != totals {s['totals'][k]}")
if c.get("rx_packets") != s["totals"]["rx_packets"]:
    bad.append(f"fiberlbd rx_packets {c.get('rx_packets')} != data plane {s['totals']['rx_packets']}")
lp = sum(l.get("packets", 0) for l in c.get("listeners", []))
print("; ".join(bad) if bad else f"ok rx={s['totals']['rx_packets']} listener_packets={lp}")
PY
)
result "soak-counters $drift"
case $drift in
ok*) pass "soak-counters: per-worker sums = totals, fiberlbd = data plane ($drift)" ;;
*) fail "soak-counters: $drift" ;;
esac

e2e_finish
