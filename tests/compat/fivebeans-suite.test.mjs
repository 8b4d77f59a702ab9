// fivebeans-suite.test.mjs -- fivebeans' own test suite (client and worker,
// mocha) against $DOCKETD, through fivebeans-suite.cjs which points the suite
// at our port without editing node_modules.
//
// Skipped from the suite, with the reason:
// - "emits the error event on failure": connects to port 5000 and expects
//   err.errno === 'ECONNREFUSED'; Node >= 13 sets errno to -111 (the string is
//   in err.code), so it fails whatever the server. It never talks to it.
// Note: the suite's kick_job test runs only if stats `version` parses as a
// semver >= 1.8.0 (beanstalkd's "1.12" → "1.12.0"); otherwise the suite's
// later steps see a different job state.

import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, REPO_ROOT } from '../integration/harness.mjs';

const SKIP = 'emits the error event on failure';
let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.stop(); });

it('fivebeans test suite passes', { timeout: 120000 }, async () => {
    const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fivebeans-suite.cjs');
    const child = spawn(process.execPath, [script], {
        cwd: path.join(REPO_ROOT, 'node_modules', 'fivebeans'),
        env: { ...process.env, DOCKET_PORT: String(srv.port), FIVEBEANS_SKIP: SKIP },
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 100000);
    const code = await new Promise((resolve) => child.once('close', resolve));
    clearTimeout(timer);
    const passing = Number((/(\d+) passing/.exec(out) || [])[1] || 0);
    const failing = Number((/(\d+) failing/.exec(out) || [])[1] || 0);
    assert.ok(code === 0 && failing === 0, `fivebeans suite failed (exit ${code}, ${failing} failing):\n${out}`);
    assert.ok(passing >= 40, `only ${passing} fivebeans tests passed:\n${out}`);
});
