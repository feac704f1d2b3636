#!/usr/bin/env bash
# Installs what fiberlb's build, tests and demo need on a fresh Debian machine (as root).
# Idempotent and non-interactive; safe to run again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (it installs packages and mounts bpffs/hugetlbfs)" >&2
    exit 1
  fi
}
need_root

# Debian packages:
#  python3-scapy, tshark  independent packet parsers that check the pipeline's output
#  iproute2, ethtool      network namespaces and veths for end-to-end tests
#  curl, python3, iputils-ping, bc  the end-to-end tests' real client, servers and arithmetic
#  clang, llvm, libbpf-dev  compile the XDP program (installed by deps-afxdp.sh)
#  systemd                `systemd-analyze verify` of the installed units (tests/tests/install_tree.rs;
#                         it works without systemd running as PID 1)
#  procps                 sysctl, for install.sh's hugepage setting
#  python3-venv           the Python environment of scripts/grpc-reflect.py (below)
#  nftables               tests/e2e/dpdk.sh (the DPDK TAP's host-path filter)
#  iptables               bench/scenarios/kernel.sh (the Linux DNAT baseline)
#  linux-perf             bench/scenarios/lib.sh (kernel time and cycles per packet)
#  git                    bench/run.sh records the commit it measured
#  shfmt                  scripts/check-deps.py parses the shell scripts with it
#  valgrind               bench/instructions.sh (instructions per packet under callgrind)
#  iputils-arping         tests/e2e/controlplane.sh (a moved backend's gratuitous ARP)
#  hping3                 tests/e2e/synflood.sh (the SYN flood)
#  bird2                  tests/e2e/cluster.sh (BGP/ECMP router and each node's BIRD) and the
#                         bgp unit test that has `bird -p` parse fiberlbd's include file
#  protobuf-compiler      protoc, which the etcd-client crate's build script runs (store = "etcd")
#  libprotobuf-dev        the well-known types protoc needs for etcd's protos
#                         (google/protobuf/descriptor.proto, struct.proto); only a Recommends of
#                         protobuf-compiler, so --no-install-recommends leaves it out and the
#                         build fails on a fresh machine
#  etcd-server, etcd-client  a real etcd (and etcdctl) for controlplane/tests/etcd_store.rs and
#                         tests/e2e/controlplane.sh with FCP_STORE=etcd
pkgs=(python3-scapy tshark iproute2 ethtool ca-certificates pkg-config curl python3 iputils-ping bc coreutils
    systemd procps python3-venv nftables iptables linux-perf git shfmt valgrind iputils-arping hping3 bird2
    protobuf-compiler libprotobuf-dev etcd-server etcd-client)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  # The tests run their own BIRDs inside namespaces; the packaged service (started by apt on a
  # systemd machine, in the root namespace) is not one of them.
  if [[ " ${missing[*]} " == *" bird2 "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now bird >/dev/null 2>&1 || true
  fi
  # Likewise etcd: the tests start their own members on free ports.
  if [[ " ${missing[*]} " == *" etcd-server "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
fi
# clang/llvm/libbpf for the XDP program; the system DPDK for the `dpdk` backend's tests.
bash "$here/deps-afxdp.sh"
bash "$here/deps-dpdk.sh"

# bpffs and hugepages for the data plane (AF_XDP UMEM and the shared-memory region).
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
if [ -w /proc/sys/vm/nr_hugepages ] && [ "$(cat /proc/sys/vm/nr_hugepages)" -lt 64 ]; then
  echo 64 > /proc/sys/vm/nr_hugepages || true
fi
mkdir -p /dev/hugepages
mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null || true

# Python environment of scripts/grpc-reflect.py, the independent gRPC reflection client (a small
# grpcurl, which Debian does not package) that controlplane/tests/grpc_reflection.rs runs.
# Debian's python3, official gRPC packages from PyPI at versions known to work; recreated only
# when the pins change or the environment is broken.
test_venv=${FIBERLB_TEST_VENV:-/opt/fiberlb/test-venv}
py_pins="grpcio==1.85.3 grpcio-reflection==1.85.1 protobuf==7.36.2"
if [ "$(cat "$test_venv/.fiberlb-pins" 2>/dev/null)" != "$py_pins" ] ||
    ! "$test_venv/bin/python" -c 'import grpc, grpc_reflection, google.protobuf' 2>/dev/null; then
  if [ -e "$test_venv" ] && [ ! -f "$test_venv/pyvenv.cfg" ]; then
    echo "setup.sh: $test_venv exists and is not a Python venv;" \
      "move it away or set FIBERLB_TEST_VENV" >&2
    exit 1
  fi
  echo "setup.sh: creating the Python environment $test_venv ($py_pins)"
  /usr/bin/python3 -m venv --clear "$test_venv"
  # shellcheck disable=SC2086  # the pins are words
  if ! "$test_venv/bin/pip" install -q --disable-pip-version-check $py_pins; then
    echo "setup.sh: pip could not install $py_pins into $test_venv (is PyPI reachable?)" >&2
    exit 1
  fi
  echo "$py_pins" > "$test_venv/.fiberlb-pins"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup.sh: cargo not found; install Rust (rustup) first" >&2
  exit 1
fi
# rustfmt and clippy: a Rust installed with `rustup --profile minimal` (as the quickstart does)
# has neither, and test.sh starts with `cargo fmt --check`.
if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" ||
      rustup component add "$c"
  done
fi
for c in fmt clippy; do
  if ! cargo "$c" --version >/dev/null 2>&1; then
    echo "setup.sh: \`cargo $c\` is missing and rustup is not there to add it" >&2
    exit 1
  fi
done
