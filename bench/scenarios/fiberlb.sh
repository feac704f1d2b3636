# Scenario (a): fiberlb-dataplane on AF_XDP (copy mode on veth) between l0 and l1, per forwarding
# mode, 1 and 2 workers, 1k (and 1M) flows, 64- and 1500-byte frames. Sourced by run.sh.
# The tunnel listener uses GUE: the sink's XDP program (fiberlb's own) matches UDP/TCP by
# destination, and IPIP has no ports, so IPIP frames would go to b0's kernel, not the sink.
#
# Placement: 1 worker on core 1; 2 workers on cores 0 and 1 (the machine has two: the second
# worker shares core 0 with the generator). The generator sends on g0 queue 0 (and 1 with two
# workers: veth delivers TX queue N to the peer's RX queue N, the role of RSS here).

fiberlb_services() { # file [backends in the nat pool] [weight of the last backend of each pool]
    local f=$1 n=${2:-4} w=${3:-1} i
    {
        echo "tunnel: {source_v4: 198.18.2.1}"
        echo "loadbalancers:"
        echo "  - {name: dsr, vip: $VIP_DSR, listeners: [{port: 9, protocol: udp, mode: dsr, pool: dsr}]}"
        echo "  - {name: nat, vip: $VIP_NAT, listeners: [{port: 9, protocol: udp, mode: nat, pool: nat}]}"
        echo "  - {name: tun, vip: $VIP_TUN, listeners: [{port: 9, protocol: udp, mode: tunnel, encap: gue, pool: tun}]}"
        echo "pools:"
        for pool in dsr:10 nat:20 tun:30; do
            echo "  - name: ${pool%:*}"
            echo "    backends:"
            # The update scenario shrinks the nat pool only (object ids come from content —
            # pool name, address, port — so the other pools are untouched either way).
            local count=4
            [ "${pool%:*}" = nat ] && count=$n
            for i in $(seq 0 $((count - 1))); do
                local weight=1
                [ "$i" = $((count - 1)) ] && weight=$w
                # dsr: told apart by MAC; nat/tunnel: by address (next hop b0).
                local mac=$MAC_B0
                [ "${pool%:*}" = dsr ] && mac=$(backend_mac 1 "$i")
                echo "      - {address: $(backend_addr "${pool#*:}" "$i"), port: 9, weight: $weight, mac: \"$mac\"}"
            done
        done
    } >"$f"
}

fiberlb_config() { # file cores flow_capacity
    cat >"$1" <<TOML
[forwarding]
flow_capacity = $3
[[ports]]
interface = "l0"
role = "client"
gateway_mac = "$MAC_G0"
[[ports]]
interface = "l1"
role = "backend"
gateway_mac = "$MAC_B0"
[workers]
cores = [$2]
idle_backoff = false
[umem]
# As testpmd's mempool (-m 256, hugepage-backed, when 256 are free): the same kind of memory on
# both sides of the comparison (the product's default is "auto" too).
hugepages = "auto"
# The product default; BENCH_FILL_RING measures another (bench/README.md, "fill ring").
fill_ring = ${BENCH_FILL_RING:-2048}
[shm]
path = "/dev/shm/$P.region"
TOML
}

LB_PID=
fiberlb_start() { # cores flow_capacity
    fiberlb_services "$WORK/services.yaml"
    fiberlb_config "$WORK/dataplane.toml" "$1" "$2"
    : >"$WORK/lb.out"
    ip netns exec $L $NICE "$LB" run --config "$WORK/dataplane.toml" --services "$WORK/services.yaml" \
        >"$WORK/lb.out" 2>&1 &
    LB_PID=$!
    BG_PIDS+=("$LB_PID")
    FWD_PID=$LB_PID FWD_THREADS='^fiberlb-w[0-9]+$'
    for _ in $(seq 1 200); do grep -q "forwarding on" "$WORK/lb.out" && return 0; sleep 0.1; done
    echo "fiberlb-dataplane did not start:"; cat "$WORK/lb.out"; return 1
}

fiberlb_stop() { # [log name]
    FWD_PID=
    [ -n "$LB_PID" ] || return 0
    kill -TERM "$LB_PID" 2>/dev/null || true
    wait "$LB_PID" 2>/dev/null || true
    LB_PID=
    # Worker and socket counters at exit: where packets were dropped (rx_ring_full: the
    # worker was slower than its receive queue; fill_ring_empty: no free frames).
    cp "$WORK/lb.out" "$RES/fiberlb-${1:-run}.log"
}

scenario_fiberlb() {
    local modes=${BENCH_MODES:-"dsr nat"} flows_list="1000" sizes=${BENCH_SIZES:-"64 1500"} workers_list=${BENCH_WORKERS:-"1 2"}
    if [ "$QUICK" = 0 ]; then modes=${BENCH_MODES:-"dsr nat tunnel"}; flows_list="1000 1000000"; fi
    for workers in $workers_list; do
        local cores=$FWD_CORE txq=1 place
        if [ "$workers" = 2 ]; then cores="0, 1"; txq=2; fi
        for flows in $flows_list; do
            local cap=$((flows * 2 > 65536 ? flows * 2 : 65536))
            echo "fiberlb-dataplane: $workers worker(s) on core(s) $cores, flow table $cap/worker"
            fiberlb_start "$cores" "$cap" || return 1
            for mode in $modes; do
                local vip capture
                case $mode in
                    dsr) vip=$VIP_DSR; capture=$VIP_DSR ;;
                    nat) vip=$VIP_NAT; capture=$(backend_addr 20 0),$(backend_addr 20 1),$(backend_addr 20 2),$(backend_addr 20 3) ;;
                    tunnel) vip=$VIP_TUN; capture=$(backend_addr 30 0),$(backend_addr 30 1),$(backend_addr 30 2),$(backend_addr 30 3) ;;
                esac
                for size in $sizes; do
                    # GUE adds up to 32 bytes: keep the outer packet within the 1500 MTU.
                    local sz=$size
                    [ "$mode" = tunnel ] && [ "$size" = 1500 ] && sz=1460
                    local name=fiberlb-$mode-${workers}w-${flows}f-${sz}B
                    place="gen c$GEN_CORE (+l0 rx), workers c${cores// /}, sink c$SINK_CORE (+b0 rx on worker cores)"
                    pktgen "$name" $MAC_L0 "$vip" "$sz" "$flows" "$txq" "$capture" || continue
                    record "$name" fiberlb "$sz" "$flows" "$workers" "$place"
                    # Balance over the 4 backends (packets per backend, most first).
                    echo "      backends: $(jget "$name" '" ".join(str(b["packets"]) for b in d["sink"]["backends"])')"
                    # 1 worker only: back-to-back trials on 2 TX queues hit a socket the kernel
                    # had not released (queue busy for minutes) — see bench/README.md.
                    if ndr_enabled && [ "$sz" = 64 ] && [ "$flows" = 1000 ] && [ "$mode" != tunnel ] && [ "$workers" = 1 ]; then
                        pktgen "$name-ndr" $MAC_L0 "$vip" "$sz" "$flows" "$txq" "$capture" $NDR_ARGS && \
                            record_ndr "$name-ndr" fiberlb "$sz" "$flows" "$workers" "$place"
                    fi
                done
            done
            fiberlb_stop "${workers}w-${flows}f"
        done
    done
}
