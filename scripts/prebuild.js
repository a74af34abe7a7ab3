#!/usr/bin/env node
/**
 * `npm run prebuild`: builds the addon (Release, cmake-js, the same command as
 * `npm run build:native`), strips it and copies it to
 * prebuilds/<platform>-<arch>/isopool.node, the file lib/native/loader.ts loads first.
 *
 * The addon is Node-API (NAPI_VERSION 8), so this one binary serves every Node
 * version the package supports (20, 22, 24). prebuilds/ is not committed: CI
 * runs this before `npm pack`, and `files` in package.json ships it.
 *
 *   node scripts/prebuild.js [--no-build]   (--no-build: copy the existing build/Release)
 */
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const built = path.join(root, 'build', 'Release', 'isopool.node');
const target = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'isopool.node');

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status ?? r.signal}`);
}

if (!process.argv.includes('--no-build')) {
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
  run(process.execPath, [cmakeJs, 'compile', '--config', 'Release', '--parallel', '2', '--log-level', 'warn']);
}
if (!fs.existsSync(built)) throw new Error(`prebuild: ${built} does not exist (build failed?)`);

fs.mkdirSync(path.dirname(target), { recursive: true });
const tmp = `${target}.tmp-${process.pid}`;
fs.copyFileSync(built, tmp);
// Debug symbols and the static symbol table are of no use to users; the dynamic
// symbols Node-API needs (napi_register_module_v1) survive --strip-unneeded.
const strip = spawnSync('strip', ['--strip-unneeded', tmp], { stdio: 'inherit' });
if (strip.error || strip.status !== 0) {
  console.warn(`prebuild: strip failed or is missing (${strip.error ? strip.error.message : `exit ${strip.status}`}); shipping unstripped`);
}
fs.renameSync(tmp, target);

// It must load in a fresh process and look like isopool's addon.
const check = spawnSync(
  process.execPath,
  ['-e', `const a = require(${JSON.stringify(target)}); if (typeof a.NativeManager !== 'function') throw new Error('no NativeManager');`],
  { stdio: 'inherit' },
);
if (check.status !== 0) throw new Error(`prebuild: ${target} does not load`);

const kib = (file) => `${(fs.statSync(file).size / 1024).toFixed(0)} KiB`;
console.log(`prebuild: ${path.relative(root, target)} (${kib(target)}, unstripped ${kib(built)}), Node-API: loads on Node >= 20`);
