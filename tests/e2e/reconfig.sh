# shellcheck shell=bash
# Sourced by dataplane.sh and dpdk.sh: change the backend set while requests keep flowing.
#
# A rate-limited 20 MB download through the nat VIP runs on a backend that stays (b1 or b2);
# meanwhile a steady stream of new HTTP requests (one connection each, each from its own client
# port) runs. `fiberlb-dataplane apply` removes b3 from the pool through the shared-memory
# protocol, then adds it back. Checks: both transactions are applied; the download stays on its
# backend and is byte-exact; every request that reached b1 or b2 succeeded (no request lost to
# a backend that stayed); b3 gets new requests again after it is back.

apply_services() { # file -> prints the tool's answer
    ip netns exec "$NS_L" "$LB" apply --shm "$SHM" --services "$1" 2>&1
}

# 1. The long download, on b1 or b2 (retried until it lands there: b3 is the one removed).
dl_backend=
for _ in 1 2 3 4 5 6; do
    # From a port below the stream's 41000+: an ephemeral port could be one the stream
    # binds later (its curl then fails to connect, and the download's log line on b1/b2
    # would make that look like a request lost on a staying backend).
    ip netns exec "$NS_C" curl -s --max-time 30 --limit-rate 4M --local-port 40000-40999 \
        "http://$VIP_NAT/big" -o "$WORK/stream-big.bin" &
    DL_PID=$!
    sleep 0.4
    dl_backend=
    for i in 0 1 2; do
        if ip netns exec "${NS_B[$i]}" ss -tnH state established '( sport = :80 )' | grep -q .; then
            dl_backend=b$((i + 1))
        fi
    done
    [ "$dl_backend" = b1 ] || [ "$dl_backend" = b2 ] && break
    kill "$DL_PID" 2>/dev/null; wait "$DL_PID" 2>/dev/null
    dl_backend=
done
echo "RESULT reconfig download_backend=${dl_backend:-none}"

# 2. The stream: sequential requests, each from its own local port.
for l in "$WORK"/b[123]/log; do : >"$l"; done
(
    port=41000
    end=$(($(date +%s%N) + 4500000000))
    while [ "$(date +%s%N)" -lt $end ]; do
        body=$(ip netns exec "$NS_C" curl -s --max-time 3 --local-port $port "http://$VIP_NAT/" 2>/dev/null)
        echo "$port ${body:-FAILED} $(date +%s%N)"
        port=$((port + 1))
    done
) >"$WORK/stream.out" &
STREAM_PID=$!

sleep 1.2
t_remove=$(date +%s%N)
r1=$(apply_services "$WORK/services-2.yaml")
sleep 1.5
t_add=$(date +%s%N)
r2=$(apply_services "$WORK/services.yaml")
wait "$STREAM_PID"
wait "$DL_PID"; dl_rc=$?
echo "RESULT reconfig remove: $r1"
echo "RESULT reconfig add: $r2"

total=$(wc -l <"$WORK/stream.out")
failed=$(awk '$2 == "FAILED"' "$WORK/stream.out" | wc -l)
# Requests b1/b2 saw (by client port) that the client did not get an answer for.
lost=0
for p in $(awk '$2 == "FAILED" {print $1}' "$WORK/stream.out"); do
    if awk -v p="$p" '$1 == "tcp" && $3 == p && $4 == "/"' "$WORK/b1/log" "$WORK/b2/log" | grep -q .; then
        lost=$((lost + 1))
    fi
done
# b3 answers while it was out of the pool (allowing 100 ms for the last in-flight request).
b3_during=$(awk -v a=$((t_remove + 100000000)) -v b="$t_add" '$2 == "b3" && $3 > a && $3 < b' "$WORK/stream.out" | wc -l)
b3_after=$(awk -v b="$t_add" '$2 == "b3" && $3 > b' "$WORK/stream.out" | wc -l)
counts=$(awk '{print $2}' "$WORK/stream.out" | sort | uniq -c | awk '{printf "%s=%s ", $2, $1}')
dl_sha=$(sha256sum <"$WORK/stream-big.bin" | cut -d' ' -f1)
echo "RESULT reconfig stream requests=$total failed=$failed lost_on_staying_backends=$lost b3_while_removed=$b3_during b3_after_readd=$b3_after $counts"

bad=
echo "$r1" | grep -q "^applied generation" || bad="$bad remove not applied ($r1)"
echo "$r2" | grep -q "^applied generation" || bad="$bad re-add not applied ($r2)"
[ -n "$dl_backend" ] || bad="$bad download did not land on b1/b2"
[ "$dl_rc" = 0 ] && [ "$dl_sha" = "$BIG_SHA" ] || bad="$bad download across both updates broken (curl $dl_rc)"
if [ "$lost" != 0 ]; then
    bad="$bad $lost requests lost on backends that stayed"
    # What happened to them: the client's line (port, answer, time) and the backends' view.
    echo "  reconfig: remove at $t_remove, add at $t_add (ns)"
    for p in $(awk '$2 == "FAILED" {print $1}' "$WORK/stream.out"); do
        echo "  reconfig: client: $(grep "^$p " "$WORK/stream.out")"
        grep -H " $p " "$WORK"/b[123]/log | sed 's/^/  reconfig: backend /'
    done
fi
[ "$failed" -le 1 ] || bad="$bad $failed requests failed (at most the one in flight to b3)"
[ "$b3_during" = 0 ] || bad="$bad b3 answered $b3_during requests while removed"
[ "$b3_after" -gt 0 ] || bad="$bad b3 got nothing after being added back"
[ "$total" -ge 100 ] || bad="$bad stream too slow ($total requests)"
if [ -z "$bad" ]; then
    pass "reconfig $total requests, $failed failed, 0 lost; download on $dl_backend byte-exact across two updates"
else
    fail "reconfig:$bad"
fi

# Counters in shared memory (published by the workers every ~100 ms).
sleep 0.3
ip netns exec "$NS_L" "$LB" stats --shm "$SHM" >"$WORK/stats.txt" 2>&1
ip netns exec "$NS_L" "$LB" stats --shm "$SHM" --json >"$WORK/stats.json" 2>&1
show_log "$WORK/stats.txt" stats
rx=$(stats_workers "$WORK/stats.json" rx_packets)
echo "RESULT stats rx_packets=$rx"
if [ "$rx" -gt 1000 ]; then pass "stats: the workers counted $rx received packets (shared memory)"; else fail "stats: $(head -c 300 "$WORK/stats.json")"; fi
