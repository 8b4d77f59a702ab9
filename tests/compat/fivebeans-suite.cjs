// fivebeans-suite.cjs -- runs fivebeans' own mocha test suite (test-client.js,
// test-worker.js from node_modules/fivebeans/test) against the server on
// 127.0.0.1:$DOCKET_PORT. The suite and the client's default hard-code port
// 11300: a require hook rewrites those lines (`var port = 11300;` in the test
// files, `var DEFAULT_PORT = 11300;` in lib/client.js) as the files load, so
// node_modules stays untouched.
// Must run with cwd = node_modules/fivebeans (the suite reads ./test/test.png).
// Usage: DOCKET_PORT=N node fivebeans-suite.cjs [mocha --grep regexp to skip]
'use strict';

const fs = require('fs');
const path = require('path');
const Module = require('module');

const port = Number(process.env.DOCKET_PORT);
if (!port) throw new Error('DOCKET_PORT not set');
const testDir = path.resolve('test');
const patches = new Map([
    [path.join(testDir, 'test-client.js'), /^var port = 11300;$/m],
    [path.join(testDir, 'test-worker.js'), /^var port = 11300;$/m],
    [path.resolve('lib', 'client.js'), /^var DEFAULT_PORT {4}= 11300;$/m],
]);

const loadJs = Module._extensions['.js'];
Module._extensions['.js'] = function (module, filename) {
    const re = patches.get(filename);
    if (re) {
        const src = fs.readFileSync(filename, 'utf8');
        const patched = src.replace(re, (m) => m.replace('11300', String(port)));
        if (patched === src) throw new Error(`${filename}: port line not found`);
        module._compile(patched, filename);
        return;
    }
    loadJs(module, filename);
};

const Mocha = require('mocha');
const mocha = new Mocha({ timeout: 8000, reporter: 'spec', color: false });
if (process.env.FIVEBEANS_SKIP) {
    mocha.grep(new RegExp(process.env.FIVEBEANS_SKIP));
    mocha.invert();
}
mocha.addFile(path.join(testDir, 'test-client.js'));
mocha.addFile(path.join(testDir, 'test-worker.js'));
mocha.run((failures) => {
    process.exitCode = failures ? 1 : 0;
    // The suite leaves sockets and workers open: do not wait for them.
    setTimeout(() => process.exit(process.exitCode), 100);
});
