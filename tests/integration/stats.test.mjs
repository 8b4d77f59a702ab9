// stats.test.mjs -- stats, stats-tube, stats-job: keys, order, value types and counters.
// Reference: shared/reference/beanstalkd-protocol.md §1.5. Docket prints 1.13's YAML:
// the checks of 1.13-only quoting are marked SKIP_112 (skipped with BEANSTALKD_112=1).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import {
    startServer, connect, put, uniqueTube, quoted, assertYaml, parseYaml, UINT, IS_112, SKIP_112,
} from './harness.mjs';

const T = { timeout: 15000 };

const CMDS = ['put', 'peek', 'peek-ready', 'peek-delayed', 'peek-buried', 'reserve', 'reserve-with-timeout',
    'delete', 'release', 'use', 'watch', 'ignore', 'bury', 'kick', 'touch', 'stats', 'stats-job', 'stats-tube',
    'list-tubes', 'list-tube-used', 'list-tubes-watched', 'pause-tube'];
const STATS_KEYS = [
    'current-jobs-urgent', 'current-jobs-ready', 'current-jobs-reserved', 'current-jobs-delayed', 'current-jobs-buried',
    ...CMDS.map((c) => `cmd-${c}`),
    'job-timeouts', 'total-jobs', 'max-job-size', 'current-tubes',
    'current-connections', 'current-producers', 'current-workers', 'current-waiting', 'total-connections',
    'pid', 'version', 'rusage-utime', 'rusage-stime', 'uptime',
    'binlog-oldest-index', 'binlog-current-index', 'binlog-records-migrated', 'binlog-records-written', 'binlog-max-size',
    'draining', 'id', 'hostname', 'os', 'platform',
];
const TUBE_KEYS = ['name', 'current-jobs-urgent', 'current-jobs-ready', 'current-jobs-reserved', 'current-jobs-delayed',
    'current-jobs-buried', 'total-jobs', 'current-using', 'current-watching', 'current-waiting', 'cmd-delete',
    'cmd-pause-tube', 'pause', 'pause-time-left'];

const INT = /-?\d+/;
const QSTR = /"[^"\n]*"/;
// 1.12 printed hostname, os and platform unquoted.
const HOST_STR = IS_112 ? /[^\n]*/ : QSTR;

/** Expected [key, value] list for `stats`: exact values from `want`, types for the rest. */
function statsSpec(srv, want = {}) {
    return STATS_KEYS.map((k) => {
        if (k in want) return [k, String(want[k])];
        if (k === 'pid') return [k, String(srv.pid)];
        if (k === 'version') return [k, QSTR];
        if (k.startsWith('rusage-')) return [k, /\d+\.\d{6}/];
        if (k.startsWith('binlog-')) return [k, INT];
        if (k === 'draining') return [k, 'false'];
        if (k === 'id') return [k, /[0-9a-f]{16}/];
        if (['hostname', 'os', 'platform'].includes(k)) return [k, HOST_STR];
        return [k, UINT];
    });
}

function tubeSpec(name, want = {}) {
    return TUBE_KEYS.map((k) => {
        if (k === 'name') return [k, quoted(name)];
        return [k, k in want ? String(want[k]) : '0'];
    });
}

function jobSpec(id, tube, want) {
    const base = { id: String(id), tube: quoted(tube), state: 'ready', pri: '0', age: UINT, delay: '0', ttr: '60',
        'time-left': '0', file: UINT, reserves: '0', timeouts: '0', releases: '0', buries: '0', kicks: '0' };
    Object.assign(base, want);
    return Object.entries(base).map(([k, v]) => [k, typeof v === 'number' ? String(v) : v]);
}

describe('stats on a fresh server', () => {
    let srv;
    before(async () => { srv = await startServer(); });
    after(async () => { await srv?.stop(); });

    it('has the 51 keys in order with the right value types', T, async (t) => {
        const c = await connect(t, srv);
        await c.send('stats\r\n');
        const r = await c.reply();
        assert.match(r.line, /^OK \d+$/);
        const want = { 'cmd-stats': 1, 'max-job-size': 65535, 'current-tubes': 1, 'current-connections': 1 };
        for (const k of STATS_KEYS) if (k.startsWith('cmd-') && !(k in want)) want[k] = 0;
        for (const k of ['current-jobs-urgent', 'current-jobs-ready', 'current-jobs-reserved', 'current-jobs-delayed',
            'current-jobs-buried', 'job-timeouts', 'total-jobs', 'current-producers', 'current-workers', 'current-waiting']) want[k] = 0;
        const y = assertYaml(r.body, statsSpec(srv, want));
        assert.equal(y.size, 51);
        assert.ok(Number(y.get('total-connections')) >= 1);
    });

    it('counts every command kind, including NOT_FOUND outcomes; reserve-job and kick-job are not printed', T, async (t) => {
        const c = await connect(t, srv);
        const before = parseYaml((await c.cmd('stats')).body.toString('latin1'));
        const tube = uniqueTube('cnt');
        await c.send(`use ${tube}\r\nwatch ${tube}\r\nignore default\r\n`);
        await c.expect(`USING ${tube}\r\nWATCHING 2\r\nWATCHING 1\r\n`);
        const id = await put(c, 'x', { pri: 5 });
        const seq = [
            [`peek ${id}`, 1], ['peek-ready', 1], ['peek-delayed', 0], ['peek-buried', 0],
            ['reserve', 1], [`touch ${id}`, 0], [`release ${id} 5 0`, 0],
            ['reserve-with-timeout 0', 1], [`bury ${id} 5`, 0], ['kick 1', 0],
            [`reserve-job ${id}`, 1], [`delete ${id}`, 0], [`kick-job ${id}`, 0],
            [`delete ${id}`, 0], [`release ${id} 0 0`, 0], [`bury ${id} 0`, 0], [`touch ${id}`, 0], ['peek 999999', 0],
            [`stats-job ${id}`, 0], [`stats-tube ${tube}`, 1], ['stats-tube nosuch', 0], ['list-tubes', 1],
            ['list-tube-used', 0], ['list-tubes-watched', 1], [`pause-tube ${tube} 0`, 0], ['pause-tube nosuch 1', 0],
            [`ignore ${tube}`, 0], ['reserve-with-timeout 0', 0],
        ];
        for (const [cmd] of seq) {
            const r = await c.cmd(cmd);
            assert.ok(r.line.length > 0, cmd);
        }
        const after = parseYaml((await c.cmd('stats')).body.toString('latin1'));
        const inc = {
            put: 1, peek: 2, 'peek-ready': 1, 'peek-delayed': 1, 'peek-buried': 1, reserve: 1, 'reserve-with-timeout': 2,
            delete: 2, release: 2, use: 1, watch: 1, ignore: 2, bury: 2, kick: 1, touch: 2, stats: 1, 'stats-job': 1,
            'stats-tube': 2, 'list-tubes': 1, 'list-tube-used': 1, 'list-tubes-watched': 1, 'pause-tube': 2,
        };
        for (const cmd of CMDS) {
            assert.equal(Number(after.get(`cmd-${cmd}`)) - Number(before.get(`cmd-${cmd}`)), inc[cmd], `cmd-${cmd}`);
        }
        assert.ok(!after.has('cmd-reserve-job') && !after.has('cmd-kick-job') && !after.has('cmd-quit'));
        assert.equal(Number(after.get('total-jobs')) - Number(before.get('total-jobs')), 1);
    });

    it('current-* counts, producers, workers and waiting connections', T, async (t) => {
        const own = await startServer();
        t.after(() => own.stop());
        const tube = 'cur';
        const p = await connect(t, own);
        await p.send(`use ${tube}\r\n`);
        await p.expect(`USING ${tube}\r\n`);
        const urgent1 = await put(p, 'r', { pri: 1023 });
        const urgent0 = await put(p, 'u', { pri: 0 });
        const plain = await put(p, 'n', { pri: 1024 });
        const delayed = await put(p, 'd', { delay: 100 });
        const w = await connect(t, own);
        await w.send(`watch ${tube}\r\nignore default\r\nreserve\r\n`);
        await w.expect(`WATCHING 2\r\nWATCHING 1\r\nRESERVED ${urgent0} 1\r\nu\r\n`);
        await w.send(`reserve\r\nbury ${urgent1} 0\r\n`);
        await w.expect(`RESERVED ${urgent1} 1\r\nr\r\nBURIED\r\n`);
        const waiter = await connect(t, own);
        await waiter.send('watch idle\r\nignore default\r\nreserve\r\n');
        await waiter.expect('WATCHING 2\r\nWATCHING 1\r\n');
        let s;
        for (let i = 0; i < 100; i++) {
            s = await p.yaml('stats');
            if (s.get('current-waiting') === '1') break;
            await new Promise((r) => setTimeout(r, 20));
        }
        const want = {
            'current-jobs-urgent': 0, 'current-jobs-ready': 1, 'current-jobs-reserved': 1, 'current-jobs-delayed': 1,
            'current-jobs-buried': 1, 'current-connections': 3, 'current-producers': 1, 'current-workers': 2,
            'current-waiting': 1, 'total-jobs': 4, 'current-tubes': 3, 'cmd-put': 4, 'cmd-reserve': 3,
        };
        for (const [k, v] of Object.entries(want)) assert.equal(s.get(k), String(v), k);
        const st = await p.yaml(`stats-tube ${tube}`);
        assertYaml([...st].reduce((a, [k, v]) => `${a}${k}: ${v}\n`, '---\n'), tubeSpec(tube, {
            'current-jobs-ready': 1, 'current-jobs-reserved': 1, 'current-jobs-delayed': 1, 'current-jobs-buried': 1,
            'total-jobs': 4, 'current-using': 1, 'current-watching': 1,
        }));
        const si = await p.yaml('stats-tube idle');
        assert.equal(si.get('current-waiting'), '1');
        assert.equal(si.get('current-watching'), '1');
        await p.send(`delete ${urgent0}\r\ndelete ${plain}\r\n`);
        await p.expect('NOT_FOUND\r\nDELETED\r\n');
    });
});

describe('stats-tube', () => {
    let srv;
    before(async () => { srv = await startServer(); });
    after(async () => { await srv?.stop(); });

    it('has the 14 keys in order, exact values for a known tube', T, async (t) => {
        const tube = uniqueTube('st');
        const c = await connect(t, srv);
        await c.send(`use ${tube}\r\n`);
        await c.expect(`USING ${tube}\r\n`);
        await c.send(`stats-tube ${tube}\r\n`);
        let r = await c.reply();
        assertYaml(r.body, tubeSpec(tube, { 'current-using': 1 }));
        const a = await put(c, 'a', { pri: 1 });
        const b = await put(c, 'b', { pri: 2000 });
        const w = await connect(t, srv);
        await w.send(`watch ${tube}\r\nwatch ${tube}\r\n`);
        await w.expect('WATCHING 2\r\nWATCHING 2\r\n');
        await c.send(`delete ${b}\r\ndelete ${b}\r\n`);
        await c.expect('DELETED\r\nNOT_FOUND\r\n');
        await c.send(`stats-tube ${tube}\r\n`);
        r = await c.reply();
        assertYaml(r.body, tubeSpec(tube, {
            'current-jobs-urgent': 1, 'current-jobs-ready': 1, 'total-jobs': 2, 'current-using': 1,
            'current-watching': 1, 'cmd-delete': 1, // the NOT_FOUND delete counts only globally
        }));
        assert.equal(r.line, `OK ${r.body.length}`);
        await c.send(`delete ${a}\r\n`);
        await c.expect('DELETED\r\n');
    });

    it('counts a waiting reserver in current-waiting of each watched tube', T, async (t) => {
        const [x, y] = [uniqueTube('sx'), uniqueTube('sy')];
        const w = await connect(t, srv);
        await w.send(`watch ${x}\r\nwatch ${y}\r\nreserve-with-timeout 10\r\n`);
        await w.expect('WATCHING 2\r\nWATCHING 3\r\n');
        const c = await connect(t, srv);
        let sx;
        for (let i = 0; i < 100; i++) {
            sx = await c.yaml(`stats-tube ${x}`);
            if (sx.get('current-waiting') === '1') break;
            await new Promise((r) => setTimeout(r, 20));
        }
        assert.equal(sx.get('current-waiting'), '1');
        assert.equal((await c.yaml(`stats-tube ${y}`)).get('current-waiting'), '1');
        assert.equal((await c.yaml('stats-tube default')).get('current-waiting'), '1');
        w.close();
    });

    it('not found for a missing tube; stats-tube does not create it', T, async (t) => {
        const c = await connect(t, srv);
        const tube = uniqueTube('missing');
        await c.send(`stats-tube ${tube}\r\nstats-tube ${tube}\r\n`);
        await c.expect('NOT_FOUND\r\nNOT_FOUND\r\n');
    });

    it('1.13 quotes name: name: "tube"', { ...T, skip: SKIP_112 }, async (t) => {
        const c = await connect(t, srv);
        await c.send('stats-tube default\r\n');
        const r = await c.reply();
        assert.ok(r.body.toString().startsWith('---\nname: "default"\ncurrent-jobs-urgent: '), r.body.toString());
    });
});

describe('stats-job', () => {
    let srv;
    before(async () => { srv = await startServer(); });
    after(async () => { await srv?.stop(); });

    it('has the 14 keys in order, exact values in every state', T, async (t) => {
        const tube = uniqueTube('sj');
        const c = await connect(t, srv);
        await c.send(`use ${tube}\r\nwatch ${tube}\r\nignore default\r\n`);
        await c.expect(`USING ${tube}\r\nWATCHING 2\r\nWATCHING 1\r\n`);
        const id = await put(c, 'hello', { pri: 1024, ttr: 30 });
        const sj = async (want) => {
            await c.send(`stats-job ${id}\r\n`);
            const r = await c.reply();
            assert.equal(r.line, `OK ${r.body.length}`);
            return assertYaml(r.body, jobSpec(id, tube, { pri: '1024', ttr: '30', ...want }));
        };
        await sj({});
        await c.send('reserve\r\n');
        await c.expect(`RESERVED ${id} 5\r\nhello\r\n`);
        await sj({ state: 'reserved', reserves: '1', 'time-left': /29|30/ });
        await c.send(`release ${id} 7 100\r\n`);
        await c.expect('RELEASED\r\n');
        await sj({ state: 'delayed', pri: '7', delay: '100', reserves: '1', releases: '1', 'time-left': /99|100/ });
        await c.send(`kick-job ${id}\r\nreserve\r\nbury ${id} 8\r\n`);
        await c.expect(`KICKED\r\nRESERVED ${id} 5\r\nhello\r\nBURIED\r\n`);
        await sj({ state: 'buried', pri: '8', delay: '100', reserves: '2', releases: '1', buries: '1', kicks: '1' });
        await c.send(`kick 1\r\n`);
        await c.expect('KICKED 1\r\n');
        await sj({ state: 'ready', pri: '8', delay: '100', reserves: '2', releases: '1', buries: '1', kicks: '2' });
        await c.send(`delete ${id}\r\nstats-job ${id}\r\n`);
        await c.expect('DELETED\r\nNOT_FOUND\r\n');
    });

    it('a delayed put shows delay and time-left; the maximum delay and ttr are accepted', T, async (t) => {
        const c = await connect(t, srv);
        const id = await put(c, 'x', { delay: 4294967295, ttr: 4294967295 });
        await c.send(`stats-job ${id}\r\n`);
        const r = await c.reply();
        assertYaml(r.body, jobSpec(id, 'default', { state: 'delayed', delay: '4294967295', ttr: '4294967295', 'time-left': /429496729[45]/ }));
        await c.send(`delete ${id}\r\n`);
        await c.expect('DELETED\r\n');
    });

    it('1.13 quotes the tube: tube: "name"', { ...T, skip: SKIP_112 }, async (t) => {
        const c = await connect(t, srv);
        const id = await put(c, 'x');
        await c.send(`stats-job ${id}\r\n`);
        const r = await c.reply();
        assert.ok(r.body.toString().startsWith(`---\nid: ${id}\ntube: "default"\nstate: ready\n`), r.body.toString());
        await c.send(`delete ${id}\r\n`);
        await c.expect('DELETED\r\n');
    });
});

describe('1.13 stats identity fields', () => {
    let srv;
    before(async () => { srv = await startServer(); });
    after(async () => { await srv?.stop(); });

    it('version, hostname, os and platform are quoted, with uname values', { ...T, skip: SKIP_112 }, async (t) => {
        const c = await connect(t, srv);
        const y = await c.yaml('stats');
        assert.match(y.get('version'), /^"[^"\n]+"$/);
        assert.equal(y.get('hostname'), `"${os.hostname()}"`);
        assert.equal(y.get('os'), `"${os.version()}"`);
        assert.equal(y.get('platform'), `"${os.machine()}"`);
    });

    it('the id is stable for the life of the process; uptime and pid are sane', T, async (t) => {
        const c = await connect(t, srv);
        const a = await c.yaml('stats');
        const b = await c.yaml('stats');
        assert.equal(a.get('id'), b.get('id'));
        assert.equal(a.get('pid'), String(srv.pid));
        assert.ok(Number(b.get('uptime')) >= Number(a.get('uptime')));
        assert.equal(b.get('hostname').replace(/^"|"$/g, ''), os.hostname());
        assert.equal(b.get('platform').replace(/^"|"$/g, ''), os.machine());
    });
});
