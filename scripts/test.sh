#!/usr/bin/env bash
# The README's test command: sets up the machine and runs every check CI runs.
#   scripts/test.sh        (as root; a user with sudo is re-run through sudo)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=as-root.sh
. scripts/as-root.sh
as_root "$ROOT/scripts/test.sh" "$@"
bash scripts/setup.sh
# setup.sh installed every prerequisite, so tests that would skip without one (the Python
# gRPC reflection client's venv) must fail instead.
export CI=${CI:-true}
# A fresh clone gains nothing from incremental compilation, which doubles target/'s size.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

started=$SECONDS
step() { echo; echo "==> [$((SECONDS - started))s] $*"; }
# Every check runs even after one failed (a failing unit test must not hide a failing quickstart);
# the script exits non-zero at the end if any failed. Only the build stops it at once.
passed=() failed=()
check() { # name command... : runs one check, records its outcome
    local name=$1 rc=0
    shift
    step "$name"
    "$@" || rc=$?
    if [ $rc = 0 ]; then passed+=("$name"); else
        failed+=("$name")
        echo "==> FAILED ($rc): $name"
    fi
}

check "every command the tests, scripts and bench use is installed by setup.sh" \
    python3 scripts/check-deps.py

check "data plane module graph: no import cycle, layering rules (scripts/check-module-cycles.py)" \
    python3 scripts/check-module-cycles.py

check "cargo fmt --check" cargo fmt --all -- --check

check "cargo clippy -D warnings" cargo clippy --workspace --all-targets -- -D warnings

step "build (release binaries used by the end-to-end tests)"
cargo build --release --workspace --bins

unit_tests() {
    FIBERLB_BIN_DIR="$PWD/target/release" cargo test --workspace --no-fail-fast 2>&1 |
        tee target/test-output.txt
    local rc=${PIPESTATUS[0]}
    grep -E "^test result:" target/test-output.txt |
        awk '{p+=$4; f+=$6; i+=$8} END {print "cargo test totals: " p " passed; " f " failed; " i " ignored"}'
    return "$rc"
}
check "unit, property and integration tests" unit_tests

check "loom model check of the shared-memory ring" \
    env RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p fiberlb-shared --release --lib shm::ring

# Code the steps above never build or run: clippy and unit tests of the DPDK backend, the loom
# models of the snapshot publication, every fuzz target for a short time, cargo deny.
check "DPDK clippy and tests, loom (publish), fuzz targets, cargo deny (scripts/ci-extra.sh)" \
    bash scripts/ci-extra.sh

# The README's first command, run once as a test after everything else (~10 s): a killed run's
# leftovers are cleaned, then the whole demo must show every backend served.
check "quickstart (scripts/quickstart.sh, as tests/tests/quickstart.rs)" \
    env FIBERLB_BIN_DIR="$PWD/target/release" cargo test -p fiberlb-tests --test quickstart \
    --no-fail-fast -- --ignored --nocapture quickstart_end_to_end

step "summary"
echo "  disk used by build outputs: $(du -sh target fuzz/target 2>/dev/null | awk '{print $2 " " $1}' | paste -sd, -)"
for n in "${passed[@]}"; do echo "  ok      $n"; done
for n in "${failed[@]}"; do echo "  FAILED  $n"; done
echo "checks: ${#passed[@]} passed, ${#failed[@]} failed"
[ ${#failed[@]} = 0 ]
