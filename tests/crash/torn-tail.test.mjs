// torn-tail.test.mjs -- recovery from damaged log files (docs/storage.md "Recovery").
//
// A server writes jobs and stops (SIGTERM). Copies of its log directory are then
// damaged on purpose and docketd is started on each copy:
// - the last segment cut at every byte offset of its last records: docketd starts,
//   warns "<file> at offset <record start>: torn record; truncating ..." when the
//   cut is inside a record (and says nothing when it falls between records),
//   truncates the file there, and holds exactly the jobs whose records are whole;
// - a flipped bit in a record of the last segment: truncated there, starts;
// - a damaged record in an earlier segment: exit status 1 with a message naming
//   the file and offset; with --repair it starts and keeps everything else;
// - a missing middle segment: refuses to start (and --repair accepts the gap);
// - a trailing file shorter than a segment header (or a header-sized one with a
//   bad header): removed with a warning, docketd starts with every job.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { startServer, Client, DOCKETD, binVersion } from '../integration/harness.mjs';

// docketd's log (-b with its format, --fsync, --memory, --repair): not beanstalkd's.
const SKIP = /^docketd /.test(binVersion(DOCKETD)) ? false : `docketd only (${binVersion(DOCKETD) || DOCKETD})`;

const HEADER = 32;
const REC_HEAD = 17; // u32 length, u32 crc, u8 type, u64 seq
const T_JOB = 1;
const T_DELETE = 2;
const SEG_RE = /^\d{20}\.wal$/;
const POOL = 4; // servers started at once in the sweep

const tmpDirs = [];
function tmpDir(prefix) {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    tmpDirs.push(d);
    return d;
}
process.on('exit', () => { for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true }); });

const segName = (n) => `${String(n).padStart(20, '0')}.wal`;
const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function segments(dir) {
    return fs.readdirSync(dir).filter((f) => SEG_RE.test(f)).sort().map((f) => ({ name: f, num: Number(f.slice(0, 20)), file: path.join(dir, f) }));
}

/** The records of a segment file: [{off, end, type, seq, id}]. */
function parseSegment(file) {
    const b = fs.readFileSync(file);
    assert.equal(b.subarray(0, 8).toString('latin1'), 'DOCKETWL', `${file}: magic`);
    const recs = [];
    let off = HEADER;
    while (off + REC_HEAD <= b.length) {
        const len = b.readUInt32LE(off);
        const end = off + REC_HEAD + len;
        if (end > b.length) break;
        const type = b[off + 8];
        const seq = Number(b.readBigUInt64LE(off + 9));
        const id = type >= 1 && type <= 7 ? Number(b.readBigUInt64LE(off + REC_HEAD)) : null;
        recs.push({ off, end, type, seq, id });
        off = end;
    }
    assert.equal(off, b.length, `${file}: ends inside a record`);
    return recs;
}

function copyDir(src, dst) {
    fs.mkdirSync(dst, { recursive: true });
    for (const f of fs.readdirSync(src)) fs.copyFileSync(path.join(src, f), path.join(dst, f));
}

/**
 * Runs docketd once to see whether it starts: resolves {started, code, signal,
 * stderr}. A server that starts (prints "listening on") is stopped at once.
 */
function tryStart(args) {
    const cwd = tmpDir('docket-torn-cwd-');
    return new Promise((resolve) => {
        const child = spawn(DOCKETD, ['-l', '127.0.0.1', '-p', '0', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
        let stderr = '';
        let started = false;
        child.stderr.setEncoding('latin1');
        child.stderr.on('data', (d) => {
            stderr += d;
            if (!started && /listening on/.test(stderr)) { started = true; child.kill('SIGTERM'); }
        });
        child.stdout.resume();
        const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
        child.on('close', (code, signal) => { clearTimeout(timer); resolve({ started, code, signal, stderr }); });
    });
}

/** Peeks every job of `jobs` ({id, body}); returns the set of ids found (bodies checked). */
async function present(srv, jobs) {
    const c = await Client.connect(srv.port);
    try {
        await c.send(jobs.map((j) => `peek ${j.id}\r\n`).join(''));
        const found = new Set();
        for (const j of jobs) {
            const r = await c.reply();
            if (r.line === 'NOT_FOUND') continue;
            assert.equal(r.line, `FOUND ${j.id} ${j.body.length}`, `peek ${j.id}`);
            assert.ok(r.body.equals(j.body), `job ${j.id}: body differs`);
            found.add(j.id);
        }
        const st = await c.yaml('stats');
        const total = ['ready', 'delayed', 'buried', 'reserved'].reduce((n, k) => n + Number(st.get(`current-jobs-${k}`)), 0);
        assert.equal(total, found.size, 'stats: the server holds other jobs than those found');
        return found;
    } finally {
        c.close();
    }
}

async function putJobs(srv, bodies) {
    const c = await Client.connect(srv.port);
    try {
        const jobs = [];
        for (const body of bodies) {
            await c.send(Buffer.concat([Buffer.from(`put 7 0 60 ${body.length}\r\n`), body, Buffer.from('\r\n')]));
            const line = await c.line();
            const m = /^INSERTED (\d+)$/.exec(line);
            assert.ok(m, `put: ${line}`);
            jobs.push({ id: Number(m[1]), body });
        }
        return { c, jobs };
    } catch (e) {
        c.close();
        throw e;
    }
}

const body = (i, n) => Buffer.concat([Buffer.from(`job-${i}:`), Buffer.from(Array.from({ length: n }, (_, k) => (i * 37 + k * 101) & 0xff))]);

/** Starts docketd on dir, stops it, returns its stderr; `check(srv)` runs in between. */
async function withServer(dir, extra, check) {
    const srv = await startServer({ args: ['-b', dir, ...extra] });
    try {
        await check(srv);
    } finally {
        await srv.stop();
    }
    return srv.stderr;
}

// ---- a single-segment log ending in: DELETE J0, JOB J6, DELETE J1, JOB J7 ----------------
let base; // {dir, seg, recs, jobs}
async function singleSegmentLog() {
    if (base) return base;
    const dir = path.join(tmpDir('docket-torn-'), 'log');
    const srv = await startServer({ args: ['-b', dir] });
    let jobs;
    try {
        const { c, jobs: js } = await putJobs(srv, [0, 1, 2, 3, 4, 5].map((i) => body(i, 5 + i * 3)));
        jobs = js;
        await c.send(`delete ${jobs[0].id}\r\n`);
        await c.expect('DELETED\r\n');
        const more = await putJobs(srv, [body(6, 9)]);
        more.c.close();
        await c.send(`delete ${jobs[1].id}\r\n`);
        await c.expect('DELETED\r\n');
        const last = await putJobs(srv, [body(7, 0)]);
        last.c.close();
        jobs.push(more.jobs[0], last.jobs[0]);
        c.close();
    } finally {
        await srv.stop();
    }
    const segs = segments(dir);
    assert.equal(segs.length, 1, `one segment expected, found ${segs.map((s) => s.name)}`);
    const recs = parseSegment(segs[0].file);
    const tail = recs.slice(-4).map((r) => [r.type, r.id]);
    assert.deepEqual(tail, [[T_DELETE, jobs[0].id], [T_JOB, jobs[6].id], [T_DELETE, jobs[1].id], [T_JOB, jobs[7].id]],
        'the last records are DELETE J0, JOB J6, DELETE J1, JOB J7');
    base = { dir, seg: segs[0], recs, jobs };
    return base;
}

function expectedAfterCut(recs, jobs, cut) {
    const live = new Set();
    for (const r of recs) {
        if (r.end > cut) break;
        if (r.type === T_JOB) live.add(r.id);
        if (r.type === T_DELETE) live.delete(r.id);
    }
    return new Set(jobs.map((j) => j.id).filter((id) => live.has(id)));
}

test('the last segment cut at every byte of its last 4 records: starts, warns with file and offset, keeps the whole records', { timeout: 300000, skip: SKIP }, async () => {
    const { dir, seg, recs, jobs } = await singleSegmentLog();
    const first = recs[recs.length - 4].off;
    const size = fs.statSync(seg.file).size;
    const starts = recs.map((r) => r.off);
    const root = tmpDir('docket-torn-sweep-');
    const cuts = [];
    for (let o = first; o <= size; o++) cuts.push(o);
    const failures = [];
    let next = 0;
    async function runCut(cut) {
        const copy = path.join(root, `cut-${cut}`);
        copyDir(dir, copy);
        const file = path.join(copy, seg.name);
        fs.truncateSync(file, cut);
        const recStart = Math.max(...starts.filter((s) => s <= cut));
        const boundary = starts.includes(cut) || cut === size;
        const want = expectedAfterCut(recs, jobs, cut);
        let found;
        const stderr = await withServer(copy, [], async (srv) => { found = await present(srv, jobs); });
        const warnRe = new RegExp(`${esc(file)} at offset ${recStart}: torn record; truncating the ${cut - recStart} bytes from there`);
        if (boundary) {
            assert.doesNotMatch(stderr, /: (?:torn|corrupt) record|truncating|segment header/, `cut ${cut} between records: no warning`);
        } else {
            assert.match(stderr, warnRe, `cut ${cut}: warning naming the file and offset ${recStart}`);
        }
        assert.deepEqual([...found].sort((a, b) => a - b), [...want].sort((a, b) => a - b), `cut ${cut}: jobs present`);
        assert.equal(fs.statSync(file).size, boundary ? cut : recStart, `cut ${cut}: file truncated at the damage`);
        fs.rmSync(copy, { recursive: true, force: true });
    }
    await Promise.all(Array.from({ length: POOL }, async () => {
        while (next < cuts.length) {
            const cut = cuts[next++];
            try { await runCut(cut); } catch (e) { failures.push(`cut at ${cut}: ${e.message}`); }
        }
    }));
    assert.deepEqual(failures, [], `${failures.length} of ${cuts.length} cuts failed:\n${failures.slice(0, 5).join('\n')}`);
});

test('a flipped bit in a record of the last segment: truncated there with a warning, starts', { timeout: 60000, skip: SKIP }, async () => {
    const { dir, seg, recs, jobs } = await singleSegmentLog();
    const j6 = recs[recs.length - 3]; // JOB J6, followed by DELETE J1 and JOB J7
    // Bits in the length, the checksum, the type, the sequence number and the body.
    const spots = [[j6.off, 0x01], [j6.off + 5, 0x80], [j6.off + 8, 0x04], [j6.off + 12, 0x10], [j6.end - 2, 0x20]];
    for (const [at, bit] of spots) {
        const copy = path.join(tmpDir('docket-torn-flip-'), 'log');
        copyDir(dir, copy);
        const file = path.join(copy, seg.name);
        const b = fs.readFileSync(file);
        b[at] ^= bit;
        fs.writeFileSync(file, b);
        let found;
        const stderr = await withServer(copy, [], async (srv) => { found = await present(srv, jobs); });
        assert.match(stderr, new RegExp(`${esc(file)} at offset ${j6.off}: (corrupt|torn) record; truncating`), `bit ${bit} at ${at}`);
        // J6, DELETE J1 and J7 are gone: J1 is back, J6 and J7 never were.
        const want = expectedAfterCut(recs, jobs, j6.off);
        assert.deepEqual([...found].sort((a, b2) => a - b2), [...want].sort((a, b2) => a - b2), `bit ${bit} at ${at}: jobs present`);
        assert.ok(found.has(jobs[1].id) && !found.has(jobs[6].id) && !found.has(jobs[7].id));
    }
});

// ---- a log of several segments ------------------------------------------------------
let multi; // {dir, segs: [{name, num, file, recs}], jobs, where: id -> {seg index, off}}
async function multiSegmentLog() {
    if (multi) return multi;
    const dir = path.join(tmpDir('docket-torn-multi-'), 'log');
    const srv = await startServer({ args: ['-b', dir, '-s', '2048'] });
    let jobs;
    try {
        const r = await putJobs(srv, Array.from({ length: 24 }, (_, i) => body(100 + i, 300)));
        r.c.close();
        jobs = r.jobs;
    } finally {
        await srv.stop();
    }
    const segs = segments(dir).map((s) => ({ ...s, recs: parseSegment(s.file) }));
    assert.ok(segs.length >= 4, `several segments expected, found ${segs.length}`);
    const where = new Map();
    segs.forEach((s, i) => { for (const r of s.recs) if (r.type === T_JOB) where.set(r.id, { seg: i, off: r.off }); });
    for (const j of jobs) assert.ok(where.has(j.id), `job ${j.id} has a JOB record`);
    multi = { dir, segs, jobs, where };
    return multi;
}

test('a damaged record before the last segment: exit 1 naming file and offset; --repair starts', { timeout: 60000, skip: SKIP }, async () => {
    const { dir, segs, jobs, where } = await multiSegmentLog();
    const victim = 1; // the second segment
    const rec = segs[victim].recs.find((r) => r.type === T_JOB);
    const copy = path.join(tmpDir('docket-torn-mid-'), 'log');
    copyDir(dir, copy);
    const file = path.join(copy, segs[victim].name);
    const b = fs.readFileSync(file);
    b[rec.end - 3] ^= 0xff; // a body byte
    fs.writeFileSync(file, b);
    const before = fs.readFileSync(file);

    const r = await tryStart(['-b', copy]);
    assert.ok(!r.started, `docketd started:\n${r.stderr}`);
    assert.equal(r.code, 1, `exit status (signal ${r.signal}); stderr:\n${r.stderr}`);
    assert.match(r.stderr, new RegExp(`${esc(file)} at offset ${rec.off}: corrupt record`), r.stderr);
    assert.ok(fs.readFileSync(file).equals(before), 'a refused start leaves the file alone');
    assert.deepEqual(segments(copy).map((s) => s.name), segs.map((s) => s.name), 'and every segment in place');

    let found;
    const stderr = await withServer(copy, ['--repair'], async (srv) => { found = await present(srv, jobs); });
    assert.match(stderr, new RegExp(`${esc(file)} at offset ${rec.off}: corrupt record; truncating`));
    // Lost: the jobs whose records were in that segment from the damage on.
    const want = jobs.filter((j) => { const w = where.get(j.id); return !(w.seg === victim && w.off >= rec.off); }).map((j) => j.id);
    assert.deepEqual([...found].sort((x, y) => x - y), want, 'jobs present after --repair');
    assert.ok(want.length < jobs.length);
});

test('a missing middle segment: refuses to start; --repair accepts the gap', { timeout: 60000, skip: SKIP }, async () => {
    const { dir, segs, jobs, where } = await multiSegmentLog();
    const victim = 2;
    const copy = path.join(tmpDir('docket-torn-gap-'), 'log');
    copyDir(dir, copy);
    fs.rmSync(path.join(copy, segs[victim].name));
    const r = await tryStart(['-b', copy]);
    assert.ok(!r.started, `docketd started:\n${r.stderr}`);
    assert.equal(r.code, 1, `exit status (signal ${r.signal}); stderr:\n${r.stderr}`);
    const nextFile = path.join(copy, segs[victim + 1].name);
    assert.match(r.stderr, new RegExp(`${esc(nextFile)} at offset ${HEADER}: record \\d+ follows record \\d+: a segment is missing`), r.stderr);
    assert.equal(segments(copy).length, segs.length - 1, 'a refused start removes nothing');

    let found;
    await withServer(copy, ['--repair'], async (srv) => { found = await present(srv, jobs); });
    const want = jobs.filter((j) => where.get(j.id).seg !== victim).map((j) => j.id);
    assert.deepEqual([...found].sort((x, y) => x - y), want, 'jobs present after --repair');
});

test('a trailing file shorter than a header, or a header-sized one with a bad header: removed, starts', { timeout: 60000, skip: SKIP }, async () => {
    const { dir, segs, jobs } = await multiSegmentLog();
    const lastNum = segs[segs.length - 1].num;
    const header = fs.readFileSync(segs[segs.length - 1].file).subarray(0, HEADER);
    const nextHeader = Buffer.from(header);
    nextHeader.writeBigUInt64LE(BigInt(lastNum + 1), 16);
    const cases = [
        ['empty', Buffer.alloc(0)],
        ['1 byte', nextHeader.subarray(0, 1)],
        ['17 bytes', nextHeader.subarray(0, 17)],
        ['31 bytes', nextHeader.subarray(0, 31)],
        ['32 bytes, bad checksum', nextHeader],
        ['32 zero bytes', Buffer.alloc(32)],
    ];
    for (const [what, bytes] of cases) {
        const copy = path.join(tmpDir('docket-torn-trail-'), 'log');
        copyDir(dir, copy);
        const extra = path.join(copy, segName(lastNum + 1));
        fs.writeFileSync(extra, bytes);
        let found;
        const stderr = await withServer(copy, [], async (srv) => { found = await present(srv, jobs); });
        assert.match(stderr, new RegExp(`${esc(extra)}: (incomplete|corrupt) segment header; removing the file`), `${what}: warning`);
        assert.equal(found.size, jobs.length, `${what}: every job present`);
        for (const s of segments(copy)) {
            const b = fs.readFileSync(s.file);
            assert.ok(b.length >= HEADER && b.subarray(0, 8).toString('latin1') === 'DOCKETWL', `${what}: ${s.name} is a real segment (${b.length} bytes)`);
        }
    }
});

test('after --repair, a plain restart starts and keeps the same jobs', { timeout: 60000, skip: SKIP }, async () => {
    const { dir, segs, jobs } = await multiSegmentLog();
    const damage = {
        'a corrupt record in the second segment': (copy) => {
            const rec = segs[1].recs.find((r) => r.type === T_JOB);
            const file = path.join(copy, segs[1].name);
            const b = fs.readFileSync(file);
            b[rec.end - 3] ^= 0xff;
            fs.writeFileSync(file, b);
        },
        'a missing third segment': (copy) => fs.rmSync(path.join(copy, segs[2].name)),
    };
    const problems = [];
    for (const [what, hurt] of Object.entries(damage)) {
        const copy = path.join(tmpDir('docket-torn-repaired-'), 'log');
        copyDir(dir, copy);
        hurt(copy);
        let kept;
        await withServer(copy, ['--repair'], async (srv) => { kept = [...(await present(srv, jobs))].sort((x, y) => x - y); });
        const r = await tryStart(['-b', copy]);
        if (!r.started) {
            problems.push(`${what}: after one start with --repair, a start without it still exits 1: ${r.stderr.trim().split('\n').pop()}`);
            continue;
        }
        await withServer(copy, [], async (srv) => {
            assert.deepEqual([...(await present(srv, jobs))].sort((x, y) => x - y), kept, `${what}: the same jobs`);
        });
    }
    assert.deepEqual(problems, [], problems.join('\n'));
});
