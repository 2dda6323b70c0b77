#!/usr/bin/env bash
# Quick start, command 2: set everything up and run the whole test suite
# (ruff, mypy, then pytest, including the real-Dovecot IMAP tests).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
install_debian_packages dovecot-imapd pst-utils libemail-outlook-message-perl chromium chromium-driver
make_venv dev
cd "$ROOT"
echo "== ruff"
"$VENV/bin/ruff" check .
echo "== mypy"
"$VENV/bin/mypy"
echo "== pytest"
"$VENV/bin/pytest" "$@"
