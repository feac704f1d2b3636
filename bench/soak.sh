#!/usr/bin/env bash
# The soak test at full length: tests/e2e/soak.sh for 30 minutes (SOAK_SECS to change it) —
# mixed TCP/UDP through a nat VIP while the configuration changes every 3 s and a backend's
# health flaps every 10 s; checks 0 lost established connections, flat memory and no counter
# drift (see the script's header). CI runs the same script for 2 minutes
# (tests/tests/e2e_soak.rs). Root only.
#
#   bench/soak.sh                    # 1800 s
#   SOAK_SECS=600 bench/soak.sh
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN_DIR=${FIBERLB_BIN_DIR:-$ROOT/target/release}
if [ ! -x "$BIN_DIR/fiberlb-dataplane" ] || [ ! -x "$BIN_DIR/fiberlbd" ]; then
    (cd "$ROOT" && cargo build --release -q --workspace --bins)
fi
SOAK_SECS=${SOAK_SECS:-1800} FIBERLB_BIN_DIR=$BIN_DIR exec bash "$ROOT/tests/e2e/soak.sh"
