// timing.test.mjs -- blocking reserves, timeouts, TTR, DEADLINE_SOON, delays, pause.
// Reference: shared/reference/beanstalkd-protocol.md §1.4. Times are 1-3 s; the
// tests check behaviour (what happens, and that it does not happen too early),
// never how fast. The tests of one describe run concurrently, each on its own
// tube, to keep the wall time down.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, put, uniqueTube, sleep, SKIP_112_TTR_BUG } from './harness.mjs';

const T = { timeout: 20000 };
let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.stop(); });

const job = (word, id, body) => `${word} ${id} ${Buffer.byteLength(body)}\r\n${body}\r\n`;
const LONG = { timeout: 10000 }; // for a read that waits on a server timer

/** A connection that uses and watches only `tube`. */
async function onTube(t, tube) {
    const c = await connect(t, srv);
    await c.send(`use ${tube}\r\nwatch ${tube}\r\nignore default\r\n`);
    await c.expect(`USING ${tube}\r\nWATCHING 2\r\nWATCHING 1\r\n`);
    return c;
}

/** Polls until stats-tube shows `n` waiting connections (so a reserve is known to be waiting). */
async function waitWaiting(c, tube, n = 1) {
    for (let i = 0; i < 250; i++) {
        const y = await c.yaml(`stats-tube ${tube}`);
        if (y.get('current-waiting') === String(n)) return;
        await sleep(20);
    }
    throw new Error(`tube ${tube}: current-waiting never reached ${n}`);
}

describe('blocking reserve', { concurrency: true }, () => {
    it('reserve-with-timeout 1 with no job answers TIMED_OUT, not before about a second', T, async (t) => {
        const c = await onTube(t, uniqueTube('rwt1'));
        const t0 = Date.now();
        await c.send('reserve-with-timeout 1\r\n');
        await c.expect('TIMED_OUT\r\n', LONG);
        assert.ok(Date.now() - t0 >= 900, `TIMED_OUT after ${Date.now() - t0} ms`);
    });

    it('reserve waits and is satisfied by another connection\'s put', T, async (t) => {
        const tube = uniqueTube('wait');
        const w = await onTube(t, tube);
        await w.send('reserve\r\n');
        const p = await onTube(t, tube);
        await waitWaiting(p, tube);
        await w.expectNothing(100);
        const id = await put(p, 'wake up');
        await w.expect(job('RESERVED', id, 'wake up'), LONG);
        const y = await p.yaml(`stats-tube ${tube}`);
        assert.equal(y.get('current-waiting'), '0');
        assert.equal(y.get('current-jobs-reserved'), '1');
        await w.send(`delete ${id}\r\n`);
        await w.expect('DELETED\r\n');
    });

    it('reserve-with-timeout 5 is satisfied by a put; waiters are served in arrival order', T, async (t) => {
        const tube = uniqueTube('wait2');
        const w1 = await onTube(t, tube);
        const w2 = await onTube(t, tube);
        const p = await onTube(t, tube);
        await w1.send('reserve-with-timeout 5\r\n');
        await waitWaiting(p, tube, 1);
        await w2.send('reserve-with-timeout 5\r\n');
        await waitWaiting(p, tube, 2);
        const a = await put(p, 'a');
        await w1.expect(job('RESERVED', a, 'a'), LONG);
        const b = await put(p, 'b');
        await w2.expect(job('RESERVED', b, 'b'), LONG);
        await w1.send(`delete ${a}\r\n`);
        await w2.send(`delete ${b}\r\n`);
        await w1.expect('DELETED\r\n');
        await w2.expect('DELETED\r\n');
    });

    it('a waiting reserver gets a delayed job when its delay expires', T, async (t) => {
        const tube = uniqueTube('delay');
        const c = await onTube(t, tube);
        const t0 = Date.now();
        const id = await put(c, 'later', { delay: 1 });
        await c.send('reserve-with-timeout 0\r\n');
        await c.expect('TIMED_OUT\r\n');
        await c.send('reserve-with-timeout 10\r\n');
        await c.expect(job('RESERVED', id, 'later'), LONG);
        assert.ok(Date.now() - t0 >= 900, `delayed job reserved after ${Date.now() - t0} ms`);
        await c.send(`delete ${id}\r\n`);
        await c.expect('DELETED\r\n');
    });

    it('half-closing a waiting reserver answers TIMED_OUT, then the server closes', T, async (t) => {
        for (const cmd of ['reserve', 'reserve-with-timeout 10']) {
            const tube = uniqueTube('half');
            const c = await onTube(t, tube);
            const o = await connect(t, srv);
            await c.send(`${cmd}\r\n`);
            await waitWaiting(o, tube);
            c.end();
            await c.expect('TIMED_OUT\r\n', LONG);
            await c.expectClosed();
        }
    });

    it('a connection closed while waiting is no longer a waiter', T, async (t) => {
        const tube = uniqueTube('gone');
        const w = await onTube(t, tube);
        const p = await onTube(t, tube);
        await w.send('reserve\r\n');
        await waitWaiting(p, tube);
        w.close();
        await waitWaiting(p, tube, 0);
        const id = await put(p, 'x');
        const y = await p.yaml(`stats-job ${id}`);
        assert.equal(y.get('state'), 'ready');
        await p.send(`delete ${id}\r\n`);
        await p.expect('DELETED\r\n');
    });

    it('a reserver waiting when another connection closes gets that connection\'s job', T, async (t) => {
        const tube = uniqueTube('handoff');
        const a = await onTube(t, tube);
        const b = await onTube(t, tube);
        const id = await put(a, 'x', { ttr: 100 });
        await a.send('reserve\r\n');
        await a.expect(job('RESERVED', id, 'x'));
        await b.send('reserve-with-timeout 10\r\n');
        await waitWaiting(a, tube);
        a.close();
        await b.expect(job('RESERVED', id, 'x'), LONG);
        const y = await b.yaml(`stats-job ${id}`);
        assert.equal(y.get('timeouts'), '0');
        assert.equal(y.get('reserves'), '2');
        await b.send(`delete ${id}\r\n`);
        await b.expect('DELETED\r\n');
    });
});

describe('TTR and DEADLINE_SOON', { concurrency: true }, () => {
    it('TTR expiry returns the job to ready: another reserver gets it, timeouts: 1', { ...T, skip: SKIP_112_TTR_BUG }, async (t) => {
        const tube = uniqueTube('ttr');
        const a = await onTube(t, tube);
        const b = await onTube(t, tube);
        const id = await put(a, 'work', { ttr: 1 });
        const t0 = Date.now();
        await a.send('reserve\r\n');
        await a.expect(job('RESERVED', id, 'work'));
        await b.send('reserve-with-timeout 10\r\n');
        await b.expect(job('RESERVED', id, 'work'), LONG);
        assert.ok(Date.now() - t0 >= 900, `TTR 1 expired after ${Date.now() - t0} ms`);
        const y = await b.yaml(`stats-job ${id}`);
        assert.equal(y.get('state'), 'reserved');
        assert.equal(y.get('reserves'), '2');
        assert.equal(y.get('timeouts'), '1');
        assert.equal(y.get('releases'), '0');
        // The first worker lost it.
        await a.send(`delete ${id}\r\ntouch ${id}\r\nrelease ${id} 0 0\r\n`);
        await a.expect('NOT_FOUND\r\nNOT_FOUND\r\nNOT_FOUND\r\n');
        await b.send(`delete ${id}\r\n`);
        await b.expect('DELETED\r\n');
    });

    it('TTR expiry with nobody waiting: the job is ready again, job-timeouts counted', T, async (t) => {
        const tube = uniqueTube('ttr2');
        const a = await onTube(t, tube);
        const before = await a.yaml('stats');
        const id = await put(a, 'w', { ttr: 1 });
        await a.send('reserve\r\n');
        await a.expect(job('RESERVED', id, 'w'));
        let y;
        for (let i = 0; i < 250; i++) {
            y = await a.yaml(`stats-job ${id}`);
            if (y.get('state') !== 'reserved') break;
            await sleep(20);
        }
        assert.equal(y.get('state'), 'ready');
        assert.equal(y.get('timeouts'), '1');
        assert.equal(y.get('time-left'), '0');
        const after = await a.yaml('stats');
        assert.ok(Number(after.get('job-timeouts')) >= Number(before.get('job-timeouts')) + 1);
        await a.send(`delete ${id}\r\n`);
        await a.expect('DELETED\r\n');
    });

    it('a waiting reserver is woken with DEADLINE_SOON when its job enters the last second', T, async (t) => {
        const tube = uniqueTube('ds');
        const c = await onTube(t, tube);
        const id = await put(c, 'x', { ttr: 2 });
        await c.send('reserve\r\n');
        await c.expect(job('RESERVED', id, 'x'));
        const t0 = Date.now();
        await c.send('reserve-with-timeout 10\r\n');
        await c.expect('DEADLINE_SOON\r\n', LONG);
        assert.ok(Date.now() - t0 >= 500, `DEADLINE_SOON after ${Date.now() - t0} ms`);
        // Still inside the margin with no ready job: DEADLINE_SOON at once, for both forms.
        await c.send('reserve\r\nreserve-with-timeout 0\r\n');
        await c.expect('DEADLINE_SOON\r\nDEADLINE_SOON\r\n');
        // The job is still ours until the TTR runs out.
        await c.send(`delete ${id}\r\n`);
        await c.expect('DELETED\r\n');
        // With nothing reserved, no DEADLINE_SOON.
        await c.send('reserve-with-timeout 0\r\n');
        await c.expect('TIMED_OUT\r\n');
    });

    it('DEADLINE_SOON is not sent when a ready job is available: the reservation succeeds', T, async (t) => {
        const tube = uniqueTube('ds2');
        const c = await onTube(t, tube);
        const a = await put(c, 'a', { ttr: 1 });
        const b = await put(c, 'b', { ttr: 100 });
        await c.send('reserve\r\n');
        await c.expect(job('RESERVED', a, 'a'));
        // a has ttr 1: already inside the safety margin, but b is ready.
        await c.send('reserve\r\n');
        await c.expect(job('RESERVED', b, 'b'));
        await c.send('reserve-with-timeout 0\r\n');
        await c.expect('DEADLINE_SOON\r\n');
        await c.send(`delete ${b}\r\n`);
        await c.expect('DELETED\r\n');
        await c.send(`delete ${a}\r\n`);
        assert.match(await c.line(), /^(DELETED|NOT_FOUND)$/);
    });

    it('touch restarts the TTR', T, async (t) => {
        const tube = uniqueTube('touch');
        const c = await onTube(t, tube);
        const id = await put(c, 'x', { ttr: 3 });
        await c.send('reserve\r\n');
        await c.expect(job('RESERVED', id, 'x'));
        await sleep(1500);
        await c.send(`touch ${id}\r\n`);
        await c.expect('TOUCHED\r\n');
        let y = await c.yaml(`stats-job ${id}`);
        assert.match(y.get('time-left'), /^[23]$/);
        await sleep(2000); // past the original deadline, before the new one
        y = await c.yaml(`stats-job ${id}`);
        assert.equal(y.get('state'), 'reserved');
        assert.equal(y.get('timeouts'), '0');
        await c.send(`delete ${id}\r\n`);
        await c.expect('DELETED\r\n');
    });

    it('release with a delay: delayed, then ready and reserved again after the delay', T, async (t) => {
        const tube = uniqueTube('reldelay');
        const c = await onTube(t, tube);
        const id = await put(c, 'x', { pri: 3 });
        await c.send('reserve\r\n');
        await c.expect(job('RESERVED', id, 'x'));
        const t0 = Date.now();
        await c.send(`release ${id} 9 1\r\nreserve-with-timeout 0\r\n`);
        await c.expect('RELEASED\r\nTIMED_OUT\r\n');
        const y = await c.yaml(`stats-job ${id}`);
        assert.equal(y.get('state'), 'delayed');
        assert.equal(y.get('delay'), '1');
        await c.send('reserve-with-timeout 10\r\n');
        await c.expect(job('RESERVED', id, 'x'), LONG);
        assert.ok(Date.now() - t0 >= 900, `reserved again after ${Date.now() - t0} ms`);
        const z = await c.yaml(`stats-job ${id}`);
        assert.equal(z.get('pri'), '9');
        assert.equal(z.get('releases'), '1');
        assert.equal(z.get('reserves'), '2');
        await c.send(`delete ${id}\r\n`);
        await c.expect('DELETED\r\n');
    });
});

describe('pause-tube timing', { concurrency: true }, () => {
    it('pause-tube x 0 wakes a reserver waiting on the paused tube', T, async (t) => {
        const tube = uniqueTube('unpause');
        const c = await onTube(t, tube);
        const id = await put(c, 'x');
        await c.send(`pause-tube ${tube} 100\r\n`);
        await c.expect('PAUSED\r\n');
        const w = await onTube(t, tube);
        await w.send('reserve\r\n');
        await waitWaiting(c, tube);
        await w.expectNothing(300);
        await c.send(`pause-tube ${tube} 0\r\n`);
        await c.expect('PAUSED\r\n');
        await w.expect(job('RESERVED', id, 'x'), LONG);
        await w.send(`delete ${id}\r\n`);
        await w.expect('DELETED\r\n');
    });

    it('a pause expires by itself; the waiting reserver then gets the job', T, async (t) => {
        const tube = uniqueTube('pexp');
        const c = await onTube(t, tube);
        const id = await put(c, 'x');
        const t0 = Date.now();
        await c.send(`pause-tube ${tube} 1\r\nreserve-with-timeout 0\r\n`);
        await c.expect('PAUSED\r\nTIMED_OUT\r\n');
        await c.send('reserve-with-timeout 10\r\n');
        await c.expect(job('RESERVED', id, 'x'), LONG);
        assert.ok(Date.now() - t0 >= 900, `reserved after ${Date.now() - t0} ms`);
        const y = await c.yaml(`stats-tube ${tube}`);
        assert.equal(y.get('pause'), '0');
        assert.equal(y.get('pause-time-left'), '0');
        await c.send(`delete ${id}\r\n`);
        await c.expect('DELETED\r\n');
    });
});
