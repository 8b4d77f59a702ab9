// drain.test.mjs -- SIGUSR1 puts the server in drain mode for good.
// Reference: shared/reference/beanstalkd-protocol.md §1.3 (put: DRAINING), §1.4.

import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, put, sleep } from './harness.mjs';

const T = { timeout: 15000 };
let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.stop(); });

it('after SIGUSR1, put answers DRAINING (after its body), stats shows draining: true; the rest works', T, async (t) => {
    const c = await connect(t, srv);
    const id = await put(c, 'before');
    assert.equal((await c.yaml('stats')).get('draining'), 'false');
    srv.signal('SIGUSR1');
    let y;
    for (let i = 0; i < 250; i++) {
        y = await c.yaml('stats');
        if (y.get('draining') !== 'false') break;
        await sleep(20);
    }
    assert.equal(y.get('draining'), 'true');
    // The body is consumed: the next line is a command again.
    await c.send('put 0 0 60 5\r\nhello\r\nlist-tube-used\r\n');
    await c.expect('DRAINING\r\nUSING default\r\n');
    // A body that is not followed by CRLF is still EXPECTED_CRLF, a too-big one JOB_TOO_BIG,
    // a bad line BAD_FORMAT: drain is checked after the body is read.
    await c.send('put 0 0 60 5\r\nhelloXY');
    await c.expect('EXPECTED_CRLF\r\n');
    await c.send('put 0 0 60 65536\r\n');
    await c.send(Buffer.alloc(65538, 0x41));
    await c.expect('JOB_TOO_BIG\r\n');
    await c.send('put 0 0 60 x\r\n');
    await c.expect('BAD_FORMAT\r\n');
    // Existing jobs are still served and deleted; other connections see drain mode too.
    await c.send('reserve-with-timeout 0\r\n');
    await c.expect(`RESERVED ${id} 6\r\nbefore\r\n`);
    await c.send(`delete ${id}\r\n`);
    await c.expect('DELETED\r\n');
    const d = await connect(t, srv);
    await d.send('use other\r\nput 1 0 1 1\r\nx\r\n');
    await d.expect('USING other\r\nDRAINING\r\n');
    // A second SIGUSR1 changes nothing, and drain mode is never left.
    srv.signal('SIGUSR1');
    await sleep(200);
    await d.send('put 0 0 60 0\r\n\r\n');
    await d.expect('DRAINING\r\n');
    const s = await d.yaml('stats');
    assert.equal(s.get('draining'), 'true');
    assert.equal(s.get('current-jobs-ready'), '0');
    assert.equal(s.get('total-jobs'), '1');
});
