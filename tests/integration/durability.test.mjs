// durability.test.mjs -- what a restart keeps (docs/storage.md; DESIGN.md §4).
//
// Each test runs docketd on a log directory of its own (-b DIR), stops it with
// SIGTERM (or SIGKILL where said) and starts it again on the same directory.
// The kill -9 loop and damaged-log recovery are in tests/crash/.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, Client, putCmd, sleep, binVersion, DOCKETD } from './harness.mjs';

// docketd's log (-b with its format, --fsync, --memory, --repair): not beanstalkd's.
const SKIP = /^docketd /.test(binVersion(DOCKETD)) ? false : `docketd only (${binVersion(DOCKETD) || DOCKETD})`;

const SEG_RE = /^\d{20}\.wal$/;
const LONG = { timeout: 60000 };

/** A fresh log directory path (not created: docketd creates it), removed after the test. */
function dataDir(t) {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'docket-dur-'));
    t.after(() => fs.rmSync(root, { recursive: true, force: true }));
    return path.join(root, 'data');
}

/** Starts docketd on dir; the server is stopped (by PID) when the test ends if still up. */
async function start(t, dir, extra = []) {
    const srv = await startServer({ args: dir ? ['-b', dir, ...extra] : extra });
    t.after(async () => { if (srv.alive) await srv.stop(); });
    return srv;
}

async function client(t, srv) {
    const c = await Client.connect(srv.port);
    t.after(() => c.close());
    return c;
}

async function put(c, body, { pri = 0, delay = 0, ttr = 60 } = {}) {
    await c.send(putCmd(body, { pri, delay, ttr }));
    const line = await c.line();
    const m = /^INSERTED (\d+)$/.exec(line);
    assert.ok(m, `put: expected INSERTED, got ${line}`);
    return Number(m[1]);
}

async function ok(c, cmd, want) {
    const line = await c.call(cmd);
    assert.equal(line, want, cmd);
}

const statsJob = (c, id) => c.yaml(`stats-job ${id}`);
const walFiles = (dir) => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => SEG_RE.test(f)) : []);
/** Bytes in the segment files (one may vanish while we look: the writer thread removes them). */
const walBytes = (dir) => walFiles(dir).reduce((n, f) => {
    try { return n + fs.statSync(path.join(dir, f)).size; } catch (e) { if (e.code === 'ENOENT') return n; throw e; }
}, 0);

/** A body with every byte value, CR and LF included, made unique by tag. */
const binBody = (tag, n = 300) => Buffer.concat([Buffer.from(`${tag}\r\n`), Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + tag.length) & 0xff))]);

async function expectBody(c, id, body) {
    const r = await c.cmd(`peek ${id}`);
    assert.equal(r.line, `FOUND ${id} ${body.length}`, `peek ${id}`);
    assert.ok(r.body.equals(body), `job ${id}: body differs after restart`);
}

/** Stops srv with SIGTERM (clean exit checked) and starts docketd again on dir. */
async function restart(t, srv, dir, extra = []) {
    await srv.stop();
    const s2 = await start(t, dir, extra);
    assert.match(s2.stderr, /write-ahead log .*: \d+ records replayed, \d+ jobs, in [\d.]+ s/);
    return s2;
}

test('a restart keeps ready, delayed, buried (in order), reserved-as-ready, paused tubes, priorities, counters and the id sequence', { timeout: 60000, skip: SKIP }, async (t) => {
    const dir = dataDir(t);
    let srv = await start(t, dir);
    let c = await client(t, srv);

    // Ready jobs with assorted priorities in tube dur-r.
    await ok(c, 'use dur-r', 'USING dur-r');
    const ready = [];
    for (const [i, pri] of [[0, 5], [1, 0], [2, 100], [3, 0], [4, 4294967295], [5, 1024]]) {
        const body = binBody(`ready-${i}`, 50 + i * 40);
        ready.push({ id: await put(c, body, { pri, ttr: 30 + i }), body, pri });
    }
    // Delayed jobs: a long delay and a shorter one.
    await ok(c, 'use dur-d', 'USING dur-d');
    const dLong = { body: binBody('delayed-long'), delay: 3600 };
    dLong.id = await put(c, dLong.body, { pri: 7, delay: 3600 });
    const dShort = { body: binBody('delayed-short'), delay: 40 };
    dShort.id = await put(c, dShort.body, { pri: 9, delay: 40 });

    // Buried jobs, buried in an order other than their ids, with new priorities.
    await ok(c, 'use dur-b', 'USING dur-b');
    const buried = [];
    for (let i = 0; i < 5; i++) {
        const body = binBody(`buried-${i}`, 20 + i);
        buried.push({ id: await put(c, body, { pri: 50 }), body });
    }
    const buryOrder = [3, 0, 4, 1, 2].map((i) => buried[i]);
    for (const [k, j] of buryOrder.entries()) {
        const r = await c.cmd(`reserve-job ${j.id}`);
        assert.equal(r.line, `RESERVED ${j.id} ${j.body.length}`);
        await ok(c, `bury ${j.id} ${1000 + k}`, 'BURIED');
        j.pri = 1000 + k;
    }

    // One job through every counter: reserves 3, releases 1, buries 1, kicks 1, timeouts 1.
    await ok(c, 'use dur-c', 'USING dur-c');
    const cj = { body: binBody('counters') };
    cj.id = await put(c, cj.body, { pri: 3, ttr: 1 });
    await ok(c, 'watch dur-c', 'WATCHING 2');
    await ok(c, 'ignore default', 'WATCHING 1');
    assert.match((await c.cmd('reserve-with-timeout 0')).line, new RegExp(`^RESERVED ${cj.id} `));
    await ok(c, `release ${cj.id} 4 0`, 'RELEASED');
    assert.match((await c.cmd('reserve-with-timeout 0')).line, new RegExp(`^RESERVED ${cj.id} `));
    await ok(c, `bury ${cj.id} 6`, 'BURIED');
    await ok(c, `kick-job ${cj.id}`, 'KICKED');
    const w = await client(t, srv); // reserves it and lets the TTR run out
    await ok(w, 'watch dur-c', 'WATCHING 2');
    assert.match((await w.cmd('reserve-with-timeout 0')).line, new RegExp(`^RESERVED ${cj.id} `));
    let cs;
    for (let i = 0; i < 100; i++) {
        cs = await statsJob(c, cj.id);
        if (cs.get('timeouts') === '1' && cs.get('state') === 'ready') break;
        await sleep(50);
    }
    assert.deepEqual(['reserves', 'releases', 'buries', 'kicks', 'timeouts', 'state'].map((k) => cs.get(k)), ['3', '1', '1', '1', '1', 'ready']);

    // A reserved job at the restart comes back ready (with its reserve counted).
    await ok(c, 'use dur-x', 'USING dur-x');
    const rj = { body: binBody('reserved') };
    rj.id = await put(c, rj.body, { pri: 11 });
    assert.equal((await c.cmd(`reserve-job ${rj.id}`)).line, `RESERVED ${rj.id} ${rj.body.length}`);

    // A paused tube with jobs.
    await ok(c, 'use dur-p', 'USING dur-p');
    const paused = [];
    for (let i = 0; i < 3; i++) {
        const body = binBody(`paused-${i}`);
        paused.push({ id: await put(c, body, { pri: i }), body });
    }
    await ok(c, 'pause-tube dur-p 3600', 'PAUSED');
    const pausedAt = Date.now();

    const all = [...ready, dLong, dShort, ...buried, cj, rj, ...paused];
    const maxId = Math.max(...all.map((j) => j.id));
    const before = new Map();
    for (const j of all) before.set(j.id, await statsJob(c, j.id));
    const stoppedAt = Date.now();

    srv = await restart(t, srv, dir);
    assert.match(srv.stderr, new RegExp(`: \\d+ records replayed, ${all.length} jobs,`));
    c = await client(t, srv);

    // Every job, byte for byte, with the same stats (the reserved one ready again).
    for (const j of all) {
        await expectBody(c, j.id, j.body);
        const a = before.get(j.id);
        const b = await statsJob(c, j.id);
        for (const k of ['id', 'tube', 'pri', 'delay', 'ttr', 'reserves', 'timeouts', 'releases', 'buries', 'kicks']) {
            assert.equal(b.get(k), a.get(k), `job ${j.id}: ${k} after restart`);
        }
        assert.equal(b.get('state'), j === rj ? 'ready' : a.get('state'), `job ${j.id}: state`);
        assert.ok(Number(b.get('age')) >= Number(a.get('age')), `job ${j.id}: age goes on`);
    }
    assert.equal((await statsJob(c, rj.id)).get('reserves'), '1');
    // Delayed jobs keep their deadlines: the time left went on running, it did not restart.
    for (const j of [dLong, dShort]) {
        const tl = Number((await statsJob(c, j.id)).get('time-left'));
        const tl0 = Number(before.get(j.id).get('time-left'));
        const gone = (Date.now() - stoppedAt) / 1000;
        assert.ok(tl <= tl0 && tl >= tl0 - gone - 2, `job ${j.id}: time-left ${tl} after restart, ${tl0} before, ${gone.toFixed(1)} s later`);
        assert.equal((await statsJob(c, j.id)).get('state'), 'delayed');
    }
    // Ready jobs come out by priority, then id.
    const rw = await client(t, srv);
    await ok(rw, 'watch dur-r', 'WATCHING 2');
    await ok(rw, 'ignore default', 'WATCHING 1');
    const order = [...ready].sort((a, b) => (a.pri - b.pri) || (a.id - b.id));
    for (const j of order) {
        const r = await rw.cmd('reserve-with-timeout 0');
        assert.equal(r.line, `RESERVED ${j.id} ${j.body.length}`, 'reserve order after restart');
    }
    assert.equal(await rw.call('reserve-with-timeout 0'), 'TIMED_OUT');
    // Buried jobs kept their FIFO order: kick 1 takes them in the order they were buried.
    await ok(c, 'use dur-b', 'USING dur-b');
    for (const j of buryOrder) {
        const r = await c.cmd('peek-buried');
        assert.equal(r.line, `FOUND ${j.id} ${j.body.length}`, 'buried order after restart');
        assert.equal((await statsJob(c, j.id)).get('pri'), String(j.pri));
        await ok(c, 'kick 1', 'KICKED 1');
    }
    assert.equal((await c.cmd('peek-buried')).line, 'NOT_FOUND');
    // The paused tube is still paused, with its jobs, and the pause keeps its end.
    const st = await c.yaml('stats-tube dur-p');
    assert.equal(st.get('pause'), '3600');
    const left = Number(st.get('pause-time-left'));
    const since = (Date.now() - pausedAt) / 1000;
    assert.ok(left <= 3600 && left >= 3600 - since - 2, `pause-time-left ${left}, ${since.toFixed(1)} s after pausing`);
    assert.equal(st.get('current-jobs-ready'), '3');
    const pw = await client(t, srv);
    await ok(pw, 'watch dur-p', 'WATCHING 2');
    await ok(pw, 'ignore default', 'WATCHING 1');
    assert.equal(await pw.call('reserve-with-timeout 0'), 'TIMED_OUT', 'a paused tube gives nothing');
    for (const j of paused) await expectBody(pw, j.id, j.body);
    // Ids continue after the highest one given.
    const next = await put(c, 'after restart');
    assert.ok(next > maxId, `new id ${next} after ${maxId}`);
    await srv.stop();
});

test('a reserved job comes back ready after kill -9 too, and deleted jobs stay deleted', { timeout: 30000, skip: SKIP }, async (t) => {
    const dir = dataDir(t);
    let srv = await start(t, dir);
    const c = await client(t, srv);
    const a = await put(c, 'reserved at the crash', { pri: 3 });
    const b = await put(c, 'deleted before the crash');
    await ok(c, `delete ${b}`, 'DELETED');
    assert.match((await c.cmd(`reserve-job ${a}`)).line, new RegExp(`^RESERVED ${a} `));
    // RESERVED promises nothing; an acknowledged put after it covers its record.
    const after = await put(c, 'after the reserve');
    process.kill(srv.pid, 'SIGKILL');
    await srv.exited;
    if (srv.cwd) fs.rmSync(srv.cwd, { recursive: true, force: true });
    srv = await start(t, dir);
    const d = await client(t, srv);
    const s = await statsJob(d, a);
    assert.equal(s.get('state'), 'ready');
    assert.equal(s.get('reserves'), '1');
    assert.equal(s.get('pri'), '3');
    assert.equal(await d.call(`peek ${b}`), 'NOT_FOUND');
    assert.equal((await d.cmd(`peek ${after}`)).line, `FOUND ${after} 17`);
    assert.ok(await put(d, 'next') > after);
    await srv.stop();
});

for (const fsync of ['never', '1000']) {
    test(`--fsync ${fsync}: every acknowledged put and delete survives kill -9 (replies wait for the write to the kernel)`, { timeout: 30000, skip: SKIP }, async (t) => {
        const dir = dataDir(t);
        let srv = await start(t, dir, ['--fsync', fsync]);
        const c = await client(t, srv);
        const first = await put(c, 'to be deleted');
        // Pipelined, so that many replies leave within a few loop turns.
        const n = 400;
        const bodies = Array.from({ length: n }, (_, i) => binBody(`j${i}`, 200));
        await c.send(Buffer.concat([Buffer.from(`delete ${first}\r\n`), ...bodies.map((b) => putCmd(b))]));
        assert.equal(await c.line(), 'DELETED');
        const ids = [];
        for (let i = 0; i < n; i++) {
            const m = /^INSERTED (\d+)$/.exec(await c.line());
            assert.ok(m, `put ${i}`);
            ids.push(Number(m[1]));
        }
        process.kill(srv.pid, 'SIGKILL'); // at once: no clean shutdown, no sync
        await srv.exited;
        if (srv.cwd) fs.rmSync(srv.cwd, { recursive: true, force: true });
        srv = await start(t, dir, ['--fsync', fsync]);
        const d = await client(t, srv);
        assert.equal(await d.call(`peek ${first}`), 'NOT_FOUND', 'an acknowledged delete stays');
        for (let i = 0; i < n; i++) await expectBody(d, ids[i], bodies[i]);
        await srv.stop();
    });
}

test('--memory keeps nothing across a restart and writes no files', { timeout: 30000, skip: SKIP }, async (t) => {
    const dir = dataDir(t); // given with -b too: --memory wins
    let srv = await start(t, null, ['--memory', '-b', dir]);
    assert.match(srv.stderr, /no write-ahead log \(--memory\)/);
    let c = await client(t, srv);
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await put(c, `mem-${i}`, { delay: i % 2 ? 100 : 0 }));
    assert.match((await c.cmd('reserve-with-timeout 0')).line, /^RESERVED /);
    const s = await c.yaml('stats');
    assert.equal(s.get('binlog-oldest-index'), '0');
    assert.equal(s.get('binlog-current-index'), '0');
    assert.equal(s.get('binlog-records-written'), '0');
    assert.deepEqual(fs.readdirSync(srv.cwd), [], 'nothing in the working directory');
    assert.equal(fs.existsSync(dir), false, 'no -b directory');
    await srv.stop();
    srv = await start(t, null, ['--memory', '-b', dir]);
    c = await client(t, srv);
    for (const id of ids) assert.equal(await c.call(`peek ${id}`), 'NOT_FOUND');
    const st = await c.yaml('stats');
    for (const k of ['ready', 'delayed', 'buried', 'reserved']) assert.equal(st.get(`current-jobs-${k}`), '0');
    assert.equal(await put(c, 'fresh'), 1, 'ids start again at 1');
    assert.deepEqual(fs.readdirSync(srv.cwd), []);
    assert.equal(fs.existsSync(dir), false);
    await srv.stop();
});

for (const [flags, policy] of [
    [['--fsync=never'], 'never'], [['-F'], 'never'], [['--fsync=100'], 'on an interval'],
    [['-f', '100'], 'on an interval'], [['--fsync=always'], 'always'], [['-f0'], 'always'],
]) {
    test(`${flags.join(' ')}: starts, works, and a clean restart keeps the jobs`, { timeout: 30000, skip: SKIP }, async (t) => {
        const dir = dataDir(t);
        let srv = await start(t, dir, flags);
        assert.match(srv.stderr, new RegExp(`write-ahead log ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: 0 records replayed, 0 jobs, in [\\d.]+ s; fsync ${policy}`));
        let c = await client(t, srv);
        // Pipelined puts, then deletes, buries and a delayed job.
        const bodies = Array.from({ length: 20 }, (_, i) => binBody(`fs-${i}`, 10 + i));
        await c.send(Buffer.concat(bodies.map((b, i) => putCmd(b, { pri: i }))));
        const ids = [];
        for (let i = 0; i < bodies.length; i++) ids.push(Number(/^INSERTED (\d+)$/.exec(await c.line())[1]));
        await c.send(ids.slice(0, 5).map((id) => `delete ${id}\r\n`).join(''));
        await c.expect('DELETED\r\n'.repeat(5));
        for (const id of ids.slice(5, 7)) {
            assert.match((await c.cmd(`reserve-job ${id}`)).line, /^RESERVED /);
            await ok(c, `bury ${id} 9`, 'BURIED');
        }
        const late = await put(c, 'delayed', { delay: 500 });
        srv = await restart(t, srv, dir, flags);
        assert.match(srv.stderr, new RegExp(`: \\d+ records replayed, ${bodies.length - 5 + 1} jobs, .*fsync ${policy}`));
        c = await client(t, srv);
        for (const id of ids.slice(0, 5)) assert.equal(await c.call(`peek ${id}`), 'NOT_FOUND');
        for (let i = 5; i < ids.length; i++) {
            await expectBody(c, ids[i], bodies[i]);
            assert.equal((await statsJob(c, ids[i])).get('state'), i < 7 ? 'buried' : 'ready');
        }
        assert.equal((await statsJob(c, late)).get('state'), 'delayed');
        assert.ok(await put(c, 'more') > late);
        await srv.stop();
    });
}

test('disk use stays bounded under churn: 20000 put+delete beside 50 long-lived jobs, -s 65536', { timeout: 120000, skip: SKIP }, async (t) => {
    const dir = dataDir(t);
    const SEG = 65536;
    let srv = await start(t, dir, ['-s', String(SEG)]);
    let c = await client(t, srv);
    const s0 = await c.yaml('stats');
    assert.equal(s0.get('binlog-max-size'), String(SEG));
    // 50 long-lived jobs: 25 delayed for an hour, 25 buried.
    const keep = [];
    await ok(c, 'use keep', 'USING keep');
    for (let i = 0; i < 50; i++) {
        const body = binBody(`keep-${i}`, 100 + i);
        const id = await put(c, body, { pri: i, delay: i < 25 ? 3600 : 0 });
        keep.push({ id, body, state: i < 25 ? 'delayed' : 'buried' });
    }
    for (const j of keep.slice(25)) {
        assert.match((await c.cmd(`reserve-job ${j.id}`)).line, /^RESERVED /);
        await ok(c, `bury ${j.id} 77`, 'BURIED');
    }
    await ok(c, 'use churn', 'USING churn');
    const TOTAL = 20000;
    const BATCH = 500;
    let maxBytes = 0;
    for (let n = 0; n < TOTAL; n += BATCH) {
        const bodies = Array.from({ length: BATCH }, (_, i) => binBody(`churn-${n + i}`, 100 + ((n + i) % 200)));
        await c.send(Buffer.concat(bodies.map((b) => putCmd(b))));
        const ids = [];
        for (let i = 0; i < BATCH; i++) {
            const line = await c.line({ timeout: 20000 });
            const m = /^INSERTED (\d+)$/.exec(line);
            assert.ok(m, `put: ${line}`);
            ids.push(m[1]);
        }
        await c.send(ids.map((id) => `delete ${id}\r\n`).join(''));
        await c.expect('DELETED\r\n'.repeat(BATCH), { timeout: 20000 });
        maxBytes = Math.max(maxBytes, walBytes(dir));
    }
    // Compaction runs a bounded step per loop turn, and the writer thread removes
    // the files the log has dropped: give both turns until the files match stats.
    let bytes;
    let s1;
    let files;
    for (let i = 0; i < 150; i++) {
        s1 = await c.yaml('stats');
        files = walFiles(dir);
        bytes = walBytes(dir);
        const nums = files.map((f) => Number(f.slice(0, 20)));
        if (bytes < 1 << 20 && Math.min(...nums) === Number(s1.get('binlog-oldest-index'))
            && Math.max(...nums) === Number(s1.get('binlog-current-index'))) break;
        await sleep(20);
    }
    assert.ok(bytes < 1 << 20, `the log takes ${bytes} bytes in ${files.length} files after churn (at most ${maxBytes} during it)`);
    assert.ok(maxBytes < 4 << 20, `the log peaked at ${maxBytes} bytes during the churn`);
    assert.ok(Number(s1.get('binlog-records-written')) >= 2 * TOTAL + 100, `binlog-records-written ${s1.get('binlog-records-written')}`);
    assert.ok(Number(s1.get('binlog-records-migrated')) >= 50, `binlog-records-migrated ${s1.get('binlog-records-migrated')}: the long-lived jobs were moved forward`);
    const oldest = Number(s1.get('binlog-oldest-index'));
    const current = Number(s1.get('binlog-current-index'));
    assert.ok(current > 20, `binlog-current-index ${current}: segments rotated`);
    assert.ok(oldest > 1 && oldest <= current, `binlog-oldest-index ${oldest} (current ${current}): old segments deleted`);
    const nums = files.map((f) => Number(f.slice(0, 20))).sort((a, b) => a - b);
    assert.equal(nums[0], oldest, 'the oldest file is binlog-oldest-index');
    assert.equal(nums[nums.length - 1], current, 'the newest file is binlog-current-index');
    // Bodies are read back from the log's files: compaction moved these forward
    // and dropped the segments they were first written to, and they are intact.
    for (const j of keep) await expectBody(c, j.id, j.body);

    srv = await restart(t, srv, dir, ['-s', String(SEG)]);
    assert.match(srv.stderr, /: \d+ records replayed, 50 jobs,/);
    c = await client(t, srv);
    for (const j of keep) {
        await expectBody(c, j.id, j.body);
        assert.equal((await statsJob(c, j.id)).get('state'), j.state);
    }
    const s2 = await c.yaml('stats');
    for (const k of ['ready', 'reserved']) assert.equal(s2.get(`current-jobs-${k}`), '0');
    assert.equal(s2.get('current-jobs-delayed'), '25');
    assert.equal(s2.get('current-jobs-buried'), '25');
    assert.ok(walBytes(dir) < 1 << 20);
    await srv.stop();
});

test('bodies read back from the log are intact under every fsync policy, across rotation and restart', { timeout: 60000, skip: SKIP }, async (t) => {
    for (const policy of ['always', '50', 'never']) {
        const dir = dataDir(t);
        const args = ['-s', '65536', `--fsync=${policy}`];
        let srv = await start(t, dir, args);
        let c = await client(t, srv);
        const jobs = [];
        const N = 1500;
        const bodies = Array.from({ length: N }, (_, i) => binBody(`${policy}-${i}`, (i * 37) % 2000));
        await c.send(Buffer.concat(bodies.map((b) => putCmd(b))));
        for (let i = 0; i < N; i++) {
            const m = /^INSERTED (\d+)$/.exec(await c.line({ timeout: 20000 }));
            assert.ok(m, `${policy}: put ${i}`);
            jobs.push({ id: Number(m[1]), body: bodies[i] });
        }
        // Reserve half now (bodies paged out to segments already rotated away
        // from), peek the rest after a restart, when recovery maps them.
        for (const j of jobs.slice(0, N / 2)) {
            const r = await c.cmd('reserve-with-timeout 0');
            assert.equal(r.line, `RESERVED ${j.id} ${j.body.length}`, `${policy}: reserve`);
            assert.ok(r.body.equals(j.body), `${policy}: job ${j.id} body`);
            await ok(c, `delete ${j.id}`, 'DELETED');
        }
        srv = await restart(t, srv, dir, args);
        c = await client(t, srv);
        for (const j of jobs.slice(N / 2)) await expectBody(c, j.id, j.body);
        await srv.stop();
    }
});

test('stats binlog-* fields: plausible, and they move as the log grows, rotates and restarts', { timeout: 30000, skip: SKIP }, async (t) => {
    const dir = dataDir(t);
    const SEG = 65536;
    let srv = await start(t, dir, ['-s', String(SEG)]);
    let c = await client(t, srv);
    const num = (s, k) => Number(s.get(k));
    const a = await c.yaml('stats');
    assert.equal(a.get('binlog-max-size'), String(SEG));
    assert.equal(num(a, 'binlog-oldest-index'), 1);
    assert.equal(num(a, 'binlog-current-index'), 1);
    assert.ok(num(a, 'binlog-records-written') >= 1, 'the preamble (NEXTID) was written');
    assert.equal(num(a, 'binlog-records-migrated'), 0);
    for (let i = 0; i < 100 && !walFiles(dir).length; i++) await sleep(10); // the writer thread creates it
    assert.deepEqual(walFiles(dir), ['00000000000000000001.wal']);

    const id = await put(c, 'one');
    const b = await c.yaml('stats');
    assert.equal(num(b, 'binlog-records-written'), num(a, 'binlog-records-written') + 1, 'one put, one record');
    await ok(c, `delete ${id}`, 'DELETED');
    assert.equal(num(await c.yaml('stats'), 'binlog-records-written'), num(b, 'binlog-records-written') + 1, 'one delete, one record');

    // Live jobs worth more than two segments: the current index moves, nothing is deleted.
    const body = Buffer.alloc(4000, 0x61);
    const ids = [];
    for (let i = 0; i < 40; i++) ids.push(await put(c, body));
    const d = await c.yaml('stats');
    assert.ok(num(d, 'binlog-current-index') >= 3, `binlog-current-index ${d.get('binlog-current-index')} after 160 kB of jobs`);
    assert.equal(num(d, 'binlog-oldest-index'), 1, 'every segment still holds live jobs');
    assert.equal(walFiles(dir).length, num(d, 'binlog-current-index'));
    for (const f of walFiles(dir).slice(0, -1)) {
        const size = fs.statSync(path.join(dir, f)).size;
        assert.ok(size <= SEG + 4100, `${f}: ${size} bytes, segment size ${SEG}`);
    }
    // Deleting them frees the old segments.
    await c.send(ids.map((i) => `delete ${i}\r\n`).join(''));
    await c.expect('DELETED\r\n'.repeat(ids.length));
    let e;
    for (let i = 0; i < 50; i++) {
        e = await c.yaml('stats');
        // The writer thread removes the files after the log stops counting them.
        if (num(e, 'binlog-oldest-index') === num(e, 'binlog-current-index') && walFiles(dir).length === 1) break;
        await sleep(20);
    }
    assert.equal(num(e, 'binlog-oldest-index'), num(e, 'binlog-current-index'), 'only the current segment is left');
    assert.deepEqual(walFiles(dir), [`${String(num(e, 'binlog-current-index')).padStart(20, '0')}.wal`], 'one file, the current segment');

    // A restart starts a new segment; records-written counts this process only.
    const cur = num(e, 'binlog-current-index');
    await put(c, 'survivor');
    srv = await restart(t, srv, dir, ['-s', String(SEG)]);
    c = await client(t, srv);
    const f = await c.yaml('stats');
    assert.ok(num(f, 'binlog-current-index') > cur, `binlog-current-index ${f.get('binlog-current-index')} after restart, ${cur} before`);
    assert.ok(num(f, 'binlog-oldest-index') <= num(f, 'binlog-current-index'));
    assert.ok(num(f, 'binlog-records-written') < 10, `binlog-records-written ${f.get('binlog-records-written')} just after a restart`);
    assert.equal(f.get('binlog-max-size'), String(SEG));
    await srv.stop();
});
