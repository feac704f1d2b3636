#!/usr/bin/env bash
# The lb host's own traffic is not fiberlb's: with fiberlb-dataplane (AF_XDP) forwarding a nat
# VIP to three real backends (B:80 tcp, B:5353 udp), the lb namespace's kernel must still talk
# to those same backend address:ports itself (health checks), answer ARP and ping, and accept
# TCP on its own addresses (SSH, BGP) — while clients keep reaching the VIP. A reply from a nat
# backend to one of the host's addresses must not be taken for a nat return flow. Addresses
# added to the interface after the start must be recognised within a few seconds (the data
# plane re-reads them about once a second). Network namespaces are created by this script and
# always removed (topology.sh). Prints "PASS name ..." / "FAIL name ..." and "RESULT ..."
# lines; exits non-zero if anything failed.
#
#   FIBERLB_BIN_DIR  directory holding fiberlb-dataplane (default: target/release)
#   FHT_PREFIX       the network namespaces' name prefix, unique per run (default: fht<pid>)
#   FE2E_CORE        the worker's core (default 1)
#
# Root only. Needs ip, ethtool, curl, python3, ping.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
P=${FHT_PREFIX:-fht$$}
# shellcheck source=topology.sh
. "$HERE/topology.sh"
# shellcheck source=lib.sh
. "$HERE/lib.sh"

e2e_need_root e2e "network namespaces, XDP, AF_XDP"
e2e_need_tools ip ethtool curl ping
e2e_need_bin "$LB"
e2e_init
LATE_ADDR=10.91.2.2 # added to l1 after the data plane started

topo_up || { echo "FAIL setup: topology"; exit 1; }
# The nat VIP is one of the host's own addresses too (on lo): its listeners must still win.
ip -n "$NS_L" addr add "$VIP_NAT/32" dev lo

start_backends
# A TCP service of the lb host itself (stands for SSH/BGP) on all its addresses.
mkdir -p "$WORK/host"
echo host >"$WORK/host/index.html"
ip netns exec "$NS_L" "$PY" -m http.server 2222 --bind 0.0.0.0 --directory "$WORK/host" \
    >"$WORK/host.out" 2>&1 &
PIDS+=($!)

cat >"$WORK/services.yaml" <<YAML
loadbalancers:
  - {name: natlb, vip: $VIP_NAT, listeners: [{port: 80, protocol: tcp, mode: nat, pool: http}, {port: 5353, protocol: udp, mode: nat, pool: udp}]}
pools:
  - name: http
    backends:
      - {address: ${IP_B[0]}, port: 80, mac: "${MAC_B[0]}"}
      - {address: ${IP_B[1]}, port: 80, mac: "${MAC_B[1]}"}
      - {address: ${IP_B[2]}, port: 80, mac: "${MAC_B[2]}"}
  - name: udp
    backends:
      - {address: ${IP_B[0]}, port: 5353, mac: "${MAC_B[0]}"}
      - {address: ${IP_B[1]}, port: 5353, mac: "${MAC_B[1]}"}
      - {address: ${IP_B[2]}, port: 5353, mac: "${MAC_B[2]}"}
YAML
xdp_dataplane_toml 4096 "${FE2E_CORE:-1}" >"$WORK/dataplane.toml"

lb_start_or_exit "$WORK/lb.out" 10 --config "$WORK/dataplane.toml" --services "$WORK/services.yaml"
wait_listening 80 "${NS_B[@]}"
wait_listening 2222 "$NS_L"
pass "start: nat listeners $VIP_NAT:80/tcp and :5353/udp on b1..b3"

vip_requests() { # name n -> PASS/FAIL line; every request must be answered by a backend
    local name=$1 n=$2 out=$WORK/$1.curl ok
    ip netns exec "$NS_C" bash -c "for i in \$(seq 1 $n); do curl -s --max-time 2 http://$VIP_NAT/ || echo FAILED; done" >"$out" 2>&1
    ok=$(grep -cx 'b[123]' "$out")
    echo "RESULT $name requests=$n ok=$ok"
    if [ "$ok" = "$n" ]; then pass "$name: $ok/$n client requests through the VIP"; else fail "$name: $ok/$n"; fi
}

# 1. The lb host to a nat backend's address:port, directly (what fiberlbd's health checks do).
ok=0
for i in 0 1 2; do
    got=$(ip netns exec "$NS_L" curl -s --max-time 3 "http://${IP_B[$i]}/")
    echo "RESULT host-backend-tcp backend=b$((i + 1)) got=${got:-nothing}"
    [ "$got" = "b$((i + 1))" ] && ok=$((ok + 1))
done
if [ $ok = 3 ]; then pass "host-backend-tcp: curl from the lb namespace to B:80 reached b1, b2, b3"; else fail "host-backend-tcp: $ok/3 answered"; fi

r=$(ip netns exec "$NS_L" "$PY" "$HERE/udp_client.py" "${IP_B[0]}" 5353 5)
echo "RESULT host-backend-udp $r"
if echo "$r" | grep -q "ok=5 fail=0"; then pass "host-backend-udp: 5/5 UDP answers from b1:5353 reached the lb host"; else fail "host-backend-udp: $r"; fi

# 2. Clients still reach the VIP.
vip_requests vip-nat 30
r=$(ip netns exec "$NS_C" "$PY" "$HERE/udp_client.py" "$VIP_NAT" 5353 20)
echo "RESULT vip-nat-udp $r"
if echo "$r" | grep -q "ok=20 fail=0"; then pass "vip-nat-udp: $r"; else fail "vip-nat-udp: $r"; fi

# 3. ICMP echo both ways between the lb host and a backend.
if ip netns exec "$NS_L" ping -c 2 -i 0.2 -W 2 "${IP_B[0]}" >/dev/null &&
    ip netns exec "${NS_B[0]}" ping -c 2 -i 0.2 -W 2 10.91.2.1 >/dev/null; then
    pass "ping: lb host <-> b1 both ways"
else
    fail "ping: lb host <-> b1"
fi

# 4. ARP: b1 forgets the lb's MAC and must resolve it again (request and reply through l1).
ip -n "${NS_B[0]}" neigh del 10.91.2.1 dev e0
if ip netns exec "${NS_B[0]}" ping -c 1 -W 2 10.91.2.1 >/dev/null &&
    ip -n "${NS_B[0]}" neigh show 10.91.2.1 dev e0 | grep -qi "$MAC_L1"; then
    pass "arp: b1 resolved 10.91.2.1 to $MAC_L1 again"
else
    fail "arp: b1 neighbour entry: $(ip -n "${NS_B[0]}" neigh show 10.91.2.1 dev e0)"
fi
ip -n "${NS_B[0]}" neigh replace 10.91.2.1 lladdr "$MAC_L1" dev e0 nud permanent

# 5. TCP to the lb host's own address on another port (SSH, BGP), from a backend and from the
# client side.
got_b=$(ip netns exec "${NS_B[0]}" curl -s --max-time 3 http://10.91.2.1:2222/)
got_c=$(ip netns exec "$NS_C" curl -s --max-time 3 http://10.91.1.1:2222/)
echo "RESULT host-service from_b1=${got_b:-nothing} from_client=${got_c:-nothing}"
if [ "$got_b" = host ] && [ "$got_c" = host ]; then
    pass "host-service: b1 and the client reached the lb host's own TCP port 2222"
else
    fail "host-service: from b1 '$got_b', from the client '$got_c'"
fi
got_v=$(ip netns exec "$NS_C" curl -s --max-time 3 "http://$VIP_NAT:2222/")
echo "RESULT vip-other-port from_client=${got_v:-nothing}"
if [ "$got_v" = host ]; then pass "vip-other-port: $VIP_NAT:2222 (no listener, a local address) reached the host"; else fail "vip-other-port: got '$got_v'"; fi

# 6. An address added after the start: within a few seconds the host can use it as the source
# of its connections to the backends; removing it is noticed as well.
ip -n "$NS_L" addr add "$LATE_ADDR/24" dev l1
late=
for _ in $(seq 1 30); do
    got=$(ip netns exec "$NS_L" curl -s --max-time 1 --interface "$LATE_ADDR" "http://${IP_B[1]}/")
    if [ "$got" = b2 ]; then late=1; break; fi
    sleep 0.2
done
added_logged=$(grep -c "local address.*$LATE_ADDR.*added\|added.*$LATE_ADDR" "$WORK/lb.out")
echo "RESULT late-address reached=${late:-no} added_logged=$added_logged"
if [ -n "$late" ] && [ "$added_logged" -ge 1 ]; then
    pass "late-address: $LATE_ADDR added after the start was picked up (logged)"
else
    fail "late-address: reached=${late:-no}, log lines $added_logged"
fi
ip -n "$NS_L" addr del "$LATE_ADDR/24" dev l1
removed=
for _ in $(seq 1 30); do
    if grep -q "removed.*$LATE_ADDR\|$LATE_ADDR.*removed" "$WORK/lb.out"; then removed=1; break; fi
    sleep 0.2
done
if [ -n "$removed" ]; then pass "late-address-removed: logged"; else fail "late-address-removed: not logged"; fi

# 7. And the VIP once more, after all of that.
vip_requests vip-nat-after 30

lb_stop "$WORK/lb.out"
if [ $LB_RC = 0 ]; then pass "stop exit=0"; else fail "stop exit=$LB_RC"; fi

e2e_finish
