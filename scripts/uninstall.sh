#!/usr/bin/env bash
# Removes what scripts/install.sh installed.
#
#   sudo scripts/uninstall.sh [--prefix P] [--purge]
#   DESTDIR=... scripts/uninstall.sh --prefix P      # from a staging tree
#
# Stops and disables the services (when systemd runs), removes every file listed in
# $P/share/fiberlb/install-manifest. Keeps /etc/fiberlb (configuration), /var/lib/fiberlb (the
# store) and the fiberlb user unless --purge.
set -euo pipefail

PREFIX=/usr/local
DESTDIR=${DESTDIR:-}
PURGE=0
while [ $# -gt 0 ]; do
    case $1 in
    --prefix) PREFIX=${2:?--prefix needs a path}; shift ;;
    --prefix=*) PREFIX=${1#*=} ;;
    --destdir) DESTDIR=${2:?--destdir needs a path}; shift ;;
    --purge) PURGE=1 ;;
    -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "uninstall.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
PREFIX=${PREFIX%/}
manifest=$DESTDIR$PREFIX/share/fiberlb/install-manifest
if [ ! -f "$manifest" ]; then
    echo "uninstall.sh: $manifest not found: nothing installed under $PREFIX?" >&2
    exit 1
fi
if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
    echo "uninstall.sh: needs root" >&2
    exit 1
fi

if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
    systemctl disable --now fiberlbd.service fiberlb-dataplane.service 2>/dev/null || true
fi

n=0
while IFS= read -r f; do
    case $f in /*) ;; *) continue ;; esac
    if [ -e "$DESTDIR$f" ] || [ -L "$DESTDIR$f" ]; then
        rm -f "$DESTDIR$f"
        n=$((n + 1))
    fi
done <"$manifest"
# Empty directories the install created.
for d in "$PREFIX/share/doc/fiberlb/examples" "$PREFIX/share/doc/fiberlb" "$PREFIX/share/fiberlb"; do
    rmdir "$DESTDIR$d" 2>/dev/null || true
done
rm -f "$DESTDIR/etc/fiberlb/dataplane.toml.dist" "$DESTDIR/etc/fiberlb/controlplane.toml.dist"

if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi
if [ $PURGE = 1 ]; then
    rm -rf "$DESTDIR/etc/fiberlb" "$DESTDIR/var/lib/fiberlb"
    if [ -z "$DESTDIR" ]; then
        rm -rf /dev/hugepages/fiberlb-shm
        if getent passwd fiberlb >/dev/null; then userdel fiberlb 2>/dev/null || true; fi
    fi
    echo "uninstall.sh: removed $n files, /etc/fiberlb, /var/lib/fiberlb and the fiberlb user"
else
    echo "uninstall.sh: removed $n files; kept /etc/fiberlb and /var/lib/fiberlb (--purge removes them)"
fi
