/**
 * Shared helpers for the isopool mocha suite.
 *
 * - {@link expectCode}: runs a function that must throw, and checks the exact `code`, the exported
 *   class for that code (SPEC §4), the common base class and a non-empty message.
 * - {@link stateOf}: the projection of `getResourceMetrics()` that a refused operation must leave
 *   exactly as it was (SPEC §4: "Only the refusal and violation counters record it").
 * - {@link gc} / {@link collectUntil}: `global.gc` (mocha runs with `--expose-gc`) plus macrotask
 *   turns, because FinalizationRegistry callbacks run asynchronously after a collection.
 * - byte helpers for zeroing and revocation checks, and {@link detachExternally} which detaches an
 *   ArrayBuffer the way "other code" could (feature-tested per Node version).
 */
import { expect } from 'chai';
import {
  ChannelClosedError,
  InvalidArgumentError,
  InvalidHandleError,
  InvalidSizeError,
  IsolationViolationError,
  IsopoolError,
  ManagerClosedError,
  PoolExhaustedError,
  HandleTableFullError,
  ResourceHandle,
  ResourceLimitError,
  ResourceManager,
  StaleHandleError,
  UnknownChannelError,
  UnknownResourceTypeError,
} from '../lib';

// ---------------------------------------------------------------------------------------------
// errors

/** Every error code of SPEC §4. */
export type ErrorCode =
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_INVALID_SIZE'
  | 'ERR_UNKNOWN_RESOURCE_TYPE'
  | 'ERR_UNKNOWN_CHANNEL'
  | 'ERR_CHANNEL_CLOSED'
  | 'ERR_RESOURCE_LIMIT'
  | 'ERR_POOL_EXHAUSTED'
  | 'ERR_INVALID_HANDLE'
  | 'ERR_STALE_HANDLE'
  | 'ERR_ISOLATION_VIOLATION'
  | 'ERR_MANAGER_CLOSED'
  | 'ERR_HANDLE_TABLE_FULL';

/** A constructor of one of the exported error classes. */
export type ErrorClass = abstract new (...args: never[]) => IsopoolError;

/** SPEC §4: the exported class that carries each code. */
export const CLASS_BY_CODE: Readonly<Record<ErrorCode, ErrorClass>> = {
  ERR_INVALID_ARGUMENT: InvalidArgumentError,
  ERR_INVALID_SIZE: InvalidSizeError,
  ERR_UNKNOWN_RESOURCE_TYPE: UnknownResourceTypeError,
  ERR_UNKNOWN_CHANNEL: UnknownChannelError,
  ERR_CHANNEL_CLOSED: ChannelClosedError,
  ERR_RESOURCE_LIMIT: ResourceLimitError,
  ERR_POOL_EXHAUSTED: PoolExhaustedError,
  ERR_INVALID_HANDLE: InvalidHandleError,
  ERR_STALE_HANDLE: StaleHandleError,
  ERR_ISOLATION_VIOLATION: IsolationViolationError,
  ERR_MANAGER_CLOSED: ManagerClosedError,
  ERR_HANDLE_TABLE_FULL: HandleTableFullError,
};

/**
 * Calls `fn`, which must throw the exported error class for `code` (SPEC §4), an instance of
 * `IsopoolError` and `Error`, with exactly that `code` and a non-empty message. Returns the error
 * for further field checks. `what` names the case in every assertion message.
 */
export function expectCode(fn: () => unknown, code: ErrorCode, what: string): IsopoolError {
  let thrown: unknown = undefined;
  let threw = false;
  try {
    fn();
  } catch (e) {
    thrown = e;
    threw = true;
  }
  expect(threw, `${what}: expected a throw with code ${code}, but nothing was thrown`).to.equal(true);
  const cls = CLASS_BY_CODE[code];
  expect(thrown, `${what}: expected an instance of ${cls.name} (${code}), got ${describe(thrown)}`).to.be.instanceOf(cls);
  expect(thrown, `${what}: every thrown error extends IsopoolError`).to.be.instanceOf(IsopoolError);
  expect(thrown, `${what}: every thrown error extends Error`).to.be.instanceOf(Error);
  const err = thrown as IsopoolError;
  expect(err.code, `${what}: error code`).to.equal(code);
  expect(err.message, `${what}: a clear message`).to.be.a('string');
  expect(err.message.length, `${what}: the message is not empty`).to.be.greaterThan(0);
  return err;
}

/** `expectCode` for a ResourceLimitError, returning its typed fields. */
export function expectLimitError(fn: () => unknown, what: string): ResourceLimitError {
  return expectCode(fn, 'ERR_RESOURCE_LIMIT', what) as ResourceLimitError;
}

function describe(value: unknown): string {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return `${value.constructor.name}(${String(code)}): ${value.message}`;
  }
  return String(value);
}

// ---------------------------------------------------------------------------------------------
// metrics projection

/** A JSON value, as `getResourceMetrics()` must be (SPEC §1: "a plain JSON-serialisable object"). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** `getResourceMetrics()` round-tripped through JSON. */
export function metricsJson(mgr: ResourceManager): { [key: string]: Json } {
  return JSON.parse(JSON.stringify(mgr.getResourceMetrics())) as { [key: string]: Json };
}

/**
 * The state a refused operation must not change (SPEC §4: "A failed operation leaves every pool,
 * ledger usage and live handle exactly as it was. Only the refusal and violation counters record
 * it."). It is `getResourceMetrics()` through JSON, minus:
 *   - `totals.refusals` (the refusal counter);
 *   - for each entry of `channels` and for `unscoped` (DECISIONS: the unscoped domain's
 *     ChannelMetrics): `limitRejections` and `violations` (the per-channel refusal and violation
 *     counters);
 *   - the latency timings `p50`/`p99`/`p999`, `sumNs` and `buckets` (they differ between rounds
 *     that do the same work). Latency histograms count successful operations only, so their
 *     `count`s (the bucket sums) stay in the projection and must not move on a refusal.
 * Everything else — pools, ledgers, handles, bytes, peaks, allocations, deallocations,
 * fragmentation, leaks — must be deep-equal before and after a refusal.
 */
export function stateOf(mgr: ResourceManager): { [key: string]: Json } {
  const m = metricsJson(mgr);
  const totals = m['totals'];
  if (isObject(totals)) delete totals['refusals'];
  const channels = m['channels'];
  if (isObject(channels)) {
    for (const key of Object.keys(channels)) stripCounters(channels[key]);
  }
  stripCounters(m['unscoped']);
  const latency = m['latencyNs'];
  if (isObject(latency)) {
    for (const key of Object.keys(latency)) {
      const h = latency[key];
      if (isObject(h)) {
        delete h['p50'];
        delete h['p99'];
        delete h['p999'];
        delete h['sumNs'];
        delete h['buckets'];
      }
    }
  }
  return m;
}

function stripCounters(ch: Json | undefined): void {
  if (isObject(ch)) {
    delete ch['limitRejections'];
    delete ch['violations'];
  }
}

function isObject(v: Json | undefined): v is { [key: string]: Json } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Runs `fn` (expected to be refused) and checks the manager's {@link stateOf} did not change. */
export function expectUnchanged(mgr: ResourceManager, fn: () => void, what: string): void {
  const before = stateOf(mgr);
  fn();
  const after = stateOf(mgr);
  expect(after, `${what}: pools, ledgers and handles unchanged by the refusal`).to.deep.equal(before);
}

/** The seven violation codes of SPEC §2, in native order. */
export const VIOLATION_CODES = [
  'FORGED_HANDLE',
  'STALE_HANDLE',
  'CHANNEL_CLOSED',
  'CROSS_CHANNEL',
  'OUT_OF_BOUNDS',
  'CANARY_CORRUPTED',
  'BUFFER_DETACHED',
] as const;
export type ViolationCode = (typeof VIOLATION_CODES)[number];

/** A violations record with every code at 0 except those given (DECISIONS: all seven are listed). */
export function violations(counts: Partial<Record<ViolationCode, number>>): Record<ViolationCode, number> {
  const out = {} as Record<ViolationCode, number>;
  for (const code of VIOLATION_CODES) out[code] = counts[code] ?? 0;
  return out;
}

/** The ChannelMetrics shape of SPEC §5, as the tests read it. */
export interface ChannelMetricsView {
  bytesInUse: number;
  handles: number;
  peakBytes: number;
  limitRejections: number;
  violations: Record<string, number>;
}

/** `getResourceMetrics().channels[id]`, failing clearly when the channel is not listed. */
export function channelMetrics(mgr: ResourceManager, channelId: string): ChannelMetricsView {
  const channels = mgr.getResourceMetrics().channels as unknown as Record<string, ChannelMetricsView | undefined>;
  const ch = channels[channelId];
  expect(ch, `metrics.channels['${channelId}'] exists`).to.be.an('object');
  return ch as ChannelMetricsView;
}

/** `getResourceMetrics().unscoped` (DECISIONS: the unscoped domain, next to `channels`). */
export function unscopedMetrics(mgr: ResourceManager): ChannelMetricsView {
  const m = mgr.getResourceMetrics() as unknown as { unscoped?: ChannelMetricsView };
  expect(m.unscoped, 'metrics.unscoped exists (DECISIONS)').to.be.an('object');
  return m.unscoped as ChannelMetricsView;
}

/** Sum of one violation code over every channel and the unscoped domain. */
export function totalViolations(mgr: ResourceManager, code: ViolationCode): number {
  const m = mgr.getResourceMetrics() as unknown as {
    channels: Record<string, ChannelMetricsView>;
    unscoped?: ChannelMetricsView;
  };
  let n = m.unscoped?.violations[code] ?? 0;
  for (const ch of Object.values(m.channels)) n += ch.violations[code] ?? 0;
  return n;
}

/** A pool's metrics (SPEC §5), failing clearly when it is not listed. */
export interface PoolMetricsView {
  slotSize: number;
  queueSize: number;
  reservedBytes: number;
  liveSlots: number;
  liveBytes: number;
  retainedFreeSlots: number;
  hits: number;
  misses: number;
  releasedToSystem: number;
  failures: number;
}
export function poolMetrics(mgr: ResourceManager, name: string): PoolMetricsView {
  const pools = mgr.getResourceMetrics().pools as unknown as Record<string, PoolMetricsView | undefined>;
  const p = pools[name];
  expect(p, `metrics.pools['${name}'] exists`).to.be.an('object');
  return p as PoolMetricsView;
}

// ---------------------------------------------------------------------------------------------
// handles and bytes

/** The handle's Buffer, failing clearly when it is null (memory types always have one). */
export function bufferOf(h: ResourceHandle): Buffer {
  expect(h.buffer, `handle ${h.id} (${h.resourceType}) has a Buffer`).to.be.instanceOf(Buffer);
  return h.buffer as Buffer;
}

/** True when every byte of `buf` equals `byte` (and the buffer is not empty). */
export function filledWith(buf: Buffer, byte: number): boolean {
  if (buf.length === 0) return false;
  for (let i = 0; i < buf.length; i++) if (buf[i] !== byte) return false;
  return true;
}

/** True when `buf` holds at least one byte equal to `byte`. */
export function containsByte(buf: Buffer, byte: number): boolean {
  return buf.indexOf(byte) !== -1;
}

/** True when every byte of `buf` is zero. */
export function allZero(buf: Buffer): boolean {
  for (let i = 0; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

/** 4 KiB, 64 KiB, 1 MiB: the default slot sizes (SPEC §1). */
export const KiB = 1024;
export const MiB = 1024 * 1024;

/** Small custom pools that keep pool tests fast (queueSize 8 / 4 / 2). */
export const SMALL_POOLS = [
  { name: 's', slotSize: 4096, queueSize: 8 },
  { name: 'm', slotSize: 65536, queueSize: 4 },
  { name: 'l', slotSize: 1048576, queueSize: 2 },
];

// ---------------------------------------------------------------------------------------------
// GC and leaks

/** `global.gc`, exposed by mocha's `--expose-gc`. */
export function gc(): void {
  const fn: unknown = (globalThis as { gc?: unknown }).gc;
  if (typeof fn !== 'function') throw new Error('the suite must run with --expose-gc (global.gc is missing)');
  (fn as () => void)();
}

/** One macrotask turn. */
export function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Collects garbage and yields macrotask turns (FinalizationRegistry callbacks run after a GC, on a
 * later turn) until `done()` holds or `turns` rounds have passed. Returns whether `done()` held.
 */
export async function collectUntil(done: () => boolean, turns = 50): Promise<boolean> {
  for (let i = 0; i < turns; i++) {
    gc();
    await tick();
    await tick();
    if (done()) return true;
  }
  return done();
}

// ---------------------------------------------------------------------------------------------
// detaching from outside

/**
 * Detaches `ab` the way code other than isopool could, with whatever this Node offers (feature
 * tested, first that works wins):
 *   1. `ArrayBuffer.prototype.transfer()` (Node >= 21);
 *   2. a WHATWG byte stream's BYOB read, which transfers the view's buffer (works on Node 20 for
 *      the external ArrayBuffers of napi_create_external_arraybuffer);
 *   3. `structuredClone(ab, {transfer})` and a MessagePort transfer (plain ArrayBuffers; Node 20
 *      copies external ones instead of detaching them).
 * Resolves to the name of the method that left `ab.byteLength === 0`, or null when none could
 * (`ab` must not be empty on entry).
 */
export async function detachExternally(ab: ArrayBuffer): Promise<string | null> {
  const transfer = (ab as unknown as { transfer?: () => ArrayBuffer }).transfer;
  if (typeof transfer === 'function') {
    try {
      transfer.call(ab);
    } catch {
      // not transferable this way
    }
    if (ab.byteLength === 0) return 'ArrayBuffer.prototype.transfer';
  }
  try {
    const stream = new ReadableStream({
      type: 'bytes',
      pull(controller: ReadableByteStreamController): void {
        const view = controller.byobRequest?.view;
        if (view) {
          new Uint8Array(view.buffer, view.byteOffset, 1)[0] = 0;
          controller.byobRequest?.respond(1);
        }
      },
    });
    const reader = stream.getReader({ mode: 'byob' });
    await reader.read(new Uint8Array(ab));
    reader.releaseLock();
    await stream.cancel();
  } catch {
    // not transferable this way
  }
  if (ab.byteLength === 0) return 'ReadableStreamBYOBReader.read';
  try {
    structuredClone(ab, { transfer: [ab] });
  } catch {
    // not transferable this way
  }
  if (ab.byteLength === 0) return 'structuredClone';
  try {
    const { port1, port2 } = new MessageChannel();
    try {
      port1.postMessage(ab, [ab]);
    } finally {
      port1.close();
      port2.close();
    }
  } catch {
    // not transferable this way
  }
  if (ab.byteLength === 0) return 'MessagePort';
  return null;
}

/**
 * Bursts of allocations in `channel` (threads.test.ts: a view channel, from two threads at once).
 * Each handle is filled with `mark` and its index and checked after the whole burst is allocated,
 * then all are freed. Returns how many handles held wrong bytes (another thread's, or an unmapped
 * slab's) and the largest reserved bytes of pool 's' seen after a burst.
 */
export function viewBursts(manager: ResourceManager, channel: string, bursts: number, burst: number, size: number, mark: number): { wrong: number; maxReserved: number } {
  let wrong = 0;
  let maxReserved = 0;
  for (let round = 0; round < bursts; round++) {
    const hs: ResourceHandle[] = [];
    for (let i = 0; i < burst; i++) {
      const h = manager.allocateResource('buffer', size, channel);
      h.buffer!.fill(mark);
      h.buffer![0] = i & 0xff;
      hs.push(h);
    }
    hs.forEach((h, i) => {
      const b = h.buffer!;
      if (b.length !== size || b[0] !== (i & 0xff) || b[size - 1] !== mark) wrong++;
    });
    for (const h of hs) manager.deallocateResource(h);
    const pools = manager.getResourceMetrics().pools as unknown as Record<string, { reservedBytes: number }>;
    maxReserved = Math.max(maxReserved, pools.s?.reservedBytes ?? 0);
  }
  return { wrong, maxReserved };
}

// ---------------------------------------------------------------------------------------------
// deferred reuse

/**
 * Deferred reuse (the default for revocable memory): a freed buffer's memory returns to its pool
 * only once the buffer's backing store has died, which takes a collection and then a macrotask
 * turn for the native finalizer. `collect` runs `rounds` of `global.gc()` + one `setImmediate`
 * turn. The freed buffers must be unreachable from the caller by then (no arrays still holding
 * their handles or Buffers).
 */
export async function collect(rounds = 3): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    gc();
    await tick();
  }
}

/** `getResourceMetrics().revocation.pendingRelease`: freed handles whose memory is still parked. */
export function pendingRelease(mgr: ResourceManager): number {
  return mgr.getResourceMetrics().revocation.pendingRelease;
}

/**
 * How a test starts a child Node like this one: `[process.execPath, args]`, or, with
 * $ISOPOOL_NODE_EMULATOR set (scripts/test-arm64.sh sets "qemu-aarch64 -L /"), that emulator
 * running this Node.
 */
export function nodeCommand(args: readonly string[]): [string, string[]] {
  const emulator = (process.env['ISOPOOL_NODE_EMULATOR'] ?? '').split(' ').filter((w) => w !== '');
  if (emulator.length === 0) return [process.execPath, [...args]];
  return [emulator[0], [...emulator.slice(1), process.execPath, ...args]];
}
