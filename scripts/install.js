#!/usr/bin/env node
/**
 * The package's `install` script (package.json "install": "node scripts/install.js").
 *
 * Why it exists: npm runs an implicit `node-gyp rebuild` for any package that ships a
 * binding.gyp and has no install script. isopool ships a prebuild, so that implicit build
 * must not happen; this script does nothing when a working binary is there and builds
 * from source only when none loads.
 *
 * 1. In a source checkout (tsconfig.test.json exists, which the npm package does not ship),
 *    `npm install` / `npm ci` build everything through `prepare`: nothing to do here.
 * 2. Installed as a dependency: if prebuilds/<tag>/isopool.node (the loader's tag: linux-x64,
 *    linux-x64-musl, linux-arm64, linux-arm64-musl; or an earlier
 *    build/Release/isopool.node) loads in a child process, done.
 * 3. Otherwise, or with `npm rebuild isopool --build-from-source`
 *    (ISOPOOL_BUILD_FROM_SOURCE=1 works too), build from source: cmake-js when it is
 *    installed, else node-gyp (npm's own) against the running Node's headers when they are
 *    installed next to it. Needs a C++17 compiler (and CMake, or Python + make for node-gyp).
 *
 * With `--ignore-scripts`, or npm versions that do not run dependencies' install scripts,
 * none of this runs and the prebuild is used as it is.
 */
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const log = (msg) => console.log(`isopool install: ${msg}`);

function truthy(v) {
  return v !== undefined && v !== '' && v !== '0' && v !== 'false';
}

/**
 * True if `file` exists, requires cleanly in a fresh Node process and passes the package's own
 * check (dist/native/loader.js narrowAddon: the class and the binding version this JavaScript speaks).
 */
function loads(file) {
  if (!fs.existsSync(file)) return false;
  const loader = path.join(root, 'dist', 'native', 'loader.js');
  const check = fs.existsSync(loader)
    ? `try { require(${JSON.stringify(loader)}).narrowAddon(require(${JSON.stringify(file)})); } catch (e) { console.error(e.message); process.exit(3); }`
    : `if (typeof require(${JSON.stringify(file)}).NativeManager !== 'function') process.exit(3)`;
  const r = spawnSync(process.execPath, ['-e', check], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) log(`${path.relative(root, file)} does not load here: ${(r.stderr || '').trim().split('\n')[0] || `exit ${r.status}`}`);
  return r.status === 0;
}

function run(cmd, args) {
  log(`${path.basename(cmd)} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.error) throw r.error;
  return r.status === 0;
}

function tryResolve(request) {
  try {
    return require.resolve(request, { paths: [root] });
  } catch {
    return undefined;
  }
}

/** This platform's prebuild, by the packaged loader's rule (linux-x64-musl on musl, and so on). */
function prebuildFile() {
  const loader = path.join(root, 'dist', 'native', 'loader.js');
  if (fs.existsSync(loader)) return require(loader).prebuildPath(root);
  return path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'isopool.node');
}

const PREBUILT = 'linux-x64, linux-x64-musl, linux-arm64, linux-arm64-musl';

function onPath(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** The first tool a source build needs that this machine lacks, or undefined. */
function missingTool(withCmake) {
  if (!onPath('c++') && !onPath('g++') && !onPath('clang++')) return 'a C++17 compiler (g++ or clang++)';
  if (!onPath('make')) return 'make';
  if (withCmake) return onPath('cmake') ? undefined : 'cmake';
  return onPath('python3') || onPath('python') ? undefined : 'python3 (for node-gyp)';
}

function buildFromSource() {
  const cmakeJs = tryResolve('cmake-js/bin/cmake-js');
  const missing = missingTool(cmakeJs !== undefined);
  if (missing !== undefined) {
    log(`cannot build from source: ${missing} is missing (prebuilt binaries ship for ${PREBUILT})`);
    return false;
  }
  log('building the native addon from source (about a minute; node-gyp or cmake-js output follows)');
  if (cmakeJs !== undefined) {
    return run(process.execPath, [cmakeJs, 'compile', '--config', 'Release', '--log-level', 'warn']);
  }
  // npm tells lifecycle scripts where its bundled node-gyp is.
  const candidates = [
    process.env.npm_config_node_gyp,
    tryResolve('node-gyp/bin/node-gyp.js'),
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  const nodeGyp = candidates.find((c) => c !== undefined && fs.existsSync(c));
  if (nodeGyp === undefined) {
    log('neither cmake-js nor node-gyp was found');
    return false;
  }
  const args = [nodeGyp, 'rebuild'];
  // Use the headers installed with this Node when they are there (no download).
  const nodedir = path.resolve(process.execPath, '..', '..');
  if (fs.existsSync(path.join(nodedir, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${nodedir}`);
  return run(process.execPath, args);
}

function main() {
  const forced = truthy(process.env.npm_config_build_from_source) || truthy(process.env.ISOPOOL_BUILD_FROM_SOURCE);
  if (!forced && fs.existsSync(path.join(root, 'tsconfig.test.json'))) {
    return; // a source checkout: `prepare` builds the addon and dist/
  }
  const prebuild = prebuildFile();
  if (!forced) {
    if (loads(prebuild)) return;
    if (loads(path.join(root, 'build', 'Release', 'isopool.node'))) return;
    log(`no working prebuild for ${path.basename(path.dirname(prebuild))} (prebuilt: ${PREBUILT}): building from source`);
  }
  if (!buildFromSource()) {
    log(`the source build failed (it needs a C++17 compiler, make, and python3 or cmake; prebuilt binaries ship for ${PREBUILT}); see README "Install"`);
    process.exit(1);
  }
  if (!loads(path.join(root, 'build', 'Release', 'isopool.node'))) {
    log('the source build finished but build/Release/isopool.node does not load');
    process.exit(1);
  }
}

main();
