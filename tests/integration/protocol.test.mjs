// protocol.test.mjs -- framing, parsing and the generic error replies, byte-exact.
// Reference: shared/reference/beanstalkd-protocol.md §1.1, §1.3 (put), §1.6.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, put, putCmd, uniqueTube, sleep } from './harness.mjs';

const T = { timeout: 15000 };
let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.stop(); });

const a = (n, ch = 'a') => ch.repeat(n);

describe('framing', () => {
    it('a bare LF is part of the line, only CRLF ends it', T, async (t) => {
        const c = await connect(t, srv);
        await c.send('list-tube-used\nx\r\nlist-tube-used\r\n');
        // "list-tube-used\nx" has trailing garbage after an exact command.
        await c.expect('BAD_FORMAT\r\nUSING default\r\n');
        await c.send('a\nb\r\nuse a\nb\r\n');
        await c.expect('UNKNOWN_COMMAND\r\nBAD_FORMAT\r\n');
    });

    it('commands are case-sensitive and unknown words give UNKNOWN_COMMAND', T, async (t) => {
        const c = await connect(t, srv);
        for (const cmd of ['RESERVE', 'Stats', 'foo', '', ' stats', 'put', 'kick', 'touch', 'kick-job', 'use', 'watch',
            'ignore', 'delete', 'peek', 'release', 'bury', 'PUT 0 0 1 1']) {
            await c.send(cmd + '\r\n');
            await c.expect('UNKNOWN_COMMAND\r\n');
        }
        await c.send('list-tube-used\r\n');
        await c.expect('USING default\r\n');
    });

    it('prefix matching: reserveX and statsX give BAD_FORMAT, pause-tubeNAME pauses NAME', T, async (t) => {
        const c = await connect(t, srv);
        await c.send('reservex\r\nstatsx\r\nstats-tube\r\nstats-job\r\nreserve-job\r\npause-tube\r\npeek-readyx\r\npeek-ready \r\n');
        await c.expect('BAD_FORMAT\r\n'.repeat(8));
        await c.send('list-tubesx\r\nlist-tube-usedx\r\nlist-tubes-watchedx\r\nlist-tubes \r\n');
        await c.expect('BAD_FORMAT\r\n'.repeat(4));
        const tube = uniqueTube('ptq');
        await c.send(`use ${tube}\r\npause-tube${tube} 1\r\n`);
        await c.expect(`USING ${tube}\r\nPAUSED\r\n`);
    });

    it('a NUL byte anywhere in a line gives BAD_FORMAT', T, async (t) => {
        const c = await connect(t, srv);
        for (const l of ['\0', '\0stats', 'stats\0', 'peek 1\0', 'use foo\0', 'use a\0b', 'xyz\0', 'list-tube-used\0']) {
            await c.send(Buffer.from(l + '\r\n', 'latin1'));
            await c.expect('BAD_FORMAT\r\n');
        }
        // A NUL in a put line: BAD_FORMAT, then the body is parsed as a command.
        await c.send(Buffer.from('put 0 0 1 1\0\r\nx\r\n', 'latin1'));
        await c.expect('BAD_FORMAT\r\nUNKNOWN_COMMAND\r\n');
        await c.send('list-tube-used\r\n');
        await c.expect('USING default\r\n');
    });

    it('a 224-byte line (CRLF included) is accepted', T, async (t) => {
        const c = await connect(t, srv);
        const name = a(200, 'L');
        const line = `pause-tube ${name} 4294967295`;
        assert.equal(line.length + 2, 224);
        await c.send(`use ${name}\r\n${line}\r\nlist-tube-used\r\n`);
        await c.expect(`USING ${name}\r\nPAUSED\r\nUSING ${name}\r\n`);
        await c.send('use default\r\n');
        await c.expect('USING default\r\n');
    });

    it('a longer line gives one BAD_FORMAT after its CRLF, then parsing resumes', T, async (t) => {
        const c = await connect(t, srv);
        // 226 and 300 bytes, and one spanning several buffer fills (1000 bytes).
        for (const len of [226, 300, 1000]) {
            const l = 'stats ' + a(len - 8, 'x');
            assert.equal(l.length + 2, len);
            await c.send(`${l}\r\nlist-tube-used\r\n`);
            await c.expect('BAD_FORMAT\r\nUSING default\r\n');
        }
        // The same, with the long line split over several writes.
        await c.send('use ' + a(150));
        await sleep(50);
        await c.send(a(150));
        await sleep(50);
        await c.send(a(150) + '\r\nlist-tube-used\r\n');
        await c.expect('BAD_FORMAT\r\nUSING default\r\n');
    });

    it('a long line that never ends keeps being discarded until its CRLF', T, async (t) => {
        const c = await connect(t, srv);
        for (let i = 0; i < 20; i++) await c.send(a(1000, 'z'));
        await c.expectNothing(200);
        await c.send('\r\nlist-tube-used\r\n');
        await c.expect('BAD_FORMAT\r\nUSING default\r\n');
    });

    it('pipelining: many commands in one write are answered in order', T, async (t) => {
        const c = await connect(t, srv);
        const tube = uniqueTube('pipe');
        const n = 500;
        let req = `use ${tube}\r\n`;
        for (let i = 0; i < n; i++) req += `put 0 0 60 ${String(i).length}\r\n${i}\r\n`;
        req += 'list-tube-used\r\n';
        await c.send(req);
        await c.expect(`USING ${tube}\r\n`);
        const ids = [];
        for (let i = 0; i < n; i++) {
            const l = await c.line();
            const m = /^INSERTED (\d+)$/.exec(l);
            assert.ok(m, `reply ${i}: ${l}`);
            ids.push(Number(m[1]));
        }
        for (let i = 1; i < n; i++) assert.ok(ids[i] > ids[i - 1], 'ids increase');
        await c.expect(`USING ${tube}\r\n`);
        // Mixed commands with bodies in replies, one write.
        let mix = '';
        for (let i = 0; i < 50; i++) mix += `peek ${ids[i]}\r\nstats-tube ${tube}\r\ndelete ${ids[i]}\r\n`;
        await c.send(mix);
        for (let i = 0; i < 50; i++) {
            const body = String(i);
            await c.expect(`FOUND ${ids[i]} ${body.length}\r\n${body}\r\n`);
            const r = await c.reply();
            assert.match(r.line, /^OK \d+$/);
            await c.expect('DELETED\r\n');
        }
    });

    it('pipelining: a command split byte by byte is answered once', T, async (t) => {
        const c = await connect(t, srv);
        const req = 'put 1 0 60 3\r\nabc\r\n';
        for (const ch of req) { await c.send(ch); await sleep(2); }
        const l = await c.line();
        assert.match(l, /^INSERTED \d+$/);
        const id = l.split(' ')[1];
        await c.send(`delete ${id}\r\n`);
        await c.expect('DELETED\r\n');
    });

    it('quit closes the connection; quitX quits too; nothing after it is answered', T, async (t) => {
        const c = await connect(t, srv);
        await c.send('quit\r\n');
        await c.expectClosed();
        const d = await connect(t, srv);
        await d.send('quitx\r\nlist-tube-used\r\n');
        await d.expectClosed();
    });
});

describe('numbers', () => {
    it('put rejects signs, overflow and trailing garbage; the body is then parsed as a command', T, async (t) => {
        const c = await connect(t, srv);
        for (const l of ['put -1 0 1 1', 'put +1 0 1 1', 'put 4294967296 0 1 1', 'put 0 -1 1 1', 'put 0 0 -1 1',
            'put 0 0 1 -1', 'put 0 0 1 1x', 'put 0 0 1 1 ', 'put 0 0 1 1 x', 'put 0 0 4294967296 1', 'put 0 x 1 1',
            'put 0 0 1', 'put 99999999999999999999999 0 1 1']) {
            await c.send(`${l}\r\nx\r\n`);
            await c.expect('BAD_FORMAT\r\nUNKNOWN_COMMAND\r\n', { timeout: 3000 }).catch((e) => { throw new Error(`${l}: ${e.message}`); });
        }
        await c.send('put 0 0 1 5 x\r\nhello\r\n');
        await c.expect('BAD_FORMAT\r\nUNKNOWN_COMMAND\r\n');
        await c.send('put 0 0 1\r\n');
        await c.expect('BAD_FORMAT\r\n');
        await c.send('put \r\n');
        await c.expect('BAD_FORMAT\r\n');
    });

    it('put accepts the uint32 maximum and extra spaces between arguments', T, async (t) => {
        const c = await connect(t, srv);
        const tube = uniqueTube('num');
        await c.send(`use ${tube}\r\n`);
        await c.expect(`USING ${tube}\r\n`);
        await c.send('put 4294967295 4294967295 4294967295 1\r\nx\r\n');
        const l1 = await c.line();
        assert.match(l1, /^INSERTED \d+$/);
        await c.send('put  0  0  1  1\r\ny\r\n');
        const l2 = await c.line();
        assert.match(l2, /^INSERTED \d+$/);
        for (const l of [l1, l2]) {
            await c.send(`delete ${l.split(' ')[1]}\r\n`);
            await c.expect('DELETED\r\n');
        }
    });

    it('job ids are uint64: 2^64-1 parses, 2^64, signs and garbage do not', T, async (t) => {
        const c = await connect(t, srv);
        const ok = ['18446744073709551615', '0', '  7777777'];
        for (const cmd of ['peek', 'delete', 'touch', 'kick-job', 'reserve-job', 'stats-job']) {
            for (const id of ok) {
                await c.send(`${cmd} ${id}\r\n`);
                await c.expect('NOT_FOUND\r\n');
            }
            for (const id of ['18446744073709551616', '-1', '+1', '1x', '1 ', 'x', '']) {
                await c.send(`${cmd} ${id}\r\n`);
                await c.expect('BAD_FORMAT\r\n').catch((e) => { throw new Error(`${cmd} ${JSON.stringify(id)}: ${e.message}`); });
            }
        }
        for (const l of ['release 1 -1 0', 'release 1 0', 'release 1 0 0 ', 'release 1 0 x', 'release 1 4294967296 0',
            'release 1 0 4294967296', 'bury 1 x', 'bury 1', 'bury 1 0 ', 'bury 1 -1']) {
            await c.send(l + '\r\n');
            await c.expect('BAD_FORMAT\r\n').catch((e) => { throw new Error(`${l}: ${e.message}`); });
        }
        await c.send('release 1 0 0\r\nbury 1 0\r\n');
        await c.expect('NOT_FOUND\r\nNOT_FOUND\r\n');
    });

    it('kick parses its bound loosely: kick 10abc and kick -1 are accepted', T, async (t) => {
        const c = await connect(t, srv);
        const tube = uniqueTube('kickl');
        await c.send(`use ${tube}\r\nkick 10abc\r\nkick -1\r\nkick x\r\nkick \r\n`);
        await c.expect(`USING ${tube}\r\nKICKED 0\r\nKICKED 0\r\nBAD_FORMAT\r\nBAD_FORMAT\r\n`);
    });

    it('reserve-with-timeout ignores trailing garbage; reserve does not', T, async (t) => {
        const c = await connect(t, srv);
        const tube = uniqueTube('rwt');
        await c.send(`watch ${tube}\r\nignore default\r\n`);
        await c.expect('WATCHING 2\r\nWATCHING 1\r\n');
        for (const l of ['reserve-with-timeout 0', 'reserve-with-timeout  0', 'reserve-with-timeout 0 junk', 'reserve-with-timeout 0x']) {
            await c.send(l + '\r\n');
            await c.expect('TIMED_OUT\r\n');
        }
        await c.send('reserve \r\nreserve x\r\nreserve-with-timeout\r\nreserve-with-timeout 99999999999999999999999\r\n');
        await c.expect('BAD_FORMAT\r\nBAD_FORMAT\r\nBAD_FORMAT\r\nBAD_FORMAT\r\n');
        await c.send(`use ${tube}\r\n`);
        await c.expect(`USING ${tube}\r\n`);
        const id = await put(c, 'j');
        await c.send('reserve-with-timeout 0 junk\r\n');
        await c.expect(`RESERVED ${id} 1\r\nj\r\n`);
        await c.send(`delete ${id}\r\n`);
        await c.expect('DELETED\r\n');
    });
});

describe('tube names', () => {
    const valid = ['A-Za+z0/9;.$_()', a(200), 'x', '0', '(', 'a-', '$', '_'];
    const invalid = ['a:b', 'a@b', 'a b', 'a*b', 'a\tb', 'a,b', 'a#b', 'é', '-a', '-', a(201), 'a ', ' a', ''];

    for (const cmd of ['use', 'watch', 'ignore', 'stats-tube']) {
        it(`${cmd}: valid and invalid names`, T, async (t) => {
            const c = await connect(t, srv);
            for (const n of valid) {
                await c.send(Buffer.from(`${cmd} ${n}\r\n`, 'latin1'));
                const l = await c.line();
                if (cmd === 'use') assert.equal(l, `USING ${n}`);
                else if (cmd === 'watch') assert.match(l, /^WATCHING \d+$/);
                else if (cmd === 'ignore') assert.match(l, /^(WATCHING \d+|NOT_IGNORED)$/);
                else assert.ok(l === 'NOT_FOUND' || /^OK \d+$/.test(l), l);
                if (l.startsWith('OK ')) await c.readBytes(Number(l.slice(3)) + 2);
            }
            for (const n of invalid) {
                await c.send(Buffer.from(`${cmd} ${n}\r\n`, 'latin1'));
                await c.expect('BAD_FORMAT\r\n').catch((e) => { throw new Error(`${cmd} ${JSON.stringify(n)}: ${e.message}`); });
            }
        });
    }

    it('pause-tube: invalid names and delays', T, async (t) => {
        const c = await connect(t, srv);
        const tube = uniqueTube('pt');
        await c.send(`use ${tube}\r\n`);
        await c.expect(`USING ${tube}\r\n`);
        for (const l of [`pause-tube ${tube}`, `pause-tube ${tube} x`, `pause-tube ${tube} -1`, `pause-tube ${tube} 1 `,
            `pause-tube ${tube} 4294967296`, 'pause-tube a:b 1', 'pause-tube -a 1', `pause-tube ${a(201)} 1`, 'pause-tube  1']) {
            await c.send(l + '\r\n');
            await c.expect('BAD_FORMAT\r\n').catch((e) => { throw new Error(`${l}: ${e.message}`); });
        }
        await c.send(`pause-tube ${tube} 0\r\npause-tube  ${tube} 0\r\npause-tube ${tube}  0\r\npause-tube nosuch-${tube} 1\r\n`);
        await c.expect('PAUSED\r\nPAUSED\r\nPAUSED\r\nNOT_FOUND\r\n');
    });
});

describe('put', () => {
    it('EXPECTED_CRLF when the 2 bytes after the body are not CRLF', T, async (t) => {
        const c = await connect(t, srv);
        await c.send('put 0 0 1 5\r\nhelloXY');
        await c.expect('EXPECTED_CRLF\r\n');
        await c.send('list-tube-used\r\n');
        await c.expect('USING default\r\n');
        // A body shorter than announced: bytes+2 are consumed, the rest is a command.
        await c.send('put 0 0 1 3\r\nhello\r\nlist-tube-used\r\n');
        await c.expect('EXPECTED_CRLF\r\nUNKNOWN_COMMAND\r\nUSING default\r\n');
    });

    it('bodies are binary: every byte value, CRLF and NUL inside, empty body', T, async (t) => {
        const c = await connect(t, srv);
        const tube = uniqueTube('bin');
        await c.send(`use ${tube}\r\n`);
        await c.expect(`USING ${tube}\r\n`);
        const all = Buffer.alloc(256 * 4);
        for (let i = 0; i < all.length; i++) all[i] = i & 255;
        const bodies = [all, Buffer.from('\r\n'), Buffer.from('a\r\nb\r\n\r\n'), Buffer.from([0]), Buffer.alloc(0),
            Buffer.from('put 0 0 1 1\r\nx\r\n'), Buffer.from('crème brûlée — 日本語', 'utf8')];
        const ids = [];
        for (const b of bodies) ids.push(await put(c, b));
        for (let i = 0; i < bodies.length; i++) {
            await c.send(`peek ${ids[i]}\r\n`);
            await c.expect(Buffer.concat([Buffer.from(`FOUND ${ids[i]} ${bodies[i].length}\r\n`), bodies[i], Buffer.from('\r\n')]));
        }
        await c.send(`watch ${tube}\r\nignore default\r\n`);
        await c.expect('WATCHING 2\r\nWATCHING 1\r\n');
        for (let i = 0; i < bodies.length; i++) {
            await c.send('reserve\r\n');
            await c.expect(Buffer.concat([Buffer.from(`RESERVED ${ids[i]} ${bodies[i].length}\r\n`), bodies[i], Buffer.from('\r\n')]));
            await c.send(`delete ${ids[i]}\r\n`);
            await c.expect('DELETED\r\n');
        }
    });

    it('the default maximum job size is 65535 bytes', T, async (t) => {
        const c = await connect(t, srv);
        const tube = uniqueTube('big');
        await c.send(`use ${tube}\r\n`);
        await c.expect(`USING ${tube}\r\n`);
        const id = await put(c, Buffer.alloc(65535, 0x42));
        await c.send(`peek ${id}\r\n`);
        await c.expect(Buffer.concat([Buffer.from(`FOUND ${id} 65535\r\n`), Buffer.alloc(65535, 0x42), Buffer.from('\r\n')]));
        await c.send(putCmd(Buffer.alloc(65536, 0x43)));
        await c.expect('JOB_TOO_BIG\r\n');
        await c.send(`delete ${id}\r\nlist-tube-used\r\n`);
        await c.expect(`DELETED\r\nUSING ${tube}\r\n`);
    });

    it('ttr 0 is stored as 1 second', T, async (t) => {
        const c = await connect(t, srv);
        const id = await put(c, 'x', { ttr: 0 });
        const y = await c.yaml(`stats-job ${id}`);
        assert.equal(y.get('ttr'), '1');
        await c.send(`delete ${id}\r\n`);
        await c.expect('DELETED\r\n');
    });
});

describe('with -z 10', () => {
    let small;
    before(async () => { small = await startServer({ args: ['-z', '10'] }); });
    after(async () => { await small?.stop(); });

    it('JOB_TOO_BIG after discarding bytes+2, then the stream continues', T, async (t) => {
        const c = await connect(t, small);
        await c.send('put 0 0 1 10\r\n0123456789\r\n');
        await c.expect('INSERTED 1\r\n');
        await c.send('put 0 0 1 11\r\nhello world\r\nlist-tube-used\r\n');
        await c.expect('JOB_TOO_BIG\r\nUSING default\r\n');
        // bytes+2 are swallowed whatever they are, even if they look like commands.
        await c.send('put 0 0 1 20\r\nlist-tube-used\r\nxxxx\r\nlist-tube-used\r\n');
        await c.expect('JOB_TOO_BIG\r\nUSING default\r\n');
        // Split over several writes.
        await c.send('put 0 0 1 1000\r\n');
        await sleep(50);
        await c.send(Buffer.alloc(600, 0x41));
        await sleep(50);
        await c.send(Buffer.concat([Buffer.alloc(400, 0x41), Buffer.from('\r\npeek 1\r\n')]));
        await c.expect('JOB_TOO_BIG\r\nFOUND 1 10\r\n0123456789\r\n');
        const y = await c.yaml('stats');
        assert.equal(y.get('max-job-size'), '10');
        assert.equal(y.get('cmd-put'), '4');
        assert.equal(y.get('total-jobs'), '1');
    });
});
