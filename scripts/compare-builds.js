#!/usr/bin/env node
/**
 * Same-process round-trip comparison of two builds of isopool (for a change that must keep
 * speed, such as a restructuring): both are loaded into one process and timed in alternating
 * rounds, so machine noise hits both alike.
 *
 *   node scripts/compare-builds.js <before-root> <after-root> [mode...]
 *
 * A root is a checkout with `npm run build` done (dist/ and the addon). Modes: view,
 * immediate (revocable, unsafeImmediateReuse), deferred (revocable, the default), counter.
 * Prints, per mode, each build's median round trip (allocate + deallocate, 4 KiB or 1 unit)
 * and the median of the same-round after/before ratios.
 */
'use strict';
const path = require('node:path');

const [beforeRoot, afterRoot, ...modeArgs] = process.argv.slice(2);
if (!beforeRoot || !afterRoot) {
  console.error('usage: node scripts/compare-builds.js <before-root> <after-root> [view|immediate|deferred|counter...]');
  process.exit(2);
}
const modes = modeArgs.length > 0 ? modeArgs : ['view', 'immediate', 'deferred', 'counter'];
const ROUNDS = 25;
const builds = {
  before: require(path.resolve(beforeRoot, 'dist', 'index.js')),
  after: require(path.resolve(afterRoot, 'dist', 'index.js')),
};

function scopeFor(isopool, mode) {
  const rm = new isopool.ResourceManager({ leakDetection: 'off' });
  if (mode === 'counter') rm.defineResourceType('conn', { kind: 'counter' });
  const options = mode === 'view' ? { access: 'view' } : mode === 'immediate' ? { unsafeImmediateReuse: true } : {};
  return rm.openChannel('c', options);
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

async function main() {
  console.log(`node ${process.version}, ${ROUNDS} alternating rounds per mode`);
  for (const mode of modes) {
    const scopes = { before: scopeFor(builds.before, mode), after: scopeFor(builds.after, mode) };
    const n = mode === 'deferred' ? 20000 : 100000;
    const times = { before: [], after: [] };
    for (let r = 0; r < ROUNDS; r++) {
      for (const k of r % 2 === 0 ? ['after', 'before'] : ['before', 'after']) {
        const s = scopes[k];
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < n; i++) s.deallocate(mode === 'counter' ? s.allocate('conn', 1) : s.allocate('buffer', 4096));
        times[k].push(Number(process.hrtime.bigint() - t0) / n);
        await new Promise((resolve) => setImmediate(resolve)); // deferred reuse: buffers die between rounds
      }
    }
    const ratio = median(times.after.map((a, i) => a / times.before[i]));
    console.log(`${mode}: before ${median(times.before).toFixed(0)} ns, after ${median(times.after).toFixed(0)} ns, after/before ${ratio.toFixed(3)}`);
  }
}

void main();
