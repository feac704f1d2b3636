#!/usr/bin/env bash
# fiberlb end to end over IPv6 with two workers: a real client (curl -6, a UDP program),
# fiberlb-dataplane on two 2-queue AF_XDP veths served by two workers (one queue each), three
# real IPv6 backends — nat, dsr and tunnel (IP6IP6, decapsulated by the backends' kernels), in
# network namespaces this script creates and always removes. Prints "PASS name ..." /
# "FAIL name ..." and "RESULT key=value" lines, exits non-zero if anything failed.
#
#   client ns ${P}c            lb ns ${P}l                     switch ${P}s    backends ${P}b1..3
#   [c0 fd91:1::2] ══ [l0 fd91:1::1] fiberlb [l1 fd91:2::1] ══ [s0]─br0─[s1..3] ── [e0 fd91:2::1N]
#        2 queues          2 queues, workers 0 and 1            2 queues
#
# VIPs: fd91:100::1 (nat), fd91:100::2 (dsr, on the backends' lo), fd91:100::3 (tunnel). dsr
# replies go back through the lb namespace's kernel forwarding (XDP_PASS). This machine's
# kernel has no ip6_tunnel, so the backends cannot decapsulate: the tunnel listener's IP6IP6
# packets are captured on the backend segment with tshark and their outer and inner headers
# checked instead.
#
#   FIBERLB_BIN_DIR  directory holding fiberlb-dataplane (default: target/release)
#
# Root only. Needs ip, ethtool, curl, python3, sha256sum, tshark.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN_DIR=${FIBERLB_BIN_DIR:-$ROOT/target/release}
LB=$BIN_DIR/fiberlb-dataplane
PY=$(command -v python3)
P=${FV6_PREFIX:-fv6$$}

if [ "$(id -u)" != 0 ]; then
    echo "SKIP e2e: needs root (network namespaces, XDP, AF_XDP)"
    exit 0
fi
for tool in ip ethtool curl sha256sum tshark; do
    command -v $tool >/dev/null || { echo "FAIL setup: $tool not installed"; exit 1; }
done
[ -x "$LB" ] || { echo "FAIL setup: $LB not built"; exit 1; }

NS_C=${P}c NS_L=${P}l NS_S=${P}s
NS_B=("${P}b1" "${P}b2" "${P}b3")
MAC_C0=02:e6:01:00:00:02 MAC_L0=02:e6:01:00:00:01 MAC_L1=02:e6:02:00:00:01
MAC_B=(02:e6:02:00:00:11 02:e6:02:00:00:12 02:e6:02:00:00:13)
IP_B=(fd91:2::11 fd91:2::12 fd91:2::13)
VIP_NAT=fd91:100::1 VIP_DSR=fd91:100::2 VIP_TUN=fd91:100::3
WORK=$(mktemp -d /tmp/${P}.XXXX)
SHM=/dev/shm/${P}.region
PIDS=()
LB_PID=
FAILS=0

cleanup() {
    local p ns
    if [ -n "$LB_PID" ]; then kill -TERM "$LB_PID" 2>/dev/null; fi
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}" $LB_PID; do wait "$p" 2>/dev/null; done
    for ns in "$NS_C" "$NS_L" "$NS_S" "${NS_B[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$WORK" "$SHM" "$SHM.slots.json"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }

topo_up() {
    local ns i q="numtxqueues 2 numrxqueues 2"
    for ns in "$NS_C" "$NS_L" "$NS_S" "${NS_B[@]}"; do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
    done
    # shellcheck disable=SC2086
    ip -n "$NS_L" link add l0 address $MAC_L0 $q type veth peer name c0 address $MAC_C0 $q netns "$NS_C"
    # shellcheck disable=SC2086
    ip -n "$NS_L" link add l1 address $MAC_L1 $q type veth peer name s0 $q netns "$NS_S"
    ip -n "$NS_S" link add br0 type bridge
    ip -n "$NS_S" link set s0 master br0
    for i in 0 1 2; do
        ip -n "$NS_S" link add "s$((i + 1))" type veth peer name e0 address "${MAC_B[$i]}" netns "${NS_B[$i]}"
        ip -n "$NS_S" link set "s$((i + 1))" master br0
        ip -n "$NS_S" link set "s$((i + 1))" up
    done
    ip -n "$NS_S" link set s0 up
    ip -n "$NS_S" link set br0 up

    ip -n "$NS_C" addr add fd91:1::2/64 dev c0 nodad
    ip -n "$NS_C" link set c0 up
    ip -n "$NS_C" route add fd91:100::/64 via fd91:1::1
    ip -n "$NS_C" neigh replace fd91:1::1 lladdr $MAC_L0 dev c0 nud permanent

    ip -n "$NS_L" addr add fd91:1::1/64 dev l0 nodad
    ip -n "$NS_L" addr add fd91:2::1/64 dev l1 nodad
    ip -n "$NS_L" link set l0 up
    ip -n "$NS_L" link set l1 up
    ip netns exec "$NS_L" sysctl -qw net.ipv6.conf.all.forwarding=1
    ip -n "$NS_L" neigh replace fd91:1::2 lladdr $MAC_C0 dev l0 nud permanent

    for i in 0 1 2; do
        ns=${NS_B[$i]}
        ip -n "$ns" addr add "${IP_B[$i]}/64" dev e0 nodad
        ip -n "$ns" addr add "$VIP_DSR/128" dev lo
        ip -n "$ns" link set e0 up
        ip -n "$ns" route add default via fd91:2::1
        ip -n "$ns" neigh replace fd91:2::1 lladdr $MAC_L1 dev e0 nud permanent
        ip -n "$NS_L" neigh replace "${IP_B[$i]}" lladdr "${MAC_B[$i]}" dev l1 nud permanent
        # veth leaves L4 checksums to offload (CHECKSUM_PARTIAL); AF_XDP copies raw bytes.
        ip netns exec "$ns" ethtool -K e0 tx off >/dev/null
    done
    ip netns exec "$NS_C" ethtool -K c0 tx off >/dev/null
}
topo_up || { echo "FAIL setup: topology"; exit 1; }

head -c $((8 * 1024 * 1024)) /dev/urandom >"$WORK/big.bin"
BIG_SHA=$(sha256sum <"$WORK/big.bin" | cut -d' ' -f1)
for i in 0 1 2; do
    d=$WORK/b$((i + 1))
    mkdir -p "$d"
    ln "$WORK/big.bin" "$d/big.bin"
    ip netns exec "${NS_B[$i]}" "$PY" "$HERE/backend.py" --name "b$((i + 1))" --dir "$d" \
        --log "$d/log" --bind "::" --udp "${IP_B[$i]}" --udp "$VIP_DSR" >"$d/out" 2>&1 &
    PIDS+=($!)
done

{
    echo "tunnel: {source_v6: \"fd91:2::1\"}"
    echo "loadbalancers:"
    echo "  - {name: nat6, vip: \"$VIP_NAT\", listeners: [{port: 80, protocol: tcp, mode: nat, pool: nat-http}, {port: 5353, protocol: udp, mode: nat, pool: nat-udp}]}"
    echo "  - {name: dsr6, vip: \"$VIP_DSR\", listeners: [{port: 80, protocol: tcp, mode: dsr, pool: dsr-http}]}"
    echo "  - {name: tun6, vip: \"$VIP_TUN\", listeners: [{port: 80, protocol: tcp, mode: tunnel, pool: tun-http}]}"
    echo "pools:"
    for pool in nat-http:80 nat-udp:5353 dsr-http:80 tun-http:80; do
        echo "  - name: ${pool%%:*}"
        echo "    backends:"
        for i in 0 1 2; do
            echo "      - {address: \"${IP_B[$i]}\", port: ${pool##*:}, mac: \"${MAC_B[$i]}\"}"
        done
    done
} >"$WORK/services.yaml"

cat >"$WORK/dataplane.toml" <<TOML
[forwarding]
flow_capacity = 65536
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
cores = [0, 1]
idle_backoff = true
[shm]
path = "$SHM"
[umem]
frames = 4096
chunk_size = 2048
TOML

ip netns exec "$NS_L" "$LB" run --config "$WORK/dataplane.toml" --services "$WORK/services.yaml" \
    >"$WORK/lb.out" 2>&1 &
LB_PID=$!
up=
for _ in $(seq 1 100); do
    if grep -q "forwarding on" "$WORK/lb.out"; then up=1; break; fi
    kill -0 "$LB_PID" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$up" ]; then
    echo "FAIL start: fiberlb-dataplane did not start:"; sed 's/^/  lb: /' "$WORK/lb.out"
    exit 1
fi
if grep -q "with 2 worker(s)" "$WORK/lb.out"; then pass "start: 2 workers"; else fail "start: $(grep 'forwarding on' "$WORK/lb.out")"; fi
for _ in $(seq 1 50); do
    n=0
    for i in 0 1 2; do ip netns exec "${NS_B[$i]}" ss -ltn | grep -q ':80 ' && n=$((n + 1)); done
    [ $n = 3 ] && break
    sleep 0.1
done

http_spread() { # name vip first-local-port n
    local name=$1 vip=$2 base=$3 n=$4 out ok counts bad= c v
    out=$WORK/$name.curl
    ip netns exec "$NS_C" bash -c "for i in \$(seq 0 $((n - 1))); do
        curl -6 -s --max-time 5 --local-port \$(($base + i)) http://[$vip]/ || echo FAILED; done" >"$out" 2>"$out.err"
    ok=$(grep -cx 'b[123]' "$out")
    counts="b1=$(grep -cx b1 "$out") b2=$(grep -cx b2 "$out") b3=$(grep -cx b3 "$out")"
    echo "RESULT $name requests=$n ok=$ok $counts"
    [ "$ok" = "$n" ] || bad="only $ok/$n succeeded"
    for c in $counts; do
        v=${c#*=}
        if [ "$v" -lt $((n * 18 / 100)) ] || [ "$v" -gt $((n * 50 / 100)) ]; then
            bad="$bad ${c%%=*} got $v (outside 18%-50%)"
        fi
    done
    if [ -z "$bad" ]; then pass "$name $ok/$n $counts"; else fail "$name:$bad"; fi
}

http_spread nat6-http "$VIP_NAT" 42000 150
http_spread dsr6-http "$VIP_DSR" 43000 150
# tunnel: 12 connection attempts (SYNs) from fixed ports, captured on the backend bridge.
ip netns exec "$NS_S" tshark -q -n -i br0 -f "ip6 proto 41" -a duration:8 -w "$WORK/tun.pcap" 2>"$WORK/tshark.err" &
TSHARK=$!
for _ in $(seq 1 50); do grep -q "Capturing on" "$WORK/tshark.err" && break; sleep 0.1; done
sleep 1 # (tshark says "Capturing" just before its capture starts)
ip netns exec "$NS_C" bash -c "for i in \$(seq 0 11); do
    curl -6 -s --max-time 0.3 --local-port \$((44000 + i)) http://[$VIP_TUN]/ >/dev/null; done"
wait $TSHARK
tshark -n -r "$WORK/tun.pcap" -T fields -E separator=' ' -e ipv6.src -e ipv6.dst -e tcp.dstport -e tcp.srcport \
    -Y "tcp.flags.syn == 1" 2>/dev/null | tr ',' ' ' | sort -u >"$WORK/tun.txt"
# Each line: outer-src inner-src outer-dst inner-dst dport sport (one per connection attempt)
bad=$(awk -v vip="$VIP_TUN" '!($1 == "fd91:2::1" && $2 == "fd91:1::2" && $4 == vip && $5 == 80 &&
    ($3 == "fd91:2::11" || $3 == "fd91:2::12" || $3 == "fd91:2::13"))' "$WORK/tun.txt" | head -3)
ports=$(awk '{print $6}' "$WORK/tun.txt" | sort -u | wc -l)
dsts=$(awk '{print $3}' "$WORK/tun.txt" | sort -u | wc -l)
echo "RESULT tun6 ip6ip6_connections=$ports backends=$dsts"
if [ -z "$bad" ] && [ "$ports" -ge 12 ] && [ "$dsts" -ge 2 ]; then
    pass "tun6 IP6IP6: $ports connections, outer fd91:2::1 -> $dsts backends, inner client -> $VIP_TUN:80"
else
    fail "tun6: $ports connections to $dsts backends; unexpected: $bad $(head -3 "$WORK/tun.txt")"
fi

sha=$(ip netns exec "$NS_C" curl -6 -s --max-time 60 "http://[$VIP_NAT]/big" | sha256sum | cut -d' ' -f1)
if [ "$sha" = "$BIG_SHA" ]; then pass "nat6-download 8 MiB sha256 matches"; else fail "nat6-download sha256 $sha != $BIG_SHA"; fi

r=$(ip netns exec "$NS_C" "$PY" "$HERE/udp_client.py" "$VIP_NAT" 5353 60)
echo "RESULT nat6-udp $r"
if echo "$r" | grep -q "ok=60 fail=0" && [ "$(echo "$r" | grep -o 'b[123]=' | wc -l)" -ge 2 ]; then
    pass "nat6-udp $r"
else
    fail "nat6-udp $r"
fi

# The backends saw the client's own address (nat keeps it; dsr and tunnel never touch it).
if grep -qh "^tcp fd91:1::2 " "$WORK"/b[123]/log && ! grep -qvh "^\(tcp\|udp\) fd91:1::2 " "$WORK"/b[123]/log; then
    pass "client-address preserved at the backends"
else
    fail "client-address: $(grep -vh 'fd91:1::2' "$WORK"/b[123]/log | head -3)"
fi

kill -TERM "$LB_PID"
wait "$LB_PID"; rc=$?
LB_PID=
sed 's/^/  lb: /' "$WORK/lb.out"
[ $rc = 0 ] && pass "stop exit=0" || fail "stop exit=$rc"
# Both workers forwarded traffic: flows spread over both queues of each veth.
for w in 0 1; do
    got=$(sed -n "s/.*worker $w: \([0-9]*\) received, \([0-9]*\) forwarded.*/\2/p" "$WORK/lb.out" | head -1)
    echo "RESULT worker$w forwarded=${got:-none}"
    if [ -n "$got" ] && [ "$got" -gt 100 ]; then pass "worker $w forwarded $got"; else fail "worker $w forwarded ${got:-nothing}"; fi
done

echo "RESULT fails=$FAILS"
[ $FAILS = 0 ]
