// fivebeans.test.mjs -- producer/worker flows through the fivebeans npm client
// (callback API, js-yaml parsing of stats replies) against $DOCKETD.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { startServer, IS_112, SKIP_112, sleep } from '../integration/harness.mjs';

const require = createRequire(import.meta.url);
const fivebeans = require('fivebeans');

const T = { timeout: 30000 };
let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.stop(); });

/** A connected fivebeans client with promise-returning calls: c.call('put', 0, 0, 60, 'x') → [id]. */
async function client(t) {
    const c = new fivebeans.client('127.0.0.1', srv.port);
    await new Promise((resolve, reject) => {
        c.once('connect', resolve);
        c.once('error', reject);
        c.connect();
    });
    c.call = (method, ...args) => new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`fivebeans ${method}: no reply in 10 s`)), 10000);
        c[method](...args, (err, ...rest) => {
            clearTimeout(timer);
            if (err) reject(Object.assign(new Error(`${method}: ${err}`), { reply: err }));
            else resolve(rest);
        });
    });
    t.after(() => c.stream.destroy());
    return c;
}

/** Expects a call to fail with the given reply word. */
async function fails(p, word) {
    await assert.rejects(p, (e) => e.reply === word);
}

describe('fivebeans producer and workers', () => {
    it('a producer puts 300 jobs (text, UTF-8, binary); 3 workers process each exactly once', T, async (t) => {
        const producer = await client(t);
        assert.deepEqual(await producer.call('use', 'emails'), ['emails']);
        const sent = new Map();
        for (let i = 0; i < 300; i++) {
            let body;
            if (i % 3 === 0) body = Buffer.from(`{"to":"user${i}@example.com","n":${i}}`);
            else if (i % 3 === 1) body = Buffer.from(`Grüße, crème brûlée №${i} ✓`, 'utf8');
            else body = Buffer.from(Array.from({ length: 64 + i }, (_, k) => (k * 7 + i) & 255));
            const [id] = await producer.call('put', i % 5, 0, 60, body);
            assert.match(id, /^\d+$/);
            sent.set(id, body);
        }
        const seen = new Map();
        const worker = async () => {
            const w = await client(t);
            assert.deepEqual(await w.call('watch', 'emails'), ['2']);
            assert.deepEqual(await w.call('ignore', 'default'), ['1']);
            for (;;) {
                let id, payload;
                try {
                    [id, payload] = await w.call('reserve_with_timeout', 0);
                } catch (e) {
                    if (e.reply === 'TIMED_OUT') return;
                    throw e;
                }
                assert.ok(!seen.has(id), `job ${id} delivered twice`);
                seen.set(id, payload);
                await w.call('destroy', id);
            }
        };
        await Promise.all([worker(), worker(), worker()]);
        assert.equal(seen.size, sent.size);
        for (const [id, body] of sent) assert.ok(seen.get(id).equals(body), `job ${id} body`);
        const [st] = await producer.call('stats_tube', 'emails');
        assert.equal(st['total-jobs'], 300);
        assert.equal(st['current-jobs-ready'], 0);
        assert.equal(st['cmd-delete'], 300);
    });

    it('release with delay: the job comes back after the delay', T, async (t) => {
        const c = await client(t);
        await c.call('use', 'retry');
        await c.call('watch', 'retry');
        await c.call('ignore', 'default');
        const [id] = await c.call('put', 10, 0, 60, 'flaky partner call');
        const [rid] = await c.call('reserve');
        assert.equal(rid, id);
        await c.call('release', id, 20, 1);
        const [sj] = await c.call('stats_job', id);
        assert.equal(sj.state, 'delayed');
        assert.equal(sj.releases, 1);
        assert.equal(sj.pri, 20);
        const [pid, body] = await c.call('peek_delayed');
        assert.equal(pid, id);
        assert.equal(body.toString(), 'flaky partner call');
        await fails(c.call('reserve_with_timeout', 0), 'TIMED_OUT');
        const [again] = await c.call('reserve_with_timeout', 5);
        assert.equal(again, id);
        await c.call('destroy', id);
    });

    it('bury, peek_buried, kick and kick_job', T, async (t) => {
        const c = await client(t);
        await c.call('use', 'dead');
        await c.call('watch', 'dead');
        await c.call('ignore', 'default');
        const [a] = await c.call('put', 0, 0, 60, 'poison A');
        const [b] = await c.call('put', 0, 0, 60, 'poison B');
        for (const id of [a, b]) {
            const [rid] = await c.call('reserve');
            assert.equal(rid, id);
            await c.call('bury', id, 50);
        }
        const [pb, body] = await c.call('peek_buried');
        assert.equal(pb, a);
        assert.equal(body.toString(), 'poison A');
        const [st] = await c.call('stats_tube', 'dead');
        assert.equal(st['current-jobs-buried'], 2);
        assert.deepEqual(await c.call('kick', 1), ['1']);
        await c.call('kick_job', b);
        await fails(c.call('kick_job', b), 'NOT_FOUND');
        const [sj] = await c.call('stats_job', b);
        assert.equal(sj.state, 'ready');
        assert.equal(sj.buries, 1);
        assert.equal(sj.kicks, 1);
        for (let i = 0; i < 2; i++) {
            const [id] = await c.call('reserve');
            await c.call('destroy', id);
        }
        await fails(c.call('peek_buried'), 'NOT_FOUND');
    });

    it('touch keeps a long job reserved', T, async (t) => {
        const c = await client(t);
        await c.call('use', 'long');
        await c.call('watch', 'long');
        const [id] = await c.call('put', 0, 0, 2, 'render report');
        const [rid] = await c.call('reserve');
        assert.equal(rid, id);
        for (let i = 0; i < 3; i++) {
            await sleep(800);
            await c.call('touch', id);
        }
        const [sj] = await c.call('stats_job', id);
        assert.equal(sj.state, 'reserved');
        assert.equal(sj.timeouts, 0);
        await c.call('destroy', id);
        await fails(c.call('touch', id), 'NOT_FOUND');
    });

    it('pause_tube holds reservations until the pause ends', T, async (t) => {
        const c = await client(t);
        await c.call('use', 'paused');
        await c.call('watch', 'paused');
        await c.call('ignore', 'default');
        const [id] = await c.call('put', 0, 0, 60, 'x');
        await c.call('pause_tube', 'paused', 1);
        await fails(c.call('reserve_with_timeout', 0), 'TIMED_OUT');
        const [st] = await c.call('stats_tube', 'paused');
        assert.equal(st.pause, 1);
        const [rid] = await c.call('reserve_with_timeout', 5);
        assert.equal(rid, id);
        await c.call('destroy', id);
        await fails(c.call('pause_tube', 'no-such-tube', 1), 'NOT_FOUND');
    });

    it('a job reserved by a worker that disconnects goes to another worker', T, async (t) => {
        const p = await client(t);
        await p.call('use', 'handoff');
        const [id] = await p.call('put', 0, 0, 60, 'x');
        const w1 = await client(t);
        await w1.call('watch', 'handoff');
        await w1.call('ignore', 'default');
        assert.deepEqual((await w1.call('reserve'))[0], id);
        const w2 = await client(t);
        await w2.call('watch', 'handoff');
        await w2.call('ignore', 'default');
        const got = w2.call('reserve_with_timeout', 5);
        await sleep(100);
        w1.stream.destroy();
        assert.equal((await got)[0], id);
        const [sj] = await w2.call('stats_job', id);
        assert.equal(sj.reserves, 2);
        await w2.call('destroy', id);
    });
});

describe('fivebeans YAML parsing of server replies', () => {
    it('stats, stats_tube, stats_job, list_tubes, list_tubes_watched, peek, list_tube_used', T, async (t) => {
        const c = await client(t);
        await c.call('use', 'yaml-check');
        await c.call('watch', 'yaml-check');
        const [id] = await c.call('put', 7, 0, 30, 'y');
        const [s] = await c.call('stats');
        assert.equal(typeof s, 'object');
        assert.equal(s.pid, srv.pid);
        assert.equal(typeof s.version, 'string');
        assert.equal(s.draining, false);
        assert.equal(typeof s['current-jobs-ready'], 'number');
        assert.equal(typeof s['rusage-utime'], 'number');
        assert.equal(s['max-job-size'], 65535);
        assert.equal(typeof s.hostname, 'string');
        assert.equal(typeof s.platform, 'string');
        const [st] = await c.call('stats_tube', 'yaml-check');
        assert.equal(st.name, 'yaml-check');
        assert.equal(st['current-jobs-ready'], 1);
        assert.equal(st['current-jobs-urgent'], 1);
        const [sj] = await c.call('stats_job', id);
        assert.equal(sj.id, Number(id));
        assert.equal(sj.tube, 'yaml-check');
        assert.equal(sj.pri, 7);
        assert.equal(sj.ttr, 30);
        const [tubes] = await c.call('list_tubes');
        assert.ok(Array.isArray(tubes) && tubes.includes('default') && tubes.includes('yaml-check'));
        assert.deepEqual(await c.call('list_tubes_watched'), [['default', 'yaml-check']]);
        assert.deepEqual(await c.call('list_tube_used'), ['yaml-check']);
        const [pid, body] = await c.call('peek', id);
        assert.equal(pid, id);
        assert.equal(body.toString(), 'y');
        const [pr] = await c.call('peek_ready');
        assert.equal(pr, id);
        await c.call('destroy', id);
        await fails(c.call('peek', id), 'NOT_FOUND');
        await fails(c.call('stats_job', id), 'NOT_FOUND');
        await fails(c.call('stats_tube', 'never-made'), 'NOT_FOUND');
    });

    it('1.13 quoting: numeric-looking tube names and the os field stay strings', { ...T, skip: SKIP_112 }, async (t) => {
        const c = await client(t);
        await c.call('use', '123');
        const [id] = await c.call('put', 0, 0, 60, 'n');
        const [st] = await c.call('stats_tube', '123');
        assert.equal(st.name, '123');
        const [sj] = await c.call('stats_job', id);
        assert.equal(sj.tube, '123');
        const [s] = await c.call('stats');
        assert.equal(typeof s.os, 'string', '1.12 printed os unquoted, which YAML read as a comment');
        await c.call('destroy', id);
    });

    it('with 1.12 the same names parse as numbers (the reason 1.13 quotes)', { ...T, skip: IS_112 ? false : 'only for beanstalkd 1.12' }, async (t) => {
        const c = await client(t);
        await c.call('use', '456');
        const [st] = await c.call('stats_tube', '456');
        assert.equal(st.name, 456);
    });
});
