#!/usr/bin/env node
/**
 * The package's `prepack` script (npm pack, npm publish): a tarball either holds every prebuild,
 * built from the sources it ships, or is not made.
 *
 * For each of the four Linux prebuilds (scripts/prebuild.js TAGS), prebuilds/<tag>/build.json must
 * name the hash of today's native sources (scripts/prebuild.js writes it only after every check
 * passed). Missing or stale
 * prebuilds are built here when the cross toolchains are installed (scripts/toolchains.sh);
 * otherwise this exits non-zero with one line saying what is missing and how to get it.
 * Then dist/ is built, so the tarball's JavaScript matches the sources too.
 */
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

function refuse(msg) {
  console.error(`isopool prepack: refusing to pack: ${msg}`);
  process.exit(1);
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.error || r.status !== 0) refuse(`${cmd} ${args.join(' ')} failed (${r.error ? r.error.message : `exit ${r.status}`})`);
}

function stale(tags, hash) {
  return tags.filter((tag) => {
    try {
      const info = JSON.parse(fs.readFileSync(path.join(root, 'prebuilds', tag, 'build.json'), 'utf8'));
      return !(info.sources === hash && fs.existsSync(path.join(root, 'prebuilds', tag, 'isopool.node')));
    } catch {
      return true;
    }
  });
}

function main() {
  if (!fs.existsSync(path.join(root, 'node_modules', 'node-addon-api'))) refuse('run "npm install" first (the build needs the dev dependencies)');
  const { TAGS, sourceHash, missingToolchain } = require('./prebuild.js');
  const hash = sourceHash();
  let missing = stale(TAGS, hash);
  if (missing.length > 0) {
    if (process.platform !== 'linux' || process.arch !== 'x64') {
      refuse(`the prebuilds ${missing.join(', ')} are missing or stale, and they are built on Linux x86_64 only`);
    }
    const lacking = missingToolchain();
    if (lacking.length > 0) {
      refuse(`the prebuilds ${missing.join(', ')} are missing or stale and the cross toolchains are not installed (${lacking.join(', ')}): run "bash scripts/toolchains.sh" (root, once), then pack again`);
    }
    console.log(`isopool prepack: building the prebuilds ${missing.join(', ')}`);
    run(process.execPath, [path.join(__dirname, 'prebuild.js'), `--only=${missing.join(',')}`]);
    missing = stale(TAGS, hash);
    if (missing.length > 0) refuse(`the prebuilds ${missing.join(', ')} were not produced`);
  }
  run('npm', ['run', 'build:ts']);
  console.log(`isopool prepack: ${TAGS.join(', ')} match the sources (${hash.slice(0, 12)})`);
}

main();
