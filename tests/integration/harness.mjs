// harness.mjs -- start real server binaries and talk the beanstalkd protocol to them.
//
// The binary under test is $DOCKETD (default build/docketd, relative to the repo
// root). A server is started on 127.0.0.1 with a free port and stopped by PID;
// stop() fails if the server crashed, had to be SIGKILLed, exited with an
// error, or printed a sanitizer report on stderr.
//
// Client reads are byte-exact: expect() compares raw bytes, line() returns the
// line without its CRLF (latin1, so every byte maps to one character). Every
// read has a timeout, so a missing reply fails the test instead of hanging it.

import net from 'node:net';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DOCKETD = path.resolve(REPO_ROOT, process.env.DOCKETD || 'build/docketd');
export const BEANSTALKD = process.env.BEANSTALKD || '/usr/bin/beanstalkd';
// Set when DOCKETD points at beanstalkd 1.12: the few checks of 1.13-only
// output (YAML quoting) are skipped then, everything else still runs.
export const IS_112 = process.env.BEANSTALKD_112 === '1';
// Pass as the `skip` option of a test that checks 1.13-only bytes.
export const SKIP_112 = IS_112 ? 'beanstalkd 1.12 does not quote this YAML value (BEANSTALKD_112=1)' : false;

// beanstalkd 1.12 (upstream issues #262, #380; PR #334) sometimes never expires a
// reserved job's TTR while the connection holding it stays idle: prottick
// takes the connection off its timer heap, conn_timeout finds the deadline
// not yet passed (a clock tie: `deadline_at >= now`) and does not put it
// back, so the job stays reserved (time-left negative) until that connection
// sends something. Tests that need an idle holder's TTR to expire are skipped
// for 1.12 with this reason; docketd must expire it.
export const SKIP_112_TTR_BUG = IS_112
    ? 'beanstalkd 1.12 TTR bug (#262/#334): an idle holder\'s expired job can stay reserved'
    : false;

export const DEFAULT_TIMEOUT = 5000; // ms, for one client read
const START_TIMEOUT = 10000; // ms, until the server accepts connections
const STOP_GRACE = 2000; // ms between SIGTERM and SIGKILL
const SANITIZER_RE = /ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|WARNING: ThreadSanitizer/;
const STDERR_KEEP = 1 << 20; // bytes of server stderr kept for diagnostics

/** Returns a TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.unref();
        srv.on('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

/**
 * True unless /proc shows that the socket listening on 127.0.0.1:port is not
 * one of process pid's: another test's server could have taken the port that
 * our child then failed to bind. (Without a readable /proc: true.)
 */
function listenerIsPid(port, pid) {
    let tcp;
    try { tcp = readFileSync('/proc/net/tcp', 'latin1'); } catch { return true; }
    const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
    const inodes = tcp.split('\n').map((l) => l.trim().split(/\s+/))
        .filter((f) => f[1] === local && f[3] === '0A').map((f) => `socket:[${f[9]}]`);
    if (!inodes.length) return false;
    let fds;
    try { fds = readdirSync(`/proc/${pid}/fd`); } catch { return false; }
    return fds.some((fd) => {
        try { return inodes.includes(readlinkSync(`/proc/${pid}/fd/${fd}`)); } catch { return false; }
    });
}

/**
 * Probes the port once; resolves true when the server accepts a connection.
 * The probe says quit and waits for the server to close, so that it is gone
 * from the server's books (current-connections) before tests begin. It sends
 * no other command, so every counter but total-connections stays at zero.
 */
function tryConnect(port) {
    return new Promise((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port });
        s.once('connect', () => {
            s.write('quit\r\n');
            s.resume();
            const t = setTimeout(() => s.destroy(), 2000);
            s.once('close', () => { clearTimeout(t); resolve(true); });
        });
        s.once('error', () => { s.destroy(); resolve(false); });
    });
}

// Servers not yet stopped: killed if this process exits or is told to stop
// (e.g. the runner's timeout), so that none outlives the tests.
const live = new Set();
function killLive() {
    for (const srv of live) {
        try { process.kill(srv.pid, 'SIGKILL'); } catch { /* gone */ }
        if (srv.cwd) rmSync(srv.cwd, { recursive: true, force: true });
    }
    live.clear();
}
process.once('exit', killLive);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(sig, () => { killLive(); process.exit(128 + os.constants.signals[sig]); });
}

class Server {
    constructor(bin, args, child, port, cwd) {
        this.bin = bin;
        this.cwd = cwd;
        this.args = args;
        this.child = child;
        this.pid = child.pid;
        this.port = port;
        this.stderrBuf = '';
        this.stdoutBuf = '';
        this.exit = null; // {code, signal} once exited
        this.stopping = false;
        this.killed = false; // true if SIGKILL was needed
        this.spawnError = null;
        live.add(this);
        this.exited = new Promise((resolve) => {
            child.once('exit', (code, signal) => {
                if (this.exit === null) this.exit = { code, signal };
                live.delete(this);
                resolve(this.exit);
            });
            // A failed spawn (e.g. EACCES) emits 'error' and maybe no 'exit'.
            child.once('error', (e) => {
                this.spawnError = e;
                if (this.exit === null) this.exit = { code: null, signal: null };
                live.delete(this);
                resolve(this.exit);
            });
        });
        this.stdioClosed = new Promise((resolve) => child.once('close', resolve));
        child.stderr.setEncoding('latin1');
        child.stdout.setEncoding('latin1');
        this.sanitizerReport = false;
        let tail = '';
        child.stderr.on('data', (d) => {
            if (this.stderrBuf.length < STDERR_KEEP) this.stderrBuf += d;
            // Scan everything, also past STDERR_KEEP; keep a tail for matches split across chunks.
            if (SANITIZER_RE.test(tail + d)) this.sanitizerReport = true;
            tail = (tail + d).slice(-64);
        });
        child.stdout.on('data', (d) => {
            if (this.stdoutBuf.length < STDERR_KEEP) this.stdoutBuf += d;
        });
    }

    get stderr() { return this.stderrBuf; }

    /** True while the process has not exited. */
    get alive() { return this.exit === null; }

    /** Sends a signal to the server by PID (e.g. 'SIGUSR1'). */
    signal(sig) {
        process.kill(this.pid, sig);
    }

    describe() {
        return `${path.basename(this.bin)} pid ${this.pid} port ${this.port}`;
    }

    /**
     * Stops the server: SIGTERM, SIGKILL after 2 s, waits for exit. Throws if
     * the server had exited before stop() (a crash), needed SIGKILL, exited
     * with a non-zero status or a signal other than SIGTERM, or printed a
     * sanitizer report. Safe to call twice (the second call only re-checks).
     */
    async stop() {
        const crashedBefore = this.exit !== null && !this.stopping;
        if (!this.stopping && this.exit === null) {
            this.stopping = true;
            try { process.kill(this.pid, 'SIGTERM'); } catch { /* already gone */ }
            const timer = setTimeout(() => {
                if (this.exit === null) {
                    this.killed = true;
                    try { process.kill(this.pid, 'SIGKILL'); } catch { /* gone */ }
                }
            }, STOP_GRACE);
            await this.exited;
            clearTimeout(timer);
        }
        this.stopping = true;
        await this.exited;
        // Let the last stderr chunks arrive (a child of the server could hold the pipe: cap the wait).
        await Promise.race([this.stdioClosed, sleep(1000)]);
        if (this.cwd) { rmSync(this.cwd, { recursive: true, force: true }); this.cwd = null; }
        const problems = [];
        const { code, signal } = this.exit;
        if (crashedBefore) problems.push(`server exited before stop(): code=${code} signal=${signal}`);
        else if (this.killed) problems.push('server ignored SIGTERM for 2 s and was SIGKILLed');
        else if (!(code === 0 || signal === 'SIGTERM')) problems.push(`server exit after SIGTERM: code=${code} signal=${signal}`);
        if (this.sanitizerReport) problems.push('sanitizer report on server stderr');
        if (problems.length) {
            const err = new Error(`${this.describe()}: ${problems.join('; ')}\n--- server stderr ---\n${this.stderrBuf.slice(-8000)}`);
            throw err;
        }
        return this.exit;
    }
}

/**
 * Starts a server binary on 127.0.0.1 with a free port and waits until it
 * accepts connections. Options: bin (default $DOCKETD), args (extra args,
 * appended after -l and -p), env. Retries with another port if the binary
 * exits during startup (e.g. the port was taken meanwhile). The server runs
 * in a fresh temporary directory (removed by stop()), so that anything it
 * writes by default stays apart from other servers.
 */
export async function startServer({ bin = DOCKETD, args = [], env } = {}) {
    if (!existsSync(bin)) throw new Error(`server binary not found: ${bin} (set DOCKETD or build it)`);
    let lastErr;
    for (let attempt = 0; attempt < 5; attempt++) {
        const port = await freePort();
        const cwd = mkdtempSync(path.join(os.tmpdir(), 'docket-test-'));
        const child = spawn(bin, ['-l', '127.0.0.1', '-p', String(port), ...args], {
            stdio: ['ignore', 'pipe', 'pipe'],
            env: env ?? process.env,
            cwd,
        });
        const srv = new Server(bin, args, child, port, cwd);
        const deadline = Date.now() + START_TIMEOUT;
        let up = false;
        while (Date.now() < deadline) {
            await sleep(0);
            if (srv.exit !== null) break;
            if (listenerIsPid(port, child.pid) && await tryConnect(port)) { up = true; break; }
            await sleep(20);
        }
        if (srv.spawnError) {
            rmSync(cwd, { recursive: true, force: true });
            throw new Error(`cannot start ${bin}: ${srv.spawnError.message}`);
        }
        if (up) return srv;
        if (srv.exit === null) {
            try { process.kill(srv.pid, 'SIGKILL'); } catch { /* gone */ }
            await srv.exited;
            rmSync(cwd, { recursive: true, force: true });
            lastErr = new Error(`${srv.describe()}: not accepting connections after ${START_TIMEOUT} ms\n${srv.stderr}`);
            break; // a hung server is not a port race: do not retry
        }
        rmSync(cwd, { recursive: true, force: true });
        lastErr = new Error(`${srv.describe()}: exited during startup code=${srv.exit.code} signal=${srv.exit.signal}\n${srv.stderr}`);
    }
    throw lastErr;
}

/** Returns the first line printed by `bin -v`, e.g. "beanstalkd 1.12". */
export function binVersion(bin) {
    try {
        return execFileSync(bin, ['-v'], { encoding: 'latin1', timeout: 5000 }).trim();
    } catch (e) {
        return String(e.stdout ?? '').trim();
    }
}

function show(buf) {
    return JSON.stringify(buf.toString('latin1'));
}

function toBuf(x) {
    return Buffer.isBuffer(x) ? x : Buffer.from(x, 'utf8');
}

/**
 * A beanstalkd-protocol client over one TCP connection. Reads are sequential:
 * issue one read at a time (await it) per client.
 */
export class Client {
    constructor(sock) {
        this.sock = sock;
        this.buf = Buffer.alloc(0);
        this.ended = false; // peer sent FIN
        this.closed = false;
        this.error = null;
        this.waiter = null;
        sock.on('data', (d) => {
            this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
            this._wake();
        });
        sock.on('end', () => { this.ended = true; this._wake(); });
        sock.on('close', () => { this.closed = true; this.ended = true; this._wake(); });
        sock.on('error', (e) => { this.error = e; this._wake(); });
    }

    /** Connects to 127.0.0.1:port (a number, or a Server). */
    static connect(port, { timeout = DEFAULT_TIMEOUT } = {}) {
        if (typeof port === 'object') port = port.port;
        return new Promise((resolve, reject) => {
            const sock = net.connect({ host: '127.0.0.1', port });
            const t = setTimeout(() => { sock.destroy(); reject(new Error(`connect to port ${port} timed out`)); }, timeout);
            sock.once('connect', () => {
                clearTimeout(t);
                sock.setNoDelay(true);
                resolve(new Client(sock));
            });
            sock.once('error', (e) => { clearTimeout(t); reject(e); });
        });
    }

    _wake() {
        if (this.waiter) this.waiter();
    }

    /**
     * Waits until check() returns something other than undefined, re-running
     * it on every event. check may throw to fail fast.
     */
    _until(check, timeout, what) {
        return new Promise((resolve, reject) => {
            let timer;
            const done = (fn, v) => { clearTimeout(timer); this.waiter = null; fn(v); };
            const run = () => {
                let v;
                try { v = check(); } catch (e) { done(reject, e); return; }
                if (v !== undefined) done(resolve, v);
            };
            if (this.waiter) { reject(new Error('Client: concurrent reads on one connection')); return; }
            timer = setTimeout(() => done(reject, new Error(
                `timed out after ${timeout} ms waiting for ${what}; buffered ${show(this.buf)}${this.ended ? ' (connection closed)' : ''}`)), timeout);
            this.waiter = run;
            run();
        });
    }

    _take(n) {
        const out = this.buf.subarray(0, n);
        this.buf = this.buf.subarray(n);
        return Buffer.from(out);
    }

    /** Writes bytes (string as UTF-8, or Buffer); resolves once handed to the kernel. */
    send(bytes) {
        const b = toBuf(bytes);
        return new Promise((resolve, reject) => {
            this.sock.write(b, (e) => (e ? reject(e) : resolve()));
        });
    }

    /** Reads one line; returns it without the CRLF, latin1-decoded. */
    line({ timeout = DEFAULT_TIMEOUT } = {}) {
        return this._until(() => {
            const i = this.buf.indexOf('\r\n');
            if (i >= 0) {
                const l = this._take(i + 2);
                return l.subarray(0, i).toString('latin1');
            }
            if (this.ended) throw new Error(`connection closed while waiting for a line; buffered ${show(this.buf)}`);
            if (this.error) throw this.error;
            return undefined;
        }, timeout, 'a line');
    }

    /** Reads exactly n bytes. */
    readBytes(n, { timeout = DEFAULT_TIMEOUT } = {}) {
        return this._until(() => {
            if (this.buf.length >= n) return this._take(n);
            if (this.ended) throw new Error(`connection closed after ${this.buf.length} of ${n} bytes: ${show(this.buf)}`);
            if (this.error) throw this.error;
            return undefined;
        }, timeout, `${n} bytes`);
    }

    /**
     * Reads exactly the bytes of `want` (string as UTF-8, or Buffer) and fails
     * unless they are equal. Fails as soon as a received byte differs.
     */
    expect(want, { timeout = DEFAULT_TIMEOUT } = {}) {
        const w = toBuf(want);
        return this._until(() => {
            const n = Math.min(w.length, this.buf.length);
            if (!this.buf.subarray(0, n).equals(w.subarray(0, n))) {
                // Show up to the next CRLF of what arrived, to make the diff readable.
                let end = this.buf.indexOf('\r\n', 0);
                end = end < 0 ? this.buf.length : Math.max(end + 2, n);
                throw new Error(`expected ${show(w)}, got ${show(this.buf.subarray(0, end))}`);
            }
            if (this.buf.length >= w.length) { this._take(w.length); return true; }
            if (this.ended) throw new Error(`connection closed: expected ${show(w)}, got ${show(this.buf)}`);
            if (this.error) throw this.error;
            return undefined;
        }, timeout, show(w));
    }

    /** expect(s + '\r\n'). */
    expectLine(s, opts) {
        return this.expect(s + '\r\n', opts);
    }

    /**
     * Reads one reply: its line and, for OK/FOUND/RESERVED, the body (Buffer,
     * without the CRLF, which is checked). Returns {line, body}.
     */
    async reply(opts = {}) {
        const line = await this.line(opts);
        const m = /^(?:OK|FOUND \d+|RESERVED \d+) (\d+)$/.exec(line);
        if (!m) return { line, body: null };
        const raw = await this.readBytes(Number(m[1]) + 2, opts);
        const tail = raw.subarray(raw.length - 2).toString('latin1');
        if (tail !== '\r\n') throw new Error(`body of ${JSON.stringify(line)} not followed by CRLF: ${show(raw)}`);
        return { line, body: raw.subarray(0, raw.length - 2) };
    }

    /** Sends `line` + CRLF and reads one reply; returns {line, body}. */
    async cmd(line, opts) {
        await this.send(line + '\r\n');
        return this.reply(opts);
    }

    /** Sends `line` + CRLF and returns the reply line (for replies without a body). */
    async call(line, opts) {
        await this.send(line + '\r\n');
        return this.line(opts);
    }

    /** Sends a command whose reply is YAML and returns the parsed key/values. */
    async yaml(line, opts) {
        const r = await this.cmd(line, opts);
        if (!r.line.startsWith('OK ')) throw new Error(`${line}: expected OK, got ${JSON.stringify(r.line)}`);
        return parseYaml(r.body.toString('latin1'));
    }

    /** Waits until the server closes the connection; fails if any byte arrives. */
    expectClosed({ timeout = DEFAULT_TIMEOUT } = {}) {
        return this._until(() => {
            if (this.buf.length) throw new Error(`expected close, got ${show(this.buf)}`);
            if (this.ended || (this.error && this.error.code === 'ECONNRESET')) return true;
            if (this.error) throw this.error;
            return undefined;
        }, timeout, 'the server to close the connection');
    }

    /** Fails if any byte arrives within `ms`. */
    async expectNothing(ms) {
        await sleep(ms);
        if (this.buf.length) throw new Error(`expected no reply yet, got ${show(this.buf)}`);
        if (this.error) throw this.error;
    }

    /** Half-closes: sends FIN, keeps reading. */
    end() {
        this.sock.end();
    }

    /** Closes the socket at once. */
    close() {
        this.sock.destroy();
    }
}

/**
 * Parses the flat YAML beanstalkd emits: a dict of `key: value` lines or a
 * list of `- item` lines after `---`. Values are kept as raw strings
 * (quotes included) so callers can check the exact form; see yamlValue().
 */
export function parseYaml(text) {
    const lines = text.split('\n');
    if (lines[0] !== '---') throw new Error(`YAML does not start with ---: ${JSON.stringify(text)}`);
    if (lines[lines.length - 1] !== '') throw new Error(`YAML does not end with \\n: ${JSON.stringify(text)}`);
    const body = lines.slice(1, -1);
    if (body.length && body.every((l) => l.startsWith('- '))) return body.map((l) => l.slice(2));
    const out = new Map();
    for (const l of body) {
        const i = l.indexOf(': ');
        if (i < 0) throw new Error(`bad YAML line ${JSON.stringify(l)}`);
        const k = l.slice(0, i);
        if (out.has(k)) throw new Error(`duplicate YAML key ${k}`);
        out.set(k, l.slice(i + 2));
    }
    return out;
}

/** Body of an OK reply for a YAML document built from lines. */
export function okReply(yamlText) {
    return `OK ${Buffer.byteLength(yamlText)}\r\n${yamlText}\r\n`;
}

/** Common lifecycle for a test file: start in before(), stop in after(). */
export function serverFixture(opts = {}) {
    const fx = { server: null, clients: [] };
    fx.start = async () => { fx.server = await startServer(opts); return fx.server; };
    fx.connect = async () => { const c = await Client.connect(fx.server.port); fx.clients.push(c); return c; };
    fx.stop = async () => {
        for (const c of fx.clients) c.close();
        fx.clients = [];
        if (fx.server) await fx.server.stop();
    };
    return fx;
}

/**
 * Connects to a server and closes the client when test context t ends.
 */
export async function connect(t, server) {
    const c = await Client.connect(server.port);
    t.after(() => c.close());
    return c;
}

/** Puts a job (body: string as UTF-8, or Buffer); returns its id as a number. */
export async function put(c, body, { pri = 0, delay = 0, ttr = 60 } = {}) {
    const b = toBuf(body);
    await c.send(Buffer.concat([Buffer.from(`put ${pri} ${delay} ${ttr} ${b.length}\r\n`), b, Buffer.from('\r\n')]));
    const line = await c.line();
    const m = /^INSERTED (\d+)$/.exec(line);
    if (!m) throw new Error(`put: expected INSERTED <id>, got ${JSON.stringify(line)}`);
    return Number(m[1]);
}

/** Bytes of a put command with its body. */
export function putCmd(body, { pri = 0, delay = 0, ttr = 60, bytes } = {}) {
    const b = toBuf(body);
    return Buffer.concat([Buffer.from(`put ${pri} ${delay} ${ttr} ${bytes ?? b.length}\r\n`), b, Buffer.from('\r\n')]);
}

/**
 * The value 1.13 prints for a quoted YAML string (`"foo"`). Under
 * BEANSTALKD_112=1 this is 1.12's unquoted form, so that tests whose subject
 * is not the quoting still run there; the quoting itself is checked by
 * tests marked with SKIP_112.
 */
export function quoted(v) {
    return IS_112 ? v : `"${v}"`;
}

let tubeSeq = 0;
/** A tube name not used by another test of this process. */
export function uniqueTube(prefix = 't') {
    tubeSeq += 1;
    return `${prefix}-${process.pid}-${tubeSeq}`;
}

/**
 * Checks a YAML dict body against [key, expected] pairs, in order: expected
 * is a string (exact) or a RegExp (whole-value match). Also checks the
 * framing (---\n, one key: value\n per line) by rebuilding the body.
 */
export function assertYaml(body, expected) {
    const text = Buffer.isBuffer(body) ? body.toString('latin1') : body;
    const got = parseYaml(text);
    if (!(got instanceof Map)) throw new Error(`expected a YAML dict, got a list: ${JSON.stringify(text)}`);
    const gotKeys = [...got.keys()];
    const wantKeys = expected.map(([k]) => k);
    if (gotKeys.join('\n') !== wantKeys.join('\n')) {
        throw new Error(`YAML keys differ\n  want: ${wantKeys.join(', ')}\n  got:  ${gotKeys.join(', ')}`);
    }
    let rebuilt = '---\n';
    for (const [k, want] of expected) {
        const v = got.get(k);
        const ok = want instanceof RegExp ? new RegExp(`^(?:${want.source})$`).test(v) : v === want;
        if (!ok) throw new Error(`YAML ${k}: expected ${want instanceof RegExp ? want : JSON.stringify(want)}, got ${JSON.stringify(v)}\n${text}`);
        rebuilt += `${k}: ${v}\n`;
    }
    if (rebuilt !== text) throw new Error(`YAML framing differs: ${JSON.stringify(text)}`);
    return got;
}

export const UINT = /\d|[1-9]\d*/;

export { sleep };
