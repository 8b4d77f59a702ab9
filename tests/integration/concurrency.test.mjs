// concurrency.test.mjs -- many clients at once: 2000 open sockets, each puts a job,
// while the server keeps answering a separate control connection.

import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, Client, putCmd } from './harness.mjs';

const N = 2000;
const T = { timeout: 120000 };
let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.stop(); });

it(`${N} connections open at once, each puts a job; the server stays responsive`, T, async (t) => {
    const ctl = await connect(t, srv);
    const clients = [];
    t.after(() => { for (const c of clients) c.close(); });
    // Open in batches to stay under the listen backlog.
    for (let i = 0; i < N; i += 200) {
        const batch = [];
        for (let j = i; j < Math.min(N, i + 200); j++) batch.push(Client.connect(srv.port, { timeout: 20000 }));
        clients.push(...(await Promise.all(batch)));
    }
    assert.equal(clients.length, N);
    // Every connection puts one job into tube "many", in one write.
    await Promise.all(clients.map((c, i) => c.send(Buffer.concat([Buffer.from('use many\r\n'), putCmd(`job ${i}`)]))));
    const ids = await Promise.all(clients.map(async (c) => {
        await c.expect('USING many\r\n', { timeout: 30000 });
        const l = await c.line({ timeout: 30000 });
        const m = /^INSERTED (\d+)$/.exec(l);
        assert.ok(m, l);
        return Number(m[1]);
    }));
    assert.equal(new Set(ids).size, N, 'ids are unique');
    // The control connection is answered while all of them are open.
    const s = await ctl.yaml('stats', { timeout: 10000 });
    assert.equal(s.get('current-connections'), String(N + 1));
    assert.equal(s.get('current-producers'), String(N));
    const st = await ctl.yaml('stats-tube many');
    assert.equal(st.get('current-jobs-ready'), String(N));
    assert.equal(st.get('current-using'), String(N));
    // Every connection now reserves one job (all watching "many"): each job goes to exactly one.
    await Promise.all(clients.map((c) => c.send('watch many\r\nignore default\r\nreserve-with-timeout 10\r\n')));
    const got = await Promise.all(clients.map(async (c) => {
        await c.expect('WATCHING 2\r\nWATCHING 1\r\n', { timeout: 30000 });
        const r = await c.reply({ timeout: 30000 });
        const m = /^RESERVED (\d+) \d+$/.exec(r.line);
        assert.ok(m, r.line);
        return Number(m[1]);
    }));
    assert.equal(new Set(got).size, N, 'each job reserved once');
    const s2 = await ctl.yaml('stats', { timeout: 10000 });
    assert.equal(s2.get('current-jobs-reserved'), String(N));
    assert.equal(s2.get('current-workers'), String(N));
    // Closing all of them returns every job to ready.
    for (const c of clients) c.close();
    let st2;
    for (let i = 0; i < 500; i++) {
        st2 = await ctl.yaml('stats-tube many');
        if (st2.get('current-jobs-ready') === String(N)) break;
        await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(st2.get('current-jobs-ready'), String(N));
    assert.equal(st2.get('current-jobs-reserved'), '0');
});
