// differential.test.mjs -- the same command scripts against a fresh beanstalkd and a
// fresh $DOCKETD; the reply streams must be equal after normalising volatile fields.
//
// Each script runs on new servers, so job ids (both start at 1) are compared as
// they are. Normalised: times (age, time-left, uptime, rusage, pause-time-left),
// process identity (pid, id, version, hostname, os, platform), total-connections,
// and storage fields (file, binlog-*) since Docket's log is not beanstalkd's
// binlog. The OK <bytes> count is checked against the body before normalising,
// then recomputed. beanstalkd 1.12's unquoted YAML values (hostname, os,
// platform, stats-tube name, stats-job tube) are mapped to 1.13's quoted form.
//
// beanstalkd must be installed ($BEANSTALKD, default /usr/bin/beanstalkd): the
// tests fail, not skip, without it. DIFF_DUMP=dir writes both transcripts of
// every script there, for debugging.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startServer, Client, BEANSTALKD, DOCKETD, IS_112, binVersion, sleep } from './harness.mjs';

// ---- script building blocks --------------------------------------------------

/** Command lines, each a unit with one reply. */
const L = (...lines) => ({ send: lines.map((l) => l + '\r\n').join(''), n: lines.length });
/** A put with its body (string or Buffer): one reply. */
const P = (body, pri = 0, delay = 0, ttr = 60) => {
    const b = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
    return { send: Buffer.concat([Buffer.from(`put ${pri} ${delay} ${ttr} ${b.length}\r\n`), b, Buffer.from('\r\n')]), n: 1 };
};
/** Raw bytes with an explicit number of replies. */
const R = (send, n) => ({ send, n });
/** Units sent in one write on connection c (default 0). */
const on = (c, ...units) => ({ c, units });
const a = (n, ch = 'a') => ch.repeat(n);

// Steps: a unit or array of units (on connection 0), on(c, ...units), or objects:
//   {c, read: n, timeout}  read n pending replies
//   {sleep: ms}            wait
//   {close: c}             close connection c
//   {end: c}               half-close connection c
//   {closed: c}            record whether the server closed connection c
//   {signal: 'SIGUSR1'}    signal the server
//   {c, ..., timeout}      per-read timeout for a unit step

const SCRIPTS = [];
const S = (name, steps, opts = {}) => SCRIPTS.push({ name, steps, ...opts });

// -- put and bodies (§1.3 put, §1.6)
S('put, peek, stats-job, delete', [P('hello'), L('peek 1', 'stats-job 1', 'delete 1', 'peek 1', 'delete 1')]);
S('put bodies: binary, CRLF inside, NUL, empty, UTF-8', [
    P(Buffer.from(Array.from({ length: 512 }, (_, i) => i & 255))), P('a\r\nb\r\n'), P(Buffer.from([0, 13, 10, 0])),
    P(''), P('crème brûlée ✓'), L('peek 1', 'peek 2', 'peek 3', 'peek 4', 'peek 5', 'reserve', 'reserve', 'reserve'),
]);
S('put: EXPECTED_CRLF and short bodies', [
    R('put 0 0 1 5\r\nhelloXY', 1), L('list-tube-used'), R('put 0 0 1 3\r\nhello\r\n', 2), L('stats-tube default'),
]);
S('put: bad numbers, then the body is parsed as a command', [
    R('put -1 0 1 1\r\nx\r\n', 2), R('put +1 0 1 1\r\nx\r\n', 2), R('put 4294967296 0 1 1\r\nx\r\n', 2),
    R('put 0 -1 1 1\r\nx\r\n', 2), R('put 0 0 1 1x\r\nx\r\n', 2), R('put 0 0 1 1 \r\nx\r\n', 2),
    R('put 0 0 1 5 x\r\nhello\r\n', 2), R('put 0 0 1\r\n', 1), R('put \r\n', 1), R('put 0 0 1 18 x\r\nstats-tube default\r\n', 2),
    R('put 0 0 18446744073709551616 1\r\nx\r\n', 2), L('stats'),
]);
S('put: accepted forms (max uint32, extra spaces, ttr 0)', [
    R('put 4294967295 4294967295 4294967295 1\r\nx\r\n', 1), R('put  0  0  1  1\r\ny\r\n', 1), P('z', 0, 0, 0),
    L('stats-job 1', 'stats-job 2', 'stats-job 3', 'peek-delayed', 'peek-ready'),
]);
S('put: JOB_TOO_BIG with -z 10 skips bytes+2 and resyncs', [
    P('0123456789'), R('put 0 0 1 11\r\nhello world\r\nlist-tube-used\r\n', 2),
    R('put 0 0 1 20\r\nlist-tube-used\r\nxxxx\r\nlist-tube-used\r\n', 2),
    R('put 0 0 1 20 x\r\n01234567890123456789\r\nlist-tube-used\r\n', 2), L('stats'),
], { args: ['-z', '10'] });
S('put: the default maximum job size is 65535', [
    P(Buffer.alloc(65535, 0x61)), R(Buffer.concat([Buffer.from('put 0 0 1 65536\r\n'), Buffer.alloc(65536, 0x62), Buffer.from('\r\nlist-tube-used\r\n')]), 2),
    L('stats-job 1', 'stats-tube default'),
]);

// -- framing (§1.1)
S('unknown commands, case, empty line, bare LF', [
    L('RESERVE', 'Stats', 'foo', '', ' stats', 'put', 'kick', 'touch', 'kick-job', 'use', 'watch', 'ignore', 'delete',
        'peek', 'release', 'bury', 'PUT 0 0 1 1'),
    R('a\nb\r\nuse a\nb\r\nlist-tube-used\nx\r\n', 3), L('stats'),
]);
S('prefix matching quirks', [
    L('reservex', 'statsx', 'stats-tube', 'stats-job', 'reserve-job', 'pause-tube', 'peek-readyx', 'peek-ready ',
        'peek-delayedx', 'peek-buriedx', 'list-tubesx', 'list-tube-usedx', 'list-tubes-watchedx', 'list-tubes ',
        'use foo', 'pause-tubefoo 1', 'stats-tube foo'),
    R('quitx\r\nlist-tube-used\r\n', 0), { closed: 0 },
]);
S('NUL bytes in a line', [
    R(Buffer.from('\0\r\n\0stats\r\nstats\0\r\npeek 1\0\r\nuse foo\0\r\nuse a\0b\r\nxyz\0\r\n', 'latin1'), 7),
    R(Buffer.from('put 0 0 1 1\0\r\nx\r\n', 'latin1'), 2), L('list-tube-used', 'stats'),
]);
S('line limit: 224 bytes ok, longer lines give one BAD_FORMAT and resync', [
    L(`use ${a(200)}`, `pause-tube ${a(200)} 4294967295`, 'list-tube-used', 'use default'),
    R(`stats ${a(218, 'x')}\r\nlist-tube-used\r\n`, 2), R(`stats ${a(292, 'x')}\r\nlist-tube-used\r\n`, 2),
    R(`stats ${a(5000, 'x')}\r\nlist-tube-used\r\n`, 2), L('stats'),
]);
S('line limit quirk: a CRLF split across the 224-byte buffer boundary is missed', [
    R(`${a(223)}\r\nlist-tube-used\r\nlist-tube-used\r\n`, 2),
    R(`${a(447)}\r\nlist-tube-used\r\nlist-tube-used\r\n`, 2),
    R(`${a(446)}\r\nlist-tube-used\r\n`, 2),
]);
S('pipelining: 200 puts and reserves in one write', [
    (() => { let s = 'use p\r\nwatch p\r\nignore default\r\n'; for (let i = 0; i < 200; i++) s += `put ${i % 7} 0 60 ${String(i).length}\r\n${i}\r\n`; return R(s, 203); })(),
    R('reserve\r\n'.repeat(200), 200), L('stats-tube p', 'stats'),
]);

// -- numbers and names (§1.1)
S('job id parsing (uint64)', [
    L('peek 18446744073709551615', 'peek 18446744073709551616', 'peek -1', 'peek +1', 'peek 0', 'peek 1x', 'peek  1',
        'peek 1 ', 'peek ', 'delete -1', 'delete 18446744073709551616', 'touch +1', 'kick-job 1x', 'reserve-job -1',
        'stats-job x', 'stats-job 99', 'kick-job', 'touch', 'delete', 'stats-job'),
]);
S('release and bury argument parsing', [
    P('x'), L('reserve', 'release 1 -1 0', 'release 1 0', 'release 1 0 0 ', 'release 1 0 x', 'release 1 4294967296 0',
        'bury 1 x', 'bury 1', 'bury 1 0 ', 'bury 1 -1', 'release  1  5  0', 'reserve', 'bury  1  6', 'stats-job 1'),
]);
S('kick and reserve-with-timeout parse loosely', [
    P('a', 0, 100), P('b', 0, 100), P('c', 0, 100),
    L('kick 1abc', 'kick -1', 'kick x', 'kick ', 'kick', 'reserve-with-timeout 0 junk', 'reserve-with-timeout 0x',
        'reserve-with-timeout  0', 'reserve-with-timeout +0', 'reserve-with-timeout', 'reserve-with-timeout 99999999999999999999999',
        'reserve ', 'reserve x', 'stats'),
]);
S('tube names: valid characters, 200 and 201 chars, leading -, trailing space', [
    L('use A-Za+z0/9;.$_()', `use ${a(200)}`, `use ${a(201)}`, 'use a:b', 'use a@b', 'use a b', 'use -a', 'use -',
        'use a ', 'use  a', 'use ', 'watch a:b', 'watch -a', `watch ${a(201)}`, 'watch a ', 'ignore a:b', 'ignore -x',
        'stats-tube a:b', 'stats-tube -a', 'stats-tube default ', 'use a-', 'list-tubes'),
    R(Buffer.from('use caf\xe9\r\nuse a\tb\r\n', 'latin1'), 2),
]);

// -- commands (§1.3)
S('use, list-tube-used, list-tubes', [
    L('list-tube-used', 'list-tubes', 'use foo', 'list-tube-used', 'list-tubes', 'use foo', 'use bar', 'list-tubes'),
    P('x'), L('use default', 'list-tubes', 'delete 1', 'list-tubes'),
]);
S('watch, ignore, NOT_IGNORED, list-tubes-watched', [
    L('list-tubes-watched', 'watch foo', 'watch foo', 'watch bar', 'list-tubes-watched', 'ignore nosuch', 'ignore default',
        'list-tubes-watched', 'ignore foo', 'ignore bar', 'ignore bar', 'list-tubes-watched', 'list-tubes', 'stats'),
]);
S('tubes vanish when unreferenced; default stays', [
    L('use t1', 'watch t2'), P('x'), on(1, L('watch t3', 'list-tubes')), L('ignore t2', 'list-tubes', 'use default', 'list-tubes'),
    L('delete 1', 'list-tubes'), on(1, L('ignore default', 'list-tubes-watched', 'stats-tube default')),
    R('quit\r\n', 0), { closed: 0 }, { sleep: 100 }, on(1, L('list-tubes')),
]);
S('reserve order: priority, then id, across watched tubes', [
    L('use a'), P('a10', 10), P('a5', 5), L('use b'), P('b5', 5), P('b0', 0), P('b10', 10),
    L('watch a', 'watch b', 'ignore default', 'reserve', 'reserve', 'reserve', 'reserve', 'reserve', 'reserve-with-timeout 0', 'stats'),
]);
S('reserve-with-timeout 0 and 1', [
    L('reserve-with-timeout 0'), { c: 0, units: [L('reserve-with-timeout 1')], timeout: 5000 }, P('x'), L('reserve-with-timeout 1', 'stats'),
]);
S('blocking reserve satisfied by another connection\'s put', [
    on(0, R('reserve\r\n', 0)), { sleep: 100 }, on(1, L('stats-tube default', 'stats')), on(1, P('job')), { c: 0, read: 1 },
    on(1, L('stats-job 1')),
]);
S('reserve-job: ready, delayed, buried, paused; NOT_FOUND cases', [
    P('r'), P('d', 0, 100), P('b'), L('reserve-job 3', 'bury 3 7', 'pause-tube default 100', 'reserve-job 1', 'reserve-job 2',
        'reserve-job 3', 'reserve-job 1', 'reserve-job 99', 'stats-job 2', 'stats-tube default', 'stats'),
    on(1, L('reserve-job 1', 'reserve-job 2')),
]);
S('delete in every state, and another connection\'s reserved job', [
    P('r'), P('d', 0, 100), P('b'), P('o'), L('reserve-job 3', 'bury 3 0', 'reserve-job 4'),
    on(1, L('delete 4')), L('delete 1', 'delete 2', 'delete 3', 'delete 4', 'delete 1', 'stats', 'stats-tube default'),
]);
S('release: priority, delay, NOT_FOUND', [
    P('x', 5), L('release 1 1 0', 'reserve', 'release 1 7 0', 'release 1 7 0', 'stats-job 1', 'reserve', 'release 1 3 100',
        'stats-job 1', 'peek-delayed', 'reserve-with-timeout 0', 'stats'),
]);
S('release with a delay becomes ready after it', [
    P('x'), L('reserve', 'release 1 2 1'), { c: 0, units: [L('reserve-with-timeout 5')], timeout: 8000 }, L('stats-job 1'),
]);
S('bury, peek-buried, kick FIFO order', [
    P('1', 100), P('2', 100), P('3', 100),
    L('reserve-job 2', 'bury 2 1', 'reserve-job 3', 'bury 3 2', 'reserve-job 1', 'bury 1 0', 'bury 1 0', 'stats-job 2',
        'peek-buried', 'reserve-with-timeout 0', 'kick 1', 'peek-buried', 'kick 10', 'peek-buried', 'reserve', 'reserve',
        'reserve', 'stats-job 3', 'stats'),
]);
S('touch', [
    P('x'), L('touch 1', 'reserve', 'touch 1', 'touch 1', 'touch 2'), on(1, L('touch 1')), L('stats-job 1', 'stats'),
]);
S('peek-ready, peek-delayed, peek-buried act on the used tube', [
    L('use t'), P('r1', 9), P('r2', 2), P('d1', 0, 200), P('d2', 0, 100),
    L('reserve-job 1', 'bury 1 0', 'peek-ready', 'peek-delayed', 'peek-buried'),
    on(1, L('watch t', 'peek-ready', 'peek-delayed', 'peek-buried', 'peek 1', 'peek 3', 'use t', 'peek-ready', 'stats')),
]);
S('kick prefers buried, then delayed soonest first; used tube only', [
    L('use k'), P('d1', 0, 300), P('d2', 0, 200), P('d3', 0, 100), P('b'), L('reserve-job 4', 'bury 4 0'),
    on(1, L('kick 10')), L('kick 10', 'peek-ready', 'kick 2', 'peek-delayed', 'stats-job 3', 'kick 0', 'kick 5', 'kick 5', 'stats'),
]);
S('kick-job', [
    P('r'), P('d', 0, 100), P('b'), P('x'), L('reserve-job 3', 'bury 3 0', 'reserve-job 4'),
    on(1, L('kick-job 1', 'kick-job 4', 'kick-job 99', 'kick-job 2', 'kick-job 3', 'kick-job 2')),
    L('stats-job 2', 'stats-job 3', 'stats'),
]);
S('stats-job in every state', [
    L('use sj'), P('hello', 1024, 0, 30), L('stats-job 1', 'watch sj', 'reserve', 'stats-job 1', 'release 1 7 100', 'stats-job 1',
        'kick-job 1', 'reserve', 'bury 1 8', 'stats-job 1', 'kick 1', 'stats-job 1', 'delete 1', 'stats-job 1'),
]);
S('stats-tube counts, NOT_FOUND, no creation', [
    L('stats-tube default', 'stats-tube nosuch', 'stats-tube nosuch', 'use st'), P('a', 1), P('b', 2000), P('c', 0, 100),
    on(1, L('watch st', 'watch st')), L('delete 2', 'delete 2', 'stats-tube st', 'list-tubes'),
]);
S('urgent counts: pri < 1024', [
    P('a', 1023), P('b', 1024), P('c', 0), P('d', 0, 10), L('stats-tube default', 'stats', 'reserve', 'stats-tube default', 'stats'),
]);
S('stats counters after a mix of commands', [
    P('x', 5), L('peek 1', 'peek-ready', 'peek-delayed', 'peek-buried', 'reserve', 'touch 1', 'release 1 5 0',
        'reserve-with-timeout 0', 'bury 1 5', 'kick 1', 'reserve-job 1', 'delete 1', 'kick-job 1', 'delete 1',
        'release 1 0 0', 'bury 1 0', 'touch 1', 'stats-job 1', 'stats-tube default', 'stats-tube nosuch', 'list-tubes',
        'list-tube-used', 'list-tubes-watched', 'pause-tube default 0', 'pause-tube nosuch 1', 'use x', 'watch x',
        'ignore x', 'ignore default', 'stats'),
]);
S('pause-tube: replies, parsing, stats-tube pause', [
    L('pause-tube nosuch 1', 'pause-tube default', 'pause-tube default x', 'pause-tube default -1', 'pause-tube default 1 ',
        'pause-tube default 4294967296', 'pause-tube a:b 1', `pause-tube ${a(201)} 1`, 'pause-tube  1', 'pause-tube  default 0',
        'pause-tube default  0', 'pause-tube default 100', 'stats-tube default'),
    P('x'), L('reserve-with-timeout 0', 'peek-ready', 'kick 1', 'pause-tube default 0', 'stats-tube default', 'reserve-with-timeout 0', 'stats'),
]);
S('pause-tube x 0 wakes a waiting reserver', [
    P('x'), L('pause-tube default 100'), on(1, R('reserve\r\n', 0)), { sleep: 200 }, L('stats-tube default', 'pause-tube default 0'),
    { c: 1, read: 1 }, L('stats-tube default'),
]);
S('a pause expires by itself', [
    P('x'), L('pause-tube default 1', 'reserve-with-timeout 0'), { c: 0, units: [L('reserve-with-timeout 5')], timeout: 8000 },
    L('stats-tube default'),
]);
S('quit releases reserved jobs; quitX quits', [
    P('a', 0, 0, 100), P('b', 0, 0, 100), L('reserve', 'reserve'), R('quit\r\n', 0), { closed: 0 }, { sleep: 100 },
    on(1, L('stats', 'stats-job 1', 'reserve', 'reserve')), on(2, R('quitfoo\r\nstats\r\n', 0)), { closed: 2 },
]);
S('closing a connection releases its reserved job to a waiting reserver', [
    P('x', 0, 0, 100), L('reserve'), on(1, R('reserve-with-timeout 10\r\n', 0)), { sleep: 100 }, { close: 0 },
    { c: 1, read: 1 }, on(1, L('stats-job 1')),
]);
S('half-close of a waiting reserver gives TIMED_OUT and the server closes', [
    R('reserve\r\n', 0), { sleep: 100 }, { end: 0 }, { c: 0, read: 1 }, { closed: 0 },
    on(1, R('reserve-with-timeout 10\r\n', 0)), { sleep: 100 }, { end: 1 }, { c: 1, read: 1 }, { closed: 1 },
    { sleep: 100 }, on(2, L('stats')),
]);
S('DEADLINE_SOON', [
    P('x', 0, 0, 2), L('reserve'), { c: 0, units: [L('reserve-with-timeout 10')], timeout: 8000 },
    L('reserve', 'reserve-with-timeout 0'), P('y'), L('reserve', 'reserve-with-timeout 0', 'delete 1', 'delete 2', 'reserve-with-timeout 0'),
]);
// c0 says something after the TTR has passed: beanstalkd 1.12 may otherwise
// never expire an idle holder's job (see SKIP_112_TTR_BUG in harness.mjs).
S('TTR expiry returns the job to ready; timeouts counted', [
    P('w', 0, 0, 1), L('reserve'), on(1, R('reserve-with-timeout 10\r\n', 0)), { sleep: 1500 }, L('list-tube-used'),
    { c: 1, read: 1, timeout: 8000 }, L('delete 1', 'touch 1'), on(1, L('stats-job 1', 'stats')),
]);
S('delayed jobs become ready ordered by id, not by readiness', [
    P('first', 5, 2), P('second', 5, 1), { sleep: 2500 }, L('peek-delayed', 'stats-tube default', 'reserve', 'reserve'),
]);
S('drain mode after SIGUSR1', [
    P('before'), { signal: 'SIGUSR1' }, { sleep: 300 }, R('put 0 0 60 5\r\nhello\r\nlist-tube-used\r\n', 2),
    R('put 0 0 60 5\r\nhelloXY', 1), R('put 0 0 60 x\r\n', 1), L('reserve', 'delete 1'), on(1, L('use other')), on(1, P('x')),
    L('stats'),
]);
S('many jobs and tubes: listings and global counts', [
    (() => { let s = ''; for (let i = 0; i < 30; i++) s += `use tube${i}\r\nput ${i} 0 60 1\r\n${i % 10}\r\n`; return R(s, 60); })(),
    L('list-tubes', 'stats', 'use tube7', 'peek-ready', 'watch tube29', 'watch tube3', 'reserve', 'reserve', 'list-tubes-watched'),
]);

// ---- running -----------------------------------------------------------------

const VOLATILE = {
    stats: new Set(['pid', 'version', 'rusage-utime', 'rusage-stime', 'uptime', 'id', 'hostname', 'os', 'platform',
        'total-connections', 'binlog-oldest-index', 'binlog-current-index', 'binlog-records-migrated',
        'binlog-records-written', 'binlog-max-size']),
    'stats-job': new Set(['age', 'time-left', 'file']),
    'stats-tube': new Set(['pause-time-left']),
};
// Keys 1.13 quotes and 1.12 did not (version was quoted in both).
const QUOTED_113 = { stats: new Set(['hostname', 'os', 'platform']), 'stats-job': new Set(['tube']), 'stats-tube': new Set(['name']) };

/** Normalises one YAML dict body; returns null if it is not a stats document. */
function normYaml(text, from112) {
    const lines = text.split('\n');
    if (lines[0] !== '---' || lines.length < 3) return null;
    const first = lines[1].split(': ')[0];
    const second = (lines[2] || '').split(': ')[0];
    const kind = first === 'current-jobs-urgent' ? 'stats' : first === 'name' ? 'stats-tube'
        : first === 'id' && second === 'tube' ? 'stats-job' : null;
    if (!kind) return null;
    return lines.map((l) => {
        const i = l.indexOf(': ');
        if (i < 0) return l;
        const k = l.slice(0, i);
        let v = l.slice(i + 2);
        if (from112 && QUOTED_113[kind].has(k) && !v.startsWith('"')) v = `"${v}"`;
        if (VOLATILE[kind].has(k)) v = v.startsWith('"') && v.endsWith('"') && v.length >= 2 ? '"<V>"' : '<V>';
        return `${k}: ${v}`;
    }).join('\n');
}

function show(buf) {
    return JSON.stringify(buf.toString('latin1')).slice(1, -1);
}

/**
 * Canonical text of one reply unit, as lines (a YAML body gets one line per
 * key so that a difference shows up as one changed line).
 */
function normReply({ line, body }, from112) {
    if (body === null) return [show(Buffer.from(line + '\r\n', 'latin1'))];
    if (line.startsWith('OK ')) {
        const text = body.toString('latin1');
        const y = normYaml(text, from112) ?? text;
        const lines = y.match(/[^\n]*\n|[^\n]+$/g) ?? [];
        return [`OK ${Buffer.byteLength(y, 'latin1')}\\r\\n`, ...lines.map((l) => `  ${show(Buffer.from(l, 'latin1'))}`), '  \\r\\n'];
    }
    return [show(Buffer.concat([Buffer.from(line + '\r\n', 'latin1'), body, Buffer.from('\r\n')]))];
}

const brief = (b) => {
    const s = show(Buffer.isBuffer(b) ? b : Buffer.from(b, 'utf8'));
    return s.length > 120 ? `${s.slice(0, 100)}...(${s.length} chars)` : s;
};

/** Runs a script against a fresh server; returns the transcript as lines. */
async function runScript(bin, script, from112) {
    const srv = await startServer({ bin, args: script.args ?? [] });
    const conns = new Map();
    const out = [];
    let aborted = false;
    const conn = async (c) => {
        if (!conns.has(c)) conns.set(c, await Client.connect(srv.port));
        return conns.get(c);
    };
    const read = async (c, n, timeout = 3000) => {
        const cl = await conn(c);
        for (let i = 0; i < n; i++) {
            try {
                for (const l of normReply(await cl.reply({ timeout }), from112)) out.push(`c${c} < ${l}`);
            } catch (e) {
                out.push(`c${c} < <error: ${e.message.split('\n')[0]}>`);
                aborted = true;
                return;
            }
        }
    };
    try {
        for (let step of script.steps) {
            if (aborted) { out.push('<aborted>'); break; }
            if (Array.isArray(step)) step = { c: 0, units: step };
            else if (step.send !== undefined) step = { c: 0, units: [step] };
            if (step.units) {
                const cl = await conn(step.c ?? 0);
                const units = step.units;
                const bytes = Buffer.concat(units.map((u) => (Buffer.isBuffer(u.send) ? u.send : Buffer.from(u.send, 'latin1'))));
                out.push(`c${step.c ?? 0} > ${brief(bytes)}`);
                await cl.send(bytes);
                await read(step.c ?? 0, units.reduce((s, u) => s + u.n, 0), step.timeout);
            } else if (step.read !== undefined) {
                await read(step.c, step.read, step.timeout ?? 8000);
            } else if (step.sleep !== undefined) {
                await sleep(step.sleep);
            } else if (step.close !== undefined) {
                (await conn(step.close)).close();
                out.push(`c${step.close} closed by client`);
            } else if (step.end !== undefined) {
                (await conn(step.end)).end();
                out.push(`c${step.end} half-closed by client`);
            } else if (step.closed !== undefined) {
                const cl = await conn(step.closed);
                try {
                    await cl.expectClosed({ timeout: 3000 });
                    out.push(`c${step.closed} closed by server`);
                } catch (e) {
                    out.push(`c${step.closed} <not closed: ${e.message.split('\n')[0]}>`);
                }
            } else if (step.signal) {
                srv.signal(step.signal);
                out.push(`signal ${step.signal}`);
            } else {
                throw new Error(`bad step ${JSON.stringify(step)}`);
            }
        }
        // Nothing more may arrive.
        await sleep(100);
        for (const [c, cl] of conns) {
            if (cl.buf.length) out.push(`c${c} < <extra: ${brief(cl.buf)}>`);
        }
    } finally {
        for (const cl of conns.values()) cl.close();
        await srv.stop();
    }
    return out;
}

const refVersion = existsSync(BEANSTALKD) ? binVersion(BEANSTALKD) : '';
const ref112 = /^beanstalkd 1\.12\b/.test(refVersion);

describe('differential: beanstalkd vs $DOCKETD', { concurrency: 4 }, () => {
    it('beanstalkd is installed (CI installs it)', { timeout: 5000 }, () => {
        assert.ok(existsSync(BEANSTALKD), `beanstalkd not found at ${BEANSTALKD}: install it (apt-get install beanstalkd)`);
        assert.match(refVersion, /^beanstalkd \d+\.\d+/, `unexpected ${BEANSTALKD} -v output: ${refVersion}`);
    });

    it(`has at least 40 scripts (${SCRIPTS.length})`, { timeout: 5000 }, () => {
        assert.ok(SCRIPTS.length >= 40);
        assert.equal(new Set(SCRIPTS.map((s) => s.name)).size, SCRIPTS.length, 'script names are unique');
    });

    for (const script of SCRIPTS) {
        it(script.name, { timeout: 60000 }, async () => {
            assert.ok(existsSync(BEANSTALKD), `beanstalkd not found at ${BEANSTALKD}`);
            const [ref, got] = await Promise.all([
                runScript(BEANSTALKD, script, ref112),
                runScript(DOCKETD, script, IS_112),
            ]);
            if (process.env.DIFF_DUMP) {
                // Debug aid: DIFF_DUMP=dir writes both transcripts of every script.
                const slug = script.name.replace(/[^A-Za-z0-9]+/g, '-').slice(0, 60);
                mkdirSync(process.env.DIFF_DUMP, { recursive: true });
                writeFileSync(path.join(process.env.DIFF_DUMP, `${slug}.beanstalkd.txt`), ref.join('\n') + '\n');
                writeFileSync(path.join(process.env.DIFF_DUMP, `${slug}.docketd.txt`), got.join('\n') + '\n');
            }
            const bad = ref.filter((l) => /<(error|extra|not closed|aborted)/.test(l));
            assert.deepEqual(bad, [], `script bug: beanstalkd itself did not answer as the script expects\n${ref.join('\n')}`);
            assert.deepEqual(got, ref);
        });
    }
});
