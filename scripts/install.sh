#!/usr/bin/env bash
# Installs fiberlb on this machine (or into a staging tree for packaging).
#
#   sudo scripts/install.sh                       # build in release, install under /usr/local
#   scripts/install.sh --prefix /usr DESTDIR=...   # (or DESTDIR in the environment) stage a package
#   options: --prefix P (default /usr/local), --destdir D (default $DESTDIR),
#            --bin-dir DIR (take the binaries from DIR; default: build target/release),
#            --no-build (use target/release as it is)
#
# What goes where ($D = DESTDIR, $P = prefix):
#   $D$P/bin/{fiberlb-dataplane,fiberlbd,fiberlbctl}
#   $D$P/share/{bash-completion,zsh,fish}/...                fiberlbctl's shell completions
#   $D$P/share/man/man1/fiberlbctl.1                        fiberlbctl's manual page
#   $D/etc/fiberlb/{dataplane.toml,controlplane.toml}   commented examples; an existing file is
#                                                       kept and the new one written as *.dist
#   $D$P/lib/systemd/system/{fiberlb-dataplane.service,fiberlbd.service,fiberlb-bpffs.service}
#   $D$P/lib/sysctl.d/90-fiberlb-hugepages.conf         hugepages reserved at boot
#   $D$P/lib/sysusers.d/fiberlb.conf                    the `fiberlb` system user
#   $D$P/share/doc/fiberlb/                             README, docs, example services.yaml
#   $D$P/share/fiberlb/install-manifest                 what was installed (for uninstall.sh)
# Units in $P/lib/systemd/system: systemd searches /usr/local/lib/systemd/system and
# /usr/lib/systemd/system; sysctl.d and sysusers.d likewise.
#
# Without DESTDIR (a real install, as root) it also creates the fiberlb user, reloads systemd
# and applies the hugepage setting, but enables nothing: edit /etc/fiberlb/dataplane.toml, run
# `fiberlb-dataplane doctor`, then `systemctl enable --now fiberlb-dataplane fiberlbd`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

PREFIX=/usr/local
DESTDIR=${DESTDIR:-}
BIN_DIR=
BUILD=1
while [ $# -gt 0 ]; do
    case $1 in
    --prefix) PREFIX=${2:?--prefix needs a path}; shift ;;
    --prefix=*) PREFIX=${1#*=} ;;
    --destdir) DESTDIR=${2:?--destdir needs a path}; shift ;;
    --destdir=* | DESTDIR=*) DESTDIR=${1#*=} ;;
    --bin-dir) BIN_DIR=${2:?--bin-dir needs a path}; shift ;;
    --no-build) BUILD=0 ;;
    -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case $PREFIX in
/*) ;;
*) echo "install.sh: --prefix must be an absolute path, got $PREFIX" >&2; exit 2 ;;
esac
PREFIX=${PREFIX%/}
[ -n "$PREFIX" ] || PREFIX=/usr
if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: installing into / needs root (or stage with DESTDIR=...)" >&2
    exit 1
fi

if [ -z "$BIN_DIR" ]; then
    BIN_DIR=$ROOT/target/release
    if [ $BUILD = 1 ]; then
        echo "install.sh: building (release)"
        # protoc with its well-known types (Debian: libprotobuf-dev), as etcd's protos import them.
        wkt=$(mktemp -d)
        echo 'syntax = "proto3"; import "google/protobuf/descriptor.proto";' >"$wkt/t.proto"
        protoc_ok=0
        (cd "$wkt" && protoc --descriptor_set_out=/dev/null t.proto) >/dev/null 2>&1 && protoc_ok=1
        rm -rf "$wkt"
        [ $protoc_ok = 1 ] || {
            echo "install.sh: building needs protoc and its well-known types (etcd-client's build script): apt install protobuf-compiler libprotobuf-dev, or run scripts/setup.sh" >&2
            exit 1
        }
        (cd "$ROOT" && cargo build --release -q --workspace --bins)
    fi
fi
for b in fiberlb-dataplane fiberlbd fiberlbctl; do
    [ -x "$BIN_DIR/$b" ] || { echo "install.sh: $BIN_DIR/$b not found (build first, or --bin-dir)" >&2; exit 1; }
done

bindir=$PREFIX/bin
unitdir=$PREFIX/lib/systemd/system
docdir=$PREFIX/share/doc/fiberlb
datadir=$PREFIX/share/fiberlb
manifest=()

put() { # mode src dst(without DESTDIR)
    install -D -m "$1" "$2" "$DESTDIR$3"
    manifest+=("$3")
}
put_subst() { # mode src dst: with @BINDIR@ / @DOCDIR@ replaced
    local tmp
    tmp=$(mktemp)
    sed -e "s|@BINDIR@|$bindir|g" -e "s|@DOCDIR@|$docdir|g" "$2" >"$tmp"
    install -D -m "$1" "$tmp" "$DESTDIR$3"
    rm -f "$tmp"
    manifest+=("$3")
}

for b in fiberlb-dataplane fiberlbd fiberlbctl; do
    put 0755 "$BIN_DIR/$b" "$bindir/$b"
done

# Configuration: never overwrite what the administrator has.
install -d -m 0755 "$DESTDIR/etc/fiberlb"
for f in dataplane.toml controlplane.toml; do
    if [ -e "$DESTDIR/etc/fiberlb/$f" ]; then
        install -m 0644 "$ROOT/packaging/etc/$f" "$DESTDIR/etc/fiberlb/$f.dist"
        echo "install.sh: kept /etc/fiberlb/$f; the new example is /etc/fiberlb/$f.dist"
    else
        install -m 0644 "$ROOT/packaging/etc/$f" "$DESTDIR/etc/fiberlb/$f"
    fi
done

for u in fiberlb-dataplane.service fiberlbd.service fiberlb-bpffs.service; do
    put_subst 0644 "$ROOT/packaging/systemd/$u" "$unitdir/$u"
done
put 0644 "$ROOT/packaging/sysctl.d/90-fiberlb-hugepages.conf" "$PREFIX/lib/sysctl.d/90-fiberlb-hugepages.conf"
put 0644 "$ROOT/packaging/sysusers.d/fiberlb.conf" "$PREFIX/lib/sysusers.d/fiberlb.conf"

# fiberlbctl's shell completions and manual page, generated from its clap definitions.
gen=$(mktemp -d)
"$BIN_DIR/fiberlbctl" completions bash >"$gen/fiberlbctl.bash"
"$BIN_DIR/fiberlbctl" completions zsh >"$gen/_fiberlbctl"
"$BIN_DIR/fiberlbctl" completions fish >"$gen/fiberlbctl.fish"
"$BIN_DIR/fiberlbctl" man >"$gen/fiberlbctl.1"
put 0644 "$gen/fiberlbctl.bash" "$PREFIX/share/bash-completion/completions/fiberlbctl"
put 0644 "$gen/_fiberlbctl" "$PREFIX/share/zsh/vendor-completions/_fiberlbctl"
put 0644 "$gen/fiberlbctl.fish" "$PREFIX/share/fish/vendor_completions.d/fiberlbctl.fish"
put 0644 "$gen/fiberlbctl.1" "$PREFIX/share/man/man1/fiberlbctl.1"
rm -rf "$gen"

put 0644 "$ROOT/README.md" "$docdir/README.md"
for d in "$ROOT"/docs/*.md; do
    put 0644 "$d" "$docdir/$(basename "$d")"
done
put 0644 "$ROOT/examples/services.yaml" "$docdir/examples/services.yaml"
# BGP announcement through BIRD: a node's bird.conf and fiberlbd's systemd drop-in (examples).
for f in "$ROOT"/packaging/bird/*; do
    put 0644 "$f" "$docdir/examples/bird/$(basename "$f")"
done
[ -f "$ROOT/packaging/fiberlb.nix" ] && put 0644 "$ROOT/packaging/fiberlb.nix" "$datadir/fiberlb.nix"

install -d -m 0755 "$DESTDIR$datadir"
manifest+=("$datadir/install-manifest")
printf '%s\n' "${manifest[@]}" >"$DESTDIR$datadir/install-manifest"

if [ -n "$DESTDIR" ]; then
    echo "install.sh: staged ${#manifest[@]} files under $DESTDIR (prefix $PREFIX)"
    exit 0
fi

# A real install: the user, systemd, hugepages.
if ! getent passwd fiberlb >/dev/null; then
    if command -v systemd-sysusers >/dev/null && [ -d /run/systemd/system ]; then
        systemd-sysusers "$PREFIX/lib/sysusers.d/fiberlb.conf"
    else
        useradd --system --user-group --home-dir /var/lib/fiberlb --no-create-home \
            --shell /usr/sbin/nologin --comment "fiberlb load balancer" fiberlb
    fi
    echo "install.sh: created the system user fiberlb"
fi
install -d -o fiberlb -g fiberlb -m 0750 /var/lib/fiberlb
# Hugepages now (boot does it from sysctl.d): only ever raise the reservation, never take
# pages away from something already running.
want=$(awk -F= '/^vm.nr_hugepages/ { gsub(/ /, "", $2); print $2 }' "$PREFIX/lib/sysctl.d/90-fiberlb-hugepages.conf")
have=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)
if [ -n "$want" ] && [ "$have" -lt "$want" ] && [ -w /proc/sys/vm/nr_hugepages ]; then
    echo "$want" >/proc/sys/vm/nr_hugepages || true
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl start fiberlb-bpffs.service 2>/dev/null || true
else
    # No systemd running (a container): mount what it would have at boot.
    mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
fi
cat <<EOF
install.sh: installed fiberlb under $PREFIX (${#manifest[@]} files; list in $datadir/install-manifest).
Next:
  1. edit /etc/fiberlb/dataplane.toml (ports, cores) and /etc/fiberlb/controlplane.toml (vip_ranges)
  2. sudo $bindir/fiberlb-dataplane doctor --config /etc/fiberlb/dataplane.toml
  3. sudo systemctl enable --now fiberlb-dataplane fiberlbd
  4. sudo fiberlbctl status; journalctl -u fiberlb-dataplane -u fiberlbd -f
Remove with scripts/uninstall.sh [--purge].
EOF
