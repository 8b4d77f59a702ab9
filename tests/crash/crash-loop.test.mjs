// crash-loop.test.mjs -- kill -9 docketd under load, again and again, and check that
// every acknowledged change survived (docs/storage.md, DESIGN.md §4).
//
// Each iteration starts docketd on the same log directory (-b DIR, fsync=always,
// -s 65536 so segments rotate and compaction runs), checks the recovered state
// against a model of what was acknowledged, then runs PRODUCERS producer and
// WORKERS worker connections (put, reserve, delete, release, bury, kick-job)
// for a random 20-300 ms and SIGKILLs the server. Every 10th iteration first lets
// the clients finish their requests (a server that stops answering fails it).
//
// The model. For each job: the state last observed at a restart (its "base", or
// none for a job put since) and the operations on it since then, in the order the
// server applied them. Requests are recorded when sent and reserves when their
// RESERVED arrives; only one connection may act on a job at a time (a worker on the
// job it reserved; a producer, under a lock, on a job whose BURIED or delaying
// reply it has seen), so this order is the server's. A reply that promises
// durability (INSERTED, DELETED, RELEASED, BURIED, KICKED) means the log holds
// that record and everything before it. After a crash the job must therefore
// look like the base plus some prefix of its operations that includes the last
// acknowledged one, plus possibly one reserve whose reply never arrived; a job
// reserved at the crash is ready again. "Look like" covers existence, body (byte
// for byte), tube, ttr, priority, delay, state (a delayed job's deadline too) and
// the counters reserves/timeouts/releases/buries/kicks. Puts whose reply never
// arrived are found by scanning the ids nobody saw; anything else on the server is
// an error (the per-state job counts must match the model). A new put after a
// restart must get an id above every id ever seen.
//
// Environment: CRASH_ITERATIONS (default 200), CRASH_SEED (default printed in the
// output), DOCKETD (server under test). On failure the request/reply log of the
// last iterations is written to a file named in the error.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, Client, DOCKETD, sleep, binVersion } from '../integration/harness.mjs';

// docketd's log (-b with its format, --fsync, --memory, --repair): not beanstalkd's.
const SKIP = /^docketd /.test(binVersion(DOCKETD)) ? false : `docketd only (${binVersion(DOCKETD) || DOCKETD})`;

const ITERATIONS = Number(process.env.CRASH_ITERATIONS || 200);
const SEED = process.env.CRASH_SEED !== undefined ? Number(process.env.CRASH_SEED) >>> 0 : 20240617;
const SEGMENT = 65536;
const PRODUCERS = 4;
const WORKERS = 2;
const LIVE_MAX = 150;          // producers stop putting above this many jobs
const LONG = 3600;             // s: a delay that cannot end during the test
const QUIESCE_EVERY = 10;      // every Nth iteration lets requests finish before the kill
const READ_TIMEOUT = 10000;    // ms for one reply
const SLACK = 1500;            // ms of tolerance on delayed-job deadlines
const TUBES = ['crash-a', 'crash-b'];
const PRIS = [0, 1, 2, 100, 1023, 1024, 65536, 2 ** 31, 2 ** 32 - 1];

// ---- seeded randomness (sfc32) ---------------------------------------------------
function rngFrom(...seeds) {
    let a = 0x9e3779b9, b = 0x243f6a88, c = 0xb7e15162, d = 1;
    for (const s of seeds) { a ^= s >>> 0; b ^= Math.imul(s >>> 0, 0x85ebca6b); c ^= Math.imul(s >>> 0, 0xc2b2ae35); }
    const next = () => {
        a >>>= 0; b >>>= 0; c >>>= 0; d >>>= 0;
        const t = (a + b | 0) + d | 0;
        d = d + 1 | 0;
        a = b ^ (b >>> 9);
        b = c + (c << 3) | 0;
        c = (c << 21) | (c >>> 11);
        c = c + t | 0;
        return (t >>> 0) / 4294967296;
    };
    for (let i = 0; i < 20; i++) next();
    const r = () => next();
    r.int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)); // inclusive
    r.pick = (arr) => arr[Math.floor(next() * arr.length)];
    r.bytes = (n) => { const b = Buffer.alloc(n); for (let i = 0; i < n; i++) b[i] = Math.floor(next() * 256); return b; };
    return r;
}

// ---- the model ---------------------------------------------------------------------
// state: {exists: false} or {exists: true, state, pri, delay, c: {reserves, timeouts,
// releases, buries, kicks}, dl: [lo, hi] (ms, wall clock: bounds on a delayed job's deadline)}

const zeroCounters = () => ({ reserves: 0, timeouts: 0, releases: 0, buries: 0, kicks: 0 });
const clone = (st) => (st.exists ? { ...st, c: { ...st.c }, dl: st.dl && [...st.dl] } : { exists: false });

/** Applies one operation to a state. `killAt` bounds when an unacknowledged one could have run. */
function applyOp(st, ev, killAt) {
    const end = ev.ackAt ?? killAt ?? Date.now();
    switch (ev.kind) {
    case 'put':
        return {
            exists: true, state: ev.delay > 0 ? 'delayed' : 'ready', pri: ev.pri, delay: ev.delay,
            c: zeroCounters(), dl: ev.delay > 0 ? [ev.sentAt + ev.delay * 1000, end + ev.delay * 1000] : null,
        };
    case 'reserve': st.state = 'reserved'; st.c.reserves++; st.dl = null; return st;
    case 'release':
        st.state = ev.delay > 0 ? 'delayed' : 'ready'; st.pri = ev.pri; st.delay = ev.delay; st.c.releases++;
        st.dl = ev.delay > 0 ? [ev.sentAt + ev.delay * 1000, end + ev.delay * 1000] : null;
        return st;
    case 'bury': st.state = 'buried'; st.pri = ev.pri; st.c.buries++; st.dl = null; return st;
    case 'kick': st.state = 'ready'; st.c.kicks++; st.dl = null; return st;
    case 'delete': return { exists: false };
    default: throw new Error(`unknown op ${ev.kind}`);
    }
}

class Model {
    constructor() {
        this.jobs = new Map();     // id -> job
        this.pending = new Map();  // body (latin1) -> put whose INSERTED has not arrived
        this.gone = [];            // ids that must never be found again
        this.goneNew = [];         // of those, the ones that went in the last iteration
        this.maxSeen = 0;          // highest id ever seen in any reply
        this.maxAcked = 0;         // highest id of a job known durable (INSERTED, or found after a restart)
        this.unaccounted = new Set(); // ids below maxSeen nobody saw (puts whose reply was lost)
        this.violations = [];      // failures that do not stop the loop: reported at the end
        this.reservedOnly = new Map(); // id -> {body, conn, at}: seen in RESERVED before its INSERTED (this iteration)
        this.killAt = null;
    }

    /** Records that id was seen in a reply; false if it is a reuse of an id already known. */
    noteId(id) {
        if (id > this.maxSeen) {
            for (let i = this.maxSeen + 1; i < id; i++) this.unaccounted.add(i);
            this.maxSeen = id;
            return true;
        }
        return this.unaccounted.delete(id);
    }

    /** The state after the base and the first n operations. */
    stateAfter(job, n) {
        let st = job.base ? clone(job.base) : { exists: false };
        for (let i = 0; i < n; i++) st = applyOp(st, job.events[i], this.killAt);
        return st;
    }

    full(job) { return this.stateAfter(job, job.events.length); }

    liveCount() {
        let n = this.pending.size;
        for (const j of this.jobs.values()) if (this.full(j).exists) n++;
        return n;
    }
}

function describeJob(model, job) {
    const t0 = model.t0 ?? 0;
    const base = job.base ? JSON.stringify(job.base, (k, v) => (k === 'dl' && v ? v.map((x) => x - t0) : v)) : 'none (put after the last restart)';
    const evs = job.events.map((e, i) => `    #${i} ${e.kind}${e.pri !== undefined ? ` pri=${e.pri}` : ''}${e.delay !== undefined ? ` delay=${e.delay}` : ''} by ${e.conn} sent@${e.sentAt - t0}${e.ackAt ? ` acked@${e.ackAt - t0}` : ' (no durable ack)'}`);
    return `job ${job.id} tube=${job.tube} ttr=${job.ttr} body=${job.body.length} bytes ${JSON.stringify(job.body.subarray(0, 24).toString('latin1'))}\n  base: ${base}\n  ops since:\n${evs.join('\n') || '    (none)'}`;
}

/** Why observation obs does not fit expected state st (null if it fits). */
function mismatch(job, st, obs) {
    if (!st.exists) {
        if (obs.found || obs.stats) return `expected no job, found one (state ${obs.stats?.get('state')})`;
        return null;
    }
    if (!obs.found) return 'expected the job, peek says NOT_FOUND';
    if (!obs.stats) return 'peek found it, stats-job says NOT_FOUND';
    if (!obs.body.equals(job.body)) return `body differs: got ${obs.body.length} bytes ${JSON.stringify(obs.body.subarray(0, 24).toString('latin1'))}`;
    const s = obs.stats;
    const want = {
        tube: `"${job.tube}"`, ttr: String(job.ttr), pri: String(st.pri >>> 0), delay: String(st.delay),
        reserves: String(st.c.reserves), timeouts: String(st.c.timeouts), releases: String(st.c.releases),
        buries: String(st.c.buries), kicks: String(st.c.kicks),
    };
    for (const [k, v] of Object.entries(want)) if (s.get(k) !== v) return `${k}: expected ${v}, got ${s.get(k)}`;
    const state = s.get('state');
    const expState = st.state === 'reserved' ? 'ready' : st.state; // reservations do not survive a restart
    if (expState === 'delayed') {
        const [lo, hi] = st.dl;
        if (state === 'ready') {
            if (obs.t1 < lo - SLACK) return `expected delayed (deadline >= ${lo - obs.t1} ms from now), got ready`;
        } else if (state === 'delayed') {
            const tl = Number(s.get('time-left'));
            const dlo = obs.t0 + tl * 1000;
            const dhi = obs.t1 + (tl + 1) * 1000;
            if (dhi < lo - SLACK || dlo > hi + SLACK) {
                return `delayed with time-left ${tl} s: deadline in [${dlo - obs.t1}, ${dhi - obs.t1}] ms from now, expected [${lo - obs.t1}, ${hi - obs.t1}]`;
            }
        } else return `state: expected delayed, got ${state}`;
    } else if (state !== expState) return `state: expected ${expState}, got ${state}`;
    return null;
}

/** The state observation obs shows, as a new base. */
function baseFrom(obs) {
    const s = obs.stats;
    const state = s.get('state');
    const st = {
        exists: true, state, pri: Number(s.get('pri')), delay: Number(s.get('delay')),
        c: {
            reserves: Number(s.get('reserves')), timeouts: Number(s.get('timeouts')), releases: Number(s.get('releases')),
            buries: Number(s.get('buries')), kicks: Number(s.get('kicks')),
        },
        dl: null,
    };
    if (state === 'delayed') {
        const tl = Number(s.get('time-left'));
        st.dl = [obs.t0 + tl * 1000, obs.t1 + (tl + 1) * 1000];
    }
    return st;
}

/**
 * The outcomes the crash allows for job, as [label, state]: the base plus a
 * prefix of its operations that includes every acknowledged one, and (after all
 * of them) one more reserve whose RESERVED never arrived.
 */
function outcomes(model, job) {
    let k = 0; // operations that must have taken effect
    job.events.forEach((e, i) => { if (e.ackAt) k = i + 1; });
    const out = [];
    for (let n = k; n <= job.events.length; n++) {
        const st = model.stateAfter(job, n);
        out.push([`base+${n} ops`, st]);
        if (n === job.events.length && st.exists && (st.state === 'ready' || (st.state === 'delayed' && st.delay < LONG))) {
            const ph = clone(st);
            ph.state = 'ready'; ph.c.reserves++; ph.dl = null;
            out.push([`base+${n} ops+unseen reserve`, ph]);
        }
    }
    return out;
}

// ---- talking to the server --------------------------------------------------------

class Failure extends Error {}

function makeCtx(model, iter) {
    return { model, iter, stop: false, killed: false, anomalies: [], log: [], counts: { put: 0, reserve: 0, delete: 0, release: 0, bury: 0, kick: 0 } };
}

function logLine(ctx, who, dir, text) {
    ctx.log.push(`${String(Date.now() - (ctx.model.t0 ?? 0)).padStart(7)} it${ctx.iter} ${who} ${dir} ${text}`);
}

function anomaly(ctx, msg) {
    ctx.anomalies.push(`iteration ${ctx.iter}: ${msg}`);
    logLine(ctx, 'CHECK', '!!', msg);
}

/** One request, one reply. Throws when the connection is gone (or the reply late). */
async function rpc(ctx, actor, line, body) {
    const tag = body ? ` [${body.length} bytes ${JSON.stringify(body.subarray(0, 20).toString('latin1'))}]` : '';
    logLine(ctx, actor.name, '>', line + tag);
    const bytes = body ? Buffer.concat([Buffer.from(`${line}\r\n`), body, Buffer.from('\r\n')]) : Buffer.from(`${line}\r\n`);
    actor.c.send(bytes).catch(() => {});
    let r;
    try {
        r = await actor.c.reply({ timeout: READ_TIMEOUT });
    } catch (e) {
        logLine(ctx, actor.name, 'x', e.message.split('\n')[0]);
        if (!ctx.killed) anomaly(ctx, `${actor.name}: no reply to ${JSON.stringify(line)} while the server was up: ${e.message.split('\n')[0]}`);
        throw e;
    }
    logLine(ctx, actor.name, '<', r.line + (r.body ? ` [${r.body.length} bytes]` : ''));
    return r;
}

function randomBody(rng, tag) {
    const head = Buffer.from(`${tag}:`);
    const n = rng() < 0.1 ? rng.int(0, 8) : rng.int(16, 900);
    return Buffer.concat([head, rng.bytes(n)]);
}

function randomDelay(rng) {
    const r = rng();
    return r < 0.7 ? 0 : r < 0.85 ? 1 : LONG;
}

async function producer(ctx, actor, rng) {
    const { model } = ctx;
    await rpc(ctx, actor, `use ${actor.tube}`);
    let seq = 0;
    while (!ctx.stop) {
        const live = model.liveCount();
        if (rng() < 0.25 || live >= LIVE_MAX) {
            // kick-job or delete a job that is buried or waits for a long delay
            const cands = [];
            for (const j of model.jobs.values()) {
                if (j.lock) continue;
                const last = j.events[j.events.length - 1];
                if (last && !last.ackAt) continue;
                const st = model.full(j);
                if (st.exists && (st.state === 'buried' || (st.state === 'delayed' && st.delay >= LONG))) cands.push(j);
            }
            if (cands.length) {
                const j = rng.pick(cands);
                const kind = rng() < (live >= LIVE_MAX ? 0.3 : 0.6) ? 'kick' : 'delete';
                const ev = { kind, conn: actor.name, sentAt: Date.now() };
                j.lock = actor.name;
                j.events.push(ev);
                const r = await rpc(ctx, actor, kind === 'kick' ? `kick-job ${j.id}` : `delete ${j.id}`);
                const want = kind === 'kick' ? 'KICKED' : 'DELETED';
                if (r.line !== want) { anomaly(ctx, `${kind} of job ${j.id}: expected ${want}, got ${r.line}\n${describeJob(model, j)}`); return; }
                ev.ackAt = Date.now();
                j.lock = null;
                ctx.counts[kind]++;
                continue;
            }
            if (live >= LIVE_MAX) { await sleep(5); continue; }
        }
        seq++;
        const body = randomBody(rng, `${actor.name}.${ctx.iter}.${seq}`);
        const key = body.toString('latin1');
        const ev = { kind: 'put', pri: rng.pick(PRIS), delay: randomDelay(rng), conn: actor.name, sentAt: Date.now() };
        const ttr = rng.int(30, 300);
        const pend = { body, key, tube: actor.tube, ttr, ev, job: null };
        model.pending.set(key, pend);
        const r = await rpc(ctx, actor, `put ${ev.pri} ${ev.delay} ${ttr} ${body.length}`, body);
        const m = /^INSERTED (\d+)$/.exec(r.line);
        if (!m) { anomaly(ctx, `put: expected INSERTED, got ${r.line}`); return; }
        const id = Number(m[1]);
        ev.ackAt = Date.now();
        model.maxAcked = Math.max(model.maxAcked, id);
        model.pending.delete(key);
        ctx.counts.put++;
        if (pend.job) {
            if (pend.job.id !== id) anomaly(ctx, `put answered INSERTED ${id}, but a worker reserved its body as job ${pend.job.id}`);
            continue;
        }
        if (model.jobs.has(id) || !model.noteId(id)) {
            anomaly(ctx, `put answered INSERTED ${id}: that id was already seen${model.jobs.has(id) ? `\n${describeJob(model, model.jobs.get(id))}` : ''}`);
            return;
        }
        model.jobs.set(id, { id, body, tube: actor.tube, ttr, base: null, events: [ev], lock: null });
    }
}

async function worker(ctx, actor, rng) {
    const { model } = ctx;
    await rpc(ctx, actor, `watch ${TUBES[0]}`);
    await rpc(ctx, actor, `watch ${TUBES[1]}`);
    await rpc(ctx, actor, 'ignore default');
    while (!ctx.stop) {
        const r = await rpc(ctx, actor, 'reserve-with-timeout 0');
        if (r.line === 'TIMED_OUT') { await sleep(2); continue; }
        const m = /^RESERVED (\d+) \d+$/.exec(r.line);
        if (!m) { anomaly(ctx, `reserve: unexpected ${r.line}`); return; }
        const id = Number(m[1]);
        ctx.counts.reserve++;
        let job = model.jobs.get(id);
        if (!job) {
            const pend = model.pending.get(r.body.toString('latin1'));
            if (!pend || pend.job) { anomaly(ctx, `RESERVED ${id}: a job nobody put (${r.body.length} bytes ${JSON.stringify(r.body.subarray(0, 24).toString('latin1'))})`); return; }
            if (!model.noteId(id)) { anomaly(ctx, `RESERVED ${id}: a pending put got an id that was already seen`); return; }
            job = { id, body: pend.body, tube: pend.tube, ttr: pend.ttr, base: null, events: [pend.ev], lock: null };
            pend.job = job;
            model.reservedOnly.set(id, { body: pend.body, conn: actor.name, at: Date.now() });
            model.jobs.set(id, job);
        } else {
            if (!job.body.equals(r.body)) { anomaly(ctx, `RESERVED ${id}: body differs from the job's\n${describeJob(model, job)}`); return; }
            const st = model.full(job);
            if (!st.exists || !(st.state === 'ready' || (st.state === 'delayed' && st.delay < LONG))) {
                anomaly(ctx, `RESERVED ${id}, but the job is ${st.exists ? st.state : 'gone'}\n${describeJob(model, job)}`);
                return;
            }
        }
        job.events.push({ kind: 'reserve', conn: actor.name, sentAt: Date.now() });
        const x = rng();
        let ev;
        let line;
        let want;
        if (x < 0.4) {
            ev = { kind: 'delete' }; line = `delete ${id}`; want = 'DELETED';
        } else if (x < 0.7) {
            ev = { kind: 'release', pri: rng.pick(PRIS), delay: randomDelay(rng) };
            line = `release ${id} ${ev.pri} ${ev.delay}`; want = 'RELEASED';
        } else {
            ev = { kind: 'bury', pri: rng.pick(PRIS) }; line = `bury ${id} ${ev.pri}`; want = 'BURIED';
        }
        ev.conn = actor.name;
        ev.sentAt = Date.now();
        job.events.push(ev);
        const a = await rpc(ctx, actor, line);
        if (a.line !== want) { anomaly(ctx, `${line}: expected ${want}, got ${a.line}\n${describeJob(model, job)}`); return; }
        ev.ackAt = Date.now();
        ctx.counts[ev.kind]++;
    }
}

// ---- checking a restarted server ------------------------------------------------------

/** Sends peek + stats-job for every id in one batch; returns id -> observation. */
async function observe(c, ids) {
    const out = new Map();
    const CHUNK = 500;
    for (let i = 0; i < ids.length; i += CHUNK) {
        const part = ids.slice(i, i + CHUNK);
        const t0 = Date.now();
        await c.send(part.map((id) => `peek ${id}\r\nstats-job ${id}\r\n`).join(''));
        const got = [];
        for (const id of part) {
            const p = await c.reply({ timeout: READ_TIMEOUT });
            const s = await c.reply({ timeout: READ_TIMEOUT });
            let found = false;
            let body = null;
            if (p.line.startsWith(`FOUND ${id} `)) { found = true; body = p.body; } else if (p.line !== 'NOT_FOUND') throw new Failure(`peek ${id}: ${p.line}`);
            let stats = null;
            if (s.line.startsWith('OK ')) {
                stats = new Map(s.body.toString('latin1').split('\n').slice(1).filter(Boolean).map((l) => { const k = l.indexOf(': '); return [l.slice(0, k), l.slice(k + 2)]; }));
                if (stats.get('id') !== String(id)) throw new Failure(`stats-job ${id} answered for job ${stats.get('id')}`);
            } else if (s.line !== 'NOT_FOUND') throw new Failure(`stats-job ${id}: ${s.line}`);
            got.push([id, { found, body, stats }]);
        }
        const t1 = Date.now();
        for (const [id, o] of got) out.set(id, { ...o, t0, t1 });
    }
    return out;
}

/**
 * Checks the restarted server against the model (throws Failure), makes what it
 * shows the new base, and puts one job to check that ids went on growing. Counts
 * in tally the operations without a durable ack that took effect and that did not.
 */
async function verify(ctx, srv, rng, tally) {
    const { model } = ctx;
    const c = await Client.connect(srv.port);
    try {
        const unlinked = [...model.pending.values()].filter((p) => !p.job);
        const scan = [...model.unaccounted];
        for (let i = 1; i <= unlinked.length + 2; i++) scan.push(model.maxSeen + i);
        const sample = [...model.goneNew];
        for (let i = 0; i < 100 && model.gone.length; i++) sample.push(rng.pick(model.gone));
        const ids = [...new Set([...model.jobs.keys(), ...scan, ...sample])];
        const obs = await observe(c, ids);

        // Puts whose INSERTED never arrived and that no worker reserved: found by body.
        for (const id of scan) {
            const o = obs.get(id);
            if (o.found || o.stats) {
                const pend = unlinked.find((p) => o.found && p.body.equals(o.body));
                if (!pend) throw new Failure(`job ${id} exists but matches no put that was sent (${o.found ? `${o.body.length} bytes ${JSON.stringify(o.body.subarray(0, 24).toString('latin1'))}` : 'peek NOT_FOUND'})`);
                pend.job = { id, body: pend.body, tube: pend.tube, ttr: pend.ttr, base: null, events: [pend.ev], lock: null };
                model.jobs.set(id, pend.job);
                model.noteId(id);
            } else if (id <= model.maxSeen) {
                model.gone.push(id);
            }
        }
        for (const id of sample) {
            const o = obs.get(id);
            if (o.found || o.stats) throw new Failure(`job ${id} was deleted (or lost before it was acknowledged) and is back: state ${o.stats?.get('state')}`);
        }
        model.goneNew = [];
        model.unaccounted.clear();

        const problems = [];
        for (const job of [...model.jobs.values()]) {
            const o = obs.get(job.id);
            const outs = outcomes(model, job);
            const fit = outs.find(([, st]) => mismatch(job, st, o) === null);
            if (!fit) {
                problems.push(`${describeJob(model, job)}\n  observed: ${o.found ? `found, ${o.stats ? [...o.stats].filter(([k]) => !['age', 'file', 'id'].includes(k)).map(([k, v]) => `${k}=${v}`).join(' ') : 'no stats-job'}` : 'NOT_FOUND'}\n  allowed outcomes, and why each does not fit:\n${outs.map(([l, st]) => `    ${l}: ${mismatch(job, st, o)}`).join('\n')}`);
                continue;
            }
            const lastAck = job.events.reduce((k, e, i) => (e.ackAt ? i + 1 : k), 0);
            const applied = Number(/^base\+(\d+)/.exec(fit[0])[1]);
            tally.unackedApplied += applied - lastAck;
            tally.unackedLost += job.events.length - applied;
            tally.unseenReserves += fit[0].endsWith('unseen reserve') ? 1 : 0;
            if (o.found) {
                job.base = baseFrom(o);
                model.maxAcked = Math.max(model.maxAcked, job.id);
            } else {
                model.jobs.delete(job.id);
                model.gone.push(job.id);
                model.goneNew.push(job.id);
            }
            job.events = [];
            job.lock = null;
        }
        if (problems.length) throw new Failure(`${problems.length} job(s) not in a state the acknowledged history allows:\n${problems.slice(0, 5).join('\n\n')}`);
        tally.lostPuts += unlinked.filter((p) => !p.job).length;
        model.pending.clear();

        // Nothing else on the server: its job counts match the model's.
        const st = await c.yaml('stats', { timeout: READ_TIMEOUT });
        const want = { ready: 0, delayed: 0, buried: 0, reserved: 0 };
        for (const j of model.jobs.values()) want[j.base.state]++;
        for (const k of Object.keys(want)) {
            const got = Number(st.get(`current-jobs-${k}`));
            // A delayed job may become ready between stats-job and stats.
            if (k === 'ready' || k === 'delayed') continue;
            if (got !== want[k]) throw new Failure(`stats current-jobs-${k}: ${got}, model ${want[k]}`);
        }
        const total = ['ready', 'delayed', 'buried', 'reserved'].reduce((n, k) => n + Number(st.get(`current-jobs-${k}`)), 0);
        if (total !== model.jobs.size) throw new Failure(`the server holds ${total} jobs, the model ${model.jobs.size}: a job came back or one was lost unnoticed`);

        // Ids only grow: a new put gets an id above every id ever seen.
        const body = randomBody(rng, `check.${ctx.iter}`);
        const pri = rng.pick(PRIS);
        const t0 = Date.now();
        await c.send(`use ${TUBES[0]}\r\nput ${pri} 0 60 ${body.length}\r\n`);
        await c.send(Buffer.concat([body, Buffer.from('\r\n')]));
        const u = await c.line({ timeout: READ_TIMEOUT });
        if (u !== `USING ${TUBES[0]}`) throw new Failure(`use: ${u}`);
        const ins = await c.line({ timeout: READ_TIMEOUT });
        const m = /^INSERTED (\d+)$/.exec(ins);
        if (!m) throw new Failure(`put after restart: ${ins}`);
        const id = Number(m[1]);
        if (id <= model.maxAcked) throw new Failure(`put after restart got id ${id}, but job ${model.maxAcked} had been acknowledged before the crash`);
        if (id <= model.maxSeen) {
            // The id was only seen in a RESERVED reply for a put whose INSERTED never
            // came (the job was rightly lost with the crash), and now names another job.
            // The ids above maxAcked were only seen in RESERVED replies for puts whose
            // INSERTED never came (those jobs were rightly lost with the crash), and
            // now name other jobs.
            const seenIds = [...model.reservedOnly.keys()].filter((i) => i >= id).sort((a, b) => a - b);
            const sid = seenIds.length ? seenIds[0] : model.maxSeen;
            const seen = model.reservedOnly.get(sid);
            model.violations.push({
                iter: ctx.iter, id: sid, tag: seen ? seen.body.subarray(0, seen.body.indexOf(':')).toString('latin1') : null,
                msg: `ids went backwards: the first put after restart got id ${id}, but before the crash a worker had received `
                    + `RESERVED ${sid} (${seen ? `${seen.body.length} bytes ${JSON.stringify(seen.body.subarray(0, 24).toString('latin1'))}, reserved by ${seen.conn} at ${seen.at - model.t0} ms, ` : ''}`
                    + `its put not yet acknowledged; ids seen only that way: ${seenIds.join(', ') || sid}). That job was lost with the crash `
                    + '(allowed: its put was never acknowledged), but its id now names a different job.',
            });
            // Carry on: the lost ids are free again; forget they were seen.
            for (let i = id; i <= model.maxSeen; i++) {
                if (model.jobs.has(i)) continue;
                model.unaccounted.add(i);
                model.gone = model.gone.filter((g) => g !== i);
                model.goneNew = model.goneNew.filter((g) => g !== i);
            }
        }
        model.noteId(id);
        model.maxAcked = Math.max(model.maxAcked, id);
        model.reservedOnly.clear();
        model.jobs.set(id, {
            id, body, tube: TUBES[0], ttr: 60, lock: null, events: [],
            base: { exists: true, state: 'ready', pri, delay: 0, c: zeroCounters(), dl: null, sentAt: t0 },
        });
    } finally {
        c.close();
    }
}

// ---- the loop ----------------------------------------------------------------------------

function dumpLog(lines, iter) {
    const file = path.join(os.tmpdir(), `docket-crash-loop-seed${SEED}-it${iter}-${process.pid}.log`);
    try { fs.writeFileSync(file, lines.join('\n') + '\n'); } catch { return '(could not write the log)'; }
    return file;
}

function excerpt(lines, text) {
    const ids = [...new Set([...text.matchAll(/job (\d+)/g)].map((m) => m[1]))].slice(0, 3);
    if (!ids.length) return lines.slice(-40).join('\n');
    const re = new RegExp(`(?:RESERVED|INSERTED|FOUND|delete|kick-job|release|bury|peek|stats-job) (?:${ids.join('|')})(?: |$)|kill -9`);
    return lines.filter((l) => re.test(l)).slice(-40).join('\n');
}

test(`kill -9 loop: ${ITERATIONS} crashes under load, acknowledged state survives (seed ${SEED})`,
    { timeout: ITERATIONS * 3000 + 120000, skip: SKIP }, async (t) => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'docket-crash-'));
        const dataDir = path.join(dir, 'data');
        const args = ['-b', dataDir, '-s', String(SEGMENT)];
        const model = new Model();
        model.t0 = Date.now();
        const rng = rngFrom(SEED);
        const tally = { unackedApplied: 0, unackedLost: 0, unseenReserves: 0, lostPuts: 0, tornTails: 0, replayed: 0, migrated: 0, oldest: 0, current: 0 };
        const totals = { put: 0, reserve: 0, delete: 0, release: 0, bury: 0, kick: 0 };
        const started = Date.now();
        let srv = null;
        let prevLog = [];
        let ctx = makeCtx(model, 0);
        let violationLog = null;
        let violationExcerpt = '';
        console.log(`# crash-loop: seed ${SEED} (CRASH_SEED), ${ITERATIONS} iterations (CRASH_ITERATIONS), server ${DOCKETD}, dir ${dataDir}`);
        const fail = (e, iter) => {
            const all = [...prevLog, ...ctx.log];
            const file = dumpLog(all, iter);
            const msg = `crash loop failed at iteration ${iter} (CRASH_SEED=${SEED}; request/reply log: ${file})\n${e.message}\n--- log excerpt ---\n${excerpt(all, e.message)}${srv ? `\n--- server stderr (tail) ---\n${srv.stderr.slice(-3000)}` : ''}`;
            return new Failure(msg);
        };
        try {
            for (let iter = 0; iter <= ITERATIONS; iter++) {
                const last = iter === ITERATIONS;
                prevLog = ctx.log.slice(-20000);
                ctx = makeCtx(model, iter);
                srv = await startServer({ args });
                const replayRe = /write-ahead log .*: (\d+) records replayed, (\d+) jobs, in [\d.]+ s/;
                for (let i = 0; i < 100 && !replayRe.test(srv.stderr); i++) await sleep(10); // stderr is a pipe
                const m = replayRe.exec(srv.stderr);
                if (!m) throw fail(new Error(`no "write-ahead log ... records replayed" line on stderr:\n${srv.stderr}`), iter);
                tally.replayed += Number(m[1]);
                tally.tornTails += (srv.stderr.match(/torn record; truncating/g) || []).length;
                if (/: corrupt record|segment header/.test(srv.stderr)) throw fail(new Error(`recovery reported corruption after a kill -9:\n${srv.stderr}`), iter);
                const nviol = model.violations.length;
                try {
                    await verify(ctx, srv, rng, tally);
                } catch (e) {
                    throw fail(e, iter);
                }
                if (model.violations.length > nviol && !violationLog) {
                    const v = model.violations[nviol];
                    violationLog = dumpLog([...prevLog, ...ctx.log], iter);
                    const re = new RegExp(`(?:[^0-9]${v.id}(?:[^0-9]|$)|kill -9${v.tag ? `|"${v.tag.replace(/\./g, '\\.')}:` : ''})`);
                    violationExcerpt = [...prevLog, ...ctx.log].filter((l) => re.test(l)).slice(-12).join('\n');
                }
                const jobsAtStart = model.jobs.size - 1; // before verify's own put
                if (Number(m[2]) !== jobsAtStart) throw fail(new Error(`startup line says ${m[2]} jobs, the model holds ${jobsAtStart}`), iter);
                if (last) break;

                // Load, then the crash.
                const actors = [];
                for (let i = 0; i < PRODUCERS + WORKERS; i++) {
                    const isProd = i < PRODUCERS;
                    const actor = { name: isProd ? `P${i}` : `W${i - PRODUCERS}`, tube: TUBES[i % 2], c: await Client.connect(srv.port) };
                    actor.c.sock.on('error', () => {});
                    const arng = rngFrom(SEED, iter + 1, i + 1);
                    actors.push(actor);
                    actor.done = (isProd ? producer : worker)(ctx, actor, arng).catch((e) => {
                        if (!ctx.killed && !(e instanceof Failure) && !ctx.anomalies.length) anomaly(ctx, `${actor.name}: ${e.stack}`);
                    });
                }
                const quiesce = iter % QUIESCE_EVERY === QUIESCE_EVERY - 1;
                await sleep(rng.int(20, 300));
                if (quiesce) {
                    ctx.stop = true;
                    await Promise.all(actors.map((a) => a.done));
                    // Is the log rotating and compacting? (Only here: it costs a round trip.)
                    const st = await actors[0].c.yaml('stats', { timeout: READ_TIMEOUT }).catch(() => null);
                    if (st) {
                        tally.migrated += Number(st.get('binlog-records-migrated'));
                        tally.oldest = Number(st.get('binlog-oldest-index'));
                        tally.current = Number(st.get('binlog-current-index'));
                    }
                }
                if (!srv.alive) throw fail(new Error(`docketd died by itself: code=${srv.exit.code} signal=${srv.exit.signal}`), iter);
                model.killAt = Date.now();
                ctx.killed = true;
                logLine(ctx, 'TEST', '**', 'kill -9');
                process.kill(srv.pid, 'SIGKILL');
                await srv.exited;
                if (srv.exit.signal !== 'SIGKILL') throw fail(new Error(`docketd exited with code=${srv.exit.code} signal=${srv.exit.signal} before the kill`), iter);
                ctx.stop = true;
                await Promise.all(actors.map((a) => a.done));
                for (const a of actors) a.c.close();
                if (srv.sanitizerReport) throw fail(new Error('sanitizer report on server stderr'), iter);
                if (srv.cwd) fs.rmSync(srv.cwd, { recursive: true, force: true });
                srv = null;
                if (ctx.anomalies.length) throw fail(new Error(ctx.anomalies.slice(0, 5).join('\n')), iter);
                for (const k of Object.keys(totals)) totals[k] += ctx.counts[k];
            }
            // Finally a clean stop (SIGTERM) and one more restart: nothing may change.
            await srv.stop();
            srv = null;
            ctx = makeCtx(model, ITERATIONS + 1);
            srv = await startServer({ args });
            try { await verify(ctx, srv, rng, tally); } catch (e) { throw fail(e, ITERATIONS + 1); }
            await srv.stop();
            srv = null;
        } finally {
            if (srv) {
                try { process.kill(srv.pid, 'SIGKILL'); } catch { /* gone */ }
                await srv.exited;
                if (srv.cwd) fs.rmSync(srv.cwd, { recursive: true, force: true });
            }
            fs.rmSync(dir, { recursive: true, force: true });
        }
        const secs = ((Date.now() - started) / 1000).toFixed(1);
        const summary = `crash-loop: seed ${SEED}, ${ITERATIONS} kills in ${secs} s; acknowledged ops: ${Object.entries(totals).map(([k, v]) => `${k} ${v}`).join(', ')}; `
            + `unacknowledged ops that took effect ${tally.unackedApplied}, that did not ${tally.unackedLost}, unseen reserves ${tally.unseenReserves}, lost unacknowledged puts ${tally.lostPuts}; `
            + `torn tails truncated ${tally.tornTails}; records replayed ${tally.replayed}; jobs at the end ${model.jobs.size}; `
            + `log segments ${tally.oldest}..${tally.current} at the last check, compaction migrated ${tally.migrated} records in the checked runs`;
        console.log(`# ${summary}`);
        t.diagnostic(summary);
        assert.ok(totals.put > ITERATIONS, 'the load did some work');
        if (ITERATIONS >= 50) {
            assert.ok(tally.oldest > 1, 'segments rotated and old ones were deleted');
            assert.ok(tally.migrated > 0, 'compaction moved live jobs forward');
        }
        if (model.violations.length) {
            assert.fail(`${model.violations.length} restart(s) gave out ids that clients had already seen (CRASH_SEED=${SEED}). First, at iteration ${model.violations[0].iter}:\n`
                + `${model.violations[0].msg}\nrequest/reply log: ${violationLog}\n--- log excerpt (before the crash) ---\n${violationExcerpt}\n`
                + `All: ${model.violations.map((v) => `iteration ${v.iter}: id ${v.id}`).join('; ')}`);
        }
    });
