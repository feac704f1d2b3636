#!/usr/bin/env bash
# A two-node fiberlb tier behind a BGP/ECMP router, end to end: real BIRD 2 on the router and on
# both nodes (eBGP + BFD), the router's kernel spreading the VIPs over both nodes (one ECMP
# route, 5-tuple hash), fiberlb-dataplane (AF_XDP) and fiberlbd on each node, a real client (curl)
# and three real HTTP backends (tunnel mode: IPIP, decapsulated by an XDP program on each
# backend; dsr; nat) — in network namespaces this script creates and always removes.
#
#   client ${P}c           router ${P}r (BIRD, AS 65000)         node ${P}na (AS 65001)
#   [c0 10.92.1.2] ── [r0 10.92.1.1]  [ra 10.92.10.1] ──── [u0 10.92.10.2] fiberlb [n1 10.92.2.1] ─┐
#                                     [rb 10.92.20.1] ──── [u0 10.92.20.2] fiberlb [n1 10.92.2.2] ─┤
#                                     [rs 10.92.2.254] ─┐   node ${P}nb (AS 65001)                 │
#                                                       └── switch ${P}s: br0 ──────────────────────┘
#                                                            └── backends ${P}b1..3 [e0 10.92.2.11-13]
#
# Each node: AF_XDP on its uplink u0 (client side) and n1 (backend side); its BIRD peers with
# the router over u0 and announces what fiberlbd writes into the include file (the VIPs it can
# serve, `via "fiberlb0"`, fiberlbd's liveness TAP). The backends answer clients directly
# (tunnel/dsr) through the router (their default route, 10.92.2.254). Both nodes get the same
# services file (`fiberlbctl apply -f`) and hash seed, so either picks the same backend for a
# flow: a flow moved from one node to the other by the router keeps its backend.
#
# VIPs: 10.92.100.1 tcp/80 tunnel, 10.92.100.2 tcp/80 dsr (both to the backends' :80) and
# 10.92.100.3 tcp/80 nat (DNAT to the backends' :8080, a second backend.py on each). A nat
# reply must pass through a node, whose data plane translates it back to VIP:80 statelessly
# (its `nat_return` map: backend address:port -> listener; no flow state). Each backend
# policy-routes its nat replies (from its address, tcp sport 8080, to the client net
# 10.92.1.0/24: table 100) to node B's backend-side address 10.92.2.2, so the replies of flows
# that entered through A are translated back by B, which never saw those flows' other packets:
# the asymmetric path proves that the reverse mapping works across nodes. The nat-return check
# counts it: what the backends sent (iptables), what B's data plane forwarded beyond the
# requests it took (tx - listener packets), what A's did (nothing), and that neither node's
# kernel saw a reply (a raw PREROUTING counter on n1: the XDP program redirects them first).
#
# Limitation (nat): the replies follow the backends' static route, not node liveness. If B
# (the node that carries them) dies, nat replies are lost until the backends' return route
# changes, whatever the router does with the requests; A's failure costs nat nothing more than
# tunnel or dsr. A real deployment needs the backends' route to the clients to follow node
# liveness (e.g. a multipath route whose dead next hops are removed, or a VRRP address on the
# nodes), or tunnel/dsr. This script never kills B.
#
# Checks, "PASS name ..." / "FAIL name ..." and "RESULT name k=v ..." lines:
#   bird-*      BIRD alone (fiberlbd's include file written by hand, its TAP held open by a
#               stand-in): ECMP with two nexthops, `check link` on a TAP, a route removed by
#               `birdc configure`, a killed bird (TCP close), a silent node (BFD) — each timed;
#   spread      both nodes announce (two nexthops), requests from many client ports reach both
#               nodes and every backend (tunnel, dsr; nat: entered through A and B by the
#               router's hash, every reply through B);
#   nat-return  100 nat requests from ports the router sends to A: all answered, every reply
#               the backends sent was forwarded by B's data plane, none by A's, B forwarded no
#               request, neither node's kernel saw a reply;
#   lookup      1000 flows: both nodes' `fiberlbctl lookup` name the same backend, and the 300
#               real requests were answered by the backend lookup names (and the nat ones by
#               the backend B's lookup names, though A took half of them);
#   failover    node A's data plane killed (kill -9) under three rate-limited downloads through A
#               (tunnel, dsr and nat VIP), 50 slow established connections (a third each) and a
#               stream of new connections (all three VIPs): the downloads complete byte-exact over
#               B, established connections survive, at most 3 new connections fail; failover_ms
#               (kill to the first answer to a flow the router had sent to A), route_ms (kill to
#               one nexthop for every VIP);
#   rejoin      A's data plane started again: A announced again (two nexthops), connections
#               established meanwhile do not break;
#   drain       `fiberlbctl node drain` on A: one nexthop, no connection fails (tunnel, dsr,
#               nat), A's data plane receives nothing new; `node resume` brings it back;
#   fiberlbd-kill  A's fiberlbd killed (kill -9): BIRD withdraws A (the TAP vanished) while its
#               data plane lives on, no connection fails; fiberlbd restarted: announced again;
#   node-death  every process of A killed and A's uplink silenced (iptables): BFD withdraws it.
#
# On this 2-core VM: a dead data plane is withdrawn ~310 ms after the kill (fiberlbd's
# dataplane_timeout_ms = 300), a silent node ~250-300 ms (BFD 100 ms x 3), a drain or a route
# taken out of the include file in ~20 ms, a killed bird in ~10-50 ms (TCP close).
#
#   FIBERLB_BIN_DIR  directory holding fiberlb-dataplane, fiberlbd, fiberlbctl (default:
#                    target/release)
#   FCL_PREFIX       the network namespaces' name prefix, unique per run (default: fcl<pid>)
#   FCL_CORE         the data planes' worker core (default 1; both nodes share it, idle back-off)
#   FCL_BIRD_ONLY    1: only the BIRD checks (no data plane, no fiberlbd)
#
# Root only. Needs ip, ethtool, curl, python3, sha256sum, iptables, bird, birdc (BIRD 2), clang
# (the backends' IPIP decapsulation program).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
P=${FCL_PREFIX:-fcl$$}
# shellcheck source=lib.sh
. "$HERE/lib.sh"
D=$BIN_DIR/fiberlbd
CTL_BIN=$BIN_DIR/fiberlbctl
BIRD_ONLY=${FCL_BIRD_ONLY:-}

e2e_need_root cluster "network namespaces, XDP, AF_XDP, BIRD"
e2e_need_tools ip ethtool curl sha256sum iptables bird birdc clang
if [ -z "$BIRD_ONLY" ]; then
    for b in "$LB" "$D" "$CTL_BIN"; do e2e_need_bin "$b"; done
fi

# --- topology ---
NS_C=${P}c NS_R=${P}r NS_S=${P}s
NODE_NS=("${P}na" "${P}nb")
NODE=(A B)
NODE_UP=(10.92.10.2 10.92.20.2)   # uplink address (BGP, BFD)
NODE_PEER=(10.92.10.1 10.92.20.1) # the router's end
NODE_BE=(10.92.2.1 10.92.2.2)     # backend side (health checks, tunnel source)
NODE_UP_MAC=(02:e9:0a:00:00:02 02:e9:14:00:00:02)
NODE_PEER_MAC=(02:e9:0a:00:00:01 02:e9:14:00:00:01)
NODE_BE_MAC=(02:e9:02:00:00:01 02:e9:02:00:00:02)
NS_B=("${P}b1" "${P}b2" "${P}b3")
IP_B=(10.92.2.11 10.92.2.12 10.92.2.13)
MAC_B=(02:e9:02:00:00:11 02:e9:02:00:00:12 02:e9:02:00:00:13)
MAC_C0=02:e9:01:00:00:02 MAC_R0=02:e9:01:00:00:01 MAC_RS=02:e9:02:00:00:fe
VIP_TUN=10.92.100.1 VIP_DSR=10.92.100.2 VIP_NAT=10.92.100.3
NAT_PORT=8080 # the nat pool's backend port (a second backend.py on each backend)
CLIENT=10.92.1.2 CLIENT_NET=10.92.1.0/24

topo_down() { # (e2e_cleanup)
    local ns
    for ns in "$NS_C" "$NS_R" "$NS_S" "${NODE_NS[@]}" "${NS_B[@]}"; do
        ip netns del "$ns" 2>/dev/null || true
    done
}

topo_up() {
    local ns i
    for ns in "$NS_C" "$NS_R" "$NS_S" "${NODE_NS[@]}" "${NS_B[@]}"; do
        ip netns add "$ns" || return 1
        ip -n "$ns" link set lo up
    done
    ip -n "$NS_S" link add br0 type bridge
    ip -n "$NS_S" link set br0 up
    # client <-> router
    ip -n "$NS_R" link add r0 address $MAC_R0 type veth peer name c0 address $MAC_C0 netns "$NS_C"
    ip -n "$NS_C" addr add $CLIENT/24 dev c0
    ip -n "$NS_C" link set c0 up
    ip -n "$NS_C" route add default via 10.92.1.1
    # Tests pick client ports in 40000-49999 (--local-port); the kernel's ephemeral ports stay
    # out of that range.
    ip netns exec "$NS_C" sysctl -qw net.ipv4.ip_local_port_range="50000 60999"
    # veth leaves L4 checksums to offload (CHECKSUM_PARTIAL); AF_XDP copies raw bytes.
    ip netns exec "$NS_C" ethtool -K c0 tx off >/dev/null
    ip -n "$NS_R" addr add 10.92.1.1/24 dev r0
    # router <-> backend segment (the backends' way back to the client)
    ip -n "$NS_R" link add rs address $MAC_RS type veth peer name sr netns "$NS_S"
    ip -n "$NS_S" link set sr master br0
    ip -n "$NS_S" link set sr up
    ip -n "$NS_R" addr add 10.92.2.254/24 dev rs
    # router <-> nodes, nodes <-> backend segment
    for i in 0 1; do
        ns=${NODE_NS[$i]}
        ip -n "$NS_R" link add "r${NODE[$i],,}" address "${NODE_PEER_MAC[$i]}" type veth \
            peer name u0 address "${NODE_UP_MAC[$i]}" netns "$ns"
        ip -n "$NS_R" addr add "${NODE_PEER[$i]}/24" dev "r${NODE[$i],,}"
        ip -n "$NS_R" link set "r${NODE[$i],,}" up
        ip -n "$ns" addr add "${NODE_UP[$i]}/24" dev u0
        ip -n "$ns" link add n1 address "${NODE_BE_MAC[$i]}" type veth peer name "s${NODE[$i],,}" netns "$NS_S"
        ip -n "$NS_S" link set "s${NODE[$i],,}" master br0
        ip -n "$NS_S" link set "s${NODE[$i],,}" up
        ip -n "$ns" addr add "${NODE_BE[$i]}/24" dev n1
        ip -n "$ns" link set u0 up
        ip -n "$ns" link set n1 up
        ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
        # a nat reply that reached the node's kernel (the XDP program should take them all)
        ip netns exec "$ns" iptables -t raw -A PREROUTING -i n1 -d $CLIENT_NET -p tcp --sport $NAT_PORT
    done
    for l in r0 rs ra rb; do ip -n "$NS_R" link set $l up; done
    # ECMP over the 5-tuple, as a hardware router hashes. Not policy 1 (L4): for a forwarded
    # packet that carries a socket hash it uses that instead — veth keeps the client's TCP
    # txhash, random per connection and changed on retransmission timeouts — so the path is
    # neither predictable (`ip route get`) nor stable. Policy 3 with the fields src/dst
    # address, protocol, src/dst port (0x37) hashes exactly those. The backends' replies come
    # from the VIPs, which the router routes towards the nodes: no reverse-path filter.
    ip netns exec "$NS_R" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=3 \
        net.ipv4.fib_multipath_hash_fields=0x0037 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
    for l in r0 rs ra rb; do ip netns exec "$NS_R" sysctl -qw "net.ipv4.conf.$l.rp_filter=0"; done
    # backends
    for i in 0 1 2; do
        ns=${NS_B[$i]}
        ip -n "$NS_S" link add "s$((i + 1))" type veth peer name e0 address "${MAC_B[$i]}" netns "$ns"
        ip -n "$NS_S" link set "s$((i + 1))" master br0
        ip -n "$NS_S" link set "s$((i + 1))" up
        ip -n "$ns" addr add "${IP_B[$i]}/24" dev e0
        ip -n "$ns" addr add "$VIP_TUN/32" dev lo
        ip -n "$ns" addr add "$VIP_DSR/32" dev lo
        ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
            net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
        ip -n "$ns" link set e0 up
        ip -n "$ns" route add default via 10.92.2.254
        # nat replies (from :NAT_PORT to the clients) go back through node B's data plane
        ip -n "$ns" rule add from "${IP_B[$i]}" to $CLIENT_NET ipproto tcp sport $NAT_PORT lookup 100 pref 100
        ip -n "$ns" route add $CLIENT_NET via "${NODE_BE[1]}" dev e0 table 100
        # counts them (a rule without a target: counts, changes nothing)
        ip netns exec "$ns" iptables -A OUTPUT -s "${IP_B[$i]}" -d $CLIENT_NET -p tcp --sport $NAT_PORT
        ip netns exec "$ns" ethtool -K e0 tx off >/dev/null
        # IPIP decapsulation (the kernel here has no ipip module): the XDP program strips the
        # outer header and the inner packet, to the VIP on lo, goes up the stack.
        ip -n "$ns" link set dev e0 xdpgeneric obj "$WORK/ipip_decap.o" sec xdp || return 1
    done
}

# --- helpers ---

# now_ms: NOW, milliseconds since the epoch (no fork).
now_ms() {
    local t=${EPOCHREALTIME/./}
    NOW=$((t / 1000))
}

# nexthops VIP: how many nexthops the router's kernel route for VIP has (0: no route).
nexthops() {
    local out
    out=$(ip -n "$NS_R" route show "$1/32" 2>/dev/null)
    if [ -z "$out" ]; then
        echo 0
    elif grep -q "nexthop via" <<<"$out"; then
        grep -c "nexthop via" <<<"$out"
    else
        echo 1
    fi
}

# wait_nexthops VIP N SECONDS: waits until the router's route for VIP has N nexthops; WAITED_MS
# is the time it took (from the call, or from T_FROM when set, in ms since the epoch). Returns
# 1 on timeout.
wait_nexthops() {
    local vip=$1 want=$2 t0 deadline
    now_ms
    t0=${T_FROM:-$NOW}
    deadline=$((NOW + $3 * 1000))
    WAITED_MS=
    while :; do
        if [ "$(nexthops "$vip")" = "$want" ]; then
            now_ms
            WAITED_MS=$((NOW - t0))
            return 0
        fi
        now_ms
        [ "$NOW" -lt $deadline ] || return 1
        sleep 0.01
    done
}

# wait_vips N SECONDS: wait_nexthops for the three VIPs (SECONDS for the first, 5 for the
# others); WAITED_MS is the last one's.
wait_vips() {
    wait_nexthops "$VIP_TUN" "$1" "$2" && wait_nexthops "$VIP_DSR" "$1" 5 && wait_nexthops "$VIP_NAT" "$1" 5
}

# via_node PORT [VIP]: which node (A, B, or ?) the router sends the client's TCP flow from PORT
# to VIP:80 to (its kernel's own multipath choice, `ip route get` with the flow's ports).
via_node() {
    local r
    r=$(ip -n "$NS_R" route get "${2:-$VIP_TUN}" from $CLIENT iif r0 ipproto tcp sport "$1" dport 80 2>/dev/null)
    if grep -q "dev ra" <<<"$r"; then
        echo A
    elif grep -q "dev rb" <<<"$r"; then
        echo B
    else
        echo "?"
    fi
}

# --- BIRD ---

NDIR=("" "") RDIR= # (set after e2e_init)

# bird_start DIR NS: BIRD with DIR/bird.conf, control socket DIR/bird.ctl, pid file DIR/bird.pid.
bird_start() {
    rm -f "$1/bird.ctl" "$1/bird.pid"
    ip netns exec "$2" bird -c "$1/bird.conf" -s "$1/bird.ctl" -P "$1/bird.pid" || return 1
    for _ in $(seq 1 50); do
        [ -S "$1/bird.ctl" ] && [ -s "$1/bird.pid" ] && return 0
        sleep 0.05
    done
    return 1
}

# bird_kill DIR [SIGNAL]: stops the BIRD of DIR (pid file), waits for it to go.
bird_kill() {
    local pid
    pid=$(cat "$1/bird.pid" 2>/dev/null) || return 0
    [ -n "$pid" ] || return 0
    kill "-${2:-TERM}" "$pid" 2>/dev/null
    rm -f "$1/bird.pid"
    # (a daemon: not our child; gone, or a zombie until init reaps it)
    for _ in $(seq 1 100); do
        alive "$pid" || break
        sleep 0.01
    done
}

# alive PID: the process exists and is not a zombie.
alive() {
    local st
    st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    st=${st##*) }
    [ "${st%% *}" != Z ]
}

birdc_() { birdc -s "$1/bird.ctl" "${@:2}"; }

# vips_conf FILE [check-link|no-check-link] VIP...: writes the include file as fiberlbd does (a
# static protocol per family, each VIP via the liveness TAP), atomically.
vips_conf() {
    local f=$1 check="  check link;" v
    [ "$2" = no-check-link ] && check=""
    shift 2
    {
        echo "# written by tests/e2e/cluster.sh (as fiberlbd writes it); do not edit"
        echo "protocol static fiberlb4 {"
        echo "  ipv4;"
        [ -n "$check" ] && echo "$check"
        for v in "$@"; do echo "  route $v/32 via \"fiberlb0\";"; done
        echo "}"
        echo "protocol static fiberlb6 {"
        echo "  ipv6;"
        [ -n "$check" ] && echo "$check"
        echo "}"
    } >"$f.tmp"
    mv "$f.tmp" "$f"
}

# reconfigure DIR: `birdc configure`; returns 1 unless BIRD took it.
reconfigure() {
    birdc_ "$1" configure | grep -q "Reconfigur"
}

# TAP holders: a stand-in for fiberlbd's liveness TAP — a process holding fiberlb0 open (up,
# carrier on while it lives). HOLDER[i] is node i's.
HOLDER=("" "")
tap_hold() {
    local i=$1 ns=${NODE_NS[$1]}
    ip netns exec "$ns" "$PY" -c '
import fcntl, os, struct, sys, time
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", b"fiberlb0", 0x0002 | 0x1000))  # TUNSETIFF, IFF_TAP | IFF_NO_PI
print("held", flush=True)
while True:
    time.sleep(3600)
' >"$WORK/holder$i.out" 2>&1 &
    HOLDER[i]=$!
    for _ in $(seq 1 100); do
        grep -q held "$WORK/holder$i.out" && break
        sleep 0.02
    done
    ip -n "$ns" link set fiberlb0 up
}
tap_release() {
    [ -n "${HOLDER[$1]}" ] || return 0
    kill "${HOLDER[$1]}" 2>/dev/null
    wait "${HOLDER[$1]}" 2>/dev/null
    HOLDER[$1]=
}

# --- the data planes and fiberlbd ---
DP_PID=("" "") FD_PID=("" "")
SHMS=("/dev/shm/${P}na.region" "/dev/shm/${P}nb.region")
LOADS=()

cleanup_first() { # (e2e_cleanup)
    local i p
    for p in "${LOADS[@]}"; do kill "$p" 2>/dev/null; done
    for i in 0 1; do
        [ -n "${FD_PID[$i]}" ] && kill -TERM "${FD_PID[$i]}" 2>/dev/null
        [ -n "${DP_PID[$i]}" ] && kill -TERM "${DP_PID[$i]}" 2>/dev/null
        tap_release "$i"
    done
    for p in "${LOADS[@]}" "${FD_PID[@]}" "${DP_PID[@]}"; do [ -n "$p" ] && wait "$p" 2>/dev/null; done
    for i in 0 1; do bird_kill "${NDIR[$i]}"; done
    [ -n "${RDIR:-}" ] && bird_kill "$RDIR"
    for i in 0 1; do rm -f "${SHMS[$i]}" "${SHMS[$i]}.slots.json" "${SHMS[$i]}.ports.json"; done
}

e2e_init
NDIR=("$WORK/na" "$WORK/nb")
RDIR=$WORK/r
mkdir -p "${NDIR[@]}" "$RDIR"
T0=$(date +%s)

if ! clang -O2 -g -Wall -Werror -target bpf "-I/usr/include/$(uname -m)-linux-gnu" \
    -c "$HERE/cluster/ipip_decap.c" -o "$WORK/ipip_decap.o" >"$WORK/clang.out" 2>&1; then
    echo "FAIL setup: compiling cluster/ipip_decap.c:"
    show_log "$WORK/clang.out" clang
    exit 1
fi
if ! topo_up >"$WORK/topo.out" 2>&1; then
    echo "FAIL setup: topology"
    show_log "$WORK/topo.out" topo
    exit 1
fi

# BIRD: the router and both nodes, each node with an empty include file for now.
sed "s|@DIR@|$RDIR|g" "$HERE/cluster/router.conf" >"$RDIR/bird.conf"
for i in 0 1; do
    sed -e "s|@DIR@|${NDIR[$i]}|g" -e "s|@ADDR@|${NODE_UP[$i]}|g" -e "s|@PEER@|${NODE_PEER[$i]}|g" \
        "$HERE/cluster/node.conf" >"${NDIR[$i]}/bird.conf"
    vips_conf "${NDIR[$i]}/fiberlb-vips.conf" check-link
done
bird_ok=1
bird_start "$RDIR" "$NS_R" || bird_ok=
for i in 0 1; do bird_start "${NDIR[$i]}" "${NODE_NS[$i]}" || bird_ok=; done
if [ -z "$bird_ok" ]; then
    echo "FAIL setup: BIRD did not start"
    for d in "$RDIR" "${NDIR[@]}"; do show_log "$d/bird.log" bird; done
    exit 1
fi

# bgp_up: both sessions established (router side), within 15 s.
bgp_up() {
    for _ in $(seq 1 150); do
        [ "$(birdc_ "$RDIR" show protocols | grep -c 'Established')" = 2 ] && return 0
        sleep 0.1
    done
    return 1
}
if bgp_up; then
    pass "setup: BIRD on the router and both nodes, two eBGP sessions established"
else
    fail "setup: BGP sessions: $(birdc_ "$RDIR" show protocols | tr '\n' ' ')"
fi

# ===== BIRD alone: the include file by hand, the liveness TAP held by a stand-in =====

# bird-ecmp: both nodes announce VIP_TUN via a held TAP; the router merges them.
for i in 0 1; do
    tap_hold "$i"
    vips_conf "${NDIR[$i]}/fiberlb-vips.conf" check-link "$VIP_TUN"
    reconfigure "${NDIR[$i]}" || fail "bird-ecmp: birdc configure on node ${NODE[$i]}"
done
if wait_nexthops "$VIP_TUN" 2 10; then
    result "bird-ecmp ms=$WAITED_MS"
    pass "bird-ecmp: the router's kernel route has two nexthops: $(ip -n "$NS_R" route show "$VIP_TUN/32" | tr -s '\n\t ' ' ')"
else
    fail "bird-ecmp: route: $(ip -n "$NS_R" route show "$VIP_TUN/32" | tr -s '\n\t ' ' ')"
fi

# bird-checklink: `check link` needs the TAP's carrier, which a TAP has only while a process
# holds it open (fiberlbd): when the holder goes, the route goes; a persistent TAP nobody holds
# has no carrier and is not announced — unless `check link` is left out.
T_FROM=
tap_release 0
if wait_nexthops "$VIP_TUN" 1 5; then tap_gone_ms=$WAITED_MS; else tap_gone_ms=never; fi
ip -n "${NODE_NS[0]}" tuntap add fiberlb0 mode tap
ip -n "${NODE_NS[0]}" link set fiberlb0 up
reconfigure "${NDIR[0]}"
sleep 1.5
persist_nh=$(nexthops "$VIP_TUN")
carrier=$(ip -n "${NODE_NS[0]}" -o link show fiberlb0 | grep -o 'NO-CARRIER' || echo carrier)
vips_conf "${NDIR[0]}/fiberlb-vips.conf" no-check-link "$VIP_TUN"
reconfigure "${NDIR[0]}"
if wait_nexthops "$VIP_TUN" 2 5; then nocheck=announced; else nocheck=not-announced; fi
vips_conf "${NDIR[0]}/fiberlb-vips.conf" check-link "$VIP_TUN"
reconfigure "${NDIR[0]}"
wait_nexthops "$VIP_TUN" 1 5
tap_hold 0 # opens the persistent TAP: carrier
if wait_nexthops "$VIP_TUN" 2 5; then held_ms=$WAITED_MS; else held_ms=never; fi
result "bird-checklink holder_killed_to_withdrawn_ms=$tap_gone_ms persistent_unheld_tap=$carrier nexthops_with_check_link=$persist_nh without_check_link=$nocheck held_again_to_announced_ms=$held_ms"
if [ "$tap_gone_ms" != never ] && [ "$persist_nh" = 1 ] && [ "$carrier" = NO-CARRIER ] &&
    [ "$nocheck" = announced ] && [ "$held_ms" != never ]; then
    pass "bird-checklink: the TAP's holder killed -> withdrawn in $tap_gone_ms ms; an unheld TAP (no carrier) is not announced with check link, is without it; held again -> announced in $held_ms ms"
else
    fail "bird-checklink: withdrawn after holder killed: $tap_gone_ms ms, unheld TAP: $carrier, nexthops $persist_nh, without check link: $nocheck, held again: $held_ms ms"
fi

# bird-configure: the VIP taken out of A's include file, `birdc configure` -> one nexthop; back.
vips_conf "${NDIR[0]}/fiberlb-vips.conf" check-link
now_ms
T_FROM=$NOW
reconfigure "${NDIR[0]}"
if wait_nexthops "$VIP_TUN" 1 5; then out_ms=$WAITED_MS; else out_ms=never; fi
vips_conf "${NDIR[0]}/fiberlb-vips.conf" check-link "$VIP_TUN"
now_ms
T_FROM=$NOW
reconfigure "${NDIR[0]}"
if wait_nexthops "$VIP_TUN" 2 5; then in_ms=$WAITED_MS; else in_ms=never; fi
T_FROM=
sessions=$(birdc_ "$RDIR" show protocols | grep -c Established)
result "bird-configure withdraw_ms=$out_ms announce_ms=$in_ms sessions_established=$sessions"
if [ "$out_ms" != never ] && [ "$in_ms" != never ] && [ "$sessions" = 2 ]; then
    pass "bird-configure: a route removed from A's include file is withdrawn in $out_ms ms, put back announced in $in_ms ms, the session stays up"
else
    fail "bird-configure: withdraw $out_ms ms, announce $in_ms ms, sessions established $sessions"
fi

# bird-kill: A's bird killed (-9): the kernel closes its TCP session, the router withdraws.
now_ms
T_FROM=$NOW
bird_kill "${NDIR[0]}" KILL
if wait_nexthops "$VIP_TUN" 1 5; then kill_ms=$WAITED_MS; else kill_ms=never; fi
now_ms
T_FROM=$NOW
bird_start "${NDIR[0]}" "${NODE_NS[0]}"
if wait_nexthops "$VIP_TUN" 2 15; then back_ms=$WAITED_MS; else back_ms=never; fi
T_FROM=
result "bird-kill withdrawn_ms=$kill_ms restarted_to_announced_ms=$back_ms"
if [ "$kill_ms" != never ] && [ "$back_ms" != never ]; then
    pass "bird-kill: A's bird killed -> withdrawn in $kill_ms ms (TCP close); started again -> announced in $back_ms ms"
else
    fail "bird-kill: withdrawn $kill_ms ms, announced again $back_ms ms"
fi

# bird-bfd: A goes silent (iptables drops everything in and out: no carrier loss, no TCP
# close): BFD (100 ms x 3) withdraws it.
silence() { # node index, on|off
    local ns=${NODE_NS[$1]} op=-A
    [ "$2" = off ] && op=-D
    ip netns exec "$ns" iptables $op INPUT -j DROP
    ip netns exec "$ns" iptables $op OUTPUT -j DROP
}
sleep 1 # BFD sessions up
now_ms
T_FROM=$NOW
silence 0 on
if wait_nexthops "$VIP_TUN" 1 5; then bfd_ms=$WAITED_MS; else bfd_ms=never; fi
why=$(birdc_ "$RDIR" show protocols node_a | awk 'NR > 2' | tr -s ' ' | cut -c1-120)
now_ms
T_FROM=$NOW
silence 0 off
if wait_nexthops "$VIP_TUN" 2 15; then bfd_back_ms=$WAITED_MS; else bfd_back_ms=never; fi
T_FROM=
result "bird-bfd withdrawn_ms=$bfd_ms back_ms=$bfd_back_ms"
if [ "$bfd_ms" != never ] && [ "$bfd_ms" -le 1000 ] && grep -q "BFD session down" <<<"$why" && [ "$bfd_back_ms" != never ]; then
    pass "bird-bfd: A silenced -> withdrawn by BFD in $bfd_ms ms ($why); heard again -> announced in $bfd_back_ms ms"
else
    fail "bird-bfd: withdrawn $bfd_ms ms (want <= 1000, by BFD: $why), back $bfd_back_ms ms"
fi

# Back to empty include files and no TAP: fiberlbd takes over.
for i in 0 1; do
    tap_release "$i"
    vips_conf "${NDIR[$i]}/fiberlb-vips.conf" check-link
    reconfigure "${NDIR[$i]}"
done
ip -n "${NODE_NS[0]}" tuntap del fiberlb0 mode tap 2>/dev/null
wait_nexthops "$VIP_TUN" 0 5 || fail "bird-reset: the VIP is still routed: $(ip -n "$NS_R" route show "$VIP_TUN/32")"

if [ -n "$BIRD_ONLY" ]; then
    echo "RESULT seconds=$(($(date +%s) - T0))"
    e2e_finish
    exit
fi

# ===== fiberlb on both nodes =====
SEED=1311768467294899695 # not the default: both nodes and both fiberlbd must be given it
CORE=${FCL_CORE:-1}

services_file() {
    local pool i
    # (The file must name a tunnel source for its tunnel listener to be valid; fiberlbctl apply
    # does not apply it: each node's own is [tunnel] in its controlplane.toml.)
    echo "tunnel: {source_v4: ${NODE_BE[0]}}"
    echo "loadbalancers:"
    echo "  - {name: tun, vip: $VIP_TUN, listeners: [{port: 80, protocol: tcp, mode: tunnel, pool: tun-http}]}"
    echo "  - {name: dsr, vip: $VIP_DSR, listeners: [{port: 80, protocol: tcp, mode: dsr, pool: dsr-http}]}"
    echo "  - {name: nat, vip: $VIP_NAT, listeners: [{port: 80, protocol: tcp, mode: nat, pool: nat-http}]}"
    echo "pools:"
    for pool in tun-http:80 dsr-http:80 nat-http:$NAT_PORT; do
        echo "  - name: ${pool%%:*}"
        echo "    backends:"
        for i in 0 1 2; do
            echo "      - {address: ${IP_B[$i]}, port: ${pool##*:}, mac: \"${MAC_B[$i]}\"}"
        done
    done
}

dataplane_toml() { # node index
    cat <<TOML
[forwarding]
flow_capacity = 65536
hash_seed = $SEED
[[ports]]
name = "uplink"
interface = "u0"
role = "client"
gateway_mac = "${NODE_PEER_MAC[$1]}"
[[ports]]
name = "backend"
interface = "n1"
role = "backend"
[workers]
cores = [$CORE]
idle_backoff = true
[shm]
path = "${SHMS[$1]}"
[umem]
frames = 4096
chunk_size = 2048
TOML
}

controlplane_toml() { # node index
    local d=${NDIR[$1]}
    cat <<TOML
listen = "$d/fiberlbd.sock"
store_path = "$d/store.redb"
shm_path = "${SHMS[$1]}"
hash_seed = $SEED
[tunnel]
source_v4 = "${NODE_BE[$1]}"
[health_defaults]
interval_ms = 500
timeout_ms = 400
rise = 2
fall = 2
[bgp]
enabled = true
include_path = "$d/fiberlb-vips.conf"
socket = "$d/bird.ctl"
birdc = "birdc"
vips = "all"
liveness_interface = "fiberlb0"
dataplane_timeout_ms = 300
TOML
}

# dp_start NODE-INDEX: the node's data plane (DP_PID), up to "forwarding on"; returns 1 if not.
dp_start() {
    local i=$1 log=${NDIR[$1]}/dp.out
    echo "--- start $(date +%T.%N)" >>"$log"
    ip netns exec "${NODE_NS[$i]}" "$LB" run --config "${NDIR[$i]}/dataplane.toml" >>"$log" 2>&1 &
    DP_PID[i]=$!
    for _ in $(seq 1 200); do
        [ "$(grep -c "forwarding on" "$log")" -ge "$(grep -c "^--- start" "$log")" ] && return 0
        kill -0 "${DP_PID[$i]}" 2>/dev/null || break
        sleep 0.05
    done
    return 1
}

# dp_kill NODE-INDEX: kill -9 of the node's data plane.
dp_kill() {
    kill -9 "${DP_PID[$1]}" 2>/dev/null
    wait "${DP_PID[$1]}" 2>/dev/null
    DP_PID[$1]=
}

# fd_start NODE-INDEX: the node's fiberlbd (FD_PID), until its socket is there; returns 1 if not.
fd_start() {
    local i=$1 sock=${NDIR[$1]}/fiberlbd.sock
    rm -f "$sock"
    ip netns exec "${NODE_NS[$i]}" "$D" --config "${NDIR[$i]}/controlplane.toml" >>"${NDIR[$i]}/fiberlbd.out" 2>&1 &
    FD_PID[i]=$!
    for _ in $(seq 1 200); do
        [ -S "$sock" ] && return 0
        kill -0 "${FD_PID[$i]}" 2>/dev/null || break
        sleep 0.05
    done
    return 1
}

ctl() { # node index, fiberlbctl arguments
    FIBERLB_SERVER=${NDIR[$1]}/fiberlbd.sock FIBERLB_ORG=cluster FIBERLB_PROJECT=cluster "$CTL_BIN" "${@:2}"
}
jget() { "$PY" -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {'d': d}))" "$1"; }

# Backends: the same 4 MiB file everywhere, so a download is checkable whoever serves it; :80
# (tunnel, dsr) and :NAT_PORT (nat), the same name and files.
make_big_file 4
for i in 0 1 2; do
    start_backend "$i"
    PIDS+=("$BACKEND_PID")
    start_backend "$i" --port $NAT_PORT
    PIDS+=("$BACKEND_PID")
done
wait_listening 80 "${NS_B[@]}" || fail "setup: the backends do not listen on 80"
wait_listening $NAT_PORT "${NS_B[@]}" || fail "setup: the backends do not listen on $NAT_PORT"

services_file >"$WORK/services.yaml"
setup_ok=1
for i in 0 1; do
    dataplane_toml "$i" >"${NDIR[$i]}/dataplane.toml"
    controlplane_toml "$i" >"${NDIR[$i]}/controlplane.toml"
    if ! dp_start "$i"; then
        echo "FAIL setup: node ${NODE[$i]}'s data plane did not start"
        show_log "${NDIR[$i]}/dp.out" "dp-${NODE[$i]}"
        exit 1
    fi
done
for i in 0 1; do
    if ! fd_start "$i"; then
        echo "FAIL setup: node ${NODE[$i]}'s fiberlbd did not start"
        show_log "${NDIR[$i]}/fiberlbd.out" "fiberlbd-${NODE[$i]}"
        exit 1
    fi
done

# The same services file on both nodes.
for i in 0 1; do
    if ! ctl "$i" apply -f "$WORK/services.yaml" >"${NDIR[$i]}/apply.out" 2>&1; then
        setup_ok=
        show_log "${NDIR[$i]}/apply.out" "apply-${NODE[$i]}"
    fi
done
# programmed: the data plane applied the store's generation
programmed() {
    [ "$(ctl "$1" -o json status 2>/dev/null | jget "d.get('attached', False) and d.get('synced_store_generation') == d.get('store_generation')" 2>/dev/null)" = True ]
}
for i in 0 1; do
    ok=
    for _ in $(seq 1 100); do
        if programmed "$i"; then
            ok=1
            break
        fi
        sleep 0.1
    done
    [ -n "$ok" ] || {
        setup_ok=
        echo "  node ${NODE[$i]} status: $(ctl "$i" status 2>&1 | tr '\n' ' ')"
    }
done
now_ms
T_FROM=$NOW
if wait_vips 2 15; then
    announce_ms=$WAITED_MS
else
    announce_ms=never
    setup_ok=
fi
T_FROM=
result "setup announced_ms=$announce_ms"
if [ -n "$setup_ok" ]; then
    pass "setup: both nodes run fiberlb-dataplane and fiberlbd with the same services and hash seed, the three VIPs announced by both ($announce_ms ms)"
else
    fail "setup: nexthops tun=$(nexthops "$VIP_TUN") dsr=$(nexthops "$VIP_DSR") nat=$(nexthops "$VIP_NAT")"
    for i in 0 1; do
        show_log "${NDIR[$i]}/fiberlbd.out" "fiberlbd-${NODE[$i]}"
        cat "${NDIR[$i]}/fiberlb-vips.conf"
    done
    exit 1
fi

# --- traffic helpers ---

name_addr() { # b1..b3 -> address
    local n=${1#b}
    echo "${IP_B[$((n - 1))]}"
}

# node_stat NODE-INDEX EXPR: EXPR over `fiberlbctl -o json stats` of the node (d), -1 when
# fiberlbd does not answer.
node_stat() {
    local out
    out=$(ctl "$1" -o json stats 2>/dev/null) || {
        echo -1
        return
    }
    jget "$2" <<<"$out" 2>/dev/null || echo -1
}
NEW_FLOWS="sum(l.get('new_flows', 0) for l in d.get('listeners', []))"
RX="d.get('rx_packets', 0)"
# packets sent, packets forwarded to backends (the listeners' count), drops
TX_REQ_DROPS="'%d %d %d' % (d.get('tx_packets', 0), sum(l.get('packets', 0) for l in d.get('listeners', [])), d.get('drops', 0))"

# what a node dropped and where (drops by reason, the ports' missed packets), for a failure
DIAG="'drops: %s; ports: %s' % (' '.join('%s=%s' % (x['reason'], x['packets']) for x in d.get('drops_by_reason', [])), ' '.join('%s rx=%s tx=%s rx_missed=%s' % (p.get('name'), p.get('rx_packets'), p.get('tx_packets'), p.get('rx_missed')) for p in d.get('ports', [])))"

# ipt_count NS TABLE CHAIN: the packets the chain's rules counted (summed).
ipt_count() {
    ip netns exec "$1" iptables -t "$2" -L "$3" -v -x -n 2>/dev/null | awk 'NR > 2 {s += $1} END {print s + 0}'
}

# nat_snap: one line, "SENT" (the nat replies the backends sent: their OUTPUT counters) then,
# for A and B, "TX REQ DROPS KERNEL" (the data plane's TX_REQ_DROPS, -1s when fiberlbd does not
# answer, and the nat replies that reached the node's kernel: its raw PREROUTING counter).
nat_snap() {
    local i n=0 c out
    for i in 0 1 2; do n=$((n + $(ipt_count "${NS_B[$i]}" filter OUTPUT))); done
    out=$n
    for i in 0 1; do
        c=$(node_stat "$i" "$TX_REQ_DROPS")
        [ "$c" = -1 ] && c="-1 -1 -1"
        out="$out $c $(ipt_count "${NODE_NS[$i]}" raw PREROUTING)"
    done
    echo "$out"
}

# nat_delta BEFORE AFTER (nat_snap lines): NAT_SENT (nat replies the backends sent between the
# two), and per node (A, B): NAT_REQ (packets it forwarded to backends), NAT_FWD (the packets it
# sent beyond those: the nat replies it translated back to the client), NAT_DROPS, NAT_KERNEL
# (nat replies its kernel saw).
NAT_REQ=(0 0) NAT_FWD=(0 0) NAT_DROPS=(0 0) NAT_KERNEL=(0 0) NAT_SENT=0
nat_delta() {
    local -a b a
    local i o
    read -r -a b <<<"$1"
    read -r -a a <<<"$2"
    NAT_SENT=$((a[0] - b[0]))
    for i in 0 1; do
        o=$((1 + i * 4))
        NAT_REQ[i]=$((a[o + 1] - b[o + 1]))
        NAT_FWD[i]=$((a[o] - b[o] - NAT_REQ[i]))
        NAT_DROPS[i]=$((a[o + 2] - b[o + 2]))
        NAT_KERNEL[i]=$((a[o + 3] - b[o + 3]))
    done
}
nat_fields() { # the nat_delta figures as RESULT fields
    echo "replies_sent_by_backends=$NAT_SENT translated_by_b=${NAT_FWD[1]} translated_by_a=${NAT_FWD[0]} requests_via_a=${NAT_REQ[0]} requests_via_b=${NAT_REQ[1]} drops_a=${NAT_DROPS[0]} drops_b=${NAT_DROPS[1]} kernel_saw_a=${NAT_KERNEL[0]} kernel_saw_b=${NAT_KERNEL[1]}"
}
# nat_bad: why the nat_delta figures are wrong (empty: every reply the backends sent was
# translated by B, none by A, no drop, neither kernel saw one).
nat_bad() {
    local bad=
    [ "$NAT_SENT" -gt 0 ] || bad="$bad the backends sent no nat reply;"
    [ "${NAT_FWD[1]}" = "$NAT_SENT" ] || bad="$bad B translated ${NAT_FWD[1]} of the $NAT_SENT nat replies;"
    [ "${NAT_FWD[0]}" = 0 ] || bad="$bad A sent ${NAT_FWD[0]} packets beyond its requests;"
    [ "${NAT_DROPS[0]}" = 0 ] && [ "${NAT_DROPS[1]}" = 0 ] || bad="$bad drops A=${NAT_DROPS[0]} B=${NAT_DROPS[1]};"
    [ "${NAT_KERNEL[0]}" = 0 ] && [ "${NAT_KERNEL[1]}" = 0 ] || bad="$bad nat replies in the kernel of A: ${NAT_KERNEL[0]}, B: ${NAT_KERNEL[1]};"
    echo "$bad"
}

# requests_from NAME VIP PORT...: a request from the client from each PORT, a new connection
# each; $WORK/NAME.curl gets "PORT ANSWER" lines (FAILED when none).
requests_from() {
    local name=$1 vip=$2
    shift 2
    ip netns exec "$NS_C" bash -c "for p in $*; do
        echo \"\$p \$(curl -s --max-time 3 --local-port \$p http://$vip/ || echo FAILED)\"; done" >"$WORK/$name.curl" 2>&1
}
# requests NAME VIP FIRST-PORT N: requests_from the N ports from FIRST-PORT on.
requests() {
    # shellcheck disable=SC2046 # (ports)
    requests_from "$1" "$2" $(seq "$3" $(($3 + $4 - 1)))
}
answered() { awk '$2 ~ /^b[123]$/ {n++} END {print n + 0}' "$WORK/$1.curl"; }
per_backend() { # NAME -> "b1=N b2=N b3=N"
    awk '{c[$2]++} END {printf "b1=%d b2=%d b3=%d", c["b1"], c["b2"], c["b3"]}' "$WORK/$1.curl"
}

# A stream of new connections to the three VIPs, one at a time (ephemeral client ports):
# "OK|FAILED time_ms VIP" lines in $WORK/NAME.stream. stream_start NAME / stream_stop.
STREAM=
stream_start() {
    ip netns exec "$NS_C" bash -c "while :; do for v in $VIP_TUN $VIP_DSR $VIP_NAT; do
        if curl -s --max-time 3 -o /dev/null http://\$v/; then r=OK; else r=FAILED; fi
        echo \"\$r \$(date +%s%3N) \$v\"; sleep 0.03; done; done" >"$WORK/$1.stream" 2>&1 &
    STREAM=$!
    LOADS+=("$STREAM")
}
stream_stop() {
    kill "$STREAM" 2>/dev/null
    wait "$STREAM" 2>/dev/null
    sleep 0.5 # (a curl in flight finishes its line... or not: count lines only)
}
stream_counts() { # NAME -> "requests=N failed=N nat_requests=N nat_failed=N"
    local f=$WORK/$1.stream
    echo "requests=$(grep -c '^[OF]' "$f") failed=$(grep -c '^FAILED' "$f")" \
        "nat_requests=$(grep -c "^[OF].* $VIP_NAT\$" "$f") nat_failed=$(grep -c "^FAILED .* $VIP_NAT\$" "$f")"
}

pick_ports() { # VIP FIRST LAST N -> up to N ports the router sends to A (via_node)
    local p n=0
    for p in $(seq "$2" "$3"); do
        if [ "$(via_node "$p" "$1")" = A ]; then
            echo "$p"
            n=$((n + 1))
            [ $n -ge "$4" ] && break
        fi
    done
}

# reader_vip PORT: the VIP of a slow connection from PORT (PORT mod 3: 0 tunnel, 1 dsr, 2 nat).
reader_vip() {
    case $(($1 % 3)) in
    0) echo "$VIP_TUN" ;;
    1) echo "$VIP_DSR" ;;
    *) echo "$VIP_NAT" ;;
    esac
}

# Slow established connections (slow_reader.py: /big read slowly for SLOW seconds, then the
# rest at full speed): readers_start NAME SLOW PORT... (to the VIP reader_vip names);
# readers_wait NAME -> READ_OK, READ_N, READ_NAT_OK, READ_NAT_N (those to the nat VIP), and
# READ_BROKEN (the ports that broke).
READERS=()
readers_start() {
    local name=$1 slow=$2 p vip
    shift 2
    READERS=()
    for p in "$@"; do
        vip=$(reader_vip "$p")
        ip netns exec "$NS_C" "$PY" "$HERE/slow_reader.py" --host "$vip" --local-port "$p" \
            --slow-seconds "$slow" --interval 0.3 >"$WORK/$name-$p.reader" 2>&1 &
        READERS+=("$!")
        LOADS+=("$!")
    done
}
readers_wait() {
    local name=$1 p f sha nat
    for p in "${READERS[@]}"; do wait "$p" 2>/dev/null; done
    READ_OK=0 READ_N=0 READ_NAT_OK=0 READ_NAT_N=0 READ_BROKEN=
    for f in "$WORK/$name"-*.reader; do
        p=${f##*-}
        p=${p%.reader}
        nat=
        [ "$(reader_vip "$p")" = "$VIP_NAT" ] && nat=1
        READ_N=$((READ_N + 1))
        [ -n "$nat" ] && READ_NAT_N=$((READ_NAT_N + 1))
        read -r _ sha _ <"$f"
        if [ "$(cut -c1-2 "$f")" = OK ] && [ "$sha" = "$BIG_SHA" ]; then
            READ_OK=$((READ_OK + 1))
            [ -n "$nat" ] && READ_NAT_OK=$((READ_NAT_OK + 1))
        else
            READ_BROKEN="$READ_BROKEN $p${nat:+(nat)}:$(head -c 60 "$f" | tr ' ' _)"
        fi
    done
}

# ===== spread: both nodes announce, both serve, every backend serves =====
route_tun=$(ip -n "$NS_R" route show "$VIP_TUN/32" | tr -s '\n\t ' ' ')
nf0=("$(node_stat 0 "$NEW_FLOWS")" "$(node_stat 1 "$NEW_FLOWS")")
requests spread-tun "$VIP_TUN" 40000 300
requests spread-dsr "$VIP_DSR" 41000 100
sleep 0.3 # (the workers publish their counters every ~100 ms)
nf1=("$(node_stat 0 "$NEW_FLOWS")" "$(node_stat 1 "$NEW_FLOWS")")
dA=$((nf1[0] - nf0[0])) dB=$((nf1[1] - nf0[1]))
# nat: nothing else runs meanwhile, so the counters' differences are the nat flows'
ns0=$(nat_snap)
requests spread-nat "$VIP_NAT" 41200 200
sleep 0.5 # (the workers' counters; the last connections' last ACKs)
ns1=$(nat_snap)
nf2=("$(node_stat 0 "$NEW_FLOWS")" "$(node_stat 1 "$NEW_FLOWS")")
nat_delta "$ns0" "$ns1"
nA=$((nf2[0] - nf1[0])) nB=$((nf2[1] - nf1[1]))
# the router's own choice for each of those flows
predA=0 predNA=0
for p in $(seq 40000 40299); do [ "$(via_node "$p" "$VIP_TUN")" = A ] && predA=$((predA + 1)); done
for p in $(seq 41000 41099); do [ "$(via_node "$p" "$VIP_DSR")" = A ] && predA=$((predA + 1)); done
for p in $(seq 41200 41399); do [ "$(via_node "$p" "$VIP_NAT")" = A ] && predNA=$((predNA + 1)); done
okt=$(answered spread-tun) okd=$(answered spread-dsr) okn=$(answered spread-nat)
cat "$WORK/spread-tun.curl" "$WORK/spread-dsr.curl" >"$WORK/spread.curl"
pb=$(per_backend spread) pbn=$(per_backend spread-nat)
result "spread requests=600 ok_tunnel=$okt/300 ok_dsr=$okd/100 ok_nat=$okn/200 node_a_new_flows=$dA node_b_new_flows=$dB router_predicted_a=$predA $pb nat_node_a_new_flows=$nA nat_node_b_new_flows=$nB nat_router_predicted_a=$predNA nat_replies_translated_by_b=${NAT_FWD[1]}/$NAT_SENT nat_${pbn// / nat_}"
result "spread-nat $(nat_fields)"
bad=
[ "$okt" = 300 ] && [ "$okd" = 100 ] || bad="$bad only $okt/300 tunnel and $okd/100 dsr answered;"
[ "$dA" -ge 60 ] && [ "$dB" -ge 60 ] || bad="$bad new flows per node A=$dA B=$dB (want >= 60 each);"
[ "$dA" = "$predA" ] || bad="$bad A counted $dA new flows, the router's hash sent it $predA;"
for c in $pb; do [ "${c#*=}" -ge 60 ] || bad="$bad ${c%%=*} served ${c#*=} (want >= 60);"; done
[ "$(grep -o "nexthop via" <<<"$route_tun" | wc -l)" = 2 ] || bad="$bad route: $route_tun;"
# nat: entered through both nodes as the router hashed them, every reply through B
[ "$okn" = 200 ] || bad="$bad only $okn/200 nat answered;"
[ "$nA" -ge 30 ] && [ "$nB" -ge 30 ] || bad="$bad nat new flows per node A=$nA B=$nB (want >= 30 each);"
[ "$nA" = "$predNA" ] || bad="$bad A counted $nA new nat flows, the router's hash sent it $predNA;"
for c in $pbn; do [ "${c#*=}" -ge 30 ] || bad="$bad nat: ${c%%=*} served ${c#*=} (want >= 30);"; done
bad="$bad$(nat_bad)"
if [ -z "$bad" ]; then
    pass "spread: two nexthops ($route_tun), 600/600 answered; tunnel+dsr: node A $dA new flows (router: $predA), node B $dB, $pb; nat: node A $nA new flows (router: $predNA), node B $nB, $pbn, all $NAT_SENT replies translated by B (A: ${NAT_FWD[0]}, kernels: ${NAT_KERNEL[0]}/${NAT_KERNEL[1]})"
else
    fail "spread:$bad"
fi

# ===== nat-return: replies of flows B never saw (the router sent them to A) translated by B =====
mapfile -t NAT_A_PORTS < <(pick_ports "$VIP_NAT" 41400 41999 100)
nr=${#NAT_A_PORTS[@]}
ns0=$(nat_snap)
requests_from nat-return "$VIP_NAT" "${NAT_A_PORTS[@]}"
sleep 0.5
ns1=$(nat_snap)
nat_delta "$ns0" "$ns1"
okr=$(answered nat-return)
result "nat-return requests=$nr ok=$okr/$nr $(nat_fields) $(per_backend nat-return)"
bad=$(nat_bad)
[ "$nr" = 100 ] || bad="$bad only $nr of the ports 41400-41999 go to A;"
[ "$okr" = "$nr" ] || bad="$bad only $okr/$nr answered;"
[ "${NAT_REQ[0]}" -gt 0 ] && [ "${NAT_REQ[1]}" = 0 ] || bad="$bad request packets forwarded A=${NAT_REQ[0]} B=${NAT_REQ[1]} (want all on A);"
if [ -z "$bad" ]; then
    pass "nat-return: $okr/$nr nat requests through A answered; B's data plane, which forwarded none of their ${NAT_REQ[0]} request packets, translated all $NAT_SENT replies the backends sent (A none, neither kernel saw one)"
else
    fail "nat-return:$bad"
fi

# ===== lookup: both nodes pick the same backend for 1000 flows; the real answers agree =====
lookups() { # node index -> "port address" per line
    local p
    for p in $(seq 40000 40999); do
        echo "$p $(ctl "$1" lookup "$CLIENT:$p" "$VIP_TUN:80/tcp" 2>&1 | awk '$1 == "backend:" {sub(/:[0-9]+$/, "", $3); print $3}')"
    done
}
lookups 0 >"$WORK/lookup-a"
lookups 1 >"$WORK/lookup-b"
n_lk=$(awk '$2 ~ /^10\./ {n++} END {print n + 0}' "$WORK/lookup-a")
same=$(paste -d' ' "$WORK/lookup-a" "$WORK/lookup-b" | awk '$2 ~ /^10\./ && $2 == $4 {n++} END {print n + 0}')
real_ok=0
while read -r p ans; do
    [ "$(awk -v p="$p" '$1 == p {print $2}' "$WORK/lookup-a")" = "$(name_addr "$ans")" ] && real_ok=$((real_ok + 1))
done < <(awk '$2 ~ /^b[123]$/' "$WORK/spread-tun.curl")
# the nat requests of spread: B's lookup names the backend that answered, whichever node took
# the request (B never saw half of them)
nat_real_ok=0
while read -r p ans; do
    [ "$(ctl 1 lookup "$CLIENT:$p" "$VIP_NAT:80/tcp" 2>&1 | awk '$1 == "backend:" {sub(/:[0-9]+$/, "", $3); print $3}')" = "$(name_addr "$ans")" ] &&
        nat_real_ok=$((nat_real_ok + 1))
done < <(awk '$2 ~ /^b[123]$/' "$WORK/spread-nat.curl")
dist=$(awk '{c[$2]++} END {for (a in c) printf "%s=%d ", a, c[a]}' "$WORK/lookup-a")
result "lookup flows=1000 answered=$n_lk same_on_both=$same real_requests_matching=$real_ok/$okt nat_real_requests_matching=$nat_real_ok/$okn backends: $dist"
if [ "$n_lk" = 1000 ] && [ "$same" = 1000 ] && [ "$real_ok" = "$okt" ] && [ "$okt" -gt 0 ] &&
    [ "$nat_real_ok" = "$okn" ] && [ "$okn" -gt 0 ]; then
    pass "lookup: 1000/1000 flows get the same backend on A and B; $real_ok/$okt real requests were answered by that backend, whichever node took them; nat: $nat_real_ok/$okn"
else
    fail "lookup: $n_lk answered, $same the same on both nodes, $real_ok/$okt real answers match, nat $nat_real_ok/$okn"
fi

# ===== failover: A's data plane killed under load =====
# Flows the router sends to A now: the downloads' ports, and the probes that time the failover.
DL_TUN=$(pick_ports "$VIP_TUN" 44500 44749 1)
DL_DSR=$(pick_ports "$VIP_DSR" 44750 44999 1)
DL_NAT=$(pick_ports "$VIP_NAT" 44250 44499 1)
mapfile -t PROBES < <(pick_ports "$VIP_TUN" 45000 45999 150)
slow_ports=$(seq 44000 44049)
readers_via_a=0 nat_readers_via_a=0
for p in $slow_ports; do
    v=$(reader_vip "$p")
    if [ "$(via_node "$p" "$v")" = A ]; then
        readers_via_a=$((readers_via_a + 1))
        [ "$v" = "$VIP_NAT" ] && nat_readers_via_a=$((nat_readers_via_a + 1))
    fi
done
# shellcheck disable=SC2086 # (ports)
readers_start failover 12 $slow_ports
sleep 1
download_bg() { # name VIP port: a rate-limited download (about 10 s for 4 MiB), its sha256
    ip netns exec "$NS_C" bash -c "curl -s --max-time 60 --limit-rate 400K --local-port $3 http://$2/big | sha256sum" >"$WORK/$1.sha" 2>&1 &
    LOADS+=("$!")
    DL_PIDS+=("$!")
}
DL_PIDS=()
download_bg dl-tun "$VIP_TUN" "$DL_TUN"
download_bg dl-dsr "$VIP_DSR" "$DL_DSR"
download_bg dl-nat "$VIP_NAT" "$DL_NAT"
stream_start failover
sleep 2.5
now_ms
t_kill=$NOW
dp_kill 0
# probes: a new connection at a time, each from a port the router sent to A, until one answers
ip netns exec "$NS_C" bash -c "for p in ${PROBES[*]}; do
    if curl -s --connect-timeout 0.3 --max-time 1 -o /dev/null --local-port \$p http://$VIP_TUN/; then date +%s%3N; exit; fi; done; echo never" >"$WORK/probe.out" 2>&1 &
probe=$!
LOADS+=("$probe")
T_FROM=$t_kill
if wait_vips 1 10; then route_ms=$WAITED_MS; else route_ms=never; fi
T_FROM=
wait "$probe"
first=$(cat "$WORK/probe.out")
if [ "$first" = never ]; then failover_ms=never; else failover_ms=$((first - t_kill)); fi
withheld=$(ctl 0 -o json node status 2>/dev/null | jget "'; '.join('%s: %s' % (v['address'], v['reason']) for v in d['vips'] if not v['announced'])")
for p in "${DL_PIDS[@]}"; do wait "$p" 2>/dev/null; done
readers_wait failover
stream_stop
sc=$(stream_counts failover)
sha_tun=$(cut -d' ' -f1 <"$WORK/dl-tun.sha") sha_dsr=$(cut -d' ' -f1 <"$WORK/dl-dsr.sha")
sha_nat=$(cut -d' ' -f1 <"$WORK/dl-nat.sha")
dl_ok=0 nat_dl_ok=no
[ "$sha_tun" = "$BIG_SHA" ] && dl_ok=$((dl_ok + 1))
[ "$sha_dsr" = "$BIG_SHA" ] && dl_ok=$((dl_ok + 1))
[ "$sha_nat" = "$BIG_SHA" ] && dl_ok=$((dl_ok + 1)) && nat_dl_ok=yes
result "failover failover_ms=$failover_ms route_ms=$route_ms downloads_ok=$dl_ok/3 nat_download_ok=$nat_dl_ok established_survived=$READ_OK/$READ_N established_via_a=$readers_via_a nat_established_survived=$READ_NAT_OK/$READ_NAT_N nat_established_via_a=$nat_readers_via_a new_$sc"
result "failover a_withheld=\"$withheld\""
failed_new=$(grep -c '^FAILED' "$WORK/failover.stream")
if [ $dl_ok = 3 ] && [ "$READ_OK" = "$READ_N" ] && [ "$route_ms" != never ] && [ "$route_ms" -le 2000 ] &&
    [ "$failover_ms" != never ] && [ "$failover_ms" -le 3000 ] && [ "$failed_new" -le 3 ] && [ "$READ_NAT_N" -gt 0 ]; then
    pass "failover: A's data plane killed; route down to B in $route_ms ms, first new connection via B $failover_ms ms after the kill; the three downloads through A (tunnel, dsr, nat) byte-exact, $READ_OK/$READ_N established connections survived ($readers_via_a were on A; nat $READ_NAT_OK/$READ_NAT_N, $nat_readers_via_a on A), new connections: $sc"
else
    fail "failover: route $route_ms ms, first answer $failover_ms ms, downloads ok $dl_ok/3 (tun $sha_tun dsr $sha_dsr nat $sha_nat), established $READ_OK/$READ_N (nat $READ_NAT_OK/$READ_NAT_N; broken:$READ_BROKEN), new $sc"
fi

# ===== rejoin: A's data plane back while connections established over B run =====
# shellcheck disable=SC2046 # (ports)
readers_start rejoin 6 $(seq 46000 46029)
stream_start rejoin
sleep 1.5
now_ms
T_FROM=$NOW
if ! dp_start 0; then
    fail "rejoin: A's data plane did not start again"
    show_log "${NDIR[0]}/dp.out" dp-A
fi
if wait_vips 2 10; then rejoin_ms=$WAITED_MS; else rejoin_ms=never; fi
T_FROM=
moved=0
for p in $(seq 46000 46029); do
    [ "$(via_node "$p" "$(reader_vip "$p")")" = A ] && moved=$((moved + 1))
done
readers_wait rejoin
stream_stop
sc=$(stream_counts rejoin)
failed_new=$(grep -c '^FAILED' "$WORK/rejoin.stream")
nfa0=$(node_stat 0 "$NEW_FLOWS")
requests rejoin-new "$VIP_TUN" 46500 40
sleep 0.3
nfa1=$(node_stat 0 "$NEW_FLOWS")
result "rejoin announced_ms=$rejoin_ms established_survived=$READ_OK/$READ_N nat_established_survived=$READ_NAT_OK/$READ_NAT_N moved_to_a=$moved new_$sc after_a_new_flows=$((nfa1 - nfa0)) after_ok=$(answered rejoin-new)/40"
if [ "$rejoin_ms" != never ] && [ "$READ_OK" = "$READ_N" ] && [ "$failed_new" = 0 ] && [ $((nfa1 - nfa0)) -gt 0 ] &&
    [ "$(answered rejoin-new)" = 40 ]; then
    pass "rejoin: A announced again $rejoin_ms ms after its data plane started; $READ_OK/$READ_N connections established over B survived ($moved of them moved to A), new connections: $sc; A takes new flows again"
else
    fail "rejoin: announced $rejoin_ms ms, established $READ_OK/$READ_N (broken:$READ_BROKEN), new $sc, A new flows $((nfa1 - nfa0)), after $(answered rejoin-new)/40"
fi

# ===== drain: fiberlbctl node drain on A =====
# shellcheck disable=SC2046 # (ports)
readers_start drain 6 $(seq 47000 47019)
stream_start drain
sleep 1.5
now_ms
T_FROM=$NOW
drain_out=$(ctl 0 node drain 2>&1) || fail "drain: fiberlbctl node drain: $drain_out"
if wait_vips 1 10; then drain_ms=$WAITED_MS; else drain_ms=never; fi
T_DRAIN_OUT=$((T_FROM + ${WAITED_MS:-0}))
T_FROM=
sleep 1
rx0=$(node_stat 0 "$RX")
requests drain-new "$VIP_TUN" 48000 100
requests drain-nat "$VIP_NAT" 48200 50
readers_wait drain
stream_stop
sleep 0.3
rx1=$(node_stat 0 "$RX")
sc=$(stream_counts drain)
failed_new=$(grep -c '^FAILED' "$WORK/drain.stream")
state=$(ctl 0 -o json node status | jget "d['drain_state']")
okdn=$(answered drain-nat)
result "drain withdrawn_ms=$drain_ms established_survived=$READ_OK/$READ_N nat_established_survived=$READ_NAT_OK/$READ_NAT_N new_$sc requests_ok=$(answered drain-new)/100 nat_requests_ok=$okdn/50 a_rx_packets_after=$((rx1 - rx0)) drain_state=$state"
if [ "$drain_ms" != never ] && [ "$READ_OK" = "$READ_N" ] && [ "$failed_new" = 0 ] && [ "$(answered drain-new)" = 100 ] &&
    [ "$okdn" = 50 ] && [ "$READ_NAT_N" -gt 0 ] && [ "$rx0" -ge 0 ] && [ "$rx1" = "$rx0" ]; then
    pass "drain: A withdrawn $drain_ms ms after node drain, no connection failed ($READ_OK/$READ_N established, nat $READ_NAT_OK/$READ_NAT_N; new $sc; 100/100 requests, nat 50/50), A's data plane received nothing more (rx $rx0 -> $rx1), state $state"
else
    fail "drain: withdrawn $drain_ms ms, established $READ_OK/$READ_N (nat $READ_NAT_OK/$READ_NAT_N; broken:$READ_BROKEN), new $sc, requests $(answered drain-new)/100, nat $okdn/50, A rx $rx0 -> $rx1, state $state"
    echo "  drain: withdrawn at $T_DRAIN_OUT (ms since the epoch); failed:"
    grep -h FAILED "$WORK/drain.stream" "$WORK/drain-new.curl" "$WORK/drain-nat.curl" | sed 's/^/  drain: /'
    echo "  drain: B: $(node_stat 1 "$DIAG")"
fi
now_ms
T_FROM=$NOW
ctl 0 node resume >/dev/null 2>&1 || fail "drain: fiberlbctl node resume failed"
if wait_vips 2 10; then resume_ms=$WAITED_MS; else resume_ms=never; fi
T_FROM=
result "resume announced_ms=$resume_ms"
if [ "$resume_ms" != never ]; then pass "resume: A announced again $resume_ms ms after node resume"; else fail "resume: A not announced again: $(ctl 0 node status 2>&1 | tr '\n' ' ')"; fi

# ===== fiberlbd-kill: A's fiberlbd killed (kill -9): its TAP goes, BIRD withdraws by itself =====
# shellcheck disable=SC2046 # (ports)
readers_start fdkill 6 $(seq 48500 48519)
stream_start fdkill
sleep 1.5
now_ms
T_FROM=$NOW
kill -9 "${FD_PID[0]}" 2>/dev/null
wait "${FD_PID[0]}" 2>/dev/null
FD_PID[0]=
if wait_vips 1 5; then fdkill_ms=$WAITED_MS; else fdkill_ms=never; fi
T_FROM=
dp_alive=no
[ -n "${DP_PID[0]}" ] && kill -0 "${DP_PID[0]}" 2>/dev/null && dp_alive=yes
sleep 0.5
now_ms
T_FROM=$NOW
fd_start 0 || fail "fiberlbd-kill: A's fiberlbd did not start again"
if wait_vips 2 10; then fdback_ms=$WAITED_MS; else fdback_ms=never; fi
T_FROM=
readers_wait fdkill
stream_stop
sc=$(stream_counts fdkill)
failed_new=$(grep -c '^FAILED' "$WORK/fdkill.stream")
result "fiberlbd-kill withdrawn_ms=$fdkill_ms restarted_to_announced_ms=$fdback_ms dataplane_alive=$dp_alive established_survived=$READ_OK/$READ_N nat_established_survived=$READ_NAT_OK/$READ_NAT_N new_$sc"
if [ "$fdkill_ms" != never ] && [ "$fdback_ms" != never ] && [ "$dp_alive" = yes ] &&
    [ "$READ_OK" = "$READ_N" ] && [ "$failed_new" = 0 ]; then
    pass "fiberlbd-kill: A's fiberlbd killed -> withdrawn in $fdkill_ms ms (its TAP vanished), restarted -> announced in $fdback_ms ms; $READ_OK/$READ_N established connections survived, new connections: $sc"
else
    fail "fiberlbd-kill: withdrawn $fdkill_ms ms, back $fdback_ms ms, data plane alive $dp_alive, established $READ_OK/$READ_N (broken:$READ_BROKEN), new $sc"
fi

# ===== node-death: A goes silent (iptables) and all its processes die; BFD withdraws it =====
sleep 1
stream_start death
sleep 1
now_ms
T_FROM=$NOW
silence 0 on
dp_kill 0
kill -9 "${FD_PID[0]}" 2>/dev/null
wait "${FD_PID[0]}" 2>/dev/null
FD_PID[0]=
bird_kill "${NDIR[0]}" KILL
if wait_vips 1 10; then death_ms=$WAITED_MS; else death_ms=never; fi
T_FROM=
why=$(birdc_ "$RDIR" show protocols node_a | awk 'NR > 2' | tr -s ' ' | cut -c1-120)
sleep 3
stream_stop
sc=$(stream_counts death)
failed_new=$(grep -c '^FAILED' "$WORK/death.stream")
result "node-death withdrawn_ms=$death_ms new_$sc"
if [ "$death_ms" != never ] && [ "$death_ms" -le 1000 ] && grep -q "BFD session down" <<<"$why" && [ "$failed_new" -le 3 ]; then
    pass "node-death: A silenced and its processes killed: withdrawn by BFD in $death_ms ms ($why); new connections: $sc"
else
    fail "node-death: withdrawn $death_ms ms ($why), new connections $sc"
fi

echo "RESULT seconds=$(($(date +%s) - T0))"
e2e_finish
