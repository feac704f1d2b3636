#!/usr/bin/env bash
# Installs what the AF_XDP backend needs to build and test on a fresh Debian machine (run as root):
# clang/llvm to compile dataplane/bpf/*.c with `-target bpf`, libbpf-dev for <bpf/bpf_helpers.h>,
# the kernel UAPI headers, and the tools the root-only smoke test drives (ip, ethtool, python3).
# Idempotent and non-interactive.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "deps-afxdp.sh: must run as root (it calls apt-get)" >&2
    exit 1
fi

pkgs=(clang llvm libbpf-dev linux-libc-dev libc6-dev iproute2 ethtool iputils-ping python3)

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "deps-afxdp.sh: all packages present"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "deps-afxdp.sh: installed ${missing[*]}"
