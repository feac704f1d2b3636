#!/usr/bin/env bash
# CI checks for code the main test script (scripts/test.sh) does not build, lint or run:
#   1. clippy -D warnings on the DPDK backend (fiberlb-dataplane and fiberlb-dpdk-sys with the
#      `dpdk` feature: src/nic/dpdk/, src/worker/dpdk.rs, src/run_dpdk.rs, dpdk-sys/,
#      examples/dpdk_*.rs)
#   2. fiberlb-dataplane's unit tests with the `dpdk` feature (the dpdk-gated tests must run)
#   3. the loom models of dataplane/src/publish.rs (`--cfg loom`; at least one must run)
#   4. every cargo-fuzz target of fuzz/ built once (nightly, ASan, `--features controlplane`)
#      and run for FUZZ_SECONDS (default 30) each from fuzz/seeds/<target>, with the
#      dictionaries fuzz/README.md uses, the corpus in a temporary directory; any crash fails
#   5. cargo deny (deny.toml): licenses, bans, sources of the workspace and of the fuzz crate
#
# Run as root after scripts/setup.sh (libdpdk-dev, clang, hugepages); rustup stable + nightly.
#   bash scripts/ci-extra.sh
# Environment:
#   FUZZ_SECONDS=N           seconds per fuzz target (default 30; see fuzz/README.md for longer)
#   FIBERLB_CI_SKIP_FUZZ=1   skip step 4 (local quick runs only; CI runs everything)
#   CARGO_TARGET_DIR         honoured for steps 1-3 (loom builds in $CARGO_TARGET_DIR/loom, or
#                            target/loom-dataplane); the fuzz crate always builds in fuzz/target
#
# Advisories: `cargo deny check advisories` needs the RustSec advisory database, cloned from
# GitHub, which this CI machine cannot reach (only crates.io, PyPI and Debian are). So this script
# runs `cargo deny check licenses bans sources`; run `cargo deny check advisories` (or plain
# `cargo deny check`) where GitHub is reachable.
#
# How each step was shown to fail (each breakage made in a scratch copy of the tree, the script
# run, the failure seen, the breakage reverted):
#   1. `let unused = 1;` in nic::dpdk::Port::stats (then in dataplane/src/nic/dpdk.rs): clippy
#      `error: unused variable` under -D warnings; step 1 failed, script exit 101.
#   2. `assert_eq!(1, 2)` in nic::dpdk::tests::hugepage_check_names_what_is_missing (now
#      nic::dpdk::eal::tests):
#      `test result: FAILED. 141 passed; 1 failed`; step 2 failed, exit 101.
#   3. `panic!` at the top of publish::loom_tests::loom_online_races_swap's model: the loom test
#      FAILED; step 3 failed, exit 101.
#   4. `panic!` in fuzz_targets/shm_message.rs on inputs starting with 0x7f (found from the
#      empty corpus within the 10 s of FUZZ_SECONDS=10): libFuzzer `deadly signal`, crash-*
#      written to the temporary artifacts dir and printed; step 4 failed, exit 77.
#   5. "Apache-2.0" removed from deny.toml's [licenses] allow list: `error[rejected]: failed to
#      satisfy license requirements`, `licenses FAILED`; step 5 failed, exit 4.
# The counts checked after steps 2 and 3 (dpdk-gated tests >= 3, loom tests > 0) guard against
# a run that passes because the tests were compiled out.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

started=$SECONDS
step_name=""
step_start=$SECONDS
timings=()
end_step() {
    if [ -n "$step_name" ]; then
        timings+=("$(printf '%5ds  %s' $((SECONDS - step_start)) "$step_name")")
    fi
}
step() {
    end_step
    step_name=$*
    step_start=$SECONDS
    echo
    echo "==> [$((SECONDS - started))s] $*"
}
fail() {
    echo "ci-extra.sh: FAILED: $*" >&2
    exit 1
}
on_exit() {
    rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "ci-extra.sh: step '$step_name' failed (exit $rc) after $((SECONDS - started))s" >&2
    fi
}
trap on_exit EXIT

logs=$(mktemp -d /tmp/fiberlb-ci-extra.XXXXXX)
trap 'on_exit; rm -rf "$logs"' EXIT

# ---------------------------------------------------------------------------------------------
step "1/5 clippy -D warnings on the DPDK backend (fiberlb-dataplane, fiberlb-dpdk-sys; --features dpdk)"
cargo clippy -p fiberlb-dataplane -p fiberlb-dpdk-sys --all-targets --features dpdk -- -D warnings

# ---------------------------------------------------------------------------------------------
step "2/5 fiberlb-dataplane unit tests with --features dpdk"
# The dpdk-gated unit tests (nic::dpdk::eal::tests, config::tests::dpdk_section_gives_the_eal_arguments)
# build EAL arguments and parse /proc/meminfo text: they start no EAL, so they need neither
# hugepages nor --no-huge (the EAL itself is exercised by tests/tests/dpdk_backend.rs, e2e_dpdk).
cargo test -p fiberlb-dataplane --features dpdk --lib 2>&1 | tee "$logs/dpdk-tests.txt"
gated=$(grep -cE '^test (nic::dpdk::eal::tests::|config::tests::dpdk_section_gives_the_eal_arguments).* \.\.\. ok$' \
    "$logs/dpdk-tests.txt" || true)
echo "dpdk-gated unit tests passed: $gated"
[ "$gated" -ge 3 ] || fail "expected the dpdk-gated unit tests (nic::dpdk::eal::tests and config::tests::dpdk_section_gives_the_eal_arguments) to run and pass, saw $gated"

# ---------------------------------------------------------------------------------------------
step "3/5 loom models of dataplane/src/publish.rs (--cfg loom, release)"
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    loom_target=$CARGO_TARGET_DIR/loom
else
    loom_target=$root/target/loom-dataplane
fi
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=$loom_target \
    cargo test -p fiberlb-dataplane --release --lib publish 2>&1 | tee "$logs/loom.txt"
loom_ran=$(grep -cE '^test publish::loom_tests::[a-z_0-9]+ \.\.\. ok$' "$logs/loom.txt" || true)
echo "loom models passed: $loom_ran"
[ "$loom_ran" -gt 0 ] || fail "no loom test ran (publish::loom_tests)"

# ---------------------------------------------------------------------------------------------
if [ "${FIBERLB_CI_SKIP_FUZZ:-0}" = 1 ]; then
    step "4/5 fuzz targets: SKIPPED (FIBERLB_CI_SKIP_FUZZ=1)"
else
    step "4/5 fuzz: cargo-fuzz, build every target once (nightly, ASan, --features controlplane)"
    fuzz_seconds=${FUZZ_SECONDS:-30}
    case $fuzz_seconds in
        '' | *[!0-9]* | 0) fail "FUZZ_SECONDS must be a positive number of seconds, not '$fuzz_seconds'" ;;
    esac
    if ! cargo fuzz --version >/dev/null 2>&1; then
        # 0.13.2 builds with stable 1.95 (about 1 minute on 2 cores).
        cargo install --locked cargo-fuzz --version 0.13.2
    fi
    cargo fuzz --version
    # One build for all targets: controlplane_config needs the feature, and building every target
    # with it means no rebuild between targets (feature unification stays the same).
    (cd fuzz && cargo +nightly fuzz build --features controlplane --target-dir "$root/fuzz/target")
    host=$(rustc +nightly -vV | sed -n 's/^host: //p')
    bin_dir=$root/fuzz/target/$host/release
    mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
    [ "${#targets[@]}" -gt 0 ] || fail "cargo fuzz list found no fuzz target"
    echo "fuzz targets: ${targets[*]} (${fuzz_seconds}s each)"
    for t in "${targets[@]}"; do
        step "4/5 fuzz: $t for ${fuzz_seconds}s"
        bin=$bin_dir/$t
        [ -x "$bin" ] || fail "fuzz target binary $bin was not built"
        corpus=$logs/corpus/$t
        artifacts=$logs/artifacts/$t
        mkdir -p "$corpus" "$artifacts"
        args=(-max_total_time="$fuzz_seconds" -rss_limit_mb=2048 -print_final_stats=1
            -artifact_prefix="$artifacts/")
        if [ -f "fuzz/dicts/$t.dict" ]; then
            args+=(-dict="fuzz/dicts/$t.dict")
        fi
        dirs=("$corpus")
        if [ -d "fuzz/seeds/$t" ]; then
            dirs+=("fuzz/seeds/$t")
        fi
        echo "$bin ${args[*]} ${dirs[*]}"
        rc=0
        "$bin" "${args[@]}" "${dirs[@]}" >"$logs/fuzz-$t.log" 2>&1 || rc=$?
        if [ "$rc" -ne 0 ] || compgen -G "$artifacts/*" >/dev/null; then
            tail -n 60 "$logs/fuzz-$t.log"
            for a in "$artifacts"/*; do
                [ -e "$a" ] || continue
                echo "--- $a (base64):"
                base64 -w 0 "$a" | head -c 4096
                echo
            done
            echo "ci-extra.sh: fuzz target $t failed (exit $rc); replay from fuzz/ with" \
                "cargo +nightly fuzz run --features controlplane $t <input file>" >&2
            exit "$(( rc == 0 ? 1 : rc ))"
        fi
        grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs|stat::number_of_executed_units)' \
            "$logs/fuzz-$t.log" || true
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/fuzz-$t.log" | tail -n 1)
        [ "${runs:-0}" -gt 0 ] || { tail -n 30 "$logs/fuzz-$t.log"; fail "fuzz target $t executed no input"; }
    done
fi

# ---------------------------------------------------------------------------------------------
step "5/5 cargo deny check licenses bans sources (deny.toml; advisories skipped, see below)"
# Advisories are not checked here: `cargo deny check advisories` clones the RustSec advisory
# database from GitHub, which the CI machine cannot reach. Run it where GitHub is reachable.
if ! cargo deny --version >/dev/null 2>&1; then
    # 0.20.2 needs rustc >= 1.88 and builds with stable 1.95 (several minutes on 2 cores).
    cargo install --locked cargo-deny --version 0.20.2
fi
cargo deny --version
echo "--- workspace"
cargo deny --manifest-path Cargo.toml --all-features --locked --config deny.toml check licenses bans sources
echo "--- fuzz crate (fuzz/Cargo.lock, --features controlplane)"
cargo deny --manifest-path fuzz/Cargo.toml --all-features --locked --config deny.toml check licenses bans sources

end_step
echo
echo "==> [$((SECONDS - started))s] ci-extra: all checks passed; time per step:"
printf '%s\n' "${timings[@]}"
