/**
 * Suite 1: allocate + release round trips at 4 KiB, 64 KiB and 1 MiB.
 *
 * Candidates (isopool), all with `leakDetection: 'off'` so the raw pool path is compared (suite 3
 * measures what leak detection adds):
 * - revocable, with a channel: `manager.openChannel('r').allocate('buffer', n)` / `scope.deallocate(h)`
 *   (the default: deferred reuse, the freed memory waits for its buffer to be collected)
 * - revocable, with `unsafeImmediateReuse: true`: revoked and reused at free (the opt-out)
 * - revocable, without a channel: `manager.allocateResource('buffer', n)` / `deallocateResource(h)`
 * - view, with a channel: `openChannel('v', { access: 'view' })`. There is no "view without a
 *   channel": the unscoped domain is always revocable (access is a channel option, SPEC.md §1).
 *
 * Baselines (what users would otherwise use): `Buffer.allocUnsafe(n)`, `Buffer.alloc(n)`,
 * `new ArrayBuffer(n)` and a plain JS free list of preallocated Buffers ({@link JsBufferPool}).
 * One more reference, not an alternative: {@link JsHandlePool}, the least a pure-JS pool with
 * isopool's call shape (a handle per allocation, checked releases, per-channel lists, a quota)
 * does per round trip, which tells how much of the distance to the free list is the API itself.
 *
 * Every call writes one byte of the buffer and reads it back into {@link sink}. For `ArrayBuffer`
 * that needs a `Uint8Array` over it, which is part of its cost (a user needs a view to use it too).
 * @packageDocumentation
 */
import { ResourceManager } from '../lib';
import type { ChannelScope, ResourceHandle } from '../lib';
import { describeError, endJob, managerWith, medianRatio, runInterleaved, sink } from './harness';
import type { BenchConfig, Candidate, CandidateResult, Logger } from './harness';
import { JsBufferPool, JsHandlePool } from './js-pool';
import type { JsPoolChannel } from './js-pool';

export const ROUND_TRIP_SIZES: ReadonlyArray<{ readonly label: string; readonly bytes: number }> = [
  { label: '4 KiB', bytes: 4 * 1024 },
  { label: '64 KiB', bytes: 64 * 1024 },
  { label: '1 MiB', bytes: 1024 * 1024 },
];

export const CANDIDATES = {
  revocableChannel: 'isopool revocable (channel)',
  /** The opt-out of deferred reuse: `openChannel('i', { unsafeImmediateReuse: true })`. */
  revocableImmediate: 'isopool revocable (channel, unsafeImmediateReuse)',
  revocableUnscoped: 'isopool revocable (no channel)',
  viewChannel: 'isopool view (channel)',
  /** Node >= 21 only: revocableImmediate with ISOPOOL_REVOCATION=detach (the Node 20 method). */
  revocableDetach: 'isopool revocable (channel, unsafeImmediateReuse, detach method)',
  /** viewChannel with ISOPOOL_FASTLANE=off: every allocation and deallocation calls native. */
  viewNoLane: 'isopool view (channel, no fast lane)',
  /** Node >= 21 only (where unsafeImmediateReuse channels take the lane): revocableImmediate with ISOPOOL_FASTLANE=off. */
  revocableNoLane: 'isopool revocable (channel, unsafeImmediateReuse, no fast lane)',
} as const;

/** Whether revocable buffers can be revoked by transfer() here (then both methods are measured). */
const HAS_TRANSFER = typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === 'function';


export const BASELINES = {
  allocUnsafe: 'Buffer.allocUnsafe',
  alloc: 'Buffer.alloc',
  arrayBuffer: 'new ArrayBuffer',
  jsPool: 'JS free-list pool',
  /** Not a user's alternative: the cost of the API's shape in pure JS ({@link JsHandlePool}). */
  jsHandlePool: 'JS pool with handles (API reference)',
} as const;

export interface RatioEntry {
  readonly candidate: string;
  readonly baseline: string;
  /** Median over rounds of candidate / baseline (below 1: the candidate is faster). */
  readonly ratio: number;
}

export interface RoundTripSizeResult {
  readonly label: string;
  readonly bytes: number;
  readonly results: CandidateResult[];
  /** Every isopool candidate against every baseline. */
  readonly ratios: RatioEntry[];
  /** Every candidate (baselines included) against Buffer.allocUnsafe, for the chart. */
  readonly vsAllocUnsafe: RatioEntry[];
}

export interface RoundTripResult {
  readonly leakDetection: 'off';
  readonly sizes: RoundTripSizeResult[];
  /** Behaviour checks done once before timing (SPEC.md §1): expected vs actual, empty when all held. */
  readonly checks: string[];
  /** Observations worth a maintainer's look that are not failures (they do not fail the run). */
  readonly findings: string[];
  /** Heap kept by a synchronous loop of round trips; null without --expose-gc. */
  readonly syncRetention: SyncRetention[] | null;
  /** Pool memory held by deferred reuse (and by the opt-out, for comparison), 4 KiB and 64 KiB. */
  readonly held: HeldMemory[];
}

/**
 * Pool memory a revocable channel holds while it runs `jobs` jobs of `perJob` round trips each,
 * yielding to the event loop between jobs as a server does (no forced GC): the memory of freed
 * buffers waits until the collector frees them (deferred reuse), or returns at once (the opt-out).
 */
export interface HeldMemory {
  readonly candidate: string;
  readonly bytes: number;
  readonly jobs: number;
  readonly perJob: number;
  /** Most freed-but-pending handles seen at the end of a job (metrics revocation.pendingRelease). */
  readonly maxPending: number;
  /** Median of the same over jobs. */
  readonly medianPending: number;
  /** Most pool memory reserved at the end of a job, over the manager's own baseline before the run. */
  readonly maxReservedBytes: number;
}

async function measureHeld(candidate: string, manager: ResourceManager, scope: ChannelScope, bytes: number, jobs: number, perJob: number): Promise<HeldMemory> {
  await endJob();
  const base = manager.getResourceMetrics().totals.reservedBytes;
  const pending: number[] = [];
  let maxReserved = 0;
  for (let j = 0; j < jobs; j++) {
    for (let i = 0; i < perJob; i++) {
      const h = scope.allocate('buffer', bytes);
      touch(h.buffer);
      scope.deallocate(h);
    }
    const m = manager.getResourceMetrics();
    pending.push(m.revocation.pendingRelease);
    maxReserved = Math.max(maxReserved, m.totals.reservedBytes - base);
    await endJob();
  }
  const sorted = [...pending].sort((a, b) => a - b);
  return {
    candidate,
    bytes,
    jobs,
    perJob,
    maxPending: sorted[sorted.length - 1] ?? 0,
    medianPending: sorted[Math.floor(sorted.length / 2)] ?? 0,
    maxReservedBytes: maxReserved,
  };
}

/**
 * Heap retained by `roundTrips` back-to-back round trips run in one job (no yield to the event loop),
 * measured after a full GC, then again after the job ended and another full GC.
 */
export interface SyncRetention {
  readonly candidate: string;
  readonly roundTrips: number;
  /** (heapUsed after the loop and a full GC − heapUsed before) / roundTrips. */
  readonly retainedBytesPerRoundTrip: number;
  /** The same once the job has ended (WeakRef kept objects released) and a full GC ran. */
  readonly afterJobEndBytesPerRoundTrip: number;
}

/** Above this many bytes per round trip, synchronous retention is reported as a problem. */
export const RETENTION_LIMIT_BYTES = 16;

async function measureSyncRetention(candidate: string, roundTrip: () => void, roundTrips: number): Promise<SyncRetention | null> {
  const gc = globalThis.gc;
  if (typeof gc !== 'function') return null;
  await endJob();
  gc();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < roundTrips; i++) roundTrip();
  gc();
  const after = process.memoryUsage().heapUsed;
  await endJob();
  gc();
  const released = process.memoryUsage().heapUsed;
  return {
    candidate,
    roundTrips,
    retainedBytesPerRoundTrip: (after - before) / roundTrips,
    afterJobEndBytesPerRoundTrip: (released - before) / roundTrips,
  };
}

/**
 * One untimed round trip per candidate, checking what the benchmark relies on: a buffer of exactly
 * `bytes`, a true deallocation, revocation (length 0 afterwards) in revocable mode only, and
 * verifyCleanupCompletion true afterwards.
 */
function checkBehaviour(bytes: number, manager: ResourceManager, revocable: ChannelScope, view: ChannelScope, immediate: ChannelScope): string[] {
  const problems: string[] = [];
  const expect = (what: string, actual: unknown, expected: unknown): void => {
    if (!Object.is(actual, expected)) problems.push(`${what}: expected ${String(expected)}, got ${String(actual)}`);
  };
  // revoked: the buffer is detached at free; released: its memory is back at once (deferred
  // reuse keeps it until the buffer is collected, and the buffer stays readable until then).
  const cases: Array<{ name: string; allocate: () => ResourceHandle; free: (h: ResourceHandle) => boolean; revoked: boolean; released: boolean; channelId: string | null }> = [
    { name: `openChannel('r').allocate('buffer', ${bytes})`, allocate: () => revocable.allocate('buffer', bytes), free: (h) => revocable.deallocate(h), revoked: false, released: false, channelId: 'r' },
    { name: `openChannel('i', {unsafeImmediateReuse:true}).allocate('buffer', ${bytes})`, allocate: () => immediate.allocate('buffer', bytes), free: (h) => immediate.deallocate(h), revoked: true, released: true, channelId: 'i' },
    { name: `allocateResource('buffer', ${bytes})`, allocate: () => manager.allocateResource('buffer', bytes), free: (h) => manager.deallocateResource(h), revoked: false, released: false, channelId: null },
    { name: `openChannel('v', {access:'view'}).allocate('buffer', ${bytes})`, allocate: () => view.allocate('buffer', bytes), free: (h) => view.deallocate(h), revoked: false, released: true, channelId: 'v' },
  ];
  for (const c of cases) {
    try {
      const h = c.allocate();
      const b = h.buffer;
      expect(`${c.name}.buffer.length`, b?.length, bytes);
      expect(`${c.name}.channelId`, h.channelId, c.channelId);
      expect(`deallocate after ${c.name}`, c.free(h), true);
      expect(`buffer.length after deallocate (${c.name})`, b?.length, c.revoked ? 0 : bytes);
      expect(`verifyCleanupCompletion after deallocate (${c.name})`, manager.verifyCleanupCompletion(h), c.released);
      expect(`second deallocate (${c.name})`, c.free(h), false);
    } catch (error) {
      problems.push(`${c.name}: threw ${describeError(error)}`);
    }
  }
  // The API reference does what its description says, or its ratio would mean nothing.
  const ref = jsHandles(bytes);
  const other = ref.pool.openChannel('other', 0, 1024 * 1024 * 1024);
  const h = ref.pool.allocate(ref.channel, 'buffer', bytes);
  expect('JsHandlePool: buffer length', h.buffer.length, bytes);
  expect('JsHandlePool: release by another channel', ref.pool.deallocate(other, h), false);
  expect('JsHandlePool: release', ref.pool.deallocate(ref.channel, h), true);
  expect('JsHandlePool: second release', ref.pool.deallocate(ref.channel, h), false);
  expect('JsHandlePool: release of a look-alike', ref.pool.deallocate(ref.channel, { ...h }), false);
  expect('JsHandlePool: a new handle per allocation', ref.pool.allocate(ref.channel, 'buffer', bytes) !== h, true);
  return problems;
}

/** Where the API reference stores its last handle (see its candidate). */
const keptHandle: { value: unknown } = { value: null };

function touch(buffer: Buffer | null): void {
  if (buffer === null) throw new Error('memory handle without a buffer');
  buffer[0] = 1;
  sink.value ^= buffer[0];
}

function candidatesFor(
  bytes: number,
  manager: ResourceManager,
  revocable: ChannelScope,
  view: ChannelScope,
  pool: JsBufferPool,
  handles: { readonly pool: JsHandlePool; readonly channel: JsPoolChannel },
  detach: ChannelScope | null,
  viewNoLane: ChannelScope,
  revocableNoLane: ChannelScope | null,
  immediate: ChannelScope,
): Candidate[] {
  const viaScope = (name: string, scope: ChannelScope): Candidate => ({
    name,
    baseline: false,
    fn: () => {
      const h = scope.allocate('buffer', bytes);
      touch(h.buffer);
      scope.deallocate(h);
    },
  });
  return [
    ...(detach === null ? [] : [viaScope(CANDIDATES.revocableDetach, detach)]),
    ...(revocableNoLane === null ? [] : [viaScope(CANDIDATES.revocableNoLane, revocableNoLane)]),
    viaScope(CANDIDATES.revocableChannel, revocable),
    viaScope(CANDIDATES.revocableImmediate, immediate),
    {
      name: CANDIDATES.revocableUnscoped,
      baseline: false,
      fn: () => {
        const h = manager.allocateResource('buffer', bytes);
        touch(h.buffer);
        manager.deallocateResource(h);
      },
    },
    viaScope(CANDIDATES.viewChannel, view),
    viaScope(CANDIDATES.viewNoLane, viewNoLane),
    {
      name: BASELINES.allocUnsafe,
      baseline: true,
      fn: () => {
        touch(Buffer.allocUnsafe(bytes));
      },
    },
    {
      name: BASELINES.alloc,
      baseline: true,
      fn: () => {
        touch(Buffer.alloc(bytes));
      },
    },
    {
      name: BASELINES.arrayBuffer,
      baseline: true,
      fn: () => {
        const u8 = new Uint8Array(new ArrayBuffer(bytes));
        u8[0] = 1;
        sink.value ^= u8[0];
      },
    },
    {
      name: BASELINES.jsPool,
      baseline: true,
      fn: () => {
        const b = pool.acquire();
        touch(b);
        pool.release(b);
      },
    },
    {
      name: BASELINES.jsHandlePool,
      baseline: true,
      fn: () => {
        const h = handles.pool.allocate(handles.channel, 'buffer', bytes);
        // Kept, as a caller keeps its handle: a handle that never escapes this loop is optimised
        // away by V8's escape analysis, and the reference then costs as much as the free list.
        keptHandle.value = h;
        touch(h.buffer);
        handles.pool.deallocate(handles.channel, h);
      },
    },
  ];
}

/** A {@link JsHandlePool} of `bytes` buffers and one channel (8 prewarmed, a 1 GiB quota). */
function jsHandles(bytes: number): { readonly pool: JsHandlePool; readonly channel: JsPoolChannel } {
  const pool = new JsHandlePool(bytes);
  return { pool, channel: pool.openChannel('v', 8, 1024 * 1024 * 1024) };
}

export async function runRoundTrips(config: BenchConfig, log: Logger): Promise<RoundTripResult> {
  const manager = new ResourceManager({ leakDetection: 'off' });
  const detachMgr = HAS_TRANSFER ? managerWith('ISOPOOL_REVOCATION', 'detach', { leakDetection: 'off' }) : null;
  const noLaneMgr = managerWith('ISOPOOL_FASTLANE', 'off', { leakDetection: 'off' });
  const sizes: RoundTripSizeResult[] = [];
  const checks: string[] = [];
  const findings: string[] = [];
  let syncRetention: SyncRetention[] | null = null;
  const held: HeldMemory[] = [];
  try {
    const revocable = manager.openChannel('r');
    const immediate = manager.openChannel('i', { unsafeImmediateReuse: true });
    const view = manager.openChannel('v', { access: 'view' });
    const detach = detachMgr === null ? null : detachMgr.openChannel('r', { unsafeImmediateReuse: true });
    const viewNoLane = noLaneMgr.openChannel('v', { access: 'view' });
    const revocableNoLane = HAS_TRANSFER ? noLaneMgr.openChannel('r', { unsafeImmediateReuse: true }) : null;
    for (const { label, bytes } of ROUND_TRIP_SIZES) {
      log(`round trips, ${label} (${config.rounds} interleaved rounds)`);
      checks.push(...checkBehaviour(bytes, manager, revocable, view, immediate));
      const pool = new JsBufferPool(bytes, 8);
      const results = await runInterleaved(`round trip ${label}`, candidatesFor(bytes, manager, revocable, view, pool, jsHandles(bytes), detach, viewNoLane, revocableNoLane, immediate), config, log);
      const byName = new Map(results.map((r) => [r.name, r]));
      const ratios: RatioEntry[] = [];
      for (const candidate of results.filter((r) => !r.baseline)) {
        for (const baseline of results.filter((r) => r.baseline)) {
          ratios.push({ candidate: candidate.name, baseline: baseline.name, ratio: medianRatio(candidate, baseline) });
        }
      }
      const allocUnsafe = byName.get(BASELINES.allocUnsafe);
      const vsAllocUnsafe: RatioEntry[] = allocUnsafe === undefined
        ? []
        : results.filter((r) => r !== allocUnsafe).map((r) => ({ candidate: r.name, baseline: allocUnsafe.name, ratio: medianRatio(r, allocUnsafe) }));
      sizes.push({ label, bytes, results, ratios, vsAllocUnsafe });
    }
    log('  synchronous-loop heap retention, 4 KiB');
    const small = ROUND_TRIP_SIZES[0].bytes;
    const roundTrips = config.mode === 'quick' ? 20_000 : 100_000;
    const candidates = candidatesFor(small, manager, revocable, view, new JsBufferPool(small, 8), jsHandles(small), detach, viewNoLane, revocableNoLane, immediate).filter(
      (c) => c.name !== BASELINES.alloc && c.name !== BASELINES.arrayBuffer,
    );
    const measured: SyncRetention[] = [];
    for (const c of candidates) {
      const r = await measureSyncRetention(c.name, c.fn, roundTrips);
      if (r === null) break;
      measured.push(r);
      if (r.retainedBytesPerRoundTrip > RETENTION_LIMIT_BYTES) {
        findings.push(
          `${c.name}, ${roundTrips} round trips of 4 KiB in one synchronous job then a full GC: expected ≈0 bytes retained per round trip ` +
            `(as Buffer.allocUnsafe), got ${r.retainedBytesPerRoundTrip.toFixed(0)} B/round trip, ` +
            `released once the job ended (${r.afterJobEndBytesPerRoundTrip.toFixed(0)} B): something per round trip is kept alive ` +
            `until the job ends (a WeakRef target, a pending finalizer)`,
        );
      }
    }
    syncRetention = measured.length === 0 ? null : measured;
    const jobs = config.mode === 'quick' ? 20 : 100;
    for (const bytes of [4 * 1024, 64 * 1024]) {
      log(`  memory held by deferred reuse, ${bytes / 1024} KiB`);
      // A fresh manager each, so one's held memory is not another's baseline.
      for (const [name, options] of [[CANDIDATES.revocableChannel, {}], [CANDIDATES.revocableImmediate, { unsafeImmediateReuse: true }]] as const) {
        const m = new ResourceManager({ leakDetection: 'off' });
        try {
          held.push(await measureHeld(name, m, m.openChannel('h', options), bytes, jobs, 1000));
        } finally {
          m.close();
        }
      }
    }
  } finally {
    manager.close();
    detachMgr?.close();
    noLaneMgr.close();
  }
  return { leakDetection: 'off', sizes, checks, findings, syncRetention, held };
}
