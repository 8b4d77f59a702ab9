// commands.test.mjs -- every command's replies and job-state semantics, byte-exact.
// Reference: shared/reference/beanstalkd-protocol.md §1.2, §1.3. Timing-dependent
// behaviour is in timing.test.mjs, YAML formats in stats.test.mjs.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, put, uniqueTube, quoted } from './harness.mjs';

const T = { timeout: 15000 };
let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.stop(); });

/** A connection that uses and watches only `tube`. */
async function onTube(t, tube) {
    const c = await connect(t, srv);
    await c.send(`use ${tube}\r\nwatch ${tube}\r\nignore default\r\n`);
    await c.expect(`USING ${tube}\r\nWATCHING 2\r\nWATCHING 1\r\n`);
    return c;
}

const job = (word, id, body) => `${word} ${id} ${Buffer.byteLength(body)}\r\n${body}\r\n`;

describe('put / use / list-tube-used', () => {
    it('put answers INSERTED with increasing ids into the used tube', T, async (t) => {
        const tube = uniqueTube('put');
        const c = await onTube(t, tube);
        const a = await put(c, 'a');
        const b = await put(c, 'b');
        assert.ok(b > a);
        await c.send(`stats-job ${a}\r\n`);
        const r = await c.reply();
        assert.match(r.body.toString(), new RegExp(`\\ntube: ${quoted(tube).replace(/[$()+.]/g, '\\$&')}\\n`));
        await c.send(`delete ${a}\r\ndelete ${b}\r\n`);
        await c.expect('DELETED\r\nDELETED\r\n');
    });

    it('use switches the tube; list-tube-used reports it', T, async (t) => {
        const c = await connect(t, srv);
        const tube = uniqueTube('use');
        await c.send(`list-tube-used\r\nuse ${tube}\r\nlist-tube-used\r\nuse ${tube}\r\nuse default\r\nlist-tube-used\r\n`);
        await c.expect(`USING default\r\nUSING ${tube}\r\nUSING ${tube}\r\nUSING ${tube}\r\nUSING default\r\nUSING default\r\n`);
    });
});

describe('reserve / reserve-with-timeout / reserve-job', () => {
    it('reserve takes the lowest (pri, id) across watched tubes', T, async (t) => {
        const t1 = uniqueTube('r1');
        const t2 = uniqueTube('r2');
        const p = await connect(t, srv);
        await p.send(`use ${t1}\r\n`);
        await p.expect(`USING ${t1}\r\n`);
        const a = await put(p, 'a', { pri: 10 });
        const b = await put(p, 'b', { pri: 5 });
        await p.send(`use ${t2}\r\n`);
        await p.expect(`USING ${t2}\r\n`);
        const c2 = await put(p, 'c', { pri: 5 });
        const d = await put(p, 'd', { pri: 0 });
        const e = await put(p, 'e', { pri: 10 });
        const w = await connect(t, srv);
        await w.send(`watch ${t1}\r\nwatch ${t2}\r\nignore default\r\n`);
        await w.expect('WATCHING 2\r\nWATCHING 3\r\nWATCHING 2\r\n');
        const order = [[d, 'd'], [b, 'b'], [c2, 'c'], [a, 'a'], [e, 'e']];
        for (const [id, body] of order) {
            await w.send('reserve-with-timeout 0\r\n');
            await w.expect(job('RESERVED', id, body));
        }
        await w.send('reserve-with-timeout 0\r\n');
        await w.expect('TIMED_OUT\r\n');
        for (const [id] of order) {
            await w.send(`delete ${id}\r\n`);
            await w.expect('DELETED\r\n');
        }
    });

    it('reserve ignores unwatched tubes; reserve-with-timeout 0 answers TIMED_OUT at once', T, async (t) => {
        const tube = uniqueTube('rw');
        const p = await onTube(t, tube);
        const id = await put(p, 'x');
        const w = await onTube(t, uniqueTube('other'));
        await w.send('reserve-with-timeout 0\r\n');
        await w.expect('TIMED_OUT\r\n');
        await p.send('reserve-with-timeout 0\r\n');
        await p.expect(job('RESERVED', id, 'x'));
        await p.send(`delete ${id}\r\n`);
        await p.expect('DELETED\r\n');
    });

    it('reserve-job reserves a ready, delayed or buried job by id, even in a paused tube', T, async (t) => {
        const tube = uniqueTube('rj');
        const c = await onTube(t, tube);
        const r = await put(c, 'ready');
        const d = await put(c, 'delayed', { delay: 100 });
        const b = await put(c, 'buried');
        await c.send(`reserve-job ${b}\r\nbury ${b} 7\r\n`);
        await c.expect(`${job('RESERVED', b, 'buried')}BURIED\r\n`);
        await c.send(`pause-tube ${tube} 100\r\n`);
        await c.expect('PAUSED\r\n');
        for (const [id, body] of [[r, 'ready'], [d, 'delayed'], [b, 'buried']]) {
            await c.send(`reserve-job ${id}\r\n`);
            await c.expect(job('RESERVED', id, body));
            const y = await c.yaml(`stats-job ${id}`);
            assert.equal(y.get('state'), 'reserved');
        }
        // Already reserved (by the caller too), or missing: NOT_FOUND.
        await c.send(`reserve-job ${r}\r\nreserve-job 999999999\r\n`);
        await c.expect('NOT_FOUND\r\nNOT_FOUND\r\n');
        const other = await connect(t, srv);
        await other.send(`reserve-job ${d}\r\n`);
        await other.expect('NOT_FOUND\r\n');
        for (const id of [r, d, b]) {
            await c.send(`delete ${id}\r\n`);
            await c.expect('DELETED\r\n');
        }
    });
});

describe('delete', () => {
    it('deletes ready, delayed, buried and own reserved jobs; NOT_FOUND otherwise', T, async (t) => {
        const tube = uniqueTube('del');
        const c = await onTube(t, tube);
        const r = await put(c, 'r');
        const d = await put(c, 'd', { delay: 100 });
        const b = await put(c, 'b');
        const own = await put(c, 'o');
        await c.send(`reserve-job ${b}\r\nbury ${b} 0\r\nreserve-job ${own}\r\n`);
        await c.expect(`${job('RESERVED', b, 'b')}BURIED\r\n${job('RESERVED', own, 'o')}`);
        for (const id of [r, d, b, own]) {
            await c.send(`delete ${id}\r\n`);
            await c.expect('DELETED\r\n');
            await c.send(`delete ${id}\r\npeek ${id}\r\n`);
            await c.expect('NOT_FOUND\r\nNOT_FOUND\r\n');
        }
    });

    it('a job reserved by another connection cannot be deleted', T, async (t) => {
        const tube = uniqueTube('del2');
        const a = await onTube(t, tube);
        const b = await onTube(t, tube);
        const id = await put(a, 'x');
        await a.send('reserve\r\n');
        await a.expect(job('RESERVED', id, 'x'));
        await b.send(`delete ${id}\r\n`);
        await b.expect('NOT_FOUND\r\n');
        await a.send(`delete ${id}\r\n`);
        await a.expect('DELETED\r\n');
    });
});

describe('release / bury / touch', () => {
    it('release sets the priority and readies the job; delay > 0 makes it delayed', T, async (t) => {
        const tube = uniqueTube('rel');
        const c = await onTube(t, tube);
        const id = await put(c, 'x', { pri: 5 });
        await c.send('reserve\r\n');
        await c.expect(job('RESERVED', id, 'x'));
        await c.send(`release ${id} 7 0\r\nrelease ${id} 7 0\r\n`);
        await c.expect('RELEASED\r\nNOT_FOUND\r\n');
        let y = await c.yaml(`stats-job ${id}`);
        assert.equal(y.get('state'), 'ready');
        assert.equal(y.get('pri'), '7');
        assert.equal(y.get('releases'), '1');
        assert.equal(y.get('reserves'), '1');
        await c.send('reserve\r\n');
        await c.expect(job('RESERVED', id, 'x'));
        await c.send(`release ${id} 3 100\r\n`);
        await c.expect('RELEASED\r\n');
        y = await c.yaml(`stats-job ${id}`);
        assert.equal(y.get('state'), 'delayed');
        assert.equal(y.get('pri'), '3');
        assert.equal(y.get('delay'), '100');
        assert.equal(y.get('releases'), '2');
        assert.match(y.get('time-left'), /^(99|100)$/);
        await c.send(`peek-delayed\r\nreserve-with-timeout 0\r\n`);
        await c.expect(`${job('FOUND', id, 'x')}TIMED_OUT\r\n`);
        await c.send(`delete ${id}\r\n`);
        await c.expect('DELETED\r\n');
    });

    it('release, bury and touch need a job reserved by the caller', T, async (t) => {
        const tube = uniqueTube('own');
        const a = await onTube(t, tube);
        const b = await onTube(t, tube);
        const id = await put(a, 'x');
        // Ready: not reserved by anyone.
        await a.send(`release ${id} 0 0\r\nbury ${id} 0\r\ntouch ${id}\r\n`);
        await a.expect('NOT_FOUND\r\nNOT_FOUND\r\nNOT_FOUND\r\n');
        await a.send('reserve\r\n');
        await a.expect(job('RESERVED', id, 'x'));
        await b.send(`release ${id} 0 0\r\nbury ${id} 0\r\ntouch ${id}\r\n`);
        await b.expect('NOT_FOUND\r\nNOT_FOUND\r\nNOT_FOUND\r\n');
        await a.send(`touch ${id}\r\ntouch ${id}\r\ntouch 999999999\r\n`);
        await a.expect('TOUCHED\r\nTOUCHED\r\nNOT_FOUND\r\n');
        await a.send(`delete ${id}\r\n`);
        await a.expect('DELETED\r\n');
    });

    it('bury sets the priority; buried jobs are peeked and kicked in FIFO order', T, async (t) => {
        const tube = uniqueTube('bury');
        const c = await onTube(t, tube);
        const ids = [];
        for (const body of ['1', '2', '3']) ids.push(await put(c, body, { pri: 100 }));
        // Bury in the order 2, 3, 1.
        for (const i of [1, 2, 0]) {
            await c.send(`reserve-job ${ids[i]}\r\nbury ${ids[i]} ${i}\r\n`);
            await c.expect(`${job('RESERVED', ids[i], String(i + 1))}BURIED\r\n`);
        }
        const y = await c.yaml(`stats-job ${ids[1]}`);
        assert.equal(y.get('state'), 'buried');
        assert.equal(y.get('pri'), '1');
        assert.equal(y.get('buries'), '1');
        await c.send('peek-buried\r\nreserve-with-timeout 0\r\n');
        await c.expect(`${job('FOUND', ids[1], '2')}TIMED_OUT\r\n`);
        await c.send('kick 1\r\npeek-buried\r\n');
        await c.expect(`KICKED 1\r\n${job('FOUND', ids[2], '3')}`);
        await c.send('kick 10\r\npeek-buried\r\n');
        await c.expect('KICKED 2\r\nNOT_FOUND\r\n');
        // Ready again, ordered by the priority set by bury.
        for (const [i, body] of [[0, '1'], [1, '2'], [2, '3']]) {
            await c.send('reserve-with-timeout 0\r\n');
            await c.expect(job('RESERVED', ids[i], body));
        }
        const k = await c.yaml(`stats-job ${ids[2]}`);
        assert.equal(k.get('kicks'), '1');
        assert.equal(k.get('buries'), '1');
        for (const id of ids) {
            await c.send(`delete ${id}\r\n`);
            await c.expect('DELETED\r\n');
        }
    });
});

describe('peek', () => {
    it('peek <id> finds a job in any tube and state, including reserved', T, async (t) => {
        const tube = uniqueTube('pk');
        const c = await onTube(t, tube);
        const id = await put(c, 'peek me');
        await c.send('reserve\r\n');
        await c.expect(job('RESERVED', id, 'peek me'));
        const other = await connect(t, srv);
        await other.send(`peek ${id}\r\npeek 0\r\npeek 999999999\r\n`);
        await other.expect(`${job('FOUND', id, 'peek me')}NOT_FOUND\r\nNOT_FOUND\r\n`);
        await c.send(`delete ${id}\r\n`);
        await c.expect('DELETED\r\n');
    });

    it('peek-ready/-delayed/-buried look at the used tube only', T, async (t) => {
        const tube = uniqueTube('pku');
        const c = await connect(t, srv);
        await c.send(`use ${tube}\r\n`);
        await c.expect(`USING ${tube}\r\n`);
        const r1 = await put(c, 'r1', { pri: 9 });
        const r2 = await put(c, 'r2', { pri: 2 });
        const d1 = await put(c, 'd1', { delay: 200 });
        const d2 = await put(c, 'd2', { delay: 100 });
        await c.send(`reserve-job ${r1}\r\nbury ${r1} 0\r\n`);
        await c.expect(`${job('RESERVED', r1, 'r1')}BURIED\r\n`);
        const b2 = await put(c, 'b2');
        await c.send(`reserve-job ${b2}\r\nbury ${b2} 0\r\n`);
        await c.expect(`${job('RESERVED', b2, 'b2')}BURIED\r\n`);
        await c.send('peek-ready\r\npeek-delayed\r\npeek-buried\r\n');
        await c.expect(job('FOUND', r2, 'r2') + job('FOUND', d2, 'd2') + job('FOUND', r1, 'r1'));
        // A tube watched but not used is not looked at.
        const w = await connect(t, srv);
        await w.send(`watch ${tube}\r\nuse ${uniqueTube('empty')}\r\npeek-ready\r\npeek-delayed\r\npeek-buried\r\n`);
        await w.expect('WATCHING 2\r\n');
        await w.line();
        await w.expect('NOT_FOUND\r\nNOT_FOUND\r\nNOT_FOUND\r\n');
        for (const id of [r1, r2, d1, d2, b2]) {
            await c.send(`delete ${id}\r\n`);
            await c.expect('DELETED\r\n');
        }
    });
});

describe('kick / kick-job', () => {
    it('kick prefers buried jobs; with none buried it kicks delayed jobs soonest first', T, async (t) => {
        const tube = uniqueTube('kk');
        const c = await onTube(t, tube);
        const d1 = await put(c, 'd1', { delay: 300 });
        const d2 = await put(c, 'd2', { delay: 200 });
        const d3 = await put(c, 'd3', { delay: 100 });
        const b = await put(c, 'b');
        await c.send(`reserve-job ${b}\r\nbury ${b} 0\r\n`);
        await c.expect(`${job('RESERVED', b, 'b')}BURIED\r\n`);
        await c.send('kick 10\r\n');
        await c.expect('KICKED 1\r\n');
        await c.send(`peek-ready\r\n`);
        await c.expect(job('FOUND', b, 'b'));
        await c.send('kick 2\r\npeek-delayed\r\n');
        await c.expect(`KICKED 2\r\n${job('FOUND', d1, 'd1')}`);
        const y = await c.yaml(`stats-job ${d3}`);
        assert.equal(y.get('state'), 'ready');
        assert.equal(y.get('kicks'), '1');
        await c.send('kick 0\r\nkick 5\r\nkick 5\r\n');
        await c.expect('KICKED 0\r\nKICKED 1\r\nKICKED 0\r\n');
        for (const id of [d1, d2, d3, b]) {
            await c.send(`delete ${id}\r\n`);
            await c.expect('DELETED\r\n');
        }
    });

    it('kick acts on the used tube only', T, async (t) => {
        const tube = uniqueTube('kku');
        const c = await onTube(t, tube);
        const d = await put(c, 'd', { delay: 100 });
        const o = await connect(t, srv);
        await o.send(`watch ${tube}\r\nkick 10\r\n`);
        await o.expect('WATCHING 2\r\nKICKED 0\r\n');
        await c.send(`kick 10\r\ndelete ${d}\r\n`);
        await c.expect('KICKED 1\r\nDELETED\r\n');
    });

    it('kick-job kicks a buried or delayed job in any tube; NOT_FOUND for others', T, async (t) => {
        const tube = uniqueTube('kj');
        const c = await onTube(t, tube);
        const r = await put(c, 'r');
        const d = await put(c, 'd', { delay: 100 });
        const b = await put(c, 'b');
        const res = await put(c, 'x');
        await c.send(`reserve-job ${b}\r\nbury ${b} 0\r\nreserve-job ${res}\r\n`);
        await c.expect(`${job('RESERVED', b, 'b')}BURIED\r\n${job('RESERVED', res, 'x')}`);
        const o = await connect(t, srv); // uses default: kick-job is not limited to the used tube
        await o.send(`kick-job ${r}\r\nkick-job ${res}\r\nkick-job 999999999\r\n`);
        await o.expect('NOT_FOUND\r\nNOT_FOUND\r\nNOT_FOUND\r\n');
        await o.send(`kick-job ${d}\r\nkick-job ${b}\r\nkick-job ${d}\r\n`);
        await o.expect('KICKED\r\nKICKED\r\nNOT_FOUND\r\n');
        for (const id of [d, b]) {
            const y = await c.yaml(`stats-job ${id}`);
            assert.equal(y.get('state'), 'ready');
            assert.equal(y.get('kicks'), '1');
        }
        for (const id of [r, d, b, res]) {
            await c.send(`delete ${id}\r\n`);
            await c.expect('DELETED\r\n');
        }
    });
});

describe('watch / ignore / list-tubes-watched / list-tubes', () => {
    it('watch counts tubes once; ignore of an unwatched tube succeeds; the last one gives NOT_IGNORED', T, async (t) => {
        const c = await connect(t, srv);
        const [x, y] = [uniqueTube('wx'), uniqueTube('wy')];
        await c.send(`watch ${x}\r\nwatch ${x}\r\nwatch ${y}\r\nignore ${uniqueTube('never')}\r\n`);
        await c.expect('WATCHING 2\r\nWATCHING 2\r\nWATCHING 3\r\nWATCHING 3\r\n');
        const lw = `---\n- default\n- ${x}\n- ${y}\n`;
        await c.send('list-tubes-watched\r\n');
        await c.expect(`OK ${lw.length}\r\n${lw}\r\n`);
        await c.send(`ignore default\r\nignore ${x}\r\nignore ${y}\r\nignore ${y}\r\n`);
        await c.expect('WATCHING 2\r\nWATCHING 1\r\nNOT_IGNORED\r\nNOT_IGNORED\r\n');
        const lw2 = `---\n- ${y}\n`;
        await c.send('list-tubes-watched\r\n');
        await c.expect(`OK ${lw2.length}\r\n${lw2}\r\n`);
    });

    it('list-tubes lists existing tubes unquoted, in creation order; unreferenced tubes vanish', T, async (t) => {
        const fresh = await startServer();
        t.after(() => fresh.stop());
        const c = await connect(t, fresh);
        const ok = (names) => { const y = `---\n${names.map((n) => `- ${n}\n`).join('')}`; return `OK ${y.length}\r\n${y}\r\n`; };
        await c.send('list-tubes\r\n');
        await c.expect(ok(['default']));
        await c.send('use foo\r\nwatch bar\r\nwatch $(a)+;./_-\r\nlist-tubes\r\n');
        await c.expect(`USING foo\r\nWATCHING 2\r\nWATCHING 3\r\n${ok(['default', 'foo', 'bar', '$(a)+;./_-'])}`);
        await c.send('put 0 0 60 1\r\nx\r\nuse default\r\nignore bar\r\nlist-tubes\r\n');
        await c.expect(`INSERTED 1\r\nUSING default\r\nWATCHING 2\r\n${ok(['default', 'foo', '$(a)+;./_-'])}`);
        await c.send('delete 1\r\nlist-tubes\r\n');
        await c.expect(`DELETED\r\n${ok(['default', '$(a)+;./_-'])}`);
        // stats-tube and pause-tube do not create tubes.
        await c.send('stats-tube foo\r\npause-tube foo 1\r\nlist-tubes\r\n');
        await c.expect(`NOT_FOUND\r\nNOT_FOUND\r\n${ok(['default', '$(a)+;./_-'])}`);
        await c.send('quit\r\n');
        await c.expectClosed();
        const d = await connect(t, fresh);
        await d.send('list-tubes\r\n');
        await d.expect(ok(['default']));
    });

    it('the default tube survives with no users or watchers', T, async (t) => {
        const c = await connect(t, srv);
        await c.send(`use ${uniqueTube('u')}\r\nwatch x\r\nignore default\r\nstats-tube default\r\n`);
        for (let i = 0; i < 3; i++) await c.line();
        const r = await c.reply();
        assert.match(r.line, /^OK \d+$/);
    });
});

describe('pause-tube', () => {
    it('pause blocks reservation only; peek, kick and reserve-job still work', T, async (t) => {
        const tube = uniqueTube('pause');
        const c = await onTube(t, tube);
        const id = await put(c, 'x');
        const d = await put(c, 'd', { delay: 100 });
        await c.send(`pause-tube ${tube} 100\r\nreserve-with-timeout 0\r\n`);
        await c.expect('PAUSED\r\nTIMED_OUT\r\n');
        await c.send(`peek-ready\r\npeek ${id}\r\nkick 1\r\n`);
        await c.expect(`${job('FOUND', id, 'x')}${job('FOUND', id, 'x')}KICKED 1\r\n`);
        const y = await c.yaml(`stats-tube ${tube}`);
        assert.equal(y.get('pause'), '100');
        assert.match(y.get('pause-time-left'), /^(99|100)$/);
        assert.equal(y.get('cmd-pause-tube'), '1');
        await c.send(`reserve-job ${id}\r\n`);
        await c.expect(job('RESERVED', id, 'x'));
        await c.send(`pause-tube ${tube} 0\r\nreserve-with-timeout 0\r\n`);
        await c.expect(`PAUSED\r\n${job('RESERVED', d, 'd')}`);
        const z = await c.yaml(`stats-tube ${tube}`);
        assert.equal(z.get('pause'), '0');
        assert.equal(z.get('pause-time-left'), '0');
        assert.equal(z.get('cmd-pause-tube'), '2');
        await c.send(`delete ${id}\r\ndelete ${d}\r\n`);
        await c.expect('DELETED\r\nDELETED\r\n');
    });

    it('a paused tube does not block reservation from other watched tubes', T, async (t) => {
        const [p, q] = [uniqueTube('pp'), uniqueTube('pq')];
        const c = await connect(t, srv);
        await c.send(`use ${p}\r\nput 0 0 60 1\r\np\r\n`);
        await c.expect(`USING ${p}\r\n`);
        const pid = Number((await c.line()).split(' ')[1]);
        await c.send(`use ${q}\r\nput 1 0 60 1\r\nq\r\n`);
        await c.expect(`USING ${q}\r\n`);
        const qid = Number((await c.line()).split(' ')[1]);
        await c.send(`watch ${p}\r\nwatch ${q}\r\nignore default\r\npause-tube ${p} 100\r\nreserve-with-timeout 0\r\n`);
        await c.expect(`WATCHING 2\r\nWATCHING 3\r\nWATCHING 2\r\nPAUSED\r\n${job('RESERVED', qid, 'q')}`);
        await c.send(`delete ${pid}\r\ndelete ${qid}\r\npause-tube ${p} 0\r\n`);
        await c.expect('DELETED\r\nDELETED\r\nPAUSED\r\n');
    });
});

describe('quit and connection close', () => {
    it('quit returns the connection\'s reserved jobs to ready at once', T, async (t) => {
        const tube = uniqueTube('quit');
        const a = await onTube(t, tube);
        const id = await put(a, 'x', { ttr: 100 });
        await a.send('reserve\r\n');
        await a.expect(job('RESERVED', id, 'x'));
        await a.send('quit\r\n');
        await a.expectClosed();
        const b = await onTube(t, tube);
        await b.send('reserve-with-timeout 5\r\n');
        await b.expect(job('RESERVED', id, 'x'));
        const y = await b.yaml(`stats-job ${id}`);
        assert.equal(y.get('reserves'), '2');
        assert.equal(y.get('timeouts'), '0');
        assert.equal(y.get('releases'), '0');
        await b.send(`delete ${id}\r\n`);
        await b.expect('DELETED\r\n');
    });

    it('closing the socket returns reserved jobs to ready', T, async (t) => {
        const tube = uniqueTube('close');
        const a = await onTube(t, tube);
        const ids = [await put(a, 'x', { ttr: 100 }), await put(a, 'y', { ttr: 100 })];
        await a.send('reserve\r\nreserve\r\n');
        await a.expect(job('RESERVED', ids[0], 'x') + job('RESERVED', ids[1], 'y'));
        a.close();
        const b = await onTube(t, tube);
        await b.send('reserve-with-timeout 5\r\nreserve-with-timeout 5\r\n');
        await b.expect(job('RESERVED', ids[0], 'x') + job('RESERVED', ids[1], 'y'));
        await b.send(`delete ${ids[0]}\r\ndelete ${ids[1]}\r\n`);
        await b.expect('DELETED\r\nDELETED\r\n');
    });
});
