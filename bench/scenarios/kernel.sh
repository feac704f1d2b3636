# Scenario (b): the kernel peers, in lb: plain IPv4 forwarding (ip_forward) and DNAT with
# iptables-nft + conntrack (the kernel's L4 load balancer). As in ../shared BASELINES, RPS
# steers l0's receive work to core 1 (the forwarder's core): without it everything would run on
# the generator's core 0. Sourced by run.sh.

rps() { # mask
    local q
    for q in 0 1; do echo "$1" | ip netns exec $L tee /sys/class/net/l0/queues/rx-$q/rps_cpus >/dev/null; done
}

scenario_kernel() {
    local sizes="64 1500" flows_list="1000" size flows name
    [ "$QUICK" = 0 ] && flows_list="1000 1000000"
    local place="gen c$GEN_CORE, l0 rx via RPS c$FWD_CORE, l1->b0 (sink rx) c$FWD_CORE, sink c$SINK_CORE"
    rps $((1 << FWD_CORE))
    echo "Linux ip_forward (RPS to core $FWD_CORE):"
    for flows in $flows_list; do
        for size in $sizes; do
            name=linux-forward-${flows}f-${size}B
            pktgen "$name" $MAC_L0 $VIP_KERNEL "$size" "$flows" 1 $VIP_KERNEL && \
                record "$name" kernel "$size" "$flows" 1 "$place"
            if ndr_enabled && [ "$size" = 64 ] && [ "$flows" = 1000 ]; then
                pktgen "$name-ndr" $MAC_L0 $VIP_KERNEL "$size" "$flows" 1 $VIP_KERNEL $NDR_ARGS && \
                    record_ndr "$name-ndr" kernel "$size" "$flows" 1 "$place"
            fi
        done
    done
    if ! command -v iptables >/dev/null; then
        echo "Linux DNAT: skipped (no iptables; apt-get install iptables)"
        rps 0
        return 0
    fi
    echo "Linux DNAT (iptables-nft + conntrack, RPS to core $FWD_CORE):"
    ip netns exec $L iptables -t nat -A PREROUTING -d $VIP_NAT -p udp --dport 9 \
        -j DNAT --to-destination $DNAT_BACKEND:9
    ip netns exec $L sysctl -qw net.netfilter.nf_conntrack_max=2097152 2>/dev/null || true
    for flows in $flows_list; do
        for size in $sizes; do
            name=linux-dnat-${flows}f-${size}B
            pktgen "$name" $MAC_L0 $VIP_NAT "$size" "$flows" 1 $DNAT_BACKEND && \
                record "$name" kernel "$size" "$flows" 1 "$place"
            if ndr_enabled && [ "$size" = 64 ] && [ "$flows" = 1000 ]; then
                pktgen "$name-ndr" $MAC_L0 $VIP_NAT "$size" "$flows" 1 $DNAT_BACKEND $NDR_ARGS && \
                    record_ndr "$name-ndr" kernel "$size" "$flows" 1 "$place"
            fi
        done
    done
    echo "  conntrack entries: $(ip netns exec $L cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo ?)"
    ip netns exec $L iptables -t nat -F PREROUTING
    rps 0
}
