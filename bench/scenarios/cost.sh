# Two figures that do not depend on the I/O path, measured here so that one run of bench/run.sh
# reports every target of the performance work next to its baseline. Sourced by run.sh.
#   instructions  instructions per packet of the pipeline alone (bench/instructions.sh: callgrind,
#                 the memory port's harness measured and subtracted in the same run)
#   maglev        one Maglev table (M = 65537, 1000 equal backends) built by fiberlb and by the
#                 paper's population loop, alternated in one process, on the forwarder's core

scenario_instructions() {
    command -v valgrind >/dev/null || { echo "instructions: needs valgrind (scripts/setup.sh installs it)"; return 1; }
    local args=(--no-build) out
    [ "$QUICK" = 1 ] && args+=(--quick)
    echo "instructions per packet (callgrind):"
    FIBERLB_BIN_DIR=$BIN_DIR "$HERE/instructions.sh" "${args[@]}" >"$RES/instructions.out" 2>&1 ||
        { tail -5 "$RES/instructions.out"; return 1; }
    out=$(readlink -f "$ROOT/results/instructions-latest")
    cp "$out/table.md" "$RES/instructions.md"
    cp "$out/instructions.tsv" "$RES/instructions.tsv"
    sed 's/^/  /' "$RES/instructions.md"
}

scenario_maglev() {
    [ -x "$MAGLEV" ] || { echo "maglev: no $MAGLEV"; return 1; }
    echo "Maglev table build, M = 65537, 1000 backends (fiberlb vs the paper's loop, core $FWD_CORE):"
    taskset -c "$FWD_CORE" $NICE "$MAGLEV" time 1000 >"$RES/maglev.txt" || return 1
    sed 's/^/  /' "$RES/maglev.txt"
}
