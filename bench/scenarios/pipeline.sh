# Scenario (d): the pipeline alone on memory ports, per core, 1 and 2 worker threads (no I/O):
# `fiberlb-pktgen pipeline`. Sourced by run.sh.

scenario_pipeline() {
    local modes="dsr nat" flows_list="1000" secs=1 mode flows w name cores
    [ "$QUICK" = 0 ] && { modes="dsr nat tunnel gue"; flows_list="1000 1000000"; secs=3; }
    echo "pipeline on memory ports (64-byte UDP, ${secs}s):"
    for flows in $flows_list; do
        for mode in $modes; do
            for w in 1 2; do
                cores=1; [ $w = 2 ] && cores=0,1
                name=pipeline-$mode-${w}w-${flows}f-64B
                $NICE "$PKTGEN" pipeline --mode $mode --flows $flows --workers $w --cores $cores --secs $secs \
                    >"$RES/json/$name.json" || { echo "  $name failed"; continue; }
                local pps per
                pps=$(jget "$name" 'round(d["total_pps"])')
                per=$(jget "$name" '" ".join(str(round(x)) for x in d["per_worker_pps"])')
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" pipeline 64 "$flows" "$w" \
                    "$pps" "" "" "" "" "memory ports, threads on c$cores" >>"$RES/rows.tsv"
                printf '  %-28s %10s pps (per worker: %s)\n' "$name" "$pps" "$per"
            done
        done
    done
}
