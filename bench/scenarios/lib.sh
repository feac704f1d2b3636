# Shared by bench/run.sh and the scenario files: the namespace topology, the generator/sink
# invocation and the results file. Sourced, not run.
#
#   gen ns [g0 198.18.1.1] ── [l0 198.18.1.2]  lb ns  [l1 198.18.2.1] ── [b0 198.18.2.2]  be ns
#
# Both veth pairs have 2 queues (2 fiberlb workers need one queue each). Neighbours are
# static, rp_filter is 0, TX checksum offload is off on the endpoints. The generator and the
# sink are one process (fiberlb-pktgen run): its TX thread enters gen, its sink thread be.
# Threaded NAPI stays OFF everywhere (it cannot be turned back off on a veth): veth does its
# receive work on the SENDER's CPU, so l0's receive runs on the generator's core and b0's
# receive (the sink's XDP program and AF_XDP copy) on the forwarder's core.

P=fb$$
G=${P}g L=${P}l B=${P}b
MAC_G0=02:b0:01:00:00:01 MAC_L0=02:b0:01:00:00:02 MAC_L1=02:b0:02:00:00:01 MAC_B0=02:b0:02:00:00:02
VIP_DSR=198.18.100.1 VIP_NAT=198.18.100.2 VIP_TUN=198.18.100.3 VIP_KERNEL=198.18.100.9
DNAT_BACKEND=198.18.2.40
GEN_CORE=0 SINK_CORE=0 FWD_CORE=1
# BENCH_NICE=-N runs the generator/sink and the user-space forwarders (fiberlb, testpmd) at
# that nice level, to hold their cores against other work on a shared machine. Off by
# default: at -20 with busy-pollers on both cores, kernel workers (nice 0) starved and XDP
# attach/detach took over a minute.
NICE="nice -n ${BENCH_NICE:-0}"
WORK=$(mktemp -d /tmp/$P.XXXX)
BG_PIDS=()

cleanup() {
    local p
    for p in "${BG_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    for ns in $G $L $B; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$WORK" /dev/shm/$P.region /dev/shm/$P.region.slots.json /dev/hugepages/${P}* /var/run/dpdk/${P}* 2>/dev/null || true
}

# Backends: 4 per pool, told apart by the sink by MAC (dsr) or address (nat, tunnel).
backend_addr() { echo "198.18.2.$(($1 + $2))"; } # base index
backend_mac() { printf '02:b0:02:00:%02x:%02x' "$1" "$2"; }

topology_up() {
    for ns in $G $L $B; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
    ip -n $L link add l0 address $MAC_L0 numtxqueues 2 numrxqueues 2 type veth peer name g0 \
        address $MAC_G0 numtxqueues 2 numrxqueues 2 netns $G
    ip -n $L link add l1 address $MAC_L1 numtxqueues 2 numrxqueues 2 type veth peer name b0 \
        address $MAC_B0 numtxqueues 2 numrxqueues 2 netns $B
    ip -n $G addr add 198.18.1.1/24 dev g0
    ip -n $L addr add 198.18.1.2/24 dev l0
    ip -n $L addr add 198.18.2.1/24 dev l1
    ip -n $B addr add 198.18.2.2/24 dev b0
    for a in $VIP_DSR $VIP_NAT $VIP_TUN $VIP_KERNEL; do ip -n $B addr add $a/32 dev lo; done
    topology_links
    ip netns exec $L sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
        net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.l0.rp_filter=0 net.ipv4.conf.l1.rp_filter=0
    ip netns exec $B sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.b0.rp_filter=0
    ip netns exec $G ethtool -K g0 tx off >/dev/null 2>&1 || true
    ip netns exec $B ethtool -K b0 tx off >/dev/null 2>&1 || true
}

# Links up, routes and static neighbours: also after a DPDK port took a link down (the kernel
# then flushes routes and even permanent neighbours).
topology_links() {
    for x in "$G g0" "$L l0" "$L l1" "$B b0"; do set -- $x; ip -n "$1" link set "$2" up; done
    ip -n $G neigh replace 198.18.1.2 lladdr $MAC_L0 dev g0 nud permanent
    ip -n $L neigh replace 198.18.1.1 lladdr $MAC_G0 dev l0 nud permanent
    ip -n $L neigh replace 198.18.2.2 lladdr $MAC_B0 dev l1 nud permanent
    ip -n $L neigh replace $DNAT_BACKEND lladdr $MAC_B0 dev l1 nud permanent
    ip -n $B neigh replace 198.18.2.1 lladdr $MAC_L1 dev b0 nud permanent
    # Kernel forwarding target: the VIP lives on be's loopback.
    ip -n $L route replace $VIP_KERNEL/32 via 198.18.2.2 dev l1
    # The generator's clients (198.19.0.0/16) are behind g0 (only matters for DNAT's
    # conntrack; no reply is ever sent).
    ip -n $L route replace 198.19.0.0/16 via 198.18.1.1 dev l0
}

# pktgen NAME DST_MAC VIP SIZE FLOWS TXQ CAPTURE [extra args...]: one max-rate trial; the JSON
# goes to $RES/json/NAME.json. Prints nothing; results are read with jget.
# CPU time of the forwarder's packet threads: FWD_PID (the forwarder's process) and
# FWD_THREADS (an extended regex over their names) are set by the scenario around its trials.
# Prints "utime stime" in clock ticks, summed over the matching threads.
FWD_PID= FWD_THREADS=
fwd_cpu_ticks() {
    local t comm u=0 k=0 f
    for t in /proc/"$FWD_PID"/task/*; do
        comm=$(cat "$t/comm" 2>/dev/null) || continue
        [[ $comm =~ $FWD_THREADS ]] || continue
        # Fields after the ")" of comm: state is 3rd, utime 14th, stime 15th of the full line.
        read -r -a f <<<"$(sed 's/^.*) //' "$t/stat")"
        u=$((u + f[11])) k=$((k + f[12]))
    done
    echo "$u $k"
}

pktgen() {
    local name=$1 dst_mac=$2 vip=$3 size=$4 flows=$5 txq=$6 capture=$7 perf_pid= cpu0=
    shift 7
    [ -n "$FWD_PID" ] && cpu0=$(fwd_cpu_ticks)
    # PERF=1: profile every CPU (cpu-clock; no hardware counters in this VM) during the trial.
    if [ -n "${PERF:-}" ] && command -v perf >/dev/null; then
        (sleep 1; perf record -q -a -e cpu-clock -o "$WORK/$name.perf" -- sleep $((SECS > 2 ? SECS - 2 : 1)) \
            >/dev/null 2>&1) &
        perf_pid=$!
    fi
    $NICE "$PKTGEN" run --tx-netns $G --tx-iface g0 --tx-queues "$txq" --tx-cores $GEN_CORE \
        --src-mac $MAC_G0 --dst-mac "$dst_mac" --rx-netns $B --rx-iface b0 --rx-queues 2 \
        --rx-core $SINK_CORE --src 198.19.0.0 --vip "$vip" --dport 9 --capture "$capture" --size "$size" \
        --flows "$flows" --duration "$SECS" --quiet --json "$RES/json/$name.json" "$@" \
        >/dev/null 2>"$WORK/$name.err" || { echo "  $name: pktgen failed:"; cat "$WORK/$name.err"; return 1; }
    # The forwarder threads' CPU time over the trial (ticks of 1/CLK_TCK s): user and kernel.
    if [ -n "$cpu0" ]; then
        local cpu1
        cpu1=$(fwd_cpu_ticks)
        echo "${cpu0% *} ${cpu0#* } ${cpu1% *} ${cpu1#* } $(getconf CLK_TCK)" >"$RES/json/$name.cpu"
    fi
    if [ -n "$perf_pid" ]; then
        wait "$perf_pid" || true
        {
            echo "# by CPU, thread and object ([kernel.kallsyms] = kernel work done in that thread's"
            echo "# context, e.g. AF_XDP copy-mode TX and the peer veth's receive)"
            perf report -q -i "$WORK/$name.perf" --stdio --sort cpu,comm,dso --percent-limit 1 2>/dev/null
            echo "# by symbol"
            perf report -q -i "$WORK/$name.perf" --stdio --sort cpu,comm,sym --percent-limit 0.7 2>/dev/null
        } >"$RES/perf-$name.txt" || true
    fi
}

# jget NAME EXPR: a value from a result JSON (python expression over `d`).
jget() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$RES/json/$1.json"; }

# record NAME GROUP SIZE FLOWS WORKERS PLACEMENT: appends a measured row to the results file.
record() {
    local name=$1 group=$2 size=$3 flows=$4 workers=$5 placement=$6
    local rx tx loss p99 incons
    rx=$(jget "$name" 'round(d["rx_pps"])')
    tx=$(jget "$name" 'round(d["tx_pps"])')
    loss=$(jget "$name" '"%.3f" % (100*d["loss_ratio"])')
    p99=$(jget "$name" '"%.0f" % d["sink"]["latency"]["p99_us"]')
    incons=$(jget "$name" 'd["sink"]["inconsistent_flows"]')
    # Kernel and user time of the forwarder's packet threads per packet received by the sink
    # (a busy-polling forwarder's user time includes its empty polls; its kernel time is the
    # copy-mode TX and the peer veth's receive, done in its sendto).
    local kns=""
    if [ -f "$RES/json/$name.cpu" ]; then
        kns=$(python3 -c "
import json, sys
u0, k0, u1, k1, hz = map(int, open(sys.argv[1]).read().split())
n = json.load(open(sys.argv[2]))['sink']['rx_packets']
print('%.0f/%.0f' % ((k1 - k0) * 1e9 / hz / n, (u1 - u0) * 1e9 / hz / n) if n else '')
" "$RES/json/$name.cpu" "$RES/json/$name.json")
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$group" "$size" "$flows" \
        "$workers" "$rx" "$tx" "$loss" "$p99" "$incons" "$placement" "$kns" >>"$RES/rows.tsv"
    printf '  %-28s rx %8s pps  offered %8s pps  loss %7s%%  p99 %6s us  flows moved %s  forwarder ns/pkt kernel/user %s\n' \
        "$name" "$rx" "$tx" "$loss" "$p99" "$incons" "${kns:--}"
}

# NDR/PDR searches (fiberlb-pktgen run --search) run in full runs, or with NDR=1.
ndr_enabled() { [ "$QUICK" = 0 ] || [ -n "${NDR:-}" ]; }
NDR_ARGS="--search --trial-secs 1 --steps 5"

# record_ndr NAME GROUP SIZE FLOWS WORKERS PLACEMENT: a row for a search result (rx = NDR).
record_ndr() {
    local name=$1 group=$2 size=$3 flows=$4 workers=$5 placement=$6 ndr pdr max
    ndr=$(jget "$name" 'round(d["ndr_pps"])')
    pdr=$(jget "$name" 'round(d["pdr_pps"])')
    max=$(jget "$name" 'round(d["max"]["tx_pps"])')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$group" "$size" "$flows" \
        "$workers" "$ndr" "$max" "0" "" "" "NDR (PDR 0.1%: $pdr pps); $placement" >>"$RES/rows.tsv"
    printf '  %-28s NDR %8s pps  PDR %8s pps  (max offered %s pps)\n' "$name" "$ndr" "$pdr" "$max"
}
