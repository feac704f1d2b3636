# shellcheck shell=bash
# Sourced by dataplane.sh: change the backend set during a steady request stream.
echo "SKIP reconfig: not written yet"
