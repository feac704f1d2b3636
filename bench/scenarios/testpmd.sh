# Scenario (c): dpdk-testpmd mac-forwarding between net_af_xdp vdevs on l0 and l1, lcore on
# core 1: the ceiling of the AF_XDP packet path on these veths. Needs `dpdk-testpmd` (Debian
# package dpdk-dev); skipped without it. A DPDK port sets its link down when it exits, and the
# kernel then flushes routes and neighbours: topology_links restores them. Sourced by run.sh.

scenario_testpmd() {
    if ! command -v dpdk-testpmd >/dev/null; then
        echo "dpdk-testpmd: skipped (apt-get install dpdk-dev)"
        return 0
    fi
    local size name pid mem="--no-huge -m 512"
    [ "$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)" -ge 256 ] 2>/dev/null && mem="-m 256"
    echo "dpdk-testpmd mac forwarding on net_af_xdp (lcore on core $FWD_CORE, $mem):"
    for size in 64 1500; do
        ip netns exec $L $NICE dpdk-testpmd --lcores=0@$FWD_CORE,1@$FWD_CORE --no-pci $mem --file-prefix ${P}tp \
            --vdev net_af_xdp0,iface=l0,start_queue=0,queue_count=1 \
            --vdev net_af_xdp1,iface=l1,start_queue=0,queue_count=1 \
            -- --forward-mode=mac --eth-peer=0,$MAC_G0 --eth-peer=1,$MAC_B0 --nb-cores=1 \
            --total-num-mbufs=16384 --stats-period 1 >"$WORK/testpmd.out" 2>&1 &
        pid=$!
        BG_PIDS+=("$pid")
        # The forwarding lcore's thread (lcore 1; DPDK names it rte-worker-1 or lcore-worker-1).
        FWD_PID=$pid FWD_THREADS='worker-1$'
        local up=0
        for _ in $(seq 1 100); do
            grep -q "Port statistics" "$WORK/testpmd.out" && { up=1; break; }
            kill -0 $pid 2>/dev/null || break
            sleep 0.1
        done
        if [ $up = 0 ]; then
            echo "  testpmd did not start:"; tail -5 "$WORK/testpmd.out"
            kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; topology_links
            return 0
        fi
        name=testpmd-1000f-${size}B
        pktgen "$name" $MAC_L0 $VIP_DSR "$size" 1000 1 $VIP_DSR && \
            record "$name" ceiling "$size" 1000 1 "gen c$GEN_CORE (+l0 rx), testpmd c$FWD_CORE (+b0 rx), sink c$SINK_CORE"
        if ndr_enabled && [ "$size" = 64 ]; then
            pktgen "$name-ndr" $MAC_L0 $VIP_DSR "$size" 1000 1 $VIP_DSR $NDR_ARGS && \
                record_ndr "$name-ndr" ceiling "$size" 1000 1 "gen c$GEN_CORE (+l0 rx), testpmd c$FWD_CORE (+b0 rx), sink c$SINK_CORE"
        fi
        FWD_PID=
        kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null || true
        topology_links
    done
}
