#!/bin/sh
# valgrind-docketd.sh -- runs build/docketd under valgrind for the integration
# tests: any memory error or leak makes docketd exit 99, which the harness
# reports as a failed test when it stops the server.
here=$(cd "$(dirname "$0")/.." && pwd)
exec valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
    "$here/build/docketd" "$@"
