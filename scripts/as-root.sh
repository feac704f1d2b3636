# shellcheck shell=bash
# Sourced first by the README's commands (quickstart.sh, test.sh): they need root (namespaces,
# XDP, apt-get). A root shell — a minimal Debian often has no sudo — runs them as they are; a
# user with sudo gets the script re-run through sudo, keeping PATH so that a Rust installed by
# rustup in the user's ~/.cargo/bin is still found.
#   as_root "$0" "$@"
as_root() {
    [ "$(id -u)" -eq 0 ] && return 0
    if command -v sudo >/dev/null 2>&1; then
        echo "$(basename "$1"): not root; re-running with sudo" >&2
        exec sudo env "PATH=$PATH" ${CI:+CI=$CI} bash "$@"
    fi
    echo "$(basename "$1"): run as root (there is no sudo here: log in as root or use su -c)" >&2
    exit 1
}
