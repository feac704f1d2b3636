#!/usr/bin/env bash
# Installs what the DPDK backend (cargo feature `dpdk`, crate dataplane/dpdk-sys) needs on a fresh
# Debian machine (run as root): the system DPDK with its pkg-config file (libdpdk-dev, 22.11 on
# Debian 12), dpdk-testpmd for the baseline benchmark (dpdk-dev), pkg-config to find it, and
# libclang for bindgen. Idempotent and non-interactive.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "deps-dpdk.sh: must run as root (it calls apt-get)" >&2
    exit 1
fi

pkgs=(libdpdk-dev dpdk-dev pkg-config libclang-dev clang)

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    echo "deps-dpdk.sh: installed ${missing[*]}"
else
    echo "deps-dpdk.sh: all packages present"
fi

# DPDK wants hugepages (tests fall back to --no-huge when there are none).
if [ -w /proc/sys/vm/nr_hugepages ] && [ "$(cat /proc/sys/vm/nr_hugepages)" -lt 256 ]; then
    echo 256 > /proc/sys/vm/nr_hugepages || true
fi
mkdir -p /dev/hugepages
mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null || true

echo "deps-dpdk.sh: libdpdk $(pkg-config --modversion libdpdk)"
