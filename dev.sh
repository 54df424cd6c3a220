#!/bin/sh
# Bootstrap for a fresh Debian 12 (run as root): installs nox in .tools/ and runs a nox session.
#   ./dev.sh demo      the guided tour
#   ./dev.sh test      every test session (what CI runs)
#   ./dev.sh <session> any nox session (bench, lint, typecheck, fixtures, ...)
set -eu
cd "$(dirname "$0")"
if [ ! -x .tools/bin/nox ]; then
    if ! python3 -m venv .tools 2>/dev/null; then
        # Debian ships venv separately; install it once.
        rm -rf .tools
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv .tools
    fi
    .tools/bin/python -m pip install -q --upgrade pip nox
fi
what="${1:-test}"
[ $# -gt 0 ] && shift
case "$what" in
    test|tests) exec .tools/bin/nox "$@" ;;
    *) exec .tools/bin/nox -s "$what" "$@" ;;
esac
