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
#   FV6_PREFIX       the network namespaces' name prefix, unique per run (default: fv6<pid>)
#
# Root only. Needs ip, ethtool, curl, python3, sha256sum, tshark.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
P=${FV6_PREFIX:-fv6$$}
# shellcheck source=lib.sh
. "$HERE/lib.sh"

e2e_need_root e2e "network namespaces, XDP, AF_XDP"
e2e_need_tools ip ethtool curl sha256sum tshark
e2e_need_bin "$LB"

NS_C=${P}c NS_L=${P}l NS_S=${P}s
NS_B=("${P}b1" "${P}b2" "${P}b3")
MAC_C0=02:e6:01:00:00:02 MAC_L0=02:e6:01:00:00:01 MAC_L1=02:e6:02:00:00:01
MAC_B=(02:e6:02:00:00:11 02:e6:02:00:00:12 02:e6:02:00:00:13)
IP_B=(fd91:2::11 fd91:2::12 fd91:2::13)
VIP_NAT=fd91:100::1 VIP_DSR=fd91:100::2 VIP_TUN=fd91:100::3
e2e_init

topo_down() {
    local ns
    for ns in "$NS_C" "$NS_L" "$NS_S" "${NS_B[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
}

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
    # Tests pick client ports in 40000-49999 (--local-port) to tell connections apart; keep the
    # kernel's ephemeral ports (curl, udp_client.py) out of that range so the two never collide.
    ip netns exec "$NS_C" sysctl -qw net.ipv4.ip_local_port_range="50000 60999"
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

make_big_file 8
start_backends --bind "::" --udp "$VIP_DSR"

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

xdp_dataplane_toml 65536 "0, 1" >"$WORK/dataplane.toml"

lb_start_or_exit "$WORK/lb.out" 10 --config "$WORK/dataplane.toml" --services "$WORK/services.yaml"
if grep -q "with 2 worker(s)" "$WORK/lb.out"; then pass "start: 2 workers"; else fail "start: $(grep 'forwarding on' "$WORK/lb.out")"; fi
wait_listening 80 "${NS_B[@]}"

# The client-address check below reads every request the backends logged: keep the logs.
SPREAD_SOURCE_PORTS=
http_spread nat6-http "$VIP_NAT" 42000 150 18 50
http_spread dsr6-http "$VIP_DSR" 43000 150 18 50
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

download nat6-download "$VIP_NAT"
udp_check nat6-udp "$VIP_NAT"

# The backends saw the client's own address (nat keeps it; dsr and tunnel never touch it).
if grep -qh "^tcp fd91:1::2 " "$WORK"/b[123]/log && ! grep -qvh "^\(tcp\|udp\) fd91:1::2 " "$WORK"/b[123]/log; then
    pass "client-address preserved at the backends"
else
    fail "client-address: $(grep -vh 'fd91:1::2' "$WORK"/b[123]/log | head -3)"
fi

lb_stop "$WORK/lb.out"
if [ $LB_RC = 0 ]; then pass "stop exit=0"; else fail "stop exit=$LB_RC"; fi
# Both workers forwarded traffic: flows spread over both queues of each veth.
for w in 0 1; do
    got=$(sed -n "s/.*worker $w: \([0-9]*\) received, \([0-9]*\) forwarded.*/\2/p" "$WORK/lb.out" | head -1)
    echo "RESULT worker$w forwarded=${got:-none}"
    if [ -n "$got" ] && [ "$got" -gt 100 ]; then pass "worker $w forwarded $got"; else fail "worker $w forwarded ${got:-nothing}"; fi
done

e2e_finish
