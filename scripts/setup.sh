#!/usr/bin/env bash
# Shared setup for the quick-start commands: a virtual environment with the package,
# and the Debian packages the archiver and its tests use (when running as root).
# Usage: source scripts/setup.sh [--dev]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ARCHIVER_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

need_python() {
    if ! command -v "$PY" >/dev/null 2>&1; then
        echo "setup: python3 (3.11 or newer) is required; install it (Debian: apt-get install python3 python3-venv)." >&2
        exit 1
    fi
    if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
        echo "setup: Python 3.11 or newer is required; found $("$PY" --version 2>&1)." >&2
        exit 1
    fi
}

install_debian_packages() {
    # dovecot-imapd: the real IMAP server the tests run; pst-utils: readpst for PST import;
    # libemail-outlook-message-perl: msgconvert for Outlook .msg import.
    local wanted=("$@") missing=()
    for pkg in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing Debian packages: ${missing[*]}"
        (apt-get update -qq || true) >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "setup: please install these Debian packages (as root: apt-get install ${missing[*]});" >&2
        echo "setup: the tests that need them are skipped until then." >&2
    fi
}

make_venv() {
    local extras="${1:-}"
    need_python
    if [ ! -x "$VENV/bin/python" ]; then
        echo "setup: creating the virtual environment in $VENV"
        "$PY" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    echo "setup: installing the archiver${extras:+ with $extras} into $VENV"
    "$VENV/bin/python" -m pip install -q -e "$ROOT${extras:+[$extras]}"
}
