#!/usr/bin/env node
/**
 * `npm run test:pack`: the npm package as a user gets it.
 *
 * 1. a plain `npm pack`, as a release would make it: its `prepack` (scripts/prepack.js) builds or
 *    checks the four Linux prebuilds and dist/, or refuses. Then a check of the file list: the
 *    four prebuilds with their build.json, LICENSE, dist/ (JS and types), the sources for a
 *    fallback build, and no build artefacts, tests or benchmarks.
 * 2. `npm install --ignore-scripts <tgz>` into an empty temp project (npm >= 12 does not run
 *    dependencies' install scripts, so the package must work without them), then, without
 *    prom-client: require('isopool') (CommonJS) and `import` (ESM) allocate and free in a
 *    channel and read metrics, the addon comes from the prebuild, and isopool/prometheus loads
 *    but asks for prom-client. This runs on this Node and on every Node named in
 *    $ISOPOOL_SMOKE_NODES (colon-separated paths; .ci/run gives Node 22, 24 and 26).
 * 3. `npm rebuild isopool`: the install script finds the working prebuild and builds nothing.
 * 4. With prom-client installed: isopool/prometheus serves metrics, and a TypeScript file using
 *    both entry points type-checks under `moduleResolution: node16` (the `exports` map's types)
 *    and under the legacy `moduleResolution: node` (`typesVersions`).
 * 5. With --source-build: `npm rebuild isopool --build-from-source` builds the addon from the
 *    packaged sources with node-gyp and the loader then uses that build.
 *
 *   node scripts/pack-smoke.js [--source-build] [--keep]
 * Exits non-zero on the first failed check; prints the time of each step.
 */
'use strict';

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { userTsconfig } = require('./lib/user-tsconfig');

const root = path.resolve(__dirname, '..');
const args = new Set(process.argv.slice(2));
const started = Date.now();
let stepStarted = Date.now();

function step(name) {
  const now = Date.now();
  console.log(`pack-smoke: ${name} (+${((now - stepStarted) / 1000).toFixed(1)} s)`);
  stepStarted = now;
}

function fail(message) {
  console.error(`pack-smoke: FAILED: ${message}`);
  process.exit(1);
}

/** The environment for child npm/node runs: none of the parent npm's per-run variables. */
function cleanEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    const key = k.toLowerCase();
    if (key.startsWith('npm_') && !['npm_config_cache', 'npm_config_registry', 'npm_config_userconfig'].includes(key)) continue;
    if (key === 'init_cwd') continue;
    env[k] = v;
  }
  return env;
}

function run(cmd, argv, cwd, input) {
  try {
    return execFileSync(cmd, argv, { cwd, env: cleanEnv(), encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 });
  } catch (err) {
    fail(`${cmd} ${argv.join(' ')} (in ${cwd}) exited with ${err.status}\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
  }
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');

// ---------------------------------------------------------------------------------------------
// 1. pack

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'isopool-pack-'));
const packOut = run(npm, ['pack', '--json', '--pack-destination', tmp], root);
// The lifecycle scripts print before npm's JSON; the JSON is the last top-level array.
const packed = JSON.parse(packOut.slice(packOut.lastIndexOf('\n[\n') + 1));
const info = packed[0];
const tgz = path.join(tmp, info.filename);
const files = info.files.map((f) => f.path);
step(`packed ${info.filename}: ${files.length} files, ${(info.size / 1024).toFixed(0)} KiB (unpacked ${(info.unpackedSize / 1024).toFixed(0)} KiB)`);

const required = [
  'package.json',
  'README.md',
  'dist/index.js',
  'dist/index.d.ts',
  'dist/prometheus.js',
  'dist/prometheus.d.ts',
  'dist/native/loader.js',
  ...['linux-x64', 'linux-x64-musl', 'linux-arm64', 'linux-arm64-musl'].flatMap((t) => [`prebuilds/${t}/isopool.node`, `prebuilds/${t}/build.json`]),
  'LICENSE',
  'scripts/install.js',
  'binding.gyp',
  'CMakeLists.txt',
  'native/binding/addon.cc',
  'native/sources.cmake',
];
for (const f of required) if (!files.includes(f)) fail(`the tarball lacks ${f}`);
const forbidden = [
  [/^build\//, 'build output'],
  [/\.(o|obj|a|lib|so|dylib)$/, 'a native object file or library'],
  [/^(test|bench|examples|docs|\.ci|\.github)\//, 'tests, benchmarks, examples or docs'],
  [/^node_modules\//, 'node_modules'],
  [/^tsconfig\.test\.json$/, 'tsconfig.test.json (the install script takes it as the mark of a source checkout)'],
  [/^scripts\/(?!install\.js$)/, 'a dev-only script'],
  [/\.tgz$/, 'a tarball'],
];
for (const f of files) {
  for (const [re, what] of forbidden) if (re.test(f)) fail(`the tarball holds ${what}: ${f}`);
  if (f.endsWith('.node') && !f.startsWith('prebuilds/')) fail(`the tarball holds a native binary outside prebuilds/: ${f}`);
}
step('tarball contents ok (prebuild, dist, sources; no build output, tests or benchmarks)');

// ---------------------------------------------------------------------------------------------
// 2. install without scripts, no prom-client

const app = path.join(tmp, 'app');
fs.mkdirSync(app);
fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'isopool-smoke', version: '1.0.0', private: true }, null, 2));
run(npm, ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error', tgz], app);
const installed = path.join(app, 'node_modules', 'isopool');
if (fs.existsSync(path.join(installed, 'build'))) fail('node_modules/isopool/build exists after an install without scripts');
if (fs.existsSync(path.join(app, 'node_modules', 'prom-client'))) fail('prom-client was installed although it is an optional peer');
step('npm install --ignore-scripts <tgz> into an empty project');

const cjsSmoke = `
const assert = require('node:assert/strict');
const path = require('node:path');
const { ResourceManager, ResourceLimitError, IsopoolError } = require('isopool');
const m = new ResourceManager();
const ch = m.openChannel('smoke', { limits: { '*': { maxBytes: 1 << 20 } } });
const h = ch.allocate('buffer', 5000);
assert.equal(h.buffer.length, 5000);
h.buffer.write('hello isopool');
assert.equal(ch.track(h).slotBytes, 65536);
assert.equal(m.getResourceMetrics().channels.smoke.bytesInUse, 65536);
assert.throws(() => ch.allocate('buffer', 2 << 20), (e) => e instanceof ResourceLimitError && e instanceof IsopoolError);
assert.equal(ch.deallocate(h), true);
assert.equal(h.buffer.length, 5000, 'deferred reuse: not detached');
assert.equal(m.getResourceMetrics().revocation.pendingRelease, 1, 'its memory waits for the buffer');
assert.equal(m.verifyCleanupCompletion(h), false);
const fast = m.openChannel('fast', { unsafeImmediateReuse: true });
const f = fast.allocate('buffer', 100);
assert.equal(fast.deallocate(f), true);
assert.equal(f.buffer.length, 0, 'unsafeImmediateReuse: revoked at free');
assert.equal(m.verifyCleanupCompletion(f), true);
// threads: a worker attaches to the same shared manager; its allocation counts here.
const { Worker } = require('node:worker_threads');
const shared = new ResourceManager({ shared: 'smoke' });
const worker = new Worker(\`
  const { ResourceManager } = require('isopool');
  const { parentPort } = require('node:worker_threads');
  const m = new ResourceManager({ shared: 'smoke' });
  const h = m.allocateResource('buffer', 4096, 'from-worker');
  h.buffer.fill(7);
  parentPort.postMessage(m.transferHandle(h));
\`, { eval: true });
const sharedId = require('node:events').once(worker, 'message');
`;
const cjsSmokeTail = `
const metrics = JSON.parse(JSON.stringify(m.getResourceMetrics()));
assert.equal(metrics.channels.smoke.handles, 0);
assert.equal(metrics.channels.smoke.limitRejections, 1);
assert.equal(m.closeChannel('smoke').count, 0);
m.close();
const loader = require(path.join(path.dirname(require.resolve('isopool')), 'native', 'loader.js'));
assert.deepEqual(loader.nativeSource()?.kind, 'prebuild', 'loaded from the prebuild');
const prom = require('isopool/prometheus');
assert.equal(typeof prom.registerIsopoolMetrics, 'function');
assert.throws(() => prom.registerIsopoolMetrics(new ResourceManager()), /prom-client/);
assert.ok(!Object.keys(require.cache).some((k) => k.includes('prom-client')));
assert.equal(require('isopool/package.json').name, 'isopool');
sharedId.then(async ([id]) => {
  const adopted = shared.adoptHandle(id);
  assert.equal(adopted.buffer[4095], 7, 'the worker wrote it');
  assert.equal(shared.getResourceMetrics().channels['from-worker'].handles, 1);
  assert.equal(shared.deallocateResource(adopted), true);
  await worker.terminate();
  shared.close();
  console.log('cjs ok (threads too), addon from', loader.nativeSource().path);
});
`;
// Entries of $ISOPOOL_SMOKE_NODES that start with "qemu-aarch64=" are arm64 Nodes run under
// qemu-aarch64 (the linux-arm64 prebuild).
const smokeNodes = [process.execPath, ...(process.env.ISOPOOL_SMOKE_NODES ?? '').split(':').filter((p) => p !== '')];
const runNode = (node, argv) =>
  node.startsWith('qemu-aarch64=') ? run('qemu-aarch64', ['-L', '/', node.slice('qemu-aarch64='.length), ...argv], app) : run(node, argv, app);
const nodeVersion = (node) => runNode(node, ['-p', 'process.version + " " + process.arch']).trim();
for (const node of smokeNodes) console.log(`  ${nodeVersion(node)}: ${runNode(node, ['-e', cjsSmoke + cjsSmokeTail]).trim()}`);
step(`require('isopool') on ${smokeNodes.map(nodeVersion).join(', ')}: allocate/free in a channel, limits, metrics, revocation; isopool/prometheus without prom-client`);

const esmSmoke = `
import assert from 'node:assert/strict';
import { ResourceManager, DIAGNOSTICS_CHANNELS } from 'isopool';
import { registerIsopoolMetrics } from 'isopool/prometheus';
assert.equal(typeof registerIsopoolMetrics, 'function');
assert.equal(DIAGNOSTICS_CHANNELS.limit, 'isopool:limit');
const m = new ResourceManager();
const h = m.allocateResource('buffer', 100, 'esm');
assert.equal(m.deallocateResource(h), true);
assert.equal(m.getResourceMetrics().totals.allocations, 1);
m.close();
console.log('esm ok');
`;
for (const node of smokeNodes) console.log(`  ${nodeVersion(node)}: ${runNode(node, ['--input-type=module', '-e', esmSmoke]).trim()}`);
step("import { ResourceManager } from 'isopool' (ESM, named exports), on the same Nodes");

// ---------------------------------------------------------------------------------------------
// 3. the install script with a working prebuild does nothing

run(npm, ['rebuild', 'isopool', '--no-audit', '--no-fund'], app);
if (fs.existsSync(path.join(installed, 'build'))) fail('npm rebuild isopool built from source although the prebuild works');
step('npm rebuild isopool: install script kept the prebuild, built nothing');

// A forced source build on a machine without a compiler: one line naming what is missing.
const bareBin = path.join(tmp, 'bare-bin');
fs.mkdirSync(bareBin);
fs.symlinkSync(process.execPath, path.join(bareBin, 'node'));
fs.symlinkSync('/bin/sh', path.join(bareBin, 'sh'));
try {
  execFileSync(process.execPath, [path.join(installed, 'scripts', 'install.js')], {
    cwd: installed,
    env: { ...cleanEnv(), PATH: bareBin, ISOPOOL_BUILD_FROM_SOURCE: '1' },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  fail('the install script succeeded without a compiler');
} catch (err) {
  const out = `${err.stdout ?? ''}${err.stderr ?? ''}`;
  if (!/cannot build from source: a C\+\+17 compiler \(g\+\+ or clang\+\+\) is missing \(prebuilt binaries ship for linux-x64, linux-x64-musl, linux-arm64, linux-arm64-musl\)/.test(out)) {
    fail(`the install script without a compiler said:\n${out}`);
  }
}
if (fs.existsSync(path.join(installed, 'build'))) fail('a failed source build left build/ behind');
step('install script without a compiler: exits 1 with one line naming the compiler and the prebuilt platforms');

// ---------------------------------------------------------------------------------------------
// 4. with prom-client: metrics and types

const promVersion = require(path.join(root, 'node_modules', 'prom-client', 'package.json')).version;
run(npm, ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error', `prom-client@${promVersion}`], app);
const promSmoke = `
const assert = require('node:assert/strict');
const { Registry } = require('prom-client');
const { ResourceManager } = require('isopool');
const { registerIsopoolMetrics } = require('isopool/prometheus');
const m = new ResourceManager();
const registry = new Registry();
registerIsopoolMetrics(m, { registry });
m.allocateResource('buffer', 10, 'tenant');
registry.metrics().then((text) => {
  assert.ok(text.includes('isopool_channel_bytes_in_use{channel="tenant"} 4096'), text);
  assert.ok(text.includes('isopool_handles 1'), text);
  m.close();
  console.log('prometheus ok');
});
`;
console.log(`  ${run(process.execPath, ['-e', promSmoke], app).trim()}`);
fs.writeFileSync(
  path.join(app, 'smoke.ts'),
  `import { ResourceManager, type ManagerMetrics, type ResourceHandle } from 'isopool';
import { registerIsopoolMetrics, type IsopoolMetricsOptions } from 'isopool/prometheus';
const m = new ResourceManager({ leakDetection: 'off' });
const h: ResourceHandle = m.openChannel('t').allocate('buffer', 1);
const metrics: ManagerMetrics = m.getResourceMetrics();
const options: IsopoolMetricsOptions = { prefix: 'svc_', maxChannels: 10 };
registerIsopoolMetrics(m, options);
export const used: number = h.size + metrics.totals.handles;
`,
);
fs.writeFileSync(path.join(app, 'tsconfig.json'), JSON.stringify(userTsconfig(root, ['smoke.ts'], { noEmit: true })));
run(process.execPath, [tsc, '-p', 'tsconfig.json'], app);
const legacy = userTsconfig(root, ['smoke.ts'], { noEmit: true, module: 'commonjs', moduleResolution: 'node' });
fs.writeFileSync(path.join(app, 'tsconfig.legacy.json'), JSON.stringify(legacy));
run(process.execPath, [tsc, '-p', 'tsconfig.legacy.json'], app);
step('with prom-client: isopool/prometheus serves metrics; both entry points type-check (node16 and legacy node resolution)');

// ---------------------------------------------------------------------------------------------
// 5. optional: the source-build fallback

if (args.has('--source-build')) {
  run(npm, ['rebuild', 'isopool', '--build-from-source', '--no-audit', '--no-fund'], app);
  if (!fs.existsSync(path.join(installed, 'build', 'Release', 'isopool.node'))) fail('--build-from-source did not produce build/Release/isopool.node');
  const out = run(
    process.execPath,
    [
      '-e',
      `const { ResourceManager } = require('isopool');
       const m = new ResourceManager(); m.deallocateResource(m.allocateResource('buffer', 1, 'src')); m.close();
       const l = require(require('path').join(require('path').dirname(require.resolve('isopool')), 'native', 'loader.js'));
       if (l.nativeSource().kind !== 'build') throw new Error('expected the source build, got ' + JSON.stringify(l.nativeSource()));
       console.log('source build ok');`,
    ],
    app,
  );
  console.log(`  ${out.trim()}`);
  step('npm rebuild isopool --build-from-source: node-gyp build from the packaged sources, loaded before the prebuild');
}

if (args.has('--keep')) console.log(`pack-smoke: kept ${tmp}`);
else fs.rmSync(tmp, { recursive: true, force: true });
console.log(`pack-smoke: passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
