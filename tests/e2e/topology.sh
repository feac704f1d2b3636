# shellcheck shell=bash
# Network namespaces for fiberlb's end-to-end test. Source it, then `topo_up`; `topo_down`
# removes everything (call it from a trap). Names carry the prefix $P (unique per run).
#
#   client ns ${P}c          lb ns ${P}l                    switch ns ${P}s       backends ${P}b1..3
#   [c0 10.91.1.2] ── [l0 10.91.1.1]  fiberlb  [l1 10.91.2.1] ── [s0]─br0─[s1..s3] ── [e0 10.91.2.1N]
#                   AF_XDP client side    AF_XDP backend side
#
# Why two AF_XDP veths plus a bridge: fiberlb's two ports are the usual appliance shape (client
# side, backend side) and the bridge puts three backends on one L2 segment behind the backend
# port, as on a real backend VLAN, so dsr (MAC rewrite) and nat (backends route back via the lb)
# both work unchanged. VIPs: 10.91.100.1 (nat), 10.91.100.2 (dsr, held by the backends on lo).
# The dsr replies go back through the lb namespace's kernel forwarding (XDP_PASS).

: "${P:?set P to a unique prefix}"
NS_C=${P}c NS_L=${P}l NS_S=${P}s
NS_B=("${P}b1" "${P}b2" "${P}b3")
MAC_C0=02:e2:01:00:00:02 MAC_L0=02:e2:01:00:00:01
MAC_L1=02:e2:02:00:00:01
MAC_B=(02:e2:02:00:00:11 02:e2:02:00:00:12 02:e2:02:00:00:13)
IP_B=(10.91.2.11 10.91.2.12 10.91.2.13)
VIP_NAT=10.91.100.1 VIP_DSR=10.91.100.2

topo_down() {
    local ns
    for ns in "$NS_C" "$NS_L" "$NS_S" "${NS_B[@]}"; do
        ip netns del "$ns" 2>/dev/null || true
    done
}

topo_up() {
    local ns i
    for ns in "$NS_C" "$NS_L" "$NS_S" "${NS_B[@]}"; do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
    done
    # client <-> lb
    ip -n "$NS_L" link add l0 address $MAC_L0 type veth peer name c0 address $MAC_C0 netns "$NS_C"
    # lb <-> switch
    ip -n "$NS_L" link add l1 address $MAC_L1 type veth peer name s0 netns "$NS_S"
    ip -n "$NS_S" link add br0 type bridge
    ip -n "$NS_S" link set s0 master br0
    for i in 0 1 2; do
        ip -n "$NS_S" link add "s$((i + 1))" type veth peer name e0 address "${MAC_B[$i]}" netns "${NS_B[$i]}"
        ip -n "$NS_S" link set "s$((i + 1))" master br0
        ip -n "$NS_S" link set "s$((i + 1))" up
    done
    ip -n "$NS_S" link set s0 up
    ip -n "$NS_S" link set br0 up

    ip -n "$NS_C" addr add 10.91.1.2/24 dev c0
    ip -n "$NS_C" link set c0 up
    # Tests pick client ports in 40000-49999 (--local-port) to tell connections apart; keep the
    # kernel's ephemeral ports (curl, udp_client.py) out of that range so the two never collide.
    ip netns exec "$NS_C" sysctl -qw net.ipv4.ip_local_port_range="50000 60999"
    ip -n "$NS_C" route add 10.91.100.0/24 via 10.91.1.1
    ip -n "$NS_C" neigh replace 10.91.1.1 lladdr $MAC_L0 dev c0 nud permanent

    ip -n "$NS_L" addr add 10.91.1.1/24 dev l0
    ip -n "$NS_L" addr add 10.91.2.1/24 dev l1
    ip -n "$NS_L" link set l0 up
    ip -n "$NS_L" link set l1 up
    ip netns exec "$NS_L" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
        net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.l0.rp_filter=0 net.ipv4.conf.l1.rp_filter=0
    ip -n "$NS_L" neigh replace 10.91.1.2 lladdr $MAC_C0 dev l0 nud permanent

    for i in 0 1 2; do
        ns=${NS_B[$i]}
        ip -n "$ns" addr add "${IP_B[$i]}/24" dev e0
        ip -n "$ns" addr add "$VIP_DSR/32" dev lo
        ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
            net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
        ip -n "$ns" link set e0 up
        ip -n "$ns" route add default via 10.91.2.1
        ip -n "$ns" neigh replace 10.91.2.1 lladdr $MAC_L1 dev e0 nud permanent
        ip -n "$NS_L" neigh replace "${IP_B[$i]}" lladdr "${MAC_B[$i]}" dev l1 nud permanent
        # veth leaves L4 checksums to offload (CHECKSUM_PARTIAL); AF_XDP copies raw bytes.
        ip netns exec "$ns" ethtool -K e0 tx off >/dev/null
    done
    ip netns exec "$NS_C" ethtool -K c0 tx off >/dev/null
}
