#!/usr/bin/env bash
# Quick start, command 1: set everything up and run the archiver on an embedded default:
# a demo archive under ./var with generated keys, fed from the sample Maildir in tests/data.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
install_debian_packages pst-utils libemail-outlook-message-perl
make_venv
cd "$ROOT"
mkdir -p var && chmod 700 var
if [ ! -s var/passphrase ]; then
    (umask 077; "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(24))' > var/passphrase)
    echo "demo: generated a passphrase in var/passphrase"
fi
if [ ! -f var/demo.yaml ]; then
    cat > var/demo.yaml <<'YAML'
# Demo configuration written by scripts/demo.sh (see config.example.yaml for every key).
archive:
  path: archive
  passphrase_file: passphrase
tagging:
  clients:
    - name: acme
      domains: [acme.example]
      matter_prefixes: ["10234-"]
    - name: globex
      domains: [globex.example]
      matter_prefixes: ["20871-"]
sources:
  - name: demo
    type: files
    paths: [../tests/data/sample-maildir]
YAML
fi
A=("$VENV/bin/archiver" --config var/demo.yaml)
[ -f var/archive/archive.json ] || "${A[@]}" init
echo; echo "== import the sample mail (re-running adds nothing)"
"${A[@]}" import tests/data/sample-maildir --source demo
echo; echo "== search: client:acme after:2020-01-01"
"${A[@]}" search 'client:acme after:2020-01-01' --limit 5
echo; echo "== verify --full"
"${A[@]}" verify --full
echo; echo "== stats"
"${A[@]}" stats
echo
echo "The demo archive is in var/archive. Try:"
echo "  .venv/bin/archiver --config var/demo.yaml search 'from:acme.example AND contract'"
echo "  .venv/bin/archiver --config var/demo.yaml show <id>    (or --raw for the exact bytes)"
