#!/usr/bin/env bash
# fiberlb data plane end to end: a real client (curl, a UDP program), fiberlb-dataplane on two
# AF_XDP veths, three real backends — in network namespaces this script creates and always
# removes. Prints "PASS name ..." / "FAIL name ..." lines and "RESULT key=value" lines, and exits
# non-zero if anything failed.
#
#   FIBERLB_BIN_DIR  directory holding fiberlb-dataplane (default: target/release)

#
# Root only. Needs ip, ethtool, curl, python3, sha256sum.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN_DIR=${FIBERLB_BIN_DIR:-$ROOT/target/release}
LB=$BIN_DIR/fiberlb-dataplane

PY=$(command -v python3)
P=${FE2E_PREFIX:-fe2e$$}
# shellcheck source=topology.sh
. "$HERE/topology.sh"

if [ "$(id -u)" != 0 ]; then
    echo "SKIP e2e: needs root (network namespaces, XDP, AF_XDP)"
    exit 0
fi
for tool in ip ethtool curl sha256sum; do
    command -v $tool >/dev/null || { echo "FAIL setup: $tool not installed"; exit 1; }
done
[ -x "$LB" ] || { echo "FAIL setup: $LB not built"; exit 1; }

WORK=$(mktemp -d /tmp/${P}.XXXX)
SHM=/dev/shm/${P}.region
PIDS=()
LB_PID=
FAILS=0

cleanup() {
    local p
    if [ -n "$LB_PID" ]; then kill -TERM "$LB_PID" 2>/dev/null; fi
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}" $LB_PID; do wait "$p" 2>/dev/null; done
    topo_down
    rm -rf "$WORK" "$SHM" "$SHM.slots.json"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }

topo_up || { echo "FAIL setup: topology"; exit 1; }

# Backends: the same 20 MB file everywhere, so a download is checkable whoever serves it.
head -c $((20 * 1024 * 1024)) /dev/urandom >"$WORK/big.bin"
BIG_SHA=$(sha256sum <"$WORK/big.bin" | cut -d' ' -f1)
for i in 0 1 2; do
    d=$WORK/b$((i + 1))
    mkdir -p "$d"
    ln "$WORK/big.bin" "$d/big.bin"
    ip netns exec "${NS_B[$i]}" "$PY" "$HERE/backend.py" --name "b$((i + 1))" --dir "$d" \
        --log "$d/log" --udp "${IP_B[$i]}" --udp "$VIP_DSR" >"$d/out" 2>&1 &
    PIDS+=($!)
done

services() { # services file; "without-b3" leaves b3 out of the nat-http pool
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
services all >"$WORK/services.yaml"
services without-b3 >"$WORK/services-2.yaml"

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
cores = [${FE2E_CORE:-1}]
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
n_xdp=$(ip -n "$NS_L" -o link show | grep -c ' xdp')
if [ "$n_xdp" = 2 ]; then pass "start: XDP on l0 and l1"; else fail "start: $n_xdp XDP programs attached, want 2"; fi
# Backends listening?
for _ in $(seq 1 50); do
    n=0
    for i in 0 1 2; do ip netns exec "${NS_B[$i]}" ss -ltn | grep -q ':80 ' && n=$((n + 1)); done
    [ $n = 3 ] && break
    sleep 0.1
done

# A second instance on the same region is refused before touching anything.
if ip netns exec "$NS_L" "$LB" run --config "$WORK/dataplane.toml" >"$WORK/second.out" 2>&1; then
    fail "second-instance: a second data plane started on the same region"
elif grep -q "already owns" "$WORK/second.out"; then
    pass "second-instance refused: $(head -c 160 "$WORK/second.out")"
else
    fail "second-instance: unexpected error: $(cat "$WORK/second.out")"
fi

count_backends() { # file of curl output lines -> "b1=N b2=N b3=N"
    local f=$1
    echo "b1=$(grep -cx b1 "$f") b2=$(grep -cx b2 "$f") b3=$(grep -cx b3 "$f")"
}

http_spread() { # name vip first-local-port
    local name=$1 vip=$2 base=$3 n=300 out ok
    out=$WORK/$name.curl
    for l in "$WORK"/b[123]/log; do : >"$l"; done # (the servers append)
    # A new connection per request, each from its own client port (fixed, so that no port is
    # reused and every request is a new flow).
    ip netns exec "$NS_C" bash -c "for i in \$(seq 0 $((n - 1))); do
        curl -s --max-time 5 --local-port \$(($base + i)) http://$vip/ || echo FAILED; done" >"$out" 2>"$out.err"
    ok=$(grep -cx 'b[123]' "$out")
    local counts; counts=$(count_backends "$out")
    echo "RESULT $name requests=$n ok=$ok $counts"
    local bad=
    [ "$ok" = $n ] || bad="only $ok/$n succeeded"
    for c in $counts; do
        v=${c#*=}
        if [ "$v" -lt $((n * 20 / 100)) ] || [ "$v" -gt $((n * 47 / 100)) ]; then
            bad="$bad ${c%%=*} got $v (outside 20%-47%)"
        fi
    done
    # distinct client source ports, as the backends saw them
    local ports; ports=$(cat "$WORK"/b[123]/log | awk '$1 == "tcp" {print $3}' | sort -u | wc -l)
    echo "RESULT $name distinct_source_ports=$ports"
    [ "$ports" = $n ] || bad="$bad only $ports distinct source ports"
    if [ -z "$bad" ]; then pass "$name $ok/$n $counts"; else fail "$name:$bad"; fi
}

download() { # name vip
    local name=$1 vip=$2 sha t0 t1
    t0=$(date +%s.%N)
    sha=$(ip netns exec "$NS_C" curl -s --max-time 60 "http://$vip/big" | sha256sum | cut -d' ' -f1)
    t1=$(date +%s.%N)
    echo "RESULT $name bytes=$((20 * 1024 * 1024)) seconds=$(echo "$t1 - $t0" | bc -l | cut -c1-6)"
    if [ "$sha" = "$BIG_SHA" ]; then pass "$name sha256 matches"; else fail "$name sha256 $sha != $BIG_SHA"; fi
}

udp_check() { # name vip
    local name=$1 vip=$2 r
    r=$(ip netns exec "$NS_C" "$PY" "$HERE/udp_client.py" "$vip" 5353 60)
    echo "RESULT $name $r"
    local nb; nb=$(echo "$r" | grep -o 'b[123]=' | wc -l)
    if echo "$r" | grep -q "ok=60 fail=0" && [ "$nb" -ge 2 ]; then pass "$name $r"; else fail "$name $r"; fi
}

http_spread nat-http "$VIP_NAT" 42000
http_spread dsr-http "$VIP_DSR" 43000
download nat-download "$VIP_NAT"
download dsr-download "$VIP_DSR"
udp_check nat-udp "$VIP_NAT"
udp_check dsr-udp "$VIP_DSR"

# Non-VIP traffic still reaches the lb's kernel (XDP_PASS).
if ip netns exec "$NS_C" ping -c 1 -W 2 10.91.1.1 >/dev/null; then pass "ping-lb kernel answers"; else fail "ping-lb"; fi

# --- reconfiguration during a steady stream ---
. "$HERE/reconfig.sh"

# Stop: SIGTERM, then the programs are detached and the region released.
kill -TERM "$LB_PID"
wait "$LB_PID"; rc=$?
LB_PID=
sed 's/^/  lb: /' "$WORK/lb.out"
if [ $rc = 0 ] && ! ip -n "$NS_L" -o link show | grep -q ' xdp'; then
    pass "stop exit=0, XDP detached"
else
    fail "stop exit=$rc, $(ip -n "$NS_L" link show | grep -c xdp) programs still attached"
fi

echo "RESULT fails=$FAILS"
[ $FAILS = 0 ]
