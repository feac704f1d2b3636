#!/usr/bin/env bash
# fiberlb data plane end to end on the DPDK backend: the topology and checks of dataplane.sh
# (curl through nat and dsr listeners to three real HTTP servers, a byte-exact download, UDP,
# reconfiguration under a request stream, counters), with fiberlb-dataplane driving the two lb
# veths through DPDK virtual devices — once with `net_af_packet` vdevs, once with `net_af_xdp`
# vdevs (DPDK 22.11's af_xdp PMD: one queue per vdev, start_queue=0,queue_count=1). Prints
# "PASS mode/name ..." / "FAIL mode/name ..." and "RESULT ..." lines; exits non-zero on a failure.
#
#   FIBERLB_BIN_DIR      directory holding fiberlb-dataplane built with --features dpdk
#                        (default: target/dpdk/release)
#   FE2E_DPDK_MODES      which vdev kinds to run (default: "af_packet af_xdp")
#   FE2E_CORE            the worker's core (default 1)
#   FE2E_PREFIX          the network namespaces' name prefix, unique per run (default:
#                        fe2e<pid>; short: the tap interfaces are named after it)
#
#   FE2E_DPDK_HOST_MODES which vdev kinds also get host interfaces (default: "af_packet af_xdp")
#
# Differences from dataplane.sh, and why:
# - A DPDK port takes every frame of its device. The dsr replies are not forwarded by the lb
#   namespace's kernel as with AF_XDP's XDP_PASS: a second client link (c1, on the backends'
#   bridge) carries them: the backends route what leaves from the dsr VIP straight to the
#   client (policy rule `from VIP_DSR`), everything else (nat replies) through fiberlb.
# - The exception path (host_interface): each port gets a net_tap interface (${P}t0, ${P}t1)
#   and the lb's own addresses (10.91.1.1, 10.91.2.1) move from l0/l1 to them, so the lb
#   namespace's kernel only talks through fiberlb: the client's ARP and ping for 10.91.1.1, a
#   TCP service on it (python http.server: "SSH/BGP would work"), and a health check from the lb
#   namespace to a nat backend (its replies come from backend:80, a nat_return key: only the
#   local-address rule keeps them from being un-NATed) are checked, then the VIP checks run in
#   the same run. The client's permanent neighbour entry for 10.91.1.1 is removed: its VIP
#   traffic, too, depends on ARP through the tap.
# - net_af_packet only copies frames: the lb namespace's kernel would see them too. An nft
#   netdev ingress drop on l0/l1 (after the packet taps, so DPDK still gets every frame) keeps
#   the kernel to what comes through the taps. Forwarding is off there (ip_forward=0).
# - A DPDK port on a veth sets the link down when the process ends, and the kernel then flushes
#   the routes and neighbours: restore_lb puts them (and the addresses, without the drop) back
#   after each run, and is checked.
#
# Root only; skips (exit 0, "SKIP" line) without libdpdk. Needs ip, ethtool, curl, python3.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
E2E_DEFAULT_BIN_DIR=target/dpdk/release
MODES=${FE2E_DPDK_MODES:-af_packet af_xdp}
HOST_MODES=${FE2E_DPDK_HOST_MODES:-af_packet af_xdp}

BASE_P=${FE2E_PREFIX:-fe2e$$}
P=${BASE_P}x
# shellcheck source=topology.sh
. "$HERE/topology.sh"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
MAC_C1=02:e2:03:00:00:02 IP_C1=10.91.2.100

e2e_need_root e2e-dpdk "network namespaces, DPDK"
if ! pkg-config --exists libdpdk; then
    echo "SKIP e2e-dpdk: libdpdk not installed (scripts/deps-dpdk.sh)"
    exit 0
fi
e2e_need_tools ip ethtool curl sha256sum nft
e2e_need_bin "$LB" "cargo build --release -p fiberlb-dataplane --features dpdk"
e2e_init
MODE=setup # (the check names' prefix: the vdev kind of the run)

host_on() { # does this mode run with host interfaces?
    case " $HOST_MODES " in *" $MODE "*) return 0 ;; esac
    return 1
}

# Before a run with host interfaces: the lb's addresses leave l0/l1 (they go to the taps once
# fiberlb created them), the kernel stops seeing l0/l1 frames, the client forgets the lb's MAC.
host_prepare() {
    ip -n "$NS_L" addr del 10.91.1.1/24 dev l0
    ip -n "$NS_L" addr del 10.91.2.1/24 dev l1
    ip netns exec "$NS_L" nft -f - <<NFT
table netdev fe2e_kernel_off {
    chain l0 { type filter hook ingress device l0 priority 0; policy drop; }
    chain l1 { type filter hook ingress device l1 priority 0; policy drop; }
}
NFT
    ip -n "$NS_C" neigh del 10.91.1.1 dev c0 2>/dev/null || true
}

# What a DPDK port's exit takes away: links, connected routes, permanent neighbours.
restore_lb() {
    local i
    ip netns exec "$NS_L" nft delete table netdev fe2e_kernel_off 2>/dev/null || true
    for i in 0 1; do
        ip -n "$NS_L" addr flush dev "${P}t$i" 2>/dev/null || true
    done
    ip -n "$NS_L" addr replace 10.91.1.1/24 dev l0
    ip -n "$NS_L" addr replace 10.91.2.1/24 dev l1
    ip -n "$NS_L" link set l0 up
    ip -n "$NS_L" link set l1 up
    ip -n "$NS_L" neigh replace 10.91.1.2 lladdr $MAC_C0 dev l0 nud permanent
    for i in 0 1 2; do
        ip -n "$NS_L" neigh replace "${IP_B[$i]}" lladdr "${MAC_B[$i]}" dev l1 nud permanent
    done
    ip -n "$NS_C" route replace 10.91.100.0/24 via 10.91.1.1
    ip -n "$NS_C" neigh replace 10.91.1.1 lladdr $MAC_L0 dev c0 nud permanent
    for i in 0 1 2; do
        ip -n "${NS_B[$i]}" route replace default via 10.91.2.1
        ip -n "${NS_B[$i]}" neigh replace 10.91.2.1 lladdr $MAC_L1 dev e0 nud permanent
    done
}

make_big_file 20

# Each vdev kind gets fresh namespaces (and so fresh TCP state: the checks reuse fixed client
# ports, which would still be in TIME_WAIT from the previous kind's run).
setup_mode() { # mode
    local i ns
    P=${BASE_P}${1:3:1}
    # shellcheck source=topology.sh
    . "$HERE/topology.sh"
    topo_up || { echo "FAIL setup: topology"; exit 1; }
    # The dsr return link: client c1 <-> switch s4 on br0.
    ip -n "$NS_C" link add c1 address $MAC_C1 type veth peer name s4 netns "$NS_S"
    ip -n "$NS_S" link set s4 master br0
    ip -n "$NS_S" link set s4 up
    ip -n "$NS_C" link set c1 up
    ip netns exec "$NS_C" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
        net.ipv4.conf.c0.rp_filter=0 net.ipv4.conf.c1.rp_filter=0
    ip netns exec "$NS_C" ethtool -K c1 tx off >/dev/null
    for i in 0 1 2; do
        ns=${NS_B[$i]}
        ip -n "$ns" rule add from "$VIP_DSR" lookup 100
        ip -n "$ns" route add default via $IP_C1 dev e0 onlink table 100
        ip -n "$ns" neigh replace $IP_C1 lladdr $MAC_C1 dev e0 nud permanent
    done
    ip netns exec "$NS_L" sysctl -qw net.ipv4.ip_forward=0
    start_backends --udp "$VIP_DSR"
}

teardown_mode() {
    stop_pids
    topo_down
}

services_yaml all >"$WORK/services.yaml"
services_yaml without-b3 >"$WORK/services-2.yaml"

NO_HUGE=false
if [ "$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)" -lt 64 ]; then
    NO_HUGE=true # (slower; DPDK's af_xdp PMD may refuse ordinary pages)
fi

dataplane_toml() { # mode
    local v0 v1
    case $1 in
    af_packet)
        v0="net_af_packet0,iface=l0"
        v1="net_af_packet1,iface=l1"
        ;;
    af_xdp)
        v0="net_af_xdp0,iface=l0,start_queue=0,queue_count=1"
        v1="net_af_xdp1,iface=l1,start_queue=0,queue_count=1"
        ;;
    esac
    cat <<TOML
[forwarding]
flow_capacity = 65536
[[ports]]
name = "client"
driver = "dpdk"
device = "${v0%%,*}"
interface = "l0"
role = "client"
gateway_mac = "$MAC_C0"
$(host_on && echo "host_interface = \"${P}t0\"")
[[ports]]
name = "backend"
driver = "dpdk"
device = "${v1%%,*}"
interface = "l1"
role = "backend"
$(host_on && echo "host_interface = \"${P}t1\"")
[workers]
cores = [${FE2E_CORE:-1}]
idle_backoff = true
[shm]
path = "$SHM"
[dpdk]
cores = [0]
no_huge = $NO_HUGE
file_prefix = "${P}lb"
vdevs = ["$v0", "$v1"]
log_level = "notice"
mbufs = 8191
TOML
}

# The exception path: the taps are up with the ports' MACs, the lb's addresses go on them,
# then ARP + ping, a TCP service on the lb's address, a health check to a nat backend.
host_checks() {
    local t0=${P}t0 t1=${P}t1 i ok mac state
    for i in 0 1; do
        local t=${P}t$i want=$MAC_L0
        [ $i = 1 ] && want=$MAC_L1
        state=$(ip -n "$NS_L" -o link show "$t" 2>&1)
        mac=$(echo "$state" | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
        if echo "$state" | grep -q '<[^>]*,UP[,>]' && [ "$mac" = "$want" ]; then
            pass "host-interface $t up with its port's MAC $mac"
        else
            fail "host-interface $t: $state"
        fi
    done
    ip -n "$NS_L" addr add 10.91.1.1/24 dev "$t0"
    ip -n "$NS_L" addr add 10.91.2.1/24 dev "$t1"
    # (a) ARP and ICMP through the tap: the client has no neighbour entry for the lb.
    local out
    out=$(ip netns exec "$NS_C" ping -c 3 -i 0.2 -W 2 10.91.1.1 2>&1)
    local neigh; neigh=$(ip -n "$NS_C" neigh show 10.91.1.1 dev c0)
    result "host-ping $(echo "$out" | grep -o '[0-9]* received') neigh: $neigh"
    if echo "$out" | grep -q ' 0% packet loss' && echo "$neigh" | grep -q "lladdr $MAC_L0" \
        && ! echo "$neigh" | grep -q PERMANENT; then
        pass "host-ping 10.91.1.1 answered by the lb's kernel, ARP learnt $MAC_L0 through the tap"
    else
        fail "host-ping: $out / $neigh"
    fi
    # (b) A TCP service on the lb's own address, from the client.
    mkdir -p "$WORK/hostweb"
    echo "hello from the lb host" >"$WORK/hostweb/hello"
    ip netns exec "$NS_L" "$PY" -m http.server --bind 10.91.1.1 --directory "$WORK/hostweb" 8080 \
        >"$WORK/hostweb.log" 2>&1 &
    local web=$!
    ok=
    for i in $(seq 1 30); do
        out=$(ip netns exec "$NS_C" curl -s --max-time 3 http://10.91.1.1:8080/hello)
        [ "$out" = "hello from the lb host" ] && { ok=1; break; }
        sleep 0.2
    done
    kill "$web" 2>/dev/null; wait "$web" 2>/dev/null
    if [ -n "$ok" ]; then pass "host-tcp curl to a server on the lb's address (try $i)"; else fail "host-tcp: got '$out'"; fi
    # (c) Health checks from the lb's kernel to the nat backends (backend:80 is a nat_return
    # key of nat-http: the replies must reach the kernel, not be un-NATed to a client). fiberlb
    # reads the taps' addresses every second: wait until it published 10.91.2.1.
    for i in $(seq 1 30); do
        grep -q 'host addresses on .*10\.91\.2\.1' "$WORK/$MODE.out" && break
        sleep 0.1
    done
    ok=0 out=
    for i in 0 1 2; do
        local got
        got=$(ip netns exec "$NS_L" curl -s --max-time 5 "http://${IP_B[$i]}:80/")
        out="$out ${IP_B[$i]}=$got"
        [ "$got" = "b$((i + 1))" ] && ok=$((ok + 1))
    done
    result "host-health-check$out"
    if [ $ok = 3 ] && grep -q '^tcp 10.91.2.1 ' "$WORK/b1/log"; then
        pass "host-health-check curl from the lb namespace to all 3 nat backends (source 10.91.2.1)"
    else
        fail "host-health-check: $ok/3:$out"
    fi
}

# After the VIP checks: packets went to the host, counted in the shared-memory stats.
host_counter_check() {
    ip netns exec "$NS_L" "$LB" stats --shm "$SHM" --json >"$WORK/host-stats.json" 2>&1
    local n
    n=$(stats_workers "$WORK/host-stats.json" to_host)
    result "host-to-host stats to_host=$n"
    if [ "$n" -gt 0 ] 2>/dev/null; then
        pass "host-to-host-counter stats to_host=$n"
    else
        fail "host-to-host-counter: no to_host > 0 in stats --json: $(head -c 300 "$WORK/host-stats.json")"
    fi
}

run_mode() { # af_packet | af_xdp
    MODE=$1
    dataplane_toml "$MODE" >"$WORK/$MODE.toml"
    : >"$WORK/$MODE.out"
    if host_on; then host_prepare; fi
    if ! lb_start "$WORK/$MODE.out" 15 --config "$WORK/$MODE.toml" --services "$WORK/services.yaml"; then
        fail "start: fiberlb-dataplane did not start:"
        show_log "$WORK/$MODE.out"
        kill -TERM "$LB_PID" 2>/dev/null; wait "$LB_PID" 2>/dev/null; LB_PID=
        restore_lb
        return
    fi
    pass "start: $(grep -o 'forwarding on.*(DPDK)' "$WORK/$MODE.out" | head -c 300)"
    # The link comes up with the port; give the af_xdp PMD's program a moment too.
    sleep 1
    wait_listening 80 "${NS_B[@]}"

    check_second_instance "$WORK/$MODE.toml" "$WORK/$MODE.second" " before DPDK started"
    if host_on; then host_checks; fi

    vip_checks
    # The client port's rte_eth_stats and link, published every second.
    port_stats_check client
    # shellcheck source=reconfig.sh
    . "$HERE/reconfig.sh"
    if host_on; then host_counter_check; fi

    lb_stop "$WORK/$MODE.out"
    if [ $LB_RC = 0 ] && grep -q "EAL cleaned up" "$WORK/$MODE.out" \
        && ! ip -n "$NS_L" -o link show | grep -q ' xdp'; then
        pass "stop exit=0, ports closed, EAL cleaned up, no XDP program left"
    else
        fail "stop exit=$LB_RC: $(tail -n 3 "$WORK/$MODE.out" | tr '\n' ' ')"
    fi
    if host_on; then
        # The taps persist (down), keeping the operator's addresses for the next start.
        if ip -n "$NS_L" -o addr show dev "${P}t0" 2>/dev/null | grep -q '10.91.1.1/24'; then
            pass "host-persist ${P}t0 kept its address after the exit"
        else
            fail "host-persist: $(ip -n "$NS_L" -o addr show dev "${P}t0" 2>&1)"
        fi
    fi
    # Did the exit take the links down (the pitfall)? Then put everything back and check.
    local state; state=$(ip -n "$NS_L" -o link show l0 | grep -o 'state [A-Z]*')
    result "after-exit l0 $state, lb neighbours: $(ip -n "$NS_L" neigh show nud permanent | wc -l)"
    restore_lb
    sleep 0.5
    if ip -n "$NS_L" route show | grep -q '10.91.1.0/24' \
        && [ "$(ip -n "$NS_L" neigh show nud permanent | wc -l)" = 4 ] \
        && ip netns exec "$NS_C" ping -c 1 -W 2 10.91.1.1 >/dev/null; then
        pass "restore: links, routes and neighbours back; the lb's kernel answers ping"
    else
        fail "restore: $(ip -n "$NS_L" route show | tr '\n' ';') $(ip -n "$NS_L" neigh show | tr '\n' ';')"
    fi
    rm -f "$SHM" "$SHM.slots.json" "$SHM.ports.json"
}

for m in $MODES; do
    setup_mode "$m"
    run_mode "$m"
    teardown_mode
done

e2e_finish
