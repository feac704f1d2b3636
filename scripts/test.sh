#!/usr/bin/env bash
# The README's test command: sets up the machine and runs every check CI runs.
#   sudo scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# setup.sh installed every prerequisite, so tests that would skip without one (the Python
# gRPC reflection client's venv) must fail instead.
export CI=${CI:-true}

started=$SECONDS
step() { echo; echo "==> [$((SECONDS - started))s] $*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "build (release binaries used by the end-to-end tests)"
cargo build --release --workspace --bins

step "unit, property and integration tests"
FIBERLB_BIN_DIR="$PWD/target/release" cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.txt
grep -E "^test result:" target/test-output.txt | awk '{p+=$4; f+=$6; i+=$8} END {print "cargo test totals: " p " passed; " f " failed; " i " ignored"}'

if grep -q "cfg(loom)" Cargo.toml 2>/dev/null && [ -d shared/src/shm ]; then
  step "loom model check of the shared-memory ring"
  RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p fiberlb-shared --release --lib shm::ring
fi

# The README's first command, run once as a test after everything else (~10 s): a killed run's
# leftovers are cleaned, then the whole demo must show every backend served.
step "quickstart (scripts/quickstart.sh, as tests/tests/quickstart.rs)"
FIBERLB_BIN_DIR="$PWD/target/release" cargo test -p fiberlb-tests --test quickstart --no-fail-fast \
    -- --ignored --nocapture quickstart_end_to_end

step "all checks passed"
