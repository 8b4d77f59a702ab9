#!/bin/sh
# run.sh -- every test runner, in order, with one aggregate line at the end.
# Called by `make test` after building build/ and build-asan/ (POSIX sh).
#
#   1. Criterion unit tests: build/tests/test_* and build-asan/tests/test_*
#   2. node:test integration + compat tests against build/docketd
#   3. node:test integration tests against build-asan/docketd (the harness
#      fails a test whose server printed a sanitizer report)
#   4. node:test crash tests (tests/crash: kill -9 loop, damaged logs) against
#      build/docketd
#   5. node:test protocol, command, stats and durability tests with docketd
#      under valgrind (tests/valgrind-docketd.sh: any error or leak fails)
#
# Last line: "tests: N passed, M failed" (Criterion "Synthesis" + node "# pass/# fail").
# Exits non-zero if anything failed or a runner died. Each runner has a timeout.
#
# Environment: TEST_TIMEOUT (s, per runner, default 600), NODE_TEST_CONCURRENCY
# (default 2), BEANSTALKD (reference server for the differential tests),
# CRASH_ITERATIONS / CRASH_SEED (tests/crash/crash-loop.test.mjs),
# DOCKETD / DOCKETD_ASAN (servers under test, default build/docketd and
# build-asan/docketd; e.g. DOCKETD=/usr/bin/beanstalkd DOCKETD_ASAN=/usr/bin/beanstalkd
# BEANSTALKD_112=1 checks the tests themselves against beanstalkd 1.12).
set -u

cd "$(dirname "$0")/.." || exit 2
TEST_TIMEOUT=${TEST_TIMEOUT:-600}
CONC=${NODE_TEST_CONCURRENCY:-2}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/docket-run.XXXXXX") || exit 2
trap 'rm -rf "$TMP"' EXIT INT TERM

PASSED=0
FAILED=0
BROKEN=0 # runners that died or exited non-zero without reporting a failure

add() { PASSED=$((PASSED + $1)); FAILED=$((FAILED + $2)); }
say() { printf '%s\n' "== $*"; }

# --- npm dependencies (the compat tests' clients) -------------------------
lock_sum() { cksum package-lock.json 2>/dev/null | cut -d' ' -f1,2; }
STAMP=node_modules/.docket-lock-sum
if [ ! -d node_modules ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$(lock_sum)" ]; then
    say "npm ci"
    if npm ci --no-audit --no-fund --loglevel=error >"$TMP/npm.log" 2>&1; then
        lock_sum >"$STAMP"
    else
        cat "$TMP/npm.log"
        echo "run.sh: npm ci failed" >&2
        BROKEN=$((BROKEN + 1))
    fi
fi

# --- 1. Criterion unit tests ---------------------------------------------
# Synthesis line: "[====] Synthesis: Tested: 3 | Passing: 1 | Failing: 2 | Crashing: 1"
# (Failing already includes Crashing).
unit_ran=0
for t in build/tests/test_* build-asan/tests/test_*; do
    if [ ! -f "$t" ] || [ ! -x "$t" ]; then continue; fi
    case "$t" in *.d | *.o) continue ;; esac
    unit_ran=$((unit_ran + 1))
    say "unit $t"
    log="$TMP/unit.log"
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
        LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp} \
        timeout "$TEST_TIMEOUT" "./$t" >"$log" 2>&1
    rc=$?
    cat "$log"
    syn=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep 'Synthesis: Tested:' | tail -n 1)
    if [ -n "$syn" ]; then
        p=$(printf '%s\n' "$syn" | sed -n 's/.*Passing: *\([0-9]*\).*/\1/p')
        f=$(printf '%s\n' "$syn" | sed -n 's/.*Failing: *\([0-9]*\).*/\1/p')
        add "${p:-0}" "${f:-0}"
        if [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then
            echo "run.sh: $t exited $rc with no failing test (sanitizer report at exit?)" >&2
            BROKEN=$((BROKEN + 1))
        fi
    else
        echo "run.sh: $t exited $rc without a Criterion synthesis (crash or timeout)" >&2
        BROKEN=$((BROKEN + 1))
    fi
done
[ "$unit_ran" -eq 0 ] && say "no unit test binaries under build/tests or build-asan/tests"

# --- 2, 3 and 4. node:test -----------------------------------------------------
# Spec output to the terminal, TAP to a file for the counts.
node_run() { # name, DOCKETD, files...
    name=$1
    bin=$2
    shift 2
    say "node --test ($name, DOCKETD=$bin)"
    tap="$TMP/$name.tap"
    DOCKETD=$bin ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
        timeout "$TEST_TIMEOUT" node --test --test-concurrency="$CONC" \
        --test-reporter=spec --test-reporter-destination=stdout \
        --test-reporter=tap --test-reporter-destination="$tap" "$@"
    rc=$?
    p=$(grep -E '^# pass [0-9]+$' "$tap" 2>/dev/null | tail -n 1 | cut -d' ' -f3)
    f=$(grep -E '^# fail [0-9]+$' "$tap" 2>/dev/null | tail -n 1 | cut -d' ' -f3)
    c=$(grep -E '^# cancelled [0-9]+$' "$tap" 2>/dev/null | tail -n 1 | cut -d' ' -f3)
    add "${p:-0}" $((${f:-0} + ${c:-0}))
    if [ "$rc" -ne 0 ] && [ $((${f:-0} + ${c:-0})) -eq 0 ]; then
        echo "run.sh: node --test ($name) exited $rc without a failing test (timeout?)" >&2
        BROKEN=$((BROKEN + 1))
    fi
}

node_run plain "${DOCKETD:-build/docketd}" tests/integration/*.test.mjs tests/compat/*.test.mjs
node_run asan "${DOCKETD_ASAN:-build-asan/docketd}" tests/integration/*.test.mjs
node_run crash "${DOCKETD:-build/docketd}" tests/crash/*.test.mjs
if [ -z "${DOCKETD:-}" ]; then
    node_run valgrind tests/valgrind-docketd.sh tests/integration/protocol.test.mjs \
        tests/integration/commands.test.mjs tests/integration/stats.test.mjs \
        tests/integration/durability.test.mjs
fi

FAILED=$((FAILED + BROKEN))
echo "tests: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
