#!/bin/sh
# deps.sh -- makes sure the Debian packages Docket builds, tests and benchmarks
# with are here (beanstalkd runs in the differential tests, redis-server only in
# `make bench`).
# As root it installs the missing ones with apt-get; otherwise it prints the
# exact apt-get line and fails.
set -u
need=""
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for p in build-essential pkg-config libevent-dev libinih-dev libcriterion-dev valgrind beanstalkd redis-server nodejs npm; do
    case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
    esac
    have_pkg "$p" || need="$need $p"
done
[ -z "$need" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "deps: installing$need"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq $need >/dev/null || {
        echo "deps: apt-get install failed" >&2; exit 1; }
else
    echo "deps: missing packages; run:" >&2
    echo "  sudo apt-get install -y$need" >&2
    exit 1
fi
