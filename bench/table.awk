# table.awk -- turns bench/run.sh's results file into Markdown tables.
#
# Input lines: "server=S case=C round=R result phase=P k=v ...", "server=S
# case=C round=R check ... status=ok|FAIL", "server=S case=C error ...",
# "server=S case=C skipped" and "server=disk case=C fsync p50_us=.. p99_us=.."
# (the disk probe before a row). The mem case's "result phase=rss ...
# bytes_per_job=B" line makes its own table. A workload run in several rounds
# shows, in each cell, the round with the median jobs/s (the lower one of an
# even count), all of that round's numbers; a fourth table gives the spread.
# Variables (-v):
# servers  the server names in column order, space-separated
# base     the server the ratios compare with
# rate     the fixed rate, for the row label
# scale    the scale workload's delayed jobs, for its row label
#
# Prints three tables: throughput with ratios to base, latency p50 / p99 and
# latency p99.9 / max; the spread of repeated rows; then memory per queued
# job; then the targets of the issue "Benchmark against beanstalkd and
# Redis" that this run's cells give (servers named as in bench/run.sh);
# then any failed checks.
# A table without rows is left out. Exits 0.

function kv(    i, n) {
    delete f
    for (i = 1; i <= NF; i++) {
        n = index($i, "=")
        if (n > 0)
            f[substr($i, 1, n - 1)] = substr($i, n + 1)
    }
}

function rate_fmt(v) {
    v += 0
    if (v >= 100000) return sprintf("%.0fk", v / 1000)
    if (v >= 10000) return sprintf("%.1fk", v / 1000)
    return sprintf("%.0f", v)
}

# Microseconds in, milliseconds out, about three significant digits.
function ms(us,    v) {
    v = (us + 0) / 1000
    if (v < 1) return sprintf("%.3f", v)
    if (v < 10) return sprintf("%.2f", v)
    if (v < 100) return sprintf("%.1f", v)
    return sprintf("%.0f", v)
}

function row(label, key, what,    i, s, k, b, cell, line) {
    line = "| " label " |"
    for (i = 1; i <= ns; i++) {
        s = sv[i]
        k = s SUBSEP key
        if (!((k SUBSEP "jobs_per_s") in val)) {
            cell = bad[s SUBSEP caseof[key]] ? "error" : "-"
        } else if (what == "tput") {
            cell = rate_fmt(val[k, "jobs_per_s"])
            # (a plain val[base, ...] would create the entry: a skipped base cell would print 0)
            b = ((base SUBSEP key SUBSEP "jobs_per_s") in val) ? val[base, key, "jobs_per_s"] : 0
            if (s != base && b > 0)
                cell = cell sprintf(" (%.2fx)", val[k, "jobs_per_s"] / b)
        } else if (what == "lat") {
            cell = ms(val[k, "p50_us"]) " / " ms(val[k, "p99_us"])
            if ((k SUBSEP "backlog") in val)
                cell = cell " (q " val[k, "backlog"] ")"
        } else if (what == "spread") {
            cell = rate_fmt(lo[s, key]) " - " rate_fmt(hi[s, key])
        } else {
            cell = ms(val[k, "p999_us"]) " / " ms(val[k, "max_us"])
        }
        if (bad[s SUBSEP caseof[key]] && cell != "error")
            cell = cell " FAIL"
        line = line " " cell " |"
    }
    if (what == "tput")
        line = line " " (caseof[key] in disk ? disk[caseof[key]] : "-") " |"
    print line
}

# The mem case's one row: RSS growth per queued job, with the ratio to base.
function memrow(    i, s, k, b, cell, line, n) {
    k = "mem/rss"
    n = 0
    for (i = 1; i <= ns; i++)
        if ((sv[i] SUBSEP k SUBSEP "jobs") in val)
            n = val[sv[i], k, "jobs"]
    line = "| memory per queued 100-byte job, bytes RSS (" (n >= 1000000 ? sprintf("%gM", n / 1000000) : n >= 1000 ? sprintf("%gk", n / 1000) : n) " jobs) |"
    for (i = 1; i <= ns; i++) {
        s = sv[i]
        if ((s SUBSEP "mem") in skipped) {
            cell = "-"
        } else if (!((s SUBSEP k SUBSEP "bytes_per_job") in val)) {
            cell = bad[s SUBSEP "mem"] ? "error" : "-"
        } else {
            cell = sprintf("%.0f", val[s, k, "bytes_per_job"])
            b = val[base, k, "bytes_per_job"]
            if (s != base && b > 0)
                cell = cell sprintf(" (%.2fx)", val[s, k, "bytes_per_job"] / b)
            if (bad[s SUBSEP "mem"])
                cell = cell " FAIL"
        }
        line = line " " cell " |"
    }
    print line
}

function header(title, extra,    i, line, sep) {
    print ""
    print title
    print ""
    line = "| workload |"
    sep = "|---|"
    for (i = 1; i <= ns; i++) {
        line = line " " sv[i] " |"
        sep = sep "---:|"
    }
    if (extra != "") {
        line = line " " extra " |"
        sep = sep "---:|"
    }
    print line
    print sep
}

BEGIN {
    ns = split(servers, sv, " ")
    nr = 0
    # key (case/phase), label; the order of the rows.
    keys[++nr] = "put/put";        labels[nr] = "put, 4 producers"
    keys[++nr] = "put/drain";      labels[nr] = "drain (reserve+delete), 4 consumers"
    keys[++nr] = "put16/put";      labels[nr] = "put, 4 producers, 16 pipelined"
    keys[++nr] = "put16/drain";    labels[nr] = "drain, 4 consumers, 16 pipelined"
    keys[++nr] = "mixed/mixed";    labels[nr] = "mixed, 2 producers + 4 consumers"
    keys[++nr] = "mixed16/mixed";  labels[nr] = "mixed, 16 pipelined"
    keys[++nr] = "big/mixed";      labels[nr] = "mixed, 16 KiB bodies"
    keys[++nr] = "rtt/rtt";        labels[nr] = "rtt: put, reserve, delete on 1 connection"
    keys[++nr] = "scale/rtt";      labels[nr] = "rtt beside " (scale >= 1000000 ? sprintf("%gM", scale / 1000000) : sprintf("%gk", scale / 1000)) " delayed jobs in 10k tubes"
    keys[++nr] = "rate/rate";      labels[nr] = "fixed rate " rate "/s, enqueue to dequeue"
    keys[++nr] = "rate/rate-put";  labels[nr] = "fixed rate " rate "/s, put acknowledged"
    for (i = 1; i <= nr; i++) {
        split(keys[i], kp, "/")
        caseof[keys[i]] = kp[1]
    }
    caseof["mem/rss"] = "mem" # its own table (memrow)
}

# The first word that is not key=value: result, check, fsync, skipped, error.
function kind(    i) {
    for (i = 1; i <= NF; i++)
        if (index($i, "=") == 0)
            return $i
    return ""
}

{
    kv()
    s = f["server"]; c = f["case"]
    ran[c] = 1
    k3 = kind()
    if (k3 == "result") {
        key = c "/" f["phase"]
        r = ("round" in f) ? f["round"] : 1
        if (!((s, key, r) in seen)) {
            seen[s, key, r] = 1
            nrounds[s, key]++
            roundlist[s, key] = roundlist[s, key] " " r
        }
        for (name in f) {
            valr[s, key, r, name] = f[name]
            names[s, key, r] = names[s, key, r] " " name
        }
    } else if (k3 == "check") {
        if (f["status"] != "ok") {
            bad[s, c] = 1
            fails = fails "\n- " s " " c ": " substr($0, index($0, "check"))
        }
    } else if (k3 == "fsync") {
        disk[c] = sprintf("%.0f / %.0f", f["p50_us"], f["p99_us"])
    } else if (k3 == "skipped") {
        skipped[s, c] = 1
    } else if (k3 == "error") {
        bad[s, c] = 1
        fails = fails "\n- " s " " c ": " substr($0, index($0, "error"))
    }
}

# Copies each cell's median round (by jobs/s) into val, and its spread into
# lo and hi.
function pick_medians(    sk, p, n, rs, i, j, t, m, nm, q) {
    for (sk in nrounds) {
        split(sk, p, SUBSEP)
        n = split(substr(roundlist[sk], 2), rs, " ")
        for (i = 2; i <= n; i++) # insertion sort by jobs/s
            for (j = i; j > 1 && valr[p[1], p[2], rs[j], "jobs_per_s"] + 0 < valr[p[1], p[2], rs[j - 1], "jobs_per_s"] + 0; j--) {
                t = rs[j]; rs[j] = rs[j - 1]; rs[j - 1] = t
            }
        m = rs[int((n + 1) / 2)]
        nm = split(substr(names[p[1], p[2], m], 2), q, " ")
        for (i = 1; i <= nm; i++)
            val[p[1], p[2], q[i]] = valr[p[1], p[2], m, q[i]]
        lo[p[1], p[2]] = valr[p[1], p[2], rs[1], "jobs_per_s"]
        hi[p[1], p[2]] = valr[p[1], p[2], rs[n], "jobs_per_s"]
        if (n > maxrounds)
            maxrounds = n
    }
}

END {
    pick_medians()
    timed = 0
    for (i = 1; i <= nr; i++)
        if (caseof[keys[i]] in ran)
            timed = 1
    if (timed)
        timed_tables()
    if ("mem" in ran) {
        header("Memory: growth of the server's RSS (VmRSS) per job while the jobs are queued, bytes (ratio to " base "); 100-byte bodies, put 64 pipelined on 4 connections, none reserved:", "")
        memrow()
        for (i = 1; i <= ns; i++)
            if ((sv[i] SUBSEP "mem") in skipped)
                nskip++
        if (nskip)
            print "\n(-: not run for this workload; see skip() in bench/run.sh)"
    }
    targets()
    if (fails != "") {
        print ""
        print "Failed checks:" fails
    }
}

# One target: server s's value of name in row key against server o's in row
# ko (key if empty), where the ratio s/o must be at least need (or, with
# most, at most need). Left out if either cell is missing; a failed check in
# either case marks it.
function target(label, s, o, key, name, need, most, fmt, ko,    a, b, r, met, ok) {
    if (ko == "")
        ko = key
    if (!((s SUBSEP key SUBSEP name) in val) || !((o SUBSEP ko SUBSEP name) in val))
        return
    a = val[s, key, name] + 0
    b = val[o, ko, name] + 0
    if (b <= 0)
        return
    r = a / b
    ok = most ? r <= need : r >= need
    met = (bad[s SUBSEP caseof[key]] || bad[o SUBSEP caseof[ko]]) ? "check failed" : ok ? "yes" : "no"
    if (!ntargets++) {
        print ""
        print "Targets: the issue's ratios, from the cells above (median rounds):"
        print ""
        print "| target | docketd | against | ratio | met |"
        print "|---|---:|---:|---:|---|"
    }
    printf "| %s | %s | %s | %.2fx | %s |\n", label, tcell(a, fmt), tcell(b, fmt), r, met
}

# A target's value: jobs/s, or with fmt "ms" microseconds shown in ms, or
# with "b" bytes.
function tcell(v, fmt) {
    return fmt == "ms" ? ms(v) " ms" : fmt == "b" ? sprintf("%.0f B", v) : rate_fmt(v)
}

function targets() {
    target("fsync=always, put x4 >= 3x beanstalkd -f 0", "docketd-always", "beanstalkd-f0", "put/put", "jobs_per_s", 3, 0)
    target("fsync=always, mixed 16 pipelined >= 2x beanstalkd in memory", "docketd-always", "beanstalkd-mem", "mixed16/mixed", "jobs_per_s", 2, 0)
    target("fsync=always, mixed 16 pipelined >= 1.5x redis appendfsync always", "docketd-always", "redis-always", "mixed16/mixed", "jobs_per_s", 1.5, 0)
    target("fsync=never, put x4 >= 1.2x beanstalkd in memory", "docketd-never", "beanstalkd-mem", "put/put", "jobs_per_s", 1.2, 0)
    target("fsync=never, mixed 16 pipelined >= redis in memory", "docketd-never", "redis-none", "mixed16/mixed", "jobs_per_s", 1, 0)
    target("rtt p99 <= beanstalkd in memory (fsync=never)", "docketd-never", "beanstalkd-mem", "rtt/rtt", "p99_us", 1, 1, "ms")
    target("rtt p99 <= beanstalkd in memory (--memory)", "docketd-memory", "beanstalkd-mem", "rtt/rtt", "p99_us", 1, 1, "ms")
    target("16 KiB bodies >= 1.5x beanstalkd in memory (fsync=never)", "docketd-never", "beanstalkd-mem", "big/mixed", "jobs_per_s", 1.5, 0)
    target("16 KiB bodies >= 1.5x beanstalkd in memory (--memory)", "docketd-memory", "beanstalkd-mem", "big/mixed", "jobs_per_s", 1.5, 0)
    target("memory per queued 100-byte job <= 0.5x beanstalkd (fsync=always)", "docketd-always", "beanstalkd-mem", "mem/rss", "bytes_per_job", 0.5, 1, "b")
    # O(log n) has no ratio of its own: a scan per command of 10k tubes or
    # 1M jobs would cost orders of magnitude, so half the empty rate is ample.
    target("O(log n): rtt beside the delayed jobs in 10k tubes >= 0.5x rtt alone (fsync=never)", "docketd-never", "docketd-never", "scale/rtt", "jobs_per_s", 0.5, 0, "", "rtt/rtt")
}

function timed_tables(    i) {
    header("Throughput, jobs/s (ratio to " base "); last column: the disk's fdatasync p50 / p99 in us, measured just before the row:", "fdatasync")
    for (i = 1; i <= nr; i++)
        if (caseof[keys[i]] in ran && keys[i] != "rate/rate-put")
            row(labels[i], keys[i], "tput")
    header("Latency p50 / p99, ms (put: until INSERTED; drain: reserve sent until DELETED; mixed and rate: the job's put sent until its reserve arrived, with (q N) the jobs still queued when the producers stopped; rtt: one put+reserve+delete):", "")
    for (i = 1; i <= nr; i++)
        if (caseof[keys[i]] in ran)
            row(labels[i], keys[i], "lat")
    header("Latency p99.9 / max, ms:", "")
    for (i = 1; i <= nr; i++)
        if (caseof[keys[i]] in ran)
            row(labels[i], keys[i], "tail")
    if (maxrounds > 1) {
        header("Spread: the lowest and highest jobs/s of the " maxrounds " rounds behind each cell above (rows run once are left out):", "")
        for (i = 1; i <= nr; i++)
            if (caseof[keys[i]] in ran && keys[i] != "rate/rate-put" && spread_rows(keys[i]))
                row(labels[i], keys[i], "spread")
    }
}

# True if some cell of row key was measured in more than one round.
function spread_rows(key,    i) {
    for (i = 1; i <= ns; i++)
        if (nrounds[sv[i], key] > 1)
            return 1
    return 0
}
