#!/usr/bin/env bash
# fiberlb data plane end to end: a real client (curl, a UDP program), fiberlb-dataplane on two
# AF_XDP veths, three real backends — in network namespaces this script creates and always
# removes. Prints "PASS name ..." / "FAIL name ..." lines and "RESULT key=value" lines, and exits
# non-zero if anything failed.
#
#   FIBERLB_BIN_DIR  directory holding fiberlb-dataplane (default: target/release)
#   FE2E_PREFIX      the network namespaces' name prefix, unique per run (default: fe2e<pid>)
#   FE2E_CORE        the worker's core (default 1)
#
# Root only. Needs ip, ethtool, curl, python3, sha256sum.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
P=${FE2E_PREFIX:-fe2e$$}
# shellcheck source=topology.sh
. "$HERE/topology.sh"
# shellcheck source=lib.sh
. "$HERE/lib.sh"

e2e_need_root e2e "network namespaces, XDP, AF_XDP"
e2e_need_tools ip ethtool curl sha256sum
e2e_need_bin "$LB"
e2e_init

topo_up || { echo "FAIL setup: topology"; exit 1; }

# Backends: the same 20 MB file everywhere, so a download is checkable whoever serves it.
make_big_file 20
start_backends --udp "$VIP_DSR"

services_yaml all >"$WORK/services.yaml"
services_yaml without-b3 >"$WORK/services-2.yaml"
xdp_dataplane_toml 65536 "${FE2E_CORE:-1}" >"$WORK/dataplane.toml"

lb_start_or_exit "$WORK/lb.out" 10 --config "$WORK/dataplane.toml" --services "$WORK/services.yaml"
n_xdp=$(ip -n "$NS_L" -o link show | grep -c ' xdp')
if [ "$n_xdp" = 2 ]; then pass "start: XDP on l0 and l1"; else fail "start: $n_xdp XDP programs attached, want 2"; fi
# Backends listening?
wait_listening 80 "${NS_B[@]}"

# A second instance on the same region is refused before touching anything.
check_second_instance "$WORK/dataplane.toml" "$WORK/second.out"

vip_checks

# The client port's NIC counters and link, as the data plane publishes them every second.
port_stats_check client

# Non-VIP traffic still reaches the lb's kernel (XDP_PASS).
if ip netns exec "$NS_C" ping -c 1 -W 2 10.91.1.1 >/dev/null; then pass "ping-lb kernel answers"; else fail "ping-lb"; fi

# --- reconfiguration during a steady stream ---
. "$HERE/reconfig.sh"

# Stop: SIGTERM, then the programs are detached and the region released.
lb_stop "$WORK/lb.out"
if [ $LB_RC = 0 ] && ! ip -n "$NS_L" -o link show | grep -q ' xdp'; then
    pass "stop exit=0, XDP detached"
else
    fail "stop exit=$LB_RC, $(ip -n "$NS_L" link show | grep -c xdp) programs still attached"
fi

e2e_finish
