// disk-full.test.mjs -- a full disk refuses new jobs but not deletes, gives the
// space back by itself, and loses nothing acknowledged (DESIGN.md §4).
//
// docketd's log lives on a 1 MiB tmpfs mounted for the test (root only; the
// test says why it skips otherwise). With -s 65536 docketd keeps two segments
// (128 KiB) in reserve: below that, put answers OUT_OF_MEMORY while delete,
// release and the like still work, and compaction frees segments.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, Client, putCmd, sleep, binVersion, DOCKETD } from '../integration/harness.mjs';

function skipReason() {
    if (!/^docketd /.test(binVersion(DOCKETD))) return `docketd only (${binVersion(DOCKETD) || DOCKETD})`;
    if (process.getuid && process.getuid() !== 0) return 'needs root to mount a small tmpfs';
    return false;
}

/** Mounts a 1 MiB tmpfs; unmounted and removed when the test ends. */
function smallDisk(t) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'docket-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
    t.after(() => {
        try { execFileSync('umount', [dir]); } catch { /* already gone */ }
        fs.rmSync(dir, { recursive: true, force: true });
    });
    return dir;
}

/** docketd with 64 KiB segments on a fresh 1 MiB tmpfs, and a client to it.
 * s.start() starts it again on the same log; whichever s.srv is current when
 * the test ends is stopped. */
async function onSmallDisk(t) {
    const s = { disk: smallDisk(t) };
    s.dir = path.join(s.disk, 'data');
    s.start = async () => { s.srv = await startServer({ args: ['-b', s.dir, '-s', '65536'] }); };
    await s.start();
    t.after(async () => { if (s.srv.alive) await s.srv.stop(); });
    s.c = await Client.connect(s.srv.port);
    return s;
}

const body = (id) => Buffer.concat([Buffer.from(`job ${id} `), Buffer.alloc(1000, id % 251)]);

async function tryPut(c, b) {
    await c.send(putCmd(b));
    return c.line();
}

test('a full disk refuses puts, keeps deletes working, recovers by itself and loses nothing',
    { skip: skipReason(), timeout: 60000 }, async (t) => {
        const s = await onSmallDisk(t);
        const { c } = s;

        // Fill the disk: every INSERTED is a promise; the first refusal ends it.
        const acked = new Map();
        let refused = null;
        for (let i = 0; i < 5000 && !refused; i++) {
            const b = body(i);
            const line = await tryPut(c, b);
            const m = /^INSERTED (\d+)$/.exec(line);
            if (m) acked.set(Number(m[1]), b);
            else refused = line;
        }
        assert.equal(refused, 'OUT_OF_MEMORY', 'a full disk refuses new jobs the way beanstalkd clients expect');
        assert.ok(acked.size > 100, `only ${acked.size} puts before the disk filled`);
        assert.equal(await tryPut(c, body(9999)), 'OUT_OF_MEMORY', 'still refused');
        assert.match(s.srv.stderr, /disk free: refusing new jobs/);

        // Deletes still work, and are acknowledged.
        const ids = [...acked.keys()];
        const deleted = ids.slice(0, Math.floor(ids.length * 0.7));
        for (const id of deleted) {
            assert.equal(await c.call(`delete ${id}`), 'DELETED', `delete ${id} on a full disk`);
            acked.delete(id);
        }

        // Compaction frees segments; puts come back without a restart.
        let back = null;
        for (let i = 0; i < 100 && !back; i++) {
            const b = body(20000 + i);
            const line = await tryPut(c, b);
            const m = /^INSERTED (\d+)$/.exec(line);
            if (m) { back = Number(m[1]); acked.set(back, b); } else await sleep(100);
        }
        assert.ok(back, 'puts are taken again once deletes freed space');
        c.close();

        // A crash now loses nothing acknowledged and brings back no deleted job.
        process.kill(s.srv.pid, 'SIGKILL');
        await s.srv.exited;
        if (s.srv.cwd) fs.rmSync(s.srv.cwd, { recursive: true, force: true });
        await s.start();
        const d = await Client.connect(s.srv.port);
        for (const [id, b] of acked) {
            const r = await d.cmd(`peek ${id}`);
            assert.equal(r.line, `FOUND ${id} ${b.length}`, `acknowledged job ${id}`);
            assert.ok(r.body.equals(b), `job ${id}: body`);
        }
        for (const id of deleted) assert.equal(await d.call(`peek ${id}`), 'NOT_FOUND', `deleted job ${id}`);
        d.close();
        await s.srv.stop();
    });

/** Writes a file of zeros into dir until the disk has no byte left. */
function fillDisk(dir) {
    const fd = fs.openSync(path.join(dir, 'hog'), 'w');
    const chunk = Buffer.alloc(4096);
    try {
        for (;;) fs.writeSync(fd, chunk);
    } catch (e) {
        if (e.code !== 'ENOSPC') throw e;
    } finally {
        fs.closeSync(fd);
    }
}

test('once the log has failed, nothing durable or showing a job is answered as a success',
    { skip: skipReason(), timeout: 60000 }, async (t) => {
        const { disk, srv, c } = await onSmallDisk(t);
        const jobs = 3000;
        for (let i = 0; i < jobs; i++) assert.match(await tryPut(c, Buffer.from(`j${i}`)), /^INSERTED \d+$/);

        // Nothing left on the disk. Each reserve appends a RESERVE record
        // until the segment is full and the next one cannot be written. A
        // reply that showed a job after that could show one whose record
        // the log never took (here the jobs are all on disk, but docketd
        // cannot tell): from the failure on, reserves are refused.
        fillDisk(disk);
        let last = null;
        let reserved = 0;
        for (; reserved < jobs; reserved++) {
            last = (await c.cmd('reserve-with-timeout 0')).line;
            if (!last.startsWith('RESERVED ')) break;
        }
        assert.ok(reserved < jobs, 'the log failed before every job was reserved');
        assert.equal(last, 'INTERNAL_ERROR', `reply ${reserved}`);
        for (let i = 0; i < 100 && !/write-ahead log failed/.test(srv.stderr); i++) await sleep(20);
        assert.match(srv.stderr, /write-ahead log failed/);

        // Refused before they run: a refused reserve leaves no job reserved.
        const reservedNow = async () => Number((await c.yaml('stats')).get('current-jobs-reserved'));
        const before = await reservedNow();
        for (let i = 0; i < 3; i++) assert.equal(await c.call('reserve-with-timeout 0'), 'INTERNAL_ERROR');
        assert.equal(await reservedNow(), before, 'refused reserves took no job');
        assert.equal(await c.call('peek-ready'), 'INTERNAL_ERROR');
        assert.equal(await c.call('peek 1'), 'INTERNAL_ERROR');
        assert.equal(await c.call('stats-job 1'), 'INTERNAL_ERROR');
        assert.equal(await c.call('delete 1'), 'INTERNAL_ERROR');
        assert.equal(await tryPut(c, Buffer.from('late')), 'OUT_OF_MEMORY');
        // What promises nothing still answers.
        const st = await c.yaml('stats');
        assert.equal(Number(st.get('current-jobs-ready')) + Number(st.get('current-jobs-reserved')), jobs);
        c.close();
        await srv.stop();
    });
