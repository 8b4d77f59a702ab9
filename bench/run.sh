#!/bin/sh
# run.sh -- `make bench`: docket-bench against docketd, beanstalkd and
# redis-server, side by side, and a Markdown table of the results (POSIX sh).
#
# Every (workload, server) pair gets a fresh server: started on 127.0.0.1 on a
# free port with its own temporary directory (data and log), stopped by PID
# (SIGTERM, then SIGKILL after 5 s). Workloads are the outer loop, so that the
# servers of one table row are measured within a minute of each other.
#
# The mem workload is different: it puts BENCH_MEM_JOBS 100-byte jobs
# (pipelined, nothing reserved) and reports the growth of the server's VmRSS
# (/proc/PID/status) per job, read before the puts and after them. The scale
# workload first fills the server with BENCH_SCALE_JOBS jobs delayed by an
# hour, spread over 10,000 tubes (docket-bench --fill), then runs rtt: next to
# the rtt row it shows what a big backlog and many tubes cost each command.
#
# Output: the tables on stdout and in $BENCH_OUT/table.md; every result line in
# $BENCH_OUT/results.txt. Exit status 1 if a run failed its exactly-once check,
# a server did not start, or docket-bench broke (the table marks the cell).
#
# Environment:
#   BENCH_QUICK=1    smoke run of about a minute: 0.5 s phases, 1 s at fixed
#                    rate, 100000 jobs for mem
#   BENCH_SECONDS    length of each timed phase (default 3)
#   BENCH_REPEAT     rounds of the put, put16, mixed, mixed16, big and rtt
#                    rows (default 3; 1 with BENCH_QUICK): each round runs
#                    every server once, and the table shows each cell's
#                    median round
#   BENCH_RATE       jobs/s of the fixed-rate run (default 1000)
#   BENCH_MEM_JOBS   jobs queued by the mem workload (default 1000000)
#   BENCH_SCALE_JOBS delayed jobs the scale workload fills in (default 1000000)
#   BENCH_SERVERS    run only these servers (names below, space-separated)
#   BENCH_CASES      run only these workloads (names below, space-separated)
#   BENCH_OUT        output directory (default build/bench-results)
#   DOCKET_BENCH, DOCKETD, BEANSTALKD, REDIS_SERVER   the binaries
set -u

cd "$(dirname "$0")/.." || exit 2
BENCH=${DOCKET_BENCH:-build/docket-bench}
DOCKETD=${DOCKETD:-build/docketd}
BEANSTALKD=${BEANSTALKD:-/usr/bin/beanstalkd}
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server || echo /usr/bin/redis-server)}
OUT=${BENCH_OUT:-build/bench-results}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    DUR=${BENCH_SECONDS:-0.5}
    RATE_DUR=1
    REPEAT=${BENCH_REPEAT:-1}
    MEM_JOBS=${BENCH_MEM_JOBS:-100000}
    SCALE_JOBS=${BENCH_SCALE_JOBS:-100000}
else
    DUR=${BENCH_SECONDS:-3}
    RATE_DUR=5
    REPEAT=${BENCH_REPEAT:-3}
    MEM_JOBS=${BENCH_MEM_JOBS:-1000000}
    SCALE_JOBS=${BENCH_SCALE_JOBS:-1000000}
fi
RATE=${BENCH_RATE:-1000}
BASE=beanstalkd-mem
ALL_SERVERS="docketd-always docketd-50ms docketd-never docketd-memory beanstalkd-mem beanstalkd-f0 beanstalkd-f1000 redis-none redis-always redis-everysec"
ALL_CASES="put put16 mixed mixed16 big rtt scale rate mem"
SERVERS=${BENCH_SERVERS:-$ALL_SERVERS}
CASES=${BENCH_CASES:-$ALL_CASES}
RUN_TIMEOUT=300 # s, for one docket-bench run

# Servers run in their own directories: make the paths absolute.
abs() { case $1 in /*) echo "$1" ;; */*) echo "$PWD/$1" ;; *) command -v "$1" || echo "$1" ;; esac; }
BENCH=$(abs "$BENCH")
DOCKETD=$(abs "$DOCKETD")
BEANSTALKD=$(abs "$BEANSTALKD")
REDIS_SERVER=$(abs "$REDIS_SERVER")
for b in "$BENCH" "$DOCKETD"; do
    [ -x "$b" ] || { echo "bench: $b not built (make all)" >&2; exit 2; }
done
case "$SERVERS" in *beanstalkd*) [ -x "$BEANSTALKD" ] || {
    echo "bench: $BEANSTALKD missing (make deps)" >&2; exit 2; } ;; esac
case "$SERVERS" in *redis*) [ -x "$REDIS_SERVER" ] || {
    echo "bench: redis-server missing (make deps)" >&2; exit 2; } ;; esac

TMP=$(mktemp -d "${TMPDIR:-/tmp}/docket-bench.XXXXXX") || exit 2
SPID=
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    stop_server
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM
mkdir -p "$OUT" || exit 2
RES=$OUT/results.txt
: >"$RES"

# The command line of server $1 on port $2 with directory $3, for eval.
server_cmd() {
    case $1 in
    docketd-always) echo "'$DOCKETD' -l 127.0.0.1 -p $2 -b '$3/data' --fsync=always" ;;
    docketd-50ms) echo "'$DOCKETD' -l 127.0.0.1 -p $2 -b '$3/data' --fsync=50" ;;
    docketd-never) echo "'$DOCKETD' -l 127.0.0.1 -p $2 -b '$3/data' --fsync=never" ;;
    docketd-memory) echo "'$DOCKETD' -l 127.0.0.1 -p $2 --memory" ;;
    beanstalkd-mem) echo "'$BEANSTALKD' -l 127.0.0.1 -p $2" ;;
    beanstalkd-f0) echo "'$BEANSTALKD' -l 127.0.0.1 -p $2 -b '$3/data' -f 0" ;;
    beanstalkd-f1000) echo "'$BEANSTALKD' -l 127.0.0.1 -p $2 -b '$3/data' -f 1000" ;;
    redis-none) echo "'$REDIS_SERVER' --port $2 --bind 127.0.0.1 --save '' --appendonly no --dir '$3/data' --daemonize no" ;;
    redis-always) echo "'$REDIS_SERVER' --port $2 --bind 127.0.0.1 --save '' --appendonly yes --appendfsync always --dir '$3/data' --daemonize no" ;;
    redis-everysec) echo "'$REDIS_SERVER' --port $2 --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec --dir '$3/data' --daemonize no" ;;
    *) return 1 ;;
    esac
}

# docket-bench arguments of workload $1.
case_args() {
    case $1 in
    put) echo "-w put -P 4 -C 4 -d $DUR" ;;
    put16) echo "-w put -P 4 -C 4 -D 16 -d $DUR" ;;
    mixed) echo "-w mixed -P 2 -C 4 -d $DUR" ;;
    mixed16) echo "-w mixed -P 2 -C 4 -D 16 -d $DUR" ;;
    big) echo "-w mixed -P 2 -C 4 -s 16384 -d $DUR" ;;
    rtt) echo "-w rtt -d $DUR" ;;
    scale) echo "-w rtt -d $DUR" ;; # after --fill: see below
    rate) echo "-w rate -P 2 -C 4 -R $RATE -d $RATE_DUR" ;;
    mem) echo "-w put -P 4 -C 0 -D 64 -s 100 -n $MEM_JOBS" ;;
    *) return 1 ;;
    esac
}

# True if workload $1 is not run against server $2. beanstalkd -f 0 fsyncs
# after every put, pipelined or not (about 5000/s here): a million puts would
# take minutes, and its memory per job is beanstalkd-f1000's. Filling
# beanstalkd for scale takes about 6 minutes (its event loop visits every tube
# on every turn), so scale runs against docketd only: its row is read against
# the rtt row. Redis has no tubes.
skip() {
    case $1/$2 in
    mem/beanstalkd-f0) return 0 ;;
    scale/beanstalkd-* | scale/redis-*) return 0 ;;
    *) return 1 ;;
    esac
}

# Rounds of workload $1: the short timed rows are repeated, since one 3 s run
# on a shared machine moves by 20% and more; the fixed-rate run, mem and scale
# (minutes of filling) are not.
rounds() {
    case $1 in
    put | put16 | mixed | mixed16 | big | rtt) seq 1 "$REPEAT" ;;
    *) echo 1 ;;
    esac
}

# VmRSS of process $1 in KiB.
rss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status" 2>/dev/null; }

# True while process $1 runs (a zombie does not count: this shell reaps its
# children only at `wait`).
running() {
    if [ -r "/proc/$1/stat" ]; then
        ! grep -q ') Z ' "/proc/$1/stat" 2>/dev/null
    else
        kill -0 "$1" 2>/dev/null
    fi
}

stop_server() {
    [ -n "$SPID" ] || return 0
    kill -TERM "$SPID" 2>/dev/null
    i=0
    while running "$SPID" && [ $i -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if running "$SPID"; then
        echo "bench: pid $SPID ignored SIGTERM for 5 s; SIGKILL" >&2
        kill -KILL "$SPID" 2>/dev/null
    fi
    wait "$SPID" 2>/dev/null
    SPID=
}

# Starts server $1 fresh: sets SPID, SPORT and SDIR. Returns 1 if it would not
# start (after three ports).
start_server() {
    name=$1
    for attempt in 1 2 3; do
        SDIR=$(mktemp -d "$TMP/$name.XXXXXX") || return 1
        mkdir -p "$SDIR/data"
        SPORT=$("$BENCH" --free-port) || return 1
        cmd=$(server_cmd "$name" "$SPORT" "$SDIR") || return 1
        eval "set -- $cmd"
        (cd "$SDIR" && exec "$@") >"$SDIR/server.log" 2>&1 &
        SPID=$!
        if "$BENCH" -p "$SPORT" --wait 10 2>/dev/null && sleep 0.05 && running "$SPID"; then
            return 0
        fi
        echo "bench: $name did not start on port $SPORT (attempt $attempt):" >&2
        tail -n 5 "$SDIR/server.log" >&2
        stop_server
        rm -rf "$SDIR"
    done
    return 1
}

# The disk's fsync latency moves a lot on shared or virtual machines, and every
# fsync=always number follows it: measure it before and after the run.
probe() { "$BENCH" --fsync-probe "$TMP" | awk '{ print $3 ", " $5 " (500 appends)" }' | sed 's/_us=/ /g'; }
probe_before=$(probe)
load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)

# What the table's header reports, taken before anything runs.
start_date=$(date -u '+%Y-%m-%d %H:%M UTC')
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src 2>/dev/null || rev="$rev with uncommitted changes in src/"
legend=$(for s in $SERVERS; do
    echo "- $s: \`$(server_cmd "$s" PORT DIR | sed "s|'||g; s|--save  |--save '' |; s|$PWD/||g")\`"
done)
# Run copies of our binaries: a rebuild in the tree during the run (another
# make) must not change the server halfway through the table.
mkdir -p "$TMP/bin" && cp "$DOCKETD" "$TMP/bin/docketd" && cp "$BENCH" "$TMP/bin/docket-bench" ||
    exit 2
DOCKETD=$TMP/bin/docketd
BENCH=$TMP/bin/docket-bench

total=0
for c in $CASES; do
    for r in $(rounds "$c"); do
        for s in $SERVERS; do
            skip "$c" "$s" || total=$((total + 1))
        done
    done
done
step=0
failed=0
started=$(date +%s)
for c in $CASES; do
    args=$(case_args "$c") || { echo "bench: unknown workload $c" >&2; exit 2; }
    "$BENCH" --fsync-probe "$TMP" | sed "s/^/server=disk case=$c /" >>"$RES"
    for r in $(rounds "$c"); do
        for s in $SERVERS; do
            server_cmd "$s" 0 x >/dev/null || { echo "bench: unknown server $s" >&2; exit 2; }
            if skip "$c" "$s"; then
                echo "server=$s case=$c skipped" >>"$RES"
                continue
            fi
            step=$((step + 1))
            proto=
            case $s in redis-*) proto=-r ;; esac
            if ! start_server "$s"; then
                echo "server=$s case=$c error server-did-not-start" >>"$RES"
                failed=1
                continue
            fi
            [ "$c" = mem ] && rss0=$(rss_kb "$SPID")
            if [ "$c" = scale ] && ! timeout "$RUN_TIMEOUT" "$BENCH" -p "$SPORT" --fill 10000 \
                -n "$SCALE_JOBS" -s 100 >"$SDIR/fill" 2>&1; then
                echo "server=$s case=$c error fill-failed $(tr '\n' ' ' <"$SDIR/fill" | cut -c1-200)" >>"$RES"
                failed=1
            fi
            # The fill wrote ~200 MB of log: let the kernel write it back
            # before the timed phase, which measures the backlog, not that.
            [ "$c" = scale ] && sync
            # shellcheck disable=SC2086 # $args and $proto are word lists
            timeout "$RUN_TIMEOUT" "$BENCH" $proto -p "$SPORT" $args -t "bench-$c" \
                >"$SDIR/out" 2>"$SDIR/err"
            rc=$?
            if [ "$c" = mem ] && [ "$rc" -eq 0 ]; then
                sleep 0.5 # let a log writer thread hand its last batch to the kernel
                rss1=$(rss_kb "$SPID")
                awk -v a="${rss0:-0}" -v b="${rss1:-0}" '$1 == "check" {
                    for (i = 2; i <= NF; i++) if ($i ~ /^acked=/) n = substr($i, 7) + 0
                    if (n > 0 && a > 0 && b > 0)
                        printf "result phase=rss jobs=%d rss_before_kb=%d rss_after_kb=%d bytes_per_job=%.1f\n", n, a, b, (b - a) * 1024 / n
                }' "$SDIR/out" >"$SDIR/rss"
                cat "$SDIR/rss" >>"$SDIR/out"
                grep -q '^result phase=rss ' "$SDIR/rss" || {
                    failed=1
                    echo "server=$s case=$c error no-rss-reading pid=$SPID before=${rss0:-none} after=${rss1:-none}" >>"$RES"
                }
            fi
            sed "s/^/server=$s case=$c round=$r /" "$SDIR/out" >>"$RES"
            if [ "$rc" -ne 0 ] || ! grep -q '^check .*status=ok' "$SDIR/out"; then
                failed=1
                why=$(tr '\n' ' ' <"$SDIR/err" | cut -c1-300)
                grep -q '^check ' "$SDIR/out" ||
                    echo "server=$s case=$c error exit=$rc $why" >>"$RES"
                echo "bench: $s $c failed (exit $rc): $why" >&2
                tail -n 20 "$SDIR/server.log" >&2
            fi
            if ! running "$SPID"; then
                failed=1
                echo "server=$s case=$c error server-exited-during-the-run" >>"$RES"
                echo "bench: $s exited during $c:" >&2
                tail -n 20 "$SDIR/server.log" >&2
            fi
            summary=$(awk '$1 == "result" { for (i = 2; i <= NF; i++) if ($i ~ /^(phase|jobs_per_s|p99_us|bytes_per_job)=/) printf "%s ", $i; printf "| " }' "$SDIR/out")
            stop_server
            rm -rf "$SDIR"
            printf 'bench: [%d/%d] %-16s %-8s %s\n' "$step" "$total" "$s" "$c" "$summary" >&2
        done
    done
done
elapsed=$(($(date +%s) - started))
probe_after=$(probe)

# --- the report ----------------------------------------------------------
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
mem=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null)
fs=$(df -PT "$TMP" 2>/dev/null | awk 'NR == 2 { print $2 " on " $1 }')
cmdline="make bench"
for v in BENCH_QUICK BENCH_SECONDS BENCH_REPEAT BENCH_RATE BENCH_MEM_JOBS BENCH_SERVERS BENCH_CASES; do
    eval "val=\${$v:-}"
    [ -n "$val" ] && cmdline="$v='$val' $cmdline"
done
{
    echo "- Date: $start_date; the run took ${elapsed} s"
    echo "- Machine: $(uname -srm); ${cpu:-unknown CPU}, $(nproc) cores; ${mem:-? RAM}; data dirs on ${fs:-?};"\
        "load average ${load_before:-?} at the start"
    echo "- Disk: fdatasync after a 128-byte append, in us: $probe_before before the run; $probe_after after"
    echo "- Command: \`$cmdline\` (timed phases ${DUR} s, $REPEAT rounds of the put, put16, mixed, mixed16, big and rtt rows, fixed rate ${RATE}/s for ${RATE_DUR} s, $MEM_JOBS jobs for mem)"
    echo "- Servers: docketd $rev, $("$BEANSTALKD" -v 2>/dev/null | head -n 1),"\
        "redis-server $("$REDIS_SERVER" --version 2>/dev/null | sed -n 's/.*v=\([^ ]*\).*/\1/p')"
    echo
    echo "Columns (PORT and DIR are fresh for every run):"
    echo
    echo "$legend"
    awk -v servers="$SERVERS" -v base="$BASE" -v rate="$RATE" -v scale="$SCALE_JOBS" -f bench/table.awk "$RES"
} >"$OUT/table.md"
cat "$OUT/table.md"
echo
echo "bench: results in $RES, table in $OUT/table.md" >&2
exit "$failed"
