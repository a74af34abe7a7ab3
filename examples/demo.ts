/**
 * `npm start`: a demonstration workload of several channels on one ResourceManager.
 *
 * - tenant-a   a well-behaved tenant: revocable buffers of mixed sizes.
 * - tenant-b   a noisy tenant with a 1 MiB quota that keeps asking for more.
 * - stream-c   a trusted hot path in view mode (fast, not revocable).
 * - tenant-d   a misbehaving tenant that presents stale, forged and foreign handles.
 * - tenant-e   a revocable tenant with `unsafeImmediateReuse`: its buffers are revoked at the free.
 * - jobs       counted resources (task slots) with a quota of 8.
 *
 * It prints a per-channel table while it runs and a summary from getResourceMetrics() at the end,
 * then what a closed channel's buffer looks like: on a default revocable channel it is not detached
 * and its memory waits (`pendingRelease`) until the buffer is collected, which the demo shows when
 * it runs with `--expose-gc` (`npm start` does); on the `unsafeImmediateReuse` channel it is revoked.
 * Runs for about 4 seconds; `--seconds N` changes that.
 */
import {
  InvalidHandleError,
  ResourceLimitError,
  ResourceManager,
} from '../lib';
import type { ChannelScope, ManagerMetrics, ResourceHandle } from '../lib';

const args = process.argv.slice(2);
const secondsArg = args.indexOf('--seconds');
const SECONDS = secondsArg >= 0 ? Number(args[secondsArg + 1]) : 4;
const KiB = 1024;
const MiB = 1024 * KiB;

const manager = new ResourceManager({ leakDetection: 'sampled' });
manager.defineResourceType('task-slot', { kind: 'counter', limits: { maxBytes: 8 } });

const tenantA = manager.openChannel('tenant-a');
const tenantB = manager.openChannel('tenant-b', { limits: { '*': { maxBytes: 1 * MiB, softBytes: 768 * KiB } } });
const streamC = manager.openChannel('stream-c', { access: 'view' });
const tenantD = manager.openChannel('tenant-d', { zero: 'always' });
const tenantE = manager.openChannel('tenant-e', { unsafeImmediateReuse: true });
const jobs = manager.openChannel('jobs');

const events = { pressure: 0, violation: 0, limitRefusals: 0, forgedRejected: 0, staleRejected: 0, crossRejected: 0 };
manager.on('pressure', () => events.pressure++);
manager.on('violation', () => events.violation++);

/** Deterministic pseudo-random numbers, so every run does the same work. */
let seed = 0x2545f491;
function random(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 0x100000000;
}

function churn(scope: ChannelScope, live: ResourceHandle[], sizes: number[], ops: number): void {
  for (let i = 0; i < ops; i++) {
    if (live.length > 0 && (live.length > 64 || random() < 0.5)) {
      const h = live.splice(Math.floor(random() * live.length), 1)[0];
      scope.deallocate(h);
    } else {
      const size = sizes[Math.floor(random() * sizes.length)];
      const h = scope.allocate('buffer', size);
      h.buffer?.fill(scope.channelId.charCodeAt(scope.channelId.length - 1));
      live.push(h);
    }
  }
}

const liveA: ResourceHandle[] = [];
const liveB: ResourceHandle[] = [];
const liveC: ResourceHandle[] = [];
const liveE: ResourceHandle[] = [];
const liveJobs: ResourceHandle[] = [];

function noisyTenant(): void {
  // 48 KiB requests are charged a whole 64 KiB "medium" slot, so the 1 MiB quota bites after 16;
  // it frees some now and then and immediately runs into the quota again.
  for (let i = 0; i < 8; i++) {
    try {
      liveB.push(tenantB.allocate('buffer', 48 * KiB));
    } catch (err) {
      if (err instanceof ResourceLimitError) events.limitRefusals++;
      else throw err;
    }
  }
  if (random() < 0.3) while (liveB.length > 4) tenantB.deallocate(liveB.pop()!);
}

function misbehavingTenant(): void {
  const h = tenantD.allocate('buffer', 512);
  h.buffer!.write('tenant-d secret');
  tenantD.deallocate(h);
  // A stale handle: freed above. Refused and counted.
  if (!tenantD.deallocate(h.id)) events.staleRejected++;
  // A forged id: a number the manager never issued.
  const forged = Math.floor(random() * Number.MAX_SAFE_INTEGER);
  if (!tenantD.validate(forged).valid) events.forgedRejected++;
  // Another channel's handle, presented to tenant-d's scope: answered as a forged id (a scope
  // is no oracle for other channels' ids), counted as CROSS_CHANNEL against tenant-d.
  if (liveA.length > 0) {
    try {
      tenantD.track(liveA[0]);
    } catch (err) {
      if (err instanceof InvalidHandleError) events.crossRejected++;
      else throw err;
    }
  }
}

function jobSlots(): void {
  try {
    liveJobs.push(jobs.allocate('task-slot', 1 + Math.floor(random() * 3)));
  } catch (err) {
    if (err instanceof ResourceLimitError) events.limitRefusals++;
    else throw err;
  }
  if (liveJobs.length > 2 && random() < 0.6) jobs.deallocate(liveJobs.shift()!);
}

function pad(value: string | number, width: number): string {
  const s = typeof value === 'number' ? value.toLocaleString('en-US') : value;
  return s.length >= width ? s : ' '.repeat(width - s.length) + s;
}

function printTable(elapsedMs: number, m: ManagerMetrics): void {
  console.log(`\n t = ${(elapsedMs / 1000).toFixed(1)} s`);
  console.log(`  ${'channel'.padEnd(10)} ${pad('handles', 8)} ${pad('bytes in use', 13)} ${pad('peak bytes', 13)} ${pad('refusals', 9)} ${pad('violations', 11)}`);
  for (const [id, c] of Object.entries(m.channels)) {
    const violations = Object.values(c.violations).reduce((a, b) => a + b, 0);
    console.log(`  ${id.padEnd(10)} ${pad(c.handles, 8)} ${pad(c.bytesInUse, 13)} ${pad(c.peakBytes, 13)} ${pad(c.limitRejections, 9)} ${pad(violations, 11)}`);
  }
}

/** One macrotask turn: a service yields to the event loop, and freed buffers' memory returns then. */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

async function main(): Promise<void> {
  const start = Date.now();
  let nextPrint = 0;
  let rounds = 0;
  console.log(`isopool demo: 6 channels for ${SECONDS} s on Node ${process.version}`);
  while (Date.now() - start < SECONDS * 1000) {
    churn(tenantA, liveA, [700, 4 * KiB, 20 * KiB, 200 * KiB], 40);
    churn(tenantE, liveE, [700, 4 * KiB], 20);
    churn(streamC, liveC, [1500, 4 * KiB], 200);
    noisyTenant();
    misbehavingTenant();
    jobSlots();
    rounds++;
    const elapsed = Date.now() - start;
    if (elapsed >= nextPrint) {
      printTable(elapsed, manager.getResourceMetrics());
      nextPrint += 1000;
    }
    // Default revocable memory is reused only once its freed buffers are collected, which needs
    // the event loop: a loop that never yields would keep all of it parked.
    await yieldToEventLoop();
  }

  // Isolation checks, then an orderly shutdown of three channels.
  const isolation = ['tenant-a', 'tenant-b', 'stream-c', 'tenant-d', 'tenant-e'].map((id) => manager.verifyResourceIsolation(id));
  // A tenant-a and a tenant-e buffer still live at the close (the churn can end with none live: one of its own then).
  let staleA: ResourceHandle | undefined = liveA[0] ?? tenantA.allocate('buffer', 700);
  const staleE = liveE[0] ?? tenantE.allocate('buffer', 700);
  const closeB = manager.closeChannel('tenant-b');
  const closeA = manager.closeChannel('tenant-a');
  const closeE = manager.closeChannel('tenant-e');
  const final = manager.getResourceMetrics();

  console.log('\n== summary (getResourceMetrics) ==');
  console.log(`rounds: ${rounds}`);
  console.log(`allocations: ${final.totals.allocations.toLocaleString('en-US')}, deallocations: ${final.totals.deallocations.toLocaleString('en-US')}, refusals: ${final.totals.refusals}`);
  console.log(`live handles: ${final.totals.handles}, bytes in use: ${final.totals.bytesInUse.toLocaleString('en-US')}, reserved: ${final.totals.reservedBytes.toLocaleString('en-US')}`);
  console.log(`latency ns  allocate p50/p99/p999: ${final.latencyNs.allocate.p50}/${final.latencyNs.allocate.p99}/${final.latencyNs.allocate.p999}` +
    `  deallocate: ${final.latencyNs.deallocate.p50}/${final.latencyNs.deallocate.p99}/${final.latencyNs.deallocate.p999}`);
  console.log(`fragmentation internal ${(final.fragmentation.internal * 100).toFixed(1)}%, pool ${(final.fragmentation.pool * 100).toFixed(2)}%`);
  for (const [name, p] of Object.entries(final.pools)) {
    console.log(`pool ${name.padEnd(7)} slot ${pad(p.slotSize, 9)}  live ${pad(p.liveSlots, 5)}  retained ${pad(p.retainedFreeSlots, 4)}  hits ${pad(p.hits, 8)}  misses ${pad(p.misses, 6)}  reserved ${pad(p.reservedBytes, 11)}`);
  }
  console.log(`tenant-b (noisy): ${events.limitRefusals} allocations refused by quotas, ${events.pressure} pressure events`);
  console.log(`tenant-d (misbehaving): ${events.staleRejected} stale, ${events.forgedRejected} forged, ${events.crossRejected} cross-channel attempts refused; ${events.violation} violation events`);
  console.log(`violations by channel: ${JSON.stringify(Object.fromEntries(Object.entries(final.channels).map(([id, c]) => [id, Object.fromEntries(Object.entries(c.violations).filter(([, n]) => n > 0))])))}`);
  for (const r of isolation) console.log(`isolation ${r.channelId.padEnd(9)} isolated=${r.isolated} handles=${r.handleCount} bytes=${r.bytesInUse}${r.violations.length ? ' violations=' + r.violations.map((v) => `${v.code}×${v.count}`).join(',') : ''}`);
  console.log(`closeChannel tenant-b freed ${closeB.count} handles (${closeB.bytes.toLocaleString('en-US')} bytes); tenant-a freed ${closeA.count}; tenant-e freed ${closeE.count}`);
  console.log(`leaks detected: ${final.leaks.detected}`);

  // What a closed channel's buffer looks like. Default (deferred reuse): nothing is detached, so I/O
  // that Node may still run on the buffer is safe; its memory is parked until the buffer is collected.
  const staleAId = staleA.id;
  console.log(
    `a tenant-a buffer after close (deferred reuse): length ${staleA.buffer?.length} of ${staleA.size} requested (not detached; memory parked until collected), ` +
      `cleanup verified: ${manager.verifyCleanupCompletion(staleAId)}, pendingRelease ${final.revocation.pendingRelease}`,
  );
  // unsafeImmediateReuse: revoked at the close, its memory reusable at once.
  console.log(`a tenant-e buffer after close (unsafeImmediateReuse): length ${staleE.buffer?.length} (revoked), cleanup verified: ${manager.verifyCleanupCompletion(staleE)}`);

  // Drop the references to the closed channels' buffers, then collect until nothing is parked.
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) {
    console.log('(run with node --expose-gc to see the parked memory return after a collection)');
    return;
  }
  staleA = undefined;
  liveA.length = 0;
  liveB.length = 0;
  for (let i = 0; i < 20 && manager.getResourceMetrics().revocation.pendingRelease > 0; i++) {
    gc();
    await yieldToEventLoop();
  }
  console.log(
    `after dropping the references and a GC: pendingRelease ${manager.getResourceMetrics().revocation.pendingRelease}, ` +
      `tenant-a buffer cleanup verified: ${manager.verifyCleanupCompletion(staleAId)}`,
  );
}

main()
  .catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  })
  .finally(() => manager.close());
