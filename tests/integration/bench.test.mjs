// bench.test.mjs -- build/docket-bench (bench/) against a fresh docketd: short
// put+drain and mixed runs finish, their output parses, and the exactly-once
// check passes. Behaviour only: nothing here asserts a speed. `make bench`
// (bench/run.sh) is the real benchmark and is not part of the tests.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { startServer, connect, put, REPO_ROOT, IS_112 } from './harness.mjs';

const BENCH = path.resolve(REPO_ROOT, process.env.DOCKET_BENCH || 'build/docket-bench');
const T = { timeout: 60000 };
const SKIP = IS_112 ? 'docketd flags (--memory, --fsync)' : false;

/** Runs docket-bench with args; resolves {code, stdout, stderr} (never rejects on exit status). */
function bench(args) {
    return new Promise((resolve, reject) => {
        if (!existsSync(BENCH)) { reject(new Error(`${BENCH} not built (make all)`)); return; }
        execFile(BENCH, args, { timeout: 45000, encoding: 'latin1' }, (err, stdout, stderr) => {
            if (err && typeof err.code !== 'number') { reject(err); return; }
            resolve({ code: err ? err.code : 0, stdout, stderr });
        });
    });
}

/** Parses "result k=v ..." and "check k=v ..." lines; numbers become numbers. */
function parse(stdout) {
    const out = { results: {}, checks: [], other: [] };
    for (const line of stdout.split('\n').filter(Boolean)) {
        const [kind, ...pairs] = line.split(' ');
        const rec = {};
        for (const p of pairs) {
            const i = p.indexOf('=');
            assert.ok(i > 0, `not key=value: ${JSON.stringify(p)} in ${JSON.stringify(line)}`);
            const v = p.slice(i + 1);
            rec[p.slice(0, i)] = /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v;
        }
        if (kind === 'result') out.results[rec.phase] = rec;
        else if (kind === 'check') out.checks.push(rec);
        else out.other.push(line);
    }
    assert.deepEqual(out.other, [], 'docket-bench printed only result and check lines');
    return out;
}

function assertResult(r, phase) {
    assert.ok(r, `a result line for ${phase}`);
    for (const k of ['jobs', 'secs', 'jobs_per_s', 'samples', 'p50_us', 'p90_us', 'p99_us', 'p999_us', 'max_us']) {
        assert.equal(typeof r[k], 'number', `${phase}: ${k} is a number`);
    }
    assert.ok(r.jobs > 0, `${phase}: some jobs`);
    assert.ok(r.p50_us <= r.p90_us && r.p90_us <= r.p99_us && r.p99_us <= r.p999_us && r.p999_us <= r.max_us,
        `${phase}: percentiles in order: ${JSON.stringify(r)}`);
}

function assertExactlyOnce(out, acked) {
    assert.equal(out.checks.length, 1);
    const c = out.checks[0];
    assert.deepEqual(
        [c.status, c.duplicates, c.missing, c.unexpected, c.errors],
        ['ok', 0, 0, 0, 0], JSON.stringify(c));
    assert.equal(c.acked, acked);
    assert.equal(c.consumed, acked);
}

for (const [name, args] of [['--memory', ['--memory']], ['--fsync=always', ['--fsync=always']]]) {
    describe(`docket-bench against docketd ${name}`, { skip: SKIP }, () => {
        let srv;
        before(async () => { srv = await startServer({ args }); });
        after(async () => { await srv?.stop(); });

        it('put then drain: every acknowledged job is reserved and deleted exactly once', T, async () => {
            const { code, stdout, stderr } = await bench(['-p', String(srv.port), '-w', 'put', '-d', '1',
                '-P', '2', '-C', '2', '-t', 'bench-put']);
            assert.equal(code, 0, stderr);
            const out = parse(stdout);
            assertResult(out.results.put, 'put');
            assertResult(out.results.drain, 'drain');
            assert.equal(out.results.put.samples, out.results.put.jobs);
            assert.equal(out.results.drain.jobs, out.results.put.jobs);
            assertExactlyOnce(out, out.results.put.jobs);
        });

        it('mixed, 4 pipelined: producers and consumers at once, exactly once', T, async () => {
            const { code, stdout, stderr } = await bench(['-p', String(srv.port), '-w', 'mixed', '-d', '1',
                '-P', '2', '-C', '2', '-D', '4', '-t', 'bench-mixed']);
            assert.equal(code, 0, stderr);
            const out = parse(stdout);
            assertResult(out.results.mixed, 'mixed');
            assertResult(out.results['mixed-put'], 'mixed-put');
            assert.equal(out.results.mixed.jobs, out.results['mixed-put'].jobs);
            assertExactlyOnce(out, out.results['mixed-put'].jobs);
        });

        it('put-only (-C 0): no drain, every acknowledged job stays queued', T, async (t) => {
            const { code, stdout, stderr } = await bench(['-p', String(srv.port), '-w', 'put', '-n', '500',
                '-s', '100', '-P', '2', '-D', '8', '-C', '0', '-t', 'bench-queued']);
            assert.equal(code, 0, stderr);
            const out = parse(stdout);
            assertResult(out.results.put, 'put');
            assert.equal(out.results.drain, undefined, 'no drain phase');
            assert.equal(out.checks.length, 1);
            const chk = out.checks[0];
            assert.deepEqual([chk.status, chk.acked, chk.consumed, chk.queued, chk.missing, chk.errors],
                ['ok', 500, 0, 500, 0, 0], JSON.stringify(chk));
            const c = await connect(t, srv);
            const y = await c.yaml('stats-tube bench-queued');
            assert.equal(y.get('current-jobs-ready'), '500');
            const r = await bench(['-p', String(srv.port), '-w', 'mixed', '-C', '0', '-d', '1']);
            assert.equal(r.code, 2, 'a mixed run needs consumers');
        });

        it('--fill spreads delayed jobs over many tubes (the scale workload)', T, async (t) => {
            const { code, stdout, stderr } = await bench(['-p', String(srv.port), '--fill', '30',
                '-n', '900', '-s', '100']);
            assert.equal(code, 0, stderr);
            assert.deepEqual(parse(stdout).results.fill, { phase: 'fill', tubes: 30, jobs: 900 });
            const c = await connect(t, srv);
            for (const tube of ['fill-0', 'fill-29']) {
                const y = await c.yaml(`stats-tube ${tube}`);
                assert.equal(y.get('current-jobs-delayed'), '30', tube);
                assert.equal(y.get('current-jobs-ready'), '0', tube);
            }
            assert.equal((await bench(['-p', String(srv.port), '--fill', '3'])).code, 2, '--fill needs -n');
        });

        it('a job in the tube that docket-bench did not put fails the check (exit 1)', T, async (t) => {
            const c = await connect(t, srv);
            await c.send('use bench-foreign\r\n');
            await c.expectLine('USING bench-foreign');
            await put(c, 'not a bench job');
            const { code, stdout } = await bench(['-p', String(srv.port), '-w', 'put', '-n', '100',
                '-t', 'bench-foreign']);
            assert.equal(code, 1);
            const chk = parse(stdout).checks[0];
            assert.equal(chk.status, 'FAIL');
            assert.equal(chk.unexpected, 1);
            assert.equal(chk.missing, 0);
            assert.equal(chk.acked, 100);
        });
    });
}

/** Runs bench/table.awk over a results file given as text; resolves its stdout. */
function table(results, servers, base) {
    return new Promise((resolve, reject) => {
        const child = execFile('awk', ['-v', `servers=${servers}`, '-v', `base=${base}`, '-v', 'rate=1000',
            '-v', 'scale=1000', '-f', path.resolve(REPO_ROOT, 'bench/table.awk')],
        { timeout: 10000 }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
        child.stdin.end(results);
    });
}

describe('bench/table.awk (the tables of make bench)', () => {
    const line = (s, r, rate, p99) =>
        `server=${s} case=rtt round=${r} result phase=rtt jobs=1 jobs_per_s=${rate} p50_us=100 p99_us=${p99} p999_us=900 max_us=1000\n`;
    const check = (s, r, st) => `server=${s} case=rtt round=${r} check acked=1 consumed=1 status=${st}\n`;

    it('a cell run in three rounds shows its median round, ratio and latency included, and the spread', T, async () => {
        const res = 'server=disk case=rtt fsync p50_us=100 p99_us=200\n' +
            line('a', 1, 9000, 150) + check('a', 1, 'ok') + line('b', 1, 4000, 900) + check('b', 1, 'ok') +
            line('a', 2, 3000, 300) + check('a', 2, 'ok') + line('b', 2, 5000, 500) + check('b', 2, 'ok') +
            line('a', 3, 6000, 200) + check('a', 3, 'ok') + line('b', 3, 7000, 700) + check('b', 3, 'ok');
        const out = await table(res, 'a b', 'b');
        const row = (title, label) => out.split(title)[1].split('\n').find((l) => l.startsWith(`| ${label}`));
        assert.equal(row('Throughput', 'rtt:'), '| rtt: put, reserve, delete on 1 connection | 6000 (1.20x) | 5000 | 100 / 200 |');
        assert.equal(row('Latency p50', 'rtt:'), '| rtt: put, reserve, delete on 1 connection | 0.100 / 0.200 | 0.100 / 0.500 |');
        assert.equal(row('Spread', 'rtt:'), '| rtt: put, reserve, delete on 1 connection | 3000 - 9000 | 4000 - 7000 |');
        assert.ok(!out.includes('FAIL'), out);
    });

    it('a failed check in any round marks the cell, and a single round has no spread table', T, async () => {
        const failed = await table(line('a', 1, 9000, 150) + check('a', 1, 'ok') + line('a', 2, 8000, 150) +
            check('a', 2, 'FAIL'), 'a', 'a');
        assert.match(failed, /\| rtt: put, reserve, delete on 1 connection \| 8000 FAIL \|/);
        assert.match(failed, /Failed checks:\n- a rtt: check/);
        const once = await table(line('a', 1, 9000, 150) + check('a', 1, 'ok'), 'a', 'a');
        assert.ok(!once.includes('Spread'), once);
    });

    it('the Targets table gives each target its ratio from the cells, met or not, and leaves out what did not run', T, async () => {
        const put = (s, rate) => `server=${s} case=put round=1 result phase=put jobs=1 jobs_per_s=${rate} p50_us=50 p99_us=90 p999_us=100 max_us=200\n` +
            `server=${s} case=put round=1 check acked=1 consumed=1 status=ok\n`;
        const res = put('docketd-never', 12500) + put('beanstalkd-mem', 10000) +
            line('docketd-never', 1, 5000, 300) + check('docketd-never', 1, 'ok') +
            line('docketd-memory', 1, 5000, 200) + check('docketd-memory', 1, 'FAIL') +
            line('beanstalkd-mem', 1, 5000, 250) + check('beanstalkd-mem', 1, 'ok') +
            line('docketd-never', 1, 2000, 400).replace('case=rtt', 'case=scale');
        const out = await table(res, 'docketd-never docketd-memory beanstalkd-mem', 'beanstalkd-mem');
        const rows = out.split('Targets')[1].split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| target'));
        assert.deepEqual(rows, [
            '| fsync=never, put x4 >= 1.2x beanstalkd in memory | 12.5k | 10.0k | 1.25x | yes |',
            '| rtt p99 <= beanstalkd in memory (fsync=never) | 0.300 ms | 0.250 ms | 1.20x | no |',
            '| rtt p99 <= beanstalkd in memory (--memory) | 0.200 ms | 0.250 ms | 0.80x | check failed |',
            '| O(log n): rtt beside the delayed jobs in 10k tubes >= 0.5x rtt alone (fsync=never) | 2000 | 5000 | 0.40x | no |',
        ]);
        const none = await table(line('a', 1, 9000, 150) + check('a', 1, 'ok'), 'a', 'a');
        assert.ok(!none.includes('Targets'), none);
    });
});
