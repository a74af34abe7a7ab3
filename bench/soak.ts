/**
 * Soak test: churns a realistic mix of channels and allocations on one ResourceManager for a
 * while, samples RSS, JS heap, native reserved bytes, live handles and pool fragmentation, and fits
 * the growth per hour after a warm-up. `npm run soak -- --minutes N`.
 *
 * With `--cycles`, the same workload is cut into identical cycles instead: every cycle replays the
 * same seed (same sizes, channel ids, limits, lifetimes, frees and closes) and ends with a drain,
 * so the manager returns to the same logical state; the growth is fitted over the samples taken at
 * the cycle boundaries (after the drain and a forced GC), which are far less noisy than samples of
 * a live, random working set. `npm run soak -- --minutes N --cycles`.
 *
 * Usage: node --expose-gc build/ts/bench/soak.js [--minutes N] [--seed S] [--report PATH]
 *          [--cycles [--cycle-seconds S | --cycle-rounds R] [--cycle-count C] [--malloc-trim]]
 *   --minutes N         run time of the workload, fractional allowed (default 1)
 *   --seed S            PRNG seed (unsigned 32-bit integer; default: derived from the clock, printed)
 *   --report PATH       write (or update) a Markdown report; one section per --minutes value and
 *                       mode (random, cycles or cycles with --malloc-trim) is kept
 *   --cycles            the cycles mode (above)
 *   --cycle-seconds S   cycles mode: the first cycle runs S seconds (default 30); its round count
 *                       is then the length of every cycle
 *   --cycle-rounds R    cycles mode: R rounds per cycle (instead of --cycle-seconds)
 *   --cycle-count C     cycles mode: stop after C cycles even if --minutes is not over
 *   --malloc-trim       cycles mode, a diagnostic: glibc returns its free pages (malloc_trim(0))
 *                       after the GC at every boundary, before the sample. An A/B against a run
 *                       without it tells memory glibc keeps after a free from memory still held.
 *                       Its report section is separate (mode=cycles-trim).
 *
 * Progress goes to stderr, the summary to stdout. The exit code is 0 whatever the numbers are; it is
 * 1 only on a crash or an invariant violation (ledgers or counters that disagree with what the
 * workload did, handles or charged bytes left after the drain; in the cycles mode also a cycle whose
 * counts differ from the first cycle's).
 * @packageDocumentation
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import * as v8 from 'node:v8';
import { ResourceLimitError, ResourceManager } from '../lib';
import type { ChannelScope, ManagerMetrics, PoolMetrics, ResourceHandle } from '../lib';
import { loadNative } from '../lib/native/loader';
import type { NativeConfig, NativeManager } from '../lib/native/binding';
import { mulberry32 } from '../test/random';
import { machineInfo as benchMachineInfo } from './report';

// -------------------------------------------------------------------------------------------------
// configuration

const KiB = 1024;
const MiB = 1024 * KiB;
/** Target: growth after warm-up, bytes per hour. */
const GROWTH_TARGET = 64 * KiB;
/** Target of SPEC.md §1/§5: pool fragmentation. */
const FRAGMENTATION_TARGET = 0.05;
/** Open channels at any time. */
const CHANNELS = 50;
/** Allocation attempts per round. */
const ALLOCATIONS_PER_ROUND = 24;
/** Timing wheel length: the longest finite handle lifetime is below it (rounds). */
const WHEEL = 512;
/** Yield to the event loop after about this much synchronous work. */
const SLICE_MS = 4;
/** The counted resource type the workload defines. */
const COUNTER = 'conn';

interface Args {
  readonly minutes: number;
  readonly seed: number;
  readonly report: string | null;
  readonly cycles: boolean;
  readonly cycleSeconds: number;
  readonly cycleRounds: number | null;
  readonly cycleCount: number | null;
  readonly mallocTrim: boolean;
}

function usage(): string {
  return 'usage: soak.js [--minutes N] [--seed S] [--report PATH] [--cycles [--cycle-seconds S | --cycle-rounds R] [--cycle-count C] [--malloc-trim]]';
}

function parseArgs(argv: readonly string[]): Args {
  let minutes = 1;
  let seed = (Date.now() ^ (process.pid << 16)) >>> 0;
  let report: string | null = null;
  let cycles = false;
  let cycleSeconds = 30;
  let cycleRounds: number | null = null;
  let cycleCount: number | null = null;
  let mallocTrim = false;
  const positiveInt = (flag: string, text: string): number => {
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${flag} must be a positive integer, got ${JSON.stringify(text)}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    const value = (): string => {
      if (eq >= 0) return arg.slice(eq + 1);
      const next = argv[i + 1];
      if (next === undefined) throw new Error(`${name} needs a value; ${usage()}`);
      i++;
      return next;
    };
    if (name === '--minutes') {
      const text = value();
      minutes = Number(text);
      if (!Number.isFinite(minutes) || minutes <= 0) throw new Error(`--minutes must be a positive number, got ${JSON.stringify(text)}`);
    } else if (name === '--seed') {
      const text = value();
      const s = Number(text);
      if (!Number.isSafeInteger(s) || s < 0) throw new Error(`--seed must be a non-negative integer, got ${JSON.stringify(text)}`);
      seed = s >>> 0;
    } else if (name === '--report') {
      report = value();
    } else if (name === '--cycles') {
      if (eq >= 0) throw new Error(`--cycles takes no value; ${usage()}`);
      cycles = true;
    } else if (name === '--cycle-seconds') {
      const text = value();
      cycleSeconds = Number(text);
      if (!Number.isFinite(cycleSeconds) || cycleSeconds <= 0) throw new Error(`--cycle-seconds must be a positive number, got ${JSON.stringify(text)}`);
    } else if (name === '--cycle-rounds') {
      cycleRounds = positiveInt(name, value());
    } else if (name === '--cycle-count') {
      cycleCount = positiveInt(name, value());
    } else if (name === '--malloc-trim') {
      if (eq >= 0) throw new Error(`--malloc-trim takes no value; ${usage()}`);
      mallocTrim = true;
    } else if (name === '--help' || name === '-h') {
      process.stdout.write(`${usage()}\n`);
      process.exit(0);
    } else {
      throw new Error(`unknown argument ${JSON.stringify(arg)}; ${usage()}`);
    }
  }
  const cycleOnly = argv.some((a) => /^--(cycle-(seconds|rounds|count)|malloc-trim)(=|$)/.test(a));
  if (cycleOnly && !cycles) throw new Error(`--cycle-seconds, --cycle-rounds, --cycle-count and --malloc-trim need --cycles; ${usage()}`);
  return { minutes, seed, report, cycles, cycleSeconds, cycleRounds, cycleCount, mallocTrim };
}

// -------------------------------------------------------------------------------------------------
// small helpers

function fmtBytes(bytes: number): string {
  const sign = bytes < 0 ? '-' : '';
  const b = Math.abs(bytes);
  if (b >= 10 * 1024 * MiB) return `${sign}${(b / (1024 * MiB)).toFixed(1)} GiB`;
  if (b >= 10 * MiB) return `${sign}${(b / MiB).toFixed(1)} MiB`;
  if (b >= 10 * KiB) return `${sign}${(b / KiB).toFixed(1)} KiB`;
  return `${sign}${b.toFixed(0)} B`;
}

function fmtRate(bytesPerHour: number): string {
  return `${fmtBytes(bytesPerHour)}/h`;
}

function fmtPct(fraction: number): string {
  return `${(fraction * 100).toFixed(2)}%`;
}

function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** An aligned Markdown table: readable as plain text and renderable as Markdown. */
function mdTable(headers: readonly string[], rows: ReadonlyArray<readonly string[]>, right: readonly boolean[] = []): string {
  const widths = headers.map((h, c) => Math.max(3, h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const pad = (text: string, c: number): string => (right[c] === true ? text.padStart(widths[c]) : text.padEnd(widths[c]));
  const line = (cells: readonly string[]): string => `| ${cells.map((cell, c) => pad(cell, c)).join(' | ')} |`;
  const rule = `| ${widths.map((w, c) => (right[c] === true ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w))).join(' | ')} |`;
  return [line(headers), rule, ...rows.map(line)].join('\n');
}

function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as Error & { code?: unknown }).code;
    return `${error.name}${typeof code === 'string' ? ` [${code}]` : ''}: ${error.message}`;
  }
  return String(error);
}

function endJob(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A full GC, then a few event-loop turns so that FinalizationRegistry callbacks run. */
async function collect(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    if (typeof globalThis.gc === 'function') globalThis.gc();
    await endJob();
    await sleep(10);
  }
}

/** Rounds of {@link collect} that {@link release} waits at most for parked memory to return. */
const RELEASE_ROUNDS = 20;

/**
 * Deferred reuse: memory freed on a default revocable channel (or unscoped) stays parked, its slot
 * live, until its buffer is collected and the finalizer ran. Collects until
 * `revocation.pendingRelease` is 0 (the workload holds no freed buffer by then); a drain that still
 * has parked memory after {@link RELEASE_ROUNDS} rounds is an invariant violation.
 */
async function release(w: Workload, where: string): Promise<void> {
  await collect();
  for (let i = 1; i < RELEASE_ROUNDS && w.manager.getResourceMetrics().revocation.pendingRelease !== 0; i++) await collect();
  const pending = w.manager.getResourceMetrics().revocation.pendingRelease;
  if (pending !== 0) w.problems.push(`${where}: revocation.pendingRelease is ${pending} after ${RELEASE_ROUNDS} collections, expected 0`);
  w.checkReleased(where);
}

/** Least-squares line y = a + b·x, with the standard error of b and R². */
interface Fit {
  readonly slope: number;
  readonly intercept: number;
  readonly slopeStdErr: number;
  readonly r2: number;
  readonly n: number;
}

function fitLine(xs: readonly number[], ys: readonly number[]): Fit {
  const n = xs.length;
  if (n < 2) return { slope: NaN, intercept: NaN, slopeStdErr: NaN, r2: NaN, n };
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += xs[i];
    my += ys[i];
  }
  mx /= n;
  my /= n;
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = xs[i] - mx;
    const dy = ys[i] - my;
    sxx += dx * dx;
    sxy += dx * dy;
    syy += dy * dy;
  }
  if (sxx === 0) return { slope: NaN, intercept: NaN, slopeStdErr: NaN, r2: NaN, n };
  const slope = sxy / sxx;
  const intercept = my - slope * mx;
  const sse = Math.max(0, syy - slope * sxy);
  const slopeStdErr = n > 2 ? Math.sqrt(sse / (n - 2) / sxx) : NaN;
  const r2 = syy === 0 ? 1 : 1 - sse / syy;
  return { slope, intercept, slopeStdErr, r2, n };
}

// -------------------------------------------------------------------------------------------------
// workload

interface Chan {
  readonly id: string;
  readonly scope: ChannelScope;
  readonly access: 'revocable' | 'view';
  /** `unsafeImmediateReuse`: freed buffers are revoked and their slots reused at once. */
  readonly immediate: boolean;
  readonly quotaBytes: number;
  readonly deathRound: number;
  readonly live: Set<Live>;
  /** Charged bytes (units for the counter) of `live`, as the ledger should have them. */
  charged: number;
}

interface Live {
  readonly handle: ResourceHandle;
  readonly chan: Chan | null;
  freed: boolean;
}

interface Counters {
  /** Every call into the manager the workload made (allocation attempts, frees, opens, closes, checks). */
  ops: number;
  allocations: number;
  refusals: number;
  refusedByScope: Record<string, number>;
  explicitFrees: number;
  closeFrees: number;
  channelsOpened: number;
  channelsClosed: number;
  viewChannels: number;
  /** Revocable channels opened with `unsafeImmediateReuse`. */
  immediateChannels: number;
  counterAllocations: number;
  directAllocations: number;
  checks: number;
  pressureEvents: number;
  leakEvents: number;
  violationEvents: number;
}

/** One metrics sample. */
interface Sample {
  /** Seconds since the workload started. */
  readonly t: number;
  readonly rss: number;
  readonly heapUsed: number;
  readonly external: number;
  readonly reserved: number;
  readonly handles: number;
  readonly bytesInUse: number;
  readonly fragPool: number;
  readonly fragInternal: number;
  readonly opsPerSec: number;
  readonly openChannels: number;
}

/**
 * A manager and its native half, for `residentBytes` (a diagnostic the facade does not expose:
 * it walks every slab). The addon's constructor is swapped for the one construction and put back.
 */
function managerWithNative(options: ConstructorParameters<typeof ResourceManager>[0]): { manager: ResourceManager; native: NativeManager } {
  const addon = loadNative();
  const Original = addon.NativeManager;
  let native: NativeManager | undefined;
  function Capture(config: NativeConfig): NativeManager {
    native = new Original(config);
    return native;
  }
  addon.NativeManager = Capture as unknown as typeof Original;
  try {
    const manager = new ResourceManager(options);
    if (native === undefined) throw new Error('soak: the manager did not construct its native half through the addon');
    return { manager, native };
  } finally {
    addon.NativeManager = Original;
  }
}

class Workload {
  readonly manager: ResourceManager;
  /** The manager's native half (residentBytes). */
  readonly native: NativeManager;
  readonly counters: Counters = {
    ops: 0,
    allocations: 0,
    refusals: 0,
    refusedByScope: {},
    explicitFrees: 0,
    closeFrees: 0,
    channelsOpened: 0,
    channelsClosed: 0,
    viewChannels: 0,
    immediateChannels: 0,
    counterAllocations: 0,
    directAllocations: 0,
    checks: 0,
    pressureEvents: 0,
    leakEvents: 0,
    violationEvents: 0,
  };
  /** Invariant violations found while running (the run exits 1 if any). */
  readonly problems: string[] = [];
  /** Spot-checked ids whose memory was parked at their free: released once their buffers are collected. */
  readonly #parkedChecks: number[] = [];
  readonly channels: Chan[] = [];
  readonly unscoped = new Set<Live>();
  round = 0;
  #nextChannel = 0;
  readonly #wheel: Live[][] = Array.from({ length: WHEEL }, () => []);
  #rand: () => number;
  readonly #seed: number;
  /**
   * Cycles mode: every cycle replays the same workload, so what a handle's id decided in the random
   * mode (how it is freed, whether it is spot-checked) comes from a per-cycle free sequence instead
   * (the native handle ids differ from cycle to cycle).
   */
  readonly #cycles: boolean;
  #freeSeq = 0;
  /** Written into every buffer so the pages are really touched. */
  #stamp = 1;
  sinkValue = 0;

  constructor(seed: number, cycles = false) {
    this.#seed = seed;
    this.#cycles = cycles;
    this.#rand = mulberry32(seed);
    ({ manager: this.manager, native: this.native } = managerWithNative({ leakDetection: 'sampled' }));
    this.manager.on('pressure', () => this.counters.pressureEvents++);
    this.manager.on('leak', () => this.counters.leakEvents++);
    this.manager.on('violation', () => this.counters.violationEvents++);
    // Counted resources (say, upstream connections): a type-wide cap and a small per-channel cap.
    this.manager.defineResourceType(COUNTER, { kind: 'counter', limits: { maxBytes: CHANNELS * 6 } });
    if (!cycles) for (let i = 0; i < CHANNELS; i++) this.channels.push(this.#openChannel());
  }

  /**
   * Cycles mode: starts a cycle from the drained state with the same PRNG seed, round 0 and channel
   * numbering as every other cycle, so it makes the same calls with the same sizes, channel ids,
   * options, limits and lifetimes. Channel ids closed by the previous cycle are reopened with
   * `openChannel` (SPEC §1: a fresh ledger).
   */
  beginCycle(): void {
    if (!this.#cycles) throw new Error('beginCycle() is for the cycles mode');
    if (this.liveHandles() !== 0 || Object.keys(this.manager.getResourceMetrics().channels).length !== 0) {
      throw new Error('beginCycle() needs a drained workload (no live handles, no open channel)');
    }
    this.#rand = mulberry32(this.#seed);
    this.round = 0;
    this.#nextChannel = 0;
    this.#freeSeq = 0;
    this.#stamp = 1;
    this.channels.length = 0;
    for (let i = 0; i < CHANNELS; i++) this.channels.push(this.#openChannel());
  }

  /** Distinct channel ids a cycle has used so far (they are reused by every cycle). */
  get channelIdsUsed(): number {
    return this.#nextChannel;
  }

  #problem(text: string): void {
    if (this.problems.length < 50) this.problems.push(text);
  }

  #int(lo: number, hi: number): number {
    return lo + Math.floor(this.#rand() * (hi - lo + 1));
  }

  #openChannel(): Chan {
    const r = this.#rand;
    const id = `conn-${this.#nextChannel++}`;
    const access = r() < 0.2 ? 'view' : 'revocable';
    const zero = r() < 0.1 ? 'always' : 'cross-channel';
    // One channel id in 8 (not drawn from the PRNG, so the workload is the same) reuses at once.
    const immediate = access === 'revocable' && this.#nextChannel % 8 === 0;
    // Quotas: most channels have a total byte cap that a burst of large buffers can hit; some cap handles.
    const quotas = [Infinity, 32 * MiB, 16 * MiB, 8 * MiB, 6 * MiB];
    const quotaBytes = quotas[Math.floor(r() * quotas.length)];
    const limits: Record<string, { maxBytes?: number; softBytes?: number; maxHandles?: number }> = {
      [COUNTER]: { maxBytes: 8 },
    };
    if (quotaBytes !== Infinity) limits['*'] = { maxBytes: quotaBytes, softBytes: Math.floor(quotaBytes * 0.75) };
    if (r() < 0.25) limits.buffer = { maxHandles: 40 };
    const scope = this.manager.openChannel(id, { access, zero, limits, ...(immediate ? { unsafeImmediateReuse: true } : {}) });
    this.counters.ops++;
    this.counters.channelsOpened++;
    if (access === 'view') this.counters.viewChannels++;
    if (immediate) this.counters.immediateChannels++;
    // Connections live from about a second to tens of seconds (a few hundred rounds run per second).
    const life = this.#int(200, 4_000);
    return { id, scope, access, immediate, quotaBytes, deathRound: this.round + life, live: new Set(), charged: 0 };
  }

  /** 70% ≤ 4 KiB, 25% 4 KiB–64 KiB, 4% 64 KiB–1 MiB, 1% direct 1–4 MiB. */
  #size(): number {
    const p = this.#rand();
    if (p < 0.7) return this.#int(16, 4 * KiB);
    if (p < 0.95) return this.#int(4 * KiB + 1, 64 * KiB);
    if (p < 0.99) return this.#int(64 * KiB + 1, MiB);
    return this.#int(MiB + 1, 4 * MiB);
  }

  /** Rounds until release: Infinity = held until the channel closes. */
  #lifetime(): number {
    const p = this.#rand();
    if (p < 0.55) return 0; // request-scoped: released at the end of the round
    if (p < 0.85) return this.#int(1, 20);
    if (p < 0.99) return this.#int(21, WHEEL - 1);
    return Infinity; // held until its channel closes
  }

  /** Hot channels get more traffic: index skewed towards the start of the table. */
  #pickChannel(): Chan {
    return this.channels[Math.floor(CHANNELS * this.#rand() ** 1.5)];
  }

  #touch(buffer: Buffer): void {
    const stamp = this.#stamp;
    this.#stamp = (stamp % 251) + 1;
    const n = buffer.length;
    for (let i = 0; i < n; i += 4096) buffer[i] = stamp;
    buffer[n - 1] = stamp;
    this.sinkValue = (this.sinkValue + buffer[0]) | 0;
  }

  #allocateOne(): void {
    const unscoped = this.#rand() < 0.02;
    const chan = unscoped ? null : this.#pickChannel();
    const counter = !unscoped && this.#rand() < 0.05;
    const type = counter ? COUNTER : 'buffer';
    const size = counter ? this.#int(1, 3) : this.#size();
    this.counters.ops++;
    let handle: ResourceHandle;
    try {
      handle = chan === null ? this.manager.allocateResource(type, size) : chan.scope.allocate(type, size);
    } catch (error) {
      if (error instanceof ResourceLimitError) {
        this.counters.refusals++;
        const key = `${error.scope}`;
        this.counters.refusedByScope[key] = (this.counters.refusedByScope[key] ?? 0) + 1;
        return;
      }
      throw error;
    }
    this.counters.allocations++;
    if (counter) this.counters.counterAllocations++;
    if (handle.pool === 'direct') this.counters.directAllocations++;
    if (handle.buffer !== null) {
      if (handle.buffer.length !== size) this.#problem(`handle ${handle.id}: buffer length ${handle.buffer.length}, requested ${size}`);
      this.#touch(handle.buffer);
    }
    const live: Live = { handle, chan, freed: false };
    if (chan === null) {
      this.unscoped.add(live);
    } else {
      chan.live.add(live);
      chan.charged += handle.slotBytes;
    }
    const life = chan === null ? this.#int(0, 5) : this.#lifetime();
    if (life !== Infinity) this.#wheel[(this.round + life) % WHEEL].push(live);
  }

  /** Frees one handle explicitly, through one of the three ways a service would. */
  #free(live: Live): void {
    if (live.freed) return;
    live.freed = true;
    const { handle, chan } = live;
    this.counters.ops++;
    const key = this.#cycles ? this.#freeSeq++ : handle.id;
    const way = key % 3;
    let ok = true;
    if (way === 0) handle[Symbol.dispose]();
    else if (way === 1 && chan !== null) ok = chan.scope.deallocate(handle);
    else ok = this.manager.deallocateResource(handle);
    if (!ok) this.#problem(`deallocate of live handle ${handle.id} (${chan?.id ?? 'unscoped'}) returned false`);
    this.counters.explicitFrees++;
    if (chan === null) {
      this.unscoped.delete(live);
    } else {
      chan.live.delete(live);
      chan.charged -= handle.slotBytes;
    }
    // Spot checks, 1 in 64 frees. Memory of immediate reuse, and counted units: the release is
    // complete and a buffer is revoked. Deferred reuse (default revocable channels, unscoped): the
    // buffer is left as it was and the release waits for it (checked complete after the next
    // drain's collection).
    if ((key & 63) === 7) {
      this.counters.ops++;
      this.counters.checks++;
      const access = chan === null ? 'revocable' : chan.access;
      const deferred = handle.buffer !== null && access === 'revocable' && (chan === null || !chan.immediate);
      const complete = this.manager.verifyCleanupCompletion(handle);
      const length = handle.buffer === null ? 0 : handle.buffer.length;
      if (deferred) {
        if (complete) this.#problem(`verifyCleanupCompletion(${handle.id}) is true while its buffer is still reachable (${handle.pool}, deferred reuse)`);
        if (length !== handle.size) this.#problem(`revocable handle ${handle.id}: buffer length ${length} after deallocation (deferred reuse), expected ${handle.size}`);
        if (this.#parkedChecks.length < 4096) this.#parkedChecks.push(handle.id);
      } else if (access === 'revocable') {
        if (!complete) this.#problem(`verifyCleanupCompletion(${handle.id}) is false after deallocation (${handle.pool})`);
        if (length !== 0) this.#problem(`revocable handle ${handle.id}: buffer length ${length} after deallocation (unsafeImmediateReuse), expected 0`);
      }
    }
  }

  /** Checks a channel's ledger against what the workload holds, then closes it. */
  #closeChannel(chan: Chan, check: boolean): void {
    if (check) {
      this.counters.ops++;
      this.counters.checks++;
      const iso = this.manager.verifyResourceIsolation(chan.id);
      if (!iso.isolated) this.#problem(`channel ${chan.id}: verifyResourceIsolation says not isolated (${JSON.stringify(iso.violations)})`);
      if (iso.handleCount !== chan.live.size) this.#problem(`channel ${chan.id}: ledger has ${iso.handleCount} handles, workload holds ${chan.live.size}`);
      if (iso.bytesInUse !== chan.charged) this.#problem(`channel ${chan.id}: ledger charges ${iso.bytesInUse} bytes, workload's handles ${chan.charged}`);
    }
    this.counters.ops++;
    const report = this.manager.closeChannel(chan.id);
    this.counters.channelsClosed++;
    this.counters.closeFrees += report.count;
    if (report.count !== chan.live.size) this.#problem(`closeChannel(${chan.id}) freed ${report.count} handles, workload held ${chan.live.size}`);
    if (report.bytes !== chan.charged) this.#problem(`closeChannel(${chan.id}) released ${report.bytes} bytes, workload's handles were charged ${chan.charged}`);
    for (const live of chan.live) {
      live.freed = true;
      const b = live.handle.buffer;
      if (chan.access === 'revocable' && b !== null) {
        // unsafeImmediateReuse revokes; deferred reuse leaves the buffer as it was
        const expected = chan.immediate ? 0 : live.handle.size;
        if (b.length !== expected) {
          this.#problem(`handle ${live.handle.id} of closed channel ${chan.id}: buffer length ${b.length}, expected ${expected} (${chan.immediate ? 'revoked' : 'deferred reuse'})`);
        }
      }
    }
    chan.live.clear();
    chan.charged = 0;
  }

  /** One round: a batch of allocations, releases that are due, connections that end. */
  step(): void {
    for (let i = 0; i < ALLOCATIONS_PER_ROUND; i++) this.#allocateOne();
    const bucket = this.#wheel[this.round % WHEEL];
    for (const live of bucket) this.#free(live);
    bucket.length = 0;
    for (let i = 0; i < CHANNELS; i++) {
      const chan = this.channels[i];
      if (chan.deathRound <= this.round) {
        this.#closeChannel(chan, true);
        this.channels[i] = this.#openChannel();
      }
    }
    this.round++;
  }

  /**
   * The SPEC's burst test on the drained manager: in a fresh revocable and a fresh view-mode
   * channel, 2 × queueSize slots of every pool at once, all freed, the references dropped.
   */
  burst(pools: ReadonlyArray<{ name: string; slotSize: number; queueSize: number }>): number {
    const held: ResourceHandle[] = [];
    const scopes = (['revocable', 'view'] as const).map((access) => this.manager.openChannel(`burst-${access}`, { access }));
    for (const scope of scopes) {
      for (const p of pools) {
        for (let i = 0; i < 2 * p.queueSize; i++) {
          this.counters.ops++;
          const h = scope.allocate('buffer', p.slotSize);
          if (h.buffer !== null) this.#touch(h.buffer);
          held.push(h);
        }
      }
    }
    for (const h of held) {
      this.counters.ops++;
      if (!this.manager.deallocateResource(h)) this.#problem(`burst: deallocate of live handle ${h.id} returned false`);
    }
    for (const scope of scopes) {
      this.counters.ops++;
      const report = scope.close();
      if (report.count !== 0) this.#problem(`burst: closing ${scope.channelId} freed ${report.count} handles, expected 0`);
    }
    return held.length;
  }

  /** After {@link release}: every spot-checked id whose memory was parked is fully released now. */
  checkReleased(where: string): void {
    for (const id of this.#parkedChecks) {
      this.counters.ops++;
      if (!this.manager.verifyCleanupCompletion(id)) this.#problem(`${where}: verifyCleanupCompletion(${id}) is false once its buffer was collected (deferred reuse)`);
    }
    this.#parkedChecks.length = 0;
  }

  liveHandles(): number {
    let n = this.unscoped.size;
    for (const c of this.channels) n += c.live.size;
    return n;
  }

  /**
   * Frees everything: half of the channels free their handles one by one (and their ledgers are
   * checked to be empty while still open), the other half are closed with their handles live. Then
   * every channel is closed. Returns the metrics of the channels drained one by one, taken before
   * the close.
   */
  drain(): Array<{ id: string; bytesInUse: number; handles: number }> {
    for (const live of [...this.unscoped]) this.#free(live);
    const explicit = this.channels.filter((_, i) => i % 2 === 0);
    for (const chan of explicit) for (const live of [...chan.live]) this.#free(live);
    const metrics = this.manager.getResourceMetrics();
    const drained = explicit.map((c) => {
      const m = metrics.channels[c.id];
      return { id: c.id, bytesInUse: m === undefined ? NaN : m.bytesInUse, handles: m === undefined ? NaN : m.handles };
    });
    for (const chan of this.channels) this.#closeChannel(chan, false);
    for (const bucket of this.#wheel) bucket.length = 0;
    return drained;
  }
}

// -------------------------------------------------------------------------------------------------
// sampling and progress

function sampleNow(workload: Workload, t: number, opsPerSec: number): { sample: Sample; metrics: ManagerMetrics } {
  const metrics = workload.manager.getResourceMetrics();
  const mem = process.memoryUsage();
  return {
    metrics,
    sample: {
      t,
      rss: mem.rss,
      heapUsed: mem.heapUsed,
      external: mem.external,
      reserved: metrics.totals.reservedBytes,
      handles: metrics.totals.handles,
      bytesInUse: metrics.totals.bytesInUse,
      fragPool: metrics.fragmentation.pool,
      fragInternal: metrics.fragmentation.internal,
      opsPerSec,
      openChannels: Object.keys(metrics.channels).length,
    },
  };
}

class Progress {
  readonly #tty = process.stderr.isTTY === true;
  #lastDecile = -1;
  #drawn = false;

  update(fraction: number, elapsed: number, total: number, s: Sample): void {
    this.text(
      fraction,
      `${elapsed.toFixed(0)}/${total.toFixed(0)} s  ` +
        `rss ${fmtBytes(s.rss)}  heap ${fmtBytes(s.heapUsed)}  reserved ${fmtBytes(s.reserved)}  ` +
        `handles ${s.handles}  frag ${fmtPct(s.fragPool)}  ${fmtInt(s.opsPerSec)} ops/s`,
    );
  }

  /** The bar (on a TTY) or one line per 10% (otherwise), with `detail` after the percentage. */
  text(fraction: number, detail: string): void {
    const pct = Math.min(1, fraction);
    const text = `${(pct * 100).toFixed(0).padStart(3)}% ${detail}`;
    if (this.#tty) {
      const width = 24;
      const full = Math.round(pct * width);
      process.stderr.write(`\r[${'#'.repeat(full)}${'-'.repeat(width - full)}] ${text}\x1b[K`);
      this.#drawn = true;
    } else {
      const decile = Math.floor(pct * 10 + 1e-9);
      if (decile > this.#lastDecile) {
        this.#lastDecile = decile;
        process.stderr.write(`soak ${text}\n`);
      }
    }
  }

  done(): void {
    if (this.#tty && this.#drawn) process.stderr.write('\n');
  }
}

// -------------------------------------------------------------------------------------------------
// the run

interface PoolAfterDrain {
  readonly name: string;
  readonly pool: PoolMetrics;
}

interface SoakResult {
  readonly args: Args;
  readonly machine: { cpu: string; cores: number; memory: number; os: string; node: string; date: string; load: number[] };
  readonly durationSeconds: number;
  readonly warmupSeconds: number;
  readonly sampleIntervalSeconds: number;
  readonly samples: Sample[];
  /** Taken after the workload stopped and a forced GC, handles still live. */
  readonly finalSample: Sample;
  readonly rssFit: Fit;
  readonly reservedFit: Fit;
  readonly heapFit: Fit;
  readonly counters: Counters;
  readonly rounds: number;
  readonly totals: ManagerMetrics['totals'];
  readonly leaks: ManagerMetrics['leaks'];
  readonly latency: ManagerMetrics['latencyNs'];
  readonly drain: {
    readonly fragPool: number;
    readonly reserved: number;
    readonly rss: number;
    readonly handles: number;
    readonly bytesInUse: number;
    readonly pools: PoolAfterDrain[];
  };
  /** After the drain: 2 × queueSize slots of every pool in a revocable and a view channel, freed, GC. */
  readonly burst: {
    readonly handles: number;
    readonly fragPool: number;
    readonly reserved: number;
    readonly pools: PoolAfterDrain[];
  };
  readonly problems: string[];
}

async function run(args: Args, progress: Progress): Promise<{ result: SoakResult; manager: ResourceManager }> {
  const totalMs = args.minutes * 60_000;
  const intervalMs = Math.min(1000, totalMs / 25); // ≥ 20 samples whatever the length
  const warmupMs = Math.max(0.2 * totalMs, Math.min(10_000, 0.5 * totalMs));
  const workload = new Workload(args.seed);
  const samples: Sample[] = [];
  const loadStart = os.loadavg();

  const start = performance.now();
  let nextSample = start + intervalMs;
  let lastOps = 0;
  let lastSampleAt = start;
  {
    const first = sampleNow(workload, 0, 0).sample;
    samples.push(first);
    progress.update(0, 0, totalMs / 1000, first);
  }
  for (;;) {
    const sliceEnd = performance.now() + SLICE_MS;
    let now: number;
    do {
      workload.step();
      now = performance.now();
    } while (now < sliceEnd);
    if (workload.problems.length > 0 && workload.problems.length >= 50) break;
    if (now >= nextSample) {
      const opsPerSec = ((workload.counters.ops - lastOps) * 1000) / (now - lastSampleAt);
      lastOps = workload.counters.ops;
      lastSampleAt = now;
      const { sample } = sampleNow(workload, (now - start) / 1000, opsPerSec);
      samples.push(sample);
      progress.update((now - start) / totalMs, (now - start) / 1000, totalMs / 1000, sample);
      nextSample += intervalMs;
      if (nextSample < now) nextSample = now + intervalMs / 2;
    }
    if (now - start >= totalMs) break;
    await endJob();
  }
  const durationSeconds = (performance.now() - start) / 1000;
  progress.done();

  // The final sample: workload stopped, handles still live, after a forced GC.
  await collect();
  const final = sampleNow(workload, (performance.now() - start) / 1000, 0);
  const finalSample = final.sample;

  // Fits over the samples after the warm-up (the post-GC final sample is reported on its own).
  const steady = samples.filter((s) => s.t * 1000 >= warmupMs);
  const xs = steady.map((s) => s.t / 3600); // hours → slopes in bytes/hour
  const rssFit = fitLine(xs, steady.map((s) => s.rss));
  const reservedFit = fitLine(xs, steady.map((s) => s.reserved));
  const heapFit = fitLine(xs, steady.map((s) => s.heapUsed));

  // Drain: everything freed (explicitly or by closing its channel), then every channel closed.
  const drainedOpen = workload.drain();
  for (const d of drainedOpen) {
    if (d.bytesInUse !== 0 || d.handles !== 0) {
      workload.problems.push(`after freeing all its handles, channel ${d.id} still has bytesInUse ${d.bytesInUse}, handles ${d.handles}`);
    }
  }
  await release(workload, 'after the drain');
  const after = workload.manager.getResourceMetrics();
  const rssAfterDrain = process.memoryUsage().rss;
  const c = workload.counters;
  if (after.totals.handles !== 0) workload.problems.push(`after the drain, totals.handles is ${after.totals.handles}, expected 0`);
  if (after.totals.bytesInUse !== 0) workload.problems.push(`after the drain, totals.bytesInUse is ${after.totals.bytesInUse}, expected 0`);
  if (after.unscoped.bytesInUse !== 0 || after.unscoped.handles !== 0) {
    workload.problems.push(`after the drain, the unscoped domain has bytesInUse ${after.unscoped.bytesInUse}, handles ${after.unscoped.handles}`);
  }
  for (const [id, m] of Object.entries(after.channels)) {
    if (m.bytesInUse !== 0 || m.handles !== 0) workload.problems.push(`after the drain, channel ${id} has bytesInUse ${m.bytesInUse}, handles ${m.handles}`);
  }
  for (const [name, p] of Object.entries(after.pools)) {
    if (p.liveSlots !== 0) workload.problems.push(`after the drain, pool ${name} has ${p.liveSlots} live slots`);
  }
  // The manager's counters against the workload's own.
  if (after.totals.allocations !== c.allocations) workload.problems.push(`totals.allocations ${after.totals.allocations}, workload made ${c.allocations}`);
  const expectedFrees = c.explicitFrees + c.closeFrees + after.leaks.reclaimed;
  if (after.totals.deallocations !== expectedFrees) {
    workload.problems.push(
      `totals.deallocations ${after.totals.deallocations}, expected ${expectedFrees} (${c.explicitFrees} explicit + ${c.closeFrees} by close + ${after.leaks.reclaimed} leak reclaims)`,
    );
  }
  if (after.totals.refusals !== c.refusals) workload.problems.push(`totals.refusals ${after.totals.refusals}, workload saw ${c.refusals} ResourceLimitErrors`);
  if (after.leaks.detected !== 0) workload.problems.push(`${after.leaks.detected} leak(s) reported, but the workload held or freed every handle (false positives)`);
  if (c.violationEvents !== 0) workload.problems.push(`${c.violationEvents} 'violation' event(s), but the workload never misused a handle`);

  // The burst test: fill every pool to 2 × queueSize in both access modes, free it all, GC.
  const burstPools = Object.entries(after.pools)
    .filter(([, p]) => p.slotSize > 0)
    .map(([name, p]) => ({ name, slotSize: p.slotSize, queueSize: p.queueSize }));
  const burstHandles = workload.burst(burstPools);
  await release(workload, 'after the burst');
  const afterBurst = workload.manager.getResourceMetrics();
  if (afterBurst.totals.handles !== 0 || afterBurst.totals.bytesInUse !== 0) {
    workload.problems.push(`after the burst, totals.handles ${afterBurst.totals.handles}, bytesInUse ${afterBurst.totals.bytesInUse}, expected 0 / 0`);
  }

  const result: SoakResult = {
    args,
    machine: machineInfo(loadStart),
    durationSeconds,
    warmupSeconds: warmupMs / 1000,
    sampleIntervalSeconds: intervalMs / 1000,
    samples,
    finalSample,
    rssFit,
    reservedFit,
    heapFit,
    counters: c,
    rounds: workload.round,
    totals: final.metrics.totals,
    leaks: after.leaks,
    latency: final.metrics.latencyNs,
    drain: {
      fragPool: after.fragmentation.pool,
      reserved: after.totals.reservedBytes,
      rss: rssAfterDrain,
      handles: after.totals.handles,
      bytesInUse: after.totals.bytesInUse,
      pools: Object.entries(after.pools).map(([name, pool]) => ({ name, pool })),
    },
    burst: {
      handles: burstHandles,
      fragPool: afterBurst.fragmentation.pool,
      reserved: afterBurst.totals.reservedBytes,
      pools: Object.entries(afterBurst.pools).map(([name, pool]) => ({ name, pool })),
    },
    problems: workload.problems,
  };
  process.stderr.write(`(sink ${workload.sinkValue})\n`);
  return { result, manager: workload.manager };
}

// -------------------------------------------------------------------------------------------------
// output

function verdict(ok: boolean): string {
  return ok ? 'PASS' : 'INFO';
}

function fitCell(f: Fit): string {
  if (!Number.isFinite(f.slope)) return 'n/a';
  return `${fmtRate(f.slope)} ± ${fmtRate(f.slopeStdErr)}`;
}

function summaryRows(r: SoakResult): string[][] {
  const c = r.counters;
  const steadyN = r.rssFit.n;
  return [
    ['duration', `${r.durationSeconds.toFixed(1)} s (warm-up ${r.warmupSeconds.toFixed(1)} s excluded from the fits; ${steadyN} of ${r.samples.length} samples fitted)`],
    ['total ops', `${fmtInt(c.ops)} (${fmtInt(c.ops / r.durationSeconds)}/s; ${fmtInt(r.rounds)} rounds)`],
    ['allocations', `${fmtInt(c.allocations)} (${fmtInt(c.directAllocations)} direct, ${fmtInt(c.counterAllocations)} counter); ${fmtInt(c.refusals)} refused by quotas (${fmtPct(c.refusals / Math.max(1, c.allocations + c.refusals))})`],
    ['frees', `${fmtInt(c.explicitFrees)} explicit, ${fmtInt(c.closeFrees)} by closeChannel`],
    [
      'channels',
      `${fmtInt(c.channelsOpened)} opened (${fmtInt(c.viewChannels)} view-mode, ${fmtInt(c.immediateChannels)} unsafeImmediateReuse), ${fmtInt(c.channelsClosed)} closed ` +
        `(${fmtInt((c.channelsClosed * 3600) / r.durationSeconds)}/h), ${CHANNELS} open at a time`,
    ],
    ['RSS growth (fit)', `${fitCell(r.rssFit)} (R² ${r.rssFit.r2.toFixed(2)})`],
    ['native reserved growth (fit)', `${fitCell(r.reservedFit)} (R² ${r.reservedFit.r2.toFixed(2)})`],
    ['JS heapUsed growth (fit)', `${fitCell(r.heapFit)} (R² ${r.heapFit.r2.toFixed(2)})`],
    ['final sample (after GC, live)', `RSS ${fmtBytes(r.finalSample.rss)}, heap ${fmtBytes(r.finalSample.heapUsed)}, reserved ${fmtBytes(r.finalSample.reserved)}, ${fmtInt(r.finalSample.handles)} handles`],
    ['pool fragmentation, live (final)', fmtPct(r.finalSample.fragPool)],
    ['pool fragmentation, after drain', fmtPct(r.drain.fragPool)],
    ['reserved after drain', `${fmtBytes(r.drain.reserved)} (RSS ${fmtBytes(r.drain.rss)})`],
    ['pool fragmentation, after a burst', `${fmtPct(r.burst.fragPool)} (${fmtInt(r.burst.handles)} slots freed at once; reserved then ${fmtBytes(r.burst.reserved)})`],
    ['handles / bytesInUse after drain', `${r.drain.handles} / ${r.drain.bytesInUse}`],
    ['leaks detected', `${r.leaks.detected} (reclaimed ${r.leaks.reclaimed})`],
    ['native latency p50 / p99 (alloc, free)', `${r.latency.allocate.p50} / ${r.latency.allocate.p99} ns, ${r.latency.deallocate.p50} / ${r.latency.deallocate.p99} ns`],
  ];
}

function verdictLines(r: SoakResult): string[] {
  const lines: string[] = [];
  const growth = (label: string, f: Fit): void => {
    if (!Number.isFinite(f.slope)) {
      lines.push(`INFO ${label}: not enough samples after the warm-up to fit`);
      return;
    }
    const resolvable = 2 * f.slopeStdErr;
    const note = resolvable > GROWTH_TARGET ? `; this run cannot resolve growth below ~${fmtRate(resolvable)} (2 standard errors)` : '';
    lines.push(`${verdict(f.slope < GROWTH_TARGET)} ${label}: ${fmtRate(f.slope)} (target < ${fmtRate(GROWTH_TARGET)} after warm-up${note})`);
  };
  growth('RSS growth', r.rssFit);
  growth('native reserved growth', r.reservedFit);
  lines.push(`${verdict(r.finalSample.fragPool < FRAGMENTATION_TARGET)} pool fragmentation, live: ${fmtPct(r.finalSample.fragPool)} (target < 5%)`);
  lines.push(`${verdict(r.drain.fragPool < FRAGMENTATION_TARGET)} pool fragmentation after drain: ${fmtPct(r.drain.fragPool)} (target < 5%)`);
  lines.push(`${verdict(r.burst.fragPool < FRAGMENTATION_TARGET)} pool fragmentation after a freed burst: ${fmtPct(r.burst.fragPool)} (target < 5%)`);
  lines.push(r.problems.length === 0 ? 'PASS invariants: ledgers, counters and the drain agree with the workload' : `FAIL invariants: ${r.problems.length} violation(s)`);
  return lines;
}

function poolRows(pools: readonly PoolAfterDrain[]): string[][] {
  return pools.map(({ name, pool: p }) => [
    name,
    fmtBytes(p.reservedBytes),
    `${p.retainedFreeSlots} / ${p.queueSize}`,
    fmtBytes(p.retainedFreeSlots * p.slotSize),
    fmtInt(p.hits),
    fmtInt(p.misses),
    fmtInt(p.releasedToSystem),
  ]);
}

const POOL_HEADERS = ['pool', 'reserved', 'retained / queueSize', 'retained bytes', 'hits', 'misses', 'released to system'];

function seriesRows(r: SoakResult, max: number): string[][] {
  const all = r.samples;
  const step = Math.max(1, Math.ceil(all.length / max));
  const picked = all.filter((_, i) => i % step === 0 || i === all.length - 1);
  const row = (s: Sample, mark: string): string[] => [
    `${s.t.toFixed(1)}${mark}`,
    fmtBytes(s.rss),
    fmtBytes(s.heapUsed),
    fmtBytes(s.reserved),
    fmtInt(s.handles),
    fmtBytes(s.bytesInUse),
    fmtPct(s.fragPool),
    fmtInt(s.opsPerSec),
  ];
  return [...picked.map((s) => row(s, s.t * 1000 < r.warmupSeconds * 1000 ? ' (w)' : '')), row(r.finalSample, ' (gc)')];
}

const SERIES_HEADERS = ['t (s)', 'RSS', 'heapUsed', 'reserved', 'handles', 'bytesInUse', 'pool frag', 'ops/s'];

function consoleSummary(r: SoakResult): string {
  const out: string[] = [];
  out.push(
    '',
    `isopool soak — ${r.args.minutes} min, seed ${r.args.seed}; ${r.machine.cpu}, ${r.machine.cores} cores, Node ${r.machine.node}`,
    '',
    mdTable(['', ''], summaryRows(r)),
    '',
    'Pools after the drain:',
    mdTable(POOL_HEADERS, poolRows(r.drain.pools), [false, true, true, true, true, true, true]),
    '',
    'Pools after the burst (2 × queueSize slots of each pool, revocable and view channels, freed, GC):',
    mdTable(POOL_HEADERS, poolRows(r.burst.pools), [false, true, true, true, true, true, true]),
    '',
    ...verdictLines(r),
  );
  if (r.problems.length > 0) out.push('', 'Invariant violations:', ...r.problems.map((p) => `- ${p}`));
  return `${out.join('\n')}\n`;
}

/** The report's sections, in their order: one per --minutes value and mode. */
const REPORT_MODES = ['random', 'cycles', 'cycles-trim'] as const;
type ReportMode = (typeof REPORT_MODES)[number];

/** A run's section: one per --minutes value and mode (the random mode has no `mode=`). */
const SECTION_START = /^<!-- soak-run minutes=([0-9.e+-]+)(?: mode=(cycles|cycles-trim))? -->$/;
const SECTION_END = '<!-- /soak-run -->';

function runSection(r: SoakResult): string {
  const c = r.counters;
  const scopes = Object.entries(c.refusedByScope)
    .map(([k, v]) => `${k} ${fmtInt(v)}`)
    .join(', ');
  const out: string[] = [
    ...sectionOpening(`minutes=${r.args.minutes}`, `\`--minutes ${r.args.minutes}\` (seed ${r.args.seed})`, r, '', summaryRows(r), verdictLines(r)),
    `Quota refusals by scope: ${scopes.length > 0 ? scopes : 'none'}. 'pressure' events: ${fmtInt(c.pressureEvents)}.`,
    '',
    'Pools after the drain:',
    '',
    mdTable(POOL_HEADERS, poolRows(r.drain.pools), [false, true, true, true, true, true, true]),
    '',
    'Pools after the burst (2 × queueSize slots of each pool in a revocable and a view-mode channel, all freed, GC):',
    '',
    mdTable(POOL_HEADERS, poolRows(r.burst.pools), [false, true, true, true, true, true, true]),
    '',
    `Samples (every ${r.sampleIntervalSeconds.toFixed(2)} s, thinned; (w) = warm-up, (gc) = after the workload stopped and a forced GC):`,
    '',
    mdTable(SERIES_HEADERS, seriesRows(r, 16), [true, true, true, true, true, true, true, true]),
    '',
  ];
  if (r.problems.length > 0) out.push('Invariant violations:', '', ...r.problems.map((p) => `- ${p}`), '');
  out.push(SECTION_END);
  return out.join('\n');
}

function reportHeader(m: SoakResult['machine']): string {
  return [
    '# isopool soak results',
    '',
    '<!-- Generated by `npm run soak -- --minutes N --report bench/SOAK.md` (bench/soak.ts), or with `--cycles` added. Each run replaces the section of its --minutes value and mode. -->',
    '',
    '## Machine',
    '',
    mdTable(
      ['', ''],
      [
        ['CPU', m.cpu],
        ['cores', String(m.cores)],
        ['memory', `${(m.memory / 2 ** 30).toFixed(1)} GiB`],
        ['OS', m.os],
        ['Node', m.node],
        ['last written', m.date],
      ],
    ),
    '',
    '## Workload',
    '',
    `- One \`ResourceManager\` with default options (default pools, \`leakDetection: 'sampled'\`), ${CHANNELS} channels open at any time.`,
    '  Each channel (a "connection") lives a random 200–4,000 rounds, is checked with `verifyResourceIsolation` against',
    '  what the workload holds, closed with `closeChannel` (its long-lived handles still live) and replaced by a new id.',
    '- About 20% of the channels are `access: \'view\'`, 10% `zero: \'always\'`. Channel quotas: a `\'*\'` `maxBytes` of',
    '  6, 8, 16 or 32 MiB (softBytes at 75%) or none; a quarter cap `buffer` handles at 40; every channel caps the',
    `  counter type \`${COUNTER}\` at 8 units (and the type at ${CHANNELS * 6} units overall). Quota refusals are expected and counted.`,
    `- A round makes ${ALLOCATIONS_PER_ROUND} allocation attempts on channels picked with a skew towards "hot" ones (2% unscoped, 5% counter`,
    '  handles of 1–3 units). Buffer sizes: 70% ≤ 4 KiB, 25% 4–64 KiB, 4% 64 KiB–1 MiB, 1% direct 1–4 MiB; one byte per',
    '  4 KiB page is written so the memory is really resident.',
    `- Handle lifetimes (the live window): 55% released in the same round, 30% after 1–20 rounds, 14% after 21–${WHEEL - 1}`,
    '  rounds, 1% held until the channel closes. Frees alternate `handle[Symbol.dispose]()`, `scope.deallocate` and',
    '  `deallocateResource`; 1 in 64 is spot-checked: on a default revocable channel (deferred reuse) the buffer keeps its',
    '  length and `verifyCleanupCompletion` is false until the buffer is collected (checked true after the next drain);',
    '  on the revocable channels with `unsafeImmediateReuse` (one channel id in 8) it is true and the buffer is revoked.',
    `- The loop yields to the event loop (\`setImmediate\`) every ~${SLICE_MS} ms of work, so GC finalizers run as in a service.`,
    '- Sampled every second (at least 20 samples per run): RSS, JS `heapUsed`, `totals.reservedBytes`, live handles,',
    '  `totals.bytesInUse`, `fragmentation.pool`, ops/s. A forced GC (`--expose-gc`) precedes the final sample.',
    '- Then the drain: half the channels free their handles one by one (their ledgers must read 0 while still open), all',
    '  channels are closed, GC runs until `revocation.pendingRelease` is 0 (deferred reuse: freed memory returns once its',
    '  buffer is collected), and the run checks totals.handles = 0, every bytesInUse = 0, no live pool slot, and the',
    '  manager\'s allocation, deallocation and refusal counters against the workload\'s own. Only such an invariant',
    '  violation (or a crash) exits 1.',
    '- Cycles mode (`--cycles`, sections marked "--cycles"): the same workload cut into identical cycles. Every cycle',
    '  starts from the drained manager with the same seed, round 0 and channel numbering, so it makes the same calls',
    '  with the same sizes, channel options, limits, lifetimes, frees and closes (how a handle is freed and whether it is',
    '  spot-checked follow a per-cycle sequence instead of the native handle id, which differs between cycles). The first',
    '  cycle runs `--cycle-seconds` (default 30) and its round count becomes the length of every cycle (or `--cycle-rounds`).',
    '  Each cycle ends with the drain above, forced GCs until nothing is parked, and a boundary sample:',
    '  `totals.reservedBytes`, RSS (whole, and split into the V8 heap\'s resident pages,',
    '  `v8.getHeapStatistics().total_physical_size`, and the rest), `heapUsed`,',
    '  `external`, the C heap in use (glibc `mallinfo2`, through the addon\'s `mallocStats`), the pools\' resident',
    '  pages (mincore(2) over every slab, through the native manager\'s `residentBytes`), live handles and',
    '  bytesInUse (must both be 0), `fragmentation.pool`, each pool\'s reserved bytes and retained slots. A cycle whose counts (allocations, refusals, frees, closes, pressure events, the manager\'s totals)',
    '  differ from the first cycle\'s is an invariant violation, as is anything left after its drain.',
    '- The cycles reuse their channel ids: every cycle closes `conn-0`, `conn-1`, … and the next reopens them with',
    '  `openChannel` (SPEC §1: a closed id refuses work until `openChannel` opens it again, with a fresh ledger), so the',
    '  by-design memory of unique closed ids (below) is not part of what the cycles measure: a reopened id leaves the',
    '  manager\'s list of closed ids.',
    '',
    '## Reading the growth figures',
    '',
    '- Random mode: the fits are least-squares lines over the samples after the warm-up: the first 20% of the run, and at',
    '  least 10 s when the run is long enough (at most half of it). The `±` is one standard error of the slope.',
    '- Over a few minutes RSS is dominated by warm-up, not by leaks: V8 grows its heap (new space, old space, code space',
    '  for optimised code) until GC settles at a steady size, glibc malloc keeps freed arenas and trims them lazily, and',
    '  the pools fill up to their retained `queueSize` (up to 500 × 4 KiB + 250 × 64 KiB + 125 × 1 MiB ≈ 143 MiB by',
    '  default) only as the mix happens to reach each size class. Including that ramp in a fit would report it as',
    '  hours of "growth"; excluding it measures the steady state, which is what a long-running service sees.',
    '- Even after warm-up, short runs cannot resolve the target: 64 KiB/hour is 18 bytes per second, i.e. 3 KiB over a',
    '  3-minute window, below a single page of RSS and far below the noise of a GC sawtooth or of 1–4 MiB direct',
    '  buffers coming and going. A PASS/INFO line says whether the fitted slope is under the target; the `±` (and',
    '  the "cannot resolve" note) says how much that means. Only an hours-long run of the random mode could confirm',
    '  < 64 KiB/hour; a 60-minute one resolves about ±2 MiB/hour.',
    '- The cycles mode resolves growth far better in the same time. Its samples are taken at the same point of the same',
    '  work, with nothing live and after a forced GC, so the random live set, the direct buffers in flight and the GC',
    '  sawtooth that make the random mode\'s noise are absent: the difference between two boundaries is what the cycles',
    '  in between kept. `totals.reservedBytes` is an exact native count: byte-identical at every fitted boundary means',
    '  pool memory grew by exactly zero, not by less than some bound. RSS, `heapUsed` and `external` are fitted over',
    '  the boundaries after a warm-up of max(3, 20%) cycles (least squares against time, `±` one standard error). A',
    '  PASS line needs slope + 2 SE < 64 KiB/hour, i.e. it is resolved, not merely a small noisy slope; "not resolved"',
    '  means the `±` is too wide to tell, "above the target" that slope − 2 SE > 64 KiB/hour. "max − min" is the',
    '  worst-case spread of the fitted boundaries, whatever its shape.',
    '- RSS is split in two at each boundary. The V8 heap\'s resident pages move in 256 KiB steps as the GC resizes its',
    '  spaces, up and down by a few MiB with no trend, so they dominate the RSS fit\'s noise. "RSS outside the V8 heap"',
    '  is the rest: the pools\' slabs, the native tables, the addon\'s and Node\'s malloc, code and stacks. Its fit is',
    '  what says whether native memory grows; the V8 heap\'s own growth is `heapUsed` (live objects), fitted too.',
    '- RSS outside the V8 heap is still noisy (a few MiB): glibc keeps freed chunks and trims its arenas lazily, so',
    '  what it holds from the system moves with the order of frees, not with what is live. The C heap in use is',
    '  glibc\'s own count of allocated bytes (`mallinfo2`: `uordblks` + `hblkhd`): everything native code holds',
    '  through malloc, isopool\'s tables and Node\'s and V8\'s own, without the allocator\'s cache. With the pools\'',
    '  slabs (exactly `reservedBytes`: they are mmapped, not malloced), `heapUsed` and `external`, it covers the memory',
    '  that could leak; a leak has to show in one of these four fits. (Chunks parked in glibc\'s per-thread caches',
    '  count as in use, so a new thread or a new size class can move it by a few KiB.)',
    '- Whose C heap it is: [HEAPTRACK.md](HEAPTRACK.md) records a 40-minute cycles run under heaptrack, every malloc',
    "  with its stack (`scripts/heaptrack-growth.py`). The bytes held at each minute's quietest point did not grow:",
    '  -6.1 ± 4.5 KiB/hour in all, isopool\'s own -7.3 ± 4.1 KiB/hour. The slow rise of the C heap count in',
    "  uninstrumented runs is glibc's accounting (chunk headers, per-thread caches), not memory that code holds.",
    '- RSS outside the V8 heap is split once more: the pools\' resident pages (mincore over every slab) and the rest.',
    '  Reserved bytes are a count of mappings; the pages of a retained slot become resident only when some allocation',
    '  first writes them (this workload writes the requested size, so a 1 MiB slot reused for 70 KiB keeps most of its',
    '  pages untouched for a while). So the pools\' RSS can creep up towards `reservedBytes` while reserved stays',
    '  byte-identical: bounded by reserved, not a leak. "The rest" is the C heap the allocator holds, code and stacks.',
    '- What the cycles cannot see is growth that needs',
    '  new state (new channel ids, new resource types, a live set that only grows); the random mode covers those.',
    '- Not all growth is a leak: the manager remembers every closed channel id (SPEC §1: a closed id refuses work',
    '  until it is reopened), natively: the 65,536 most recently closed ids still closed (native/core/channel_ledger.h). Measured separately on',
    '  this machine at ~200 B of RSS per unique closed id, so a service that closes N connections an hour grows by',
    '  ~200·N B/hour until the cap (~13 MiB); at this soak\'s churn (the "channels" row) that is several MiB/hour, far',
    '  above 64 KiB/hour, and invisible in `reservedBytes`. Reusing channel ids (reopening them) adds nothing: a',
    '  reopened id leaves the list.',
    '- Fragmentation "after drain" and "after a burst" test SPEC §1: after everything is freed, reserved memory should',
    '  be about the retained free slots, so `fragmentation.pool` < 5%. The drain frees the soak\'s own live set; the',
    '  burst then allocates 2 × queueSize slots of every pool at once in a fresh revocable and a fresh view-mode channel,',
    '  frees them all, drops the references and forces a GC (view buffers pin their slab until collected). Each pool',
    '  keeps up to queueSize free slots per access mode (revocable and view slabs are separate), so "retained" can read',
    '  up to 2 × queueSize.',
    '',
  ].join('\n');
}

/** The machine a run's report names (load: the load average when the run started). */
function machineInfo(load: number[]): SoakResult['machine'] {
  const m = benchMachineInfo();
  return { cpu: m.cpuModel, cores: m.cores, memory: m.totalMemoryBytes, os: m.os, node: m.node, date: m.date, load };
}

/** A run section's opening: its marker, title, "Run on..." line, summary table and verdict lines. */
function sectionOpening(marker: string, title: string, r: { machine: SoakResult['machine'] }, note: string, rows: string[][], verdicts: string[]): string[] {
  return [
    `<!-- soak-run ${marker} -->`,
    `## ${title}`,
    '',
    `Run on ${r.machine.date}, load average at start ${r.machine.load.map((l) => l.toFixed(2)).join(' / ')}.${note}`,
    '',
    mdTable(['', ''], rows),
    '',
    '```',
    ...verdicts,
    '```',
    '',
  ];
}

/**
 * Writes `section` into the report at `file`, replacing the section of the same --minutes value and
 * mode and keeping the others (random-mode sections first, each mode by --minutes).
 */
function writeReport(file: string, machine: SoakResult['machine'], minutes: number, mode: ReportMode, section: string): void {
  const sections = new Map<string, { minutes: number; mode: string; text: string }>();
  const key = (min: number, md: string): string => `${md} ${min}`;
  if (fs.existsSync(file)) {
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    let current: { minutes: number; mode: string; lines: string[] } | null = null;
    for (const line of lines) {
      const m = SECTION_START.exec(line);
      if (m !== null) {
        current = { minutes: Number(m[1]), mode: m[2] ?? 'random', lines: [line] };
      } else if (current !== null) {
        current.lines.push(line);
        if (line === SECTION_END) {
          sections.set(key(current.minutes, current.mode), { minutes: current.minutes, mode: current.mode, text: current.lines.join('\n') });
          current = null;
        }
      }
    }
  }
  sections.set(key(minutes, mode), { minutes, mode, text: section });
  const ordered = [...sections.values()]
    .sort((a, b) => (a.mode === b.mode ? a.minutes - b.minutes : REPORT_MODES.indexOf(a.mode as ReportMode) - REPORT_MODES.indexOf(b.mode as ReportMode)))
    .map((x) => x.text);
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(file, `${reportHeader(machine)}\n# Runs\n\n${ordered.join('\n\n')}\n`);
  process.stderr.write(`wrote ${file}\n`);
}

// -------------------------------------------------------------------------------------------------
// the cycles mode

/** Boundary samples kept (preallocated, so that keeping them does not grow the heap). */
const MAX_BOUNDARIES = 8192;

/** What a cycle did, by the workload's counters and the manager's: identical in every cycle. */
const CYCLE_COUNTS = [
  'ops',
  'allocations',
  'refusals',
  'explicitFrees',
  'closeFrees',
  'channelsOpened',
  'channelsClosed',
  'viewChannels',
  'immediateChannels',
  'directAllocations',
  'counterAllocations',
  'checks',
  'pressureEvents',
  'manager allocations',
  'manager deallocations',
  'manager refusals',
  'rounds',
  'channel ids',
] as const;
type CycleCounts = Record<(typeof CYCLE_COUNTS)[number], number>;

/** Per-boundary series in preallocated arrays: index i = after cycle i's drain and a forced GC. */
const SERIES = ['t', 'cycleSeconds', 'rss', 'v8Heap', 'outsideV8', 'heapUsed', 'external', 'arrayBuffers', 'mallocInUse', 'mallocSystem', 'resident', 'rest', 'reserved', 'handles', 'bytesInUse', 'fragPool', 'openChannels'] as const;
type SeriesName = (typeof SERIES)[number];

interface CycleResult {
  readonly args: Args;
  readonly machine: SoakResult['machine'];
  readonly durationSeconds: number;
  readonly roundsPerCycle: number;
  /** Cycles run (= boundary samples). */
  readonly cycles: number;
  /** Boundaries excluded from the fits. */
  readonly warmup: number;
  readonly series: Record<SeriesName, Float64Array>;
  readonly poolNames: readonly string[];
  /** Per pool: reserved bytes and retained free slots at each boundary. */
  readonly poolReserved: readonly Float64Array[];
  readonly poolRetained: readonly Float64Array[];
  readonly perCycle: CycleCounts;
  readonly counters: Counters;
  /** Fresh manager, after a GC. */
  readonly start: { readonly rss: number; readonly heapUsed: number; readonly reserved: number };
  readonly fits: Record<'reserved' | 'rss' | 'outsideV8' | 'v8Heap' | 'heapUsed' | 'external' | 'mallocInUse' | 'resident' | 'rest', Fit>;
  readonly leaks: ManagerMetrics['leaks'];
  /** --malloc-trim: boundaries at which glibc was asked to trim, and at which it released pages. */
  readonly trims: { readonly done: number; readonly released: number };
  readonly problems: string[];
}

function cycleCounts(w: Workload, m: ManagerMetrics): CycleCounts {
  const c = w.counters;
  return {
    ops: c.ops,
    allocations: c.allocations,
    refusals: c.refusals,
    explicitFrees: c.explicitFrees,
    closeFrees: c.closeFrees,
    channelsOpened: c.channelsOpened,
    channelsClosed: c.channelsClosed,
    viewChannels: c.viewChannels,
    immediateChannels: c.immediateChannels,
    directAllocations: c.directAllocations,
    counterAllocations: c.counterAllocations,
    checks: c.checks,
    pressureEvents: c.pressureEvents,
    'manager allocations': m.totals.allocations,
    'manager deallocations': m.totals.deallocations,
    'manager refusals': m.totals.refusals,
    rounds: w.round,
    'channel ids': w.channelIdsUsed,
  };
}

/** The manager after a drain: nothing live, nothing charged, no channel open, counters = the workload's. */
function checkDrained(w: Workload, m: ManagerMetrics, where: string): void {
  const p = w.problems;
  const c = w.counters;
  if (m.totals.handles !== 0) p.push(`${where}: totals.handles is ${m.totals.handles}, expected 0`);
  if (m.totals.bytesInUse !== 0) p.push(`${where}: totals.bytesInUse is ${m.totals.bytesInUse}, expected 0`);
  if (m.unscoped.bytesInUse !== 0 || m.unscoped.handles !== 0) p.push(`${where}: the unscoped domain has bytesInUse ${m.unscoped.bytesInUse}, handles ${m.unscoped.handles}`);
  const open = Object.keys(m.channels);
  if (open.length !== 0) p.push(`${where}: ${open.length} channel(s) still open (${open.slice(0, 5).join(', ')})`);
  for (const [name, pool] of Object.entries(m.pools)) if (pool.liveSlots !== 0) p.push(`${where}: pool ${name} has ${pool.liveSlots} live slots`);
  if (m.totals.allocations !== c.allocations) p.push(`${where}: totals.allocations ${m.totals.allocations}, workload made ${c.allocations}`);
  const expectedFrees = c.explicitFrees + c.closeFrees + m.leaks.reclaimed;
  if (m.totals.deallocations !== expectedFrees) {
    p.push(`${where}: totals.deallocations ${m.totals.deallocations}, expected ${expectedFrees} (${c.explicitFrees} explicit + ${c.closeFrees} by close + ${m.leaks.reclaimed} leak reclaims)`);
  }
  if (m.totals.refusals !== c.refusals) p.push(`${where}: totals.refusals ${m.totals.refusals}, workload saw ${c.refusals} ResourceLimitErrors`);
  if (m.leaks.detected !== 0) p.push(`${where}: ${m.leaks.detected} leak(s) reported, but the workload held or freed every handle (false positives)`);
  if (c.violationEvents !== 0) p.push(`${where}: ${c.violationEvents} 'violation' event(s), but the workload never misused a handle`);
}

/** Warm-up of the cycles mode: the first 20% of the boundaries, at least 3, leaving at least 3 to fit. */
function cycleWarmup(n: number): number {
  return Math.max(0, Math.min(Math.max(3, Math.ceil(0.2 * n)), n - 3));
}

async function runCycles(args: Args, progress: Progress): Promise<{ result: CycleResult; manager: ResourceManager }> {
  const totalMs = args.minutes * 60_000;
  const loadStart = os.loadavg();
  const workload = new Workload(args.seed, true);
  const manager = workload.manager;
  const problems = workload.problems;
  const series = Object.fromEntries(SERIES.map((name) => [name, new Float64Array(MAX_BOUNDARIES).fill(NaN)])) as Record<SeriesName, Float64Array>;
  const poolNames = Object.keys(manager.getResourceMetrics().pools);
  const poolReserved = poolNames.map(() => new Float64Array(MAX_BOUNDARIES).fill(NaN));
  const poolRetained = poolNames.map(() => new Float64Array(MAX_BOUNDARIES).fill(NaN));
  const start = performance.now();

  await collect();
  const startMem = process.memoryUsage();
  const startReserved = manager.getResourceMetrics().totals.reservedBytes;
  const trims = { done: 0, released: 0 };

  let roundsPerCycle = args.cycleRounds ?? 0; // 0: set by the first cycle (--cycle-seconds)
  let reference: CycleCounts | null = null;
  let before = cycleCounts(workload, manager.getResourceMetrics());
  let n = 0;
  let lastCycleMs = 0;
  let lastBoundary = 'no boundary yet';
  let lastProgress = 0;
  const estimate = (): string => {
    if (n === 0 || lastCycleMs === 0) return args.cycleCount !== null ? String(args.cycleCount) : '?';
    const byTime = n + Math.max(0, Math.floor((totalMs - (performance.now() - start)) / lastCycleMs));
    return String(args.cycleCount !== null ? Math.min(args.cycleCount, byTime) : byTime);
  };
  for (;;) {
    const cycleStart = performance.now();
    const timeLimit = roundsPerCycle === 0 ? cycleStart + args.cycleSeconds * 1000 : Infinity;
    const roundLimit = roundsPerCycle === 0 ? Infinity : roundsPerCycle;
    workload.beginCycle();
    for (;;) {
      const sliceEnd = performance.now() + SLICE_MS;
      let now: number;
      do {
        workload.step();
        now = performance.now();
      } while (now < sliceEnd && workload.round < roundLimit && now < timeLimit);
      if (now - lastProgress >= 1000) {
        lastProgress = now;
        const mem = process.memoryUsage();
        progress.text(
          (now - start) / totalMs,
          `${((now - start) / 1000).toFixed(0)}/${(totalMs / 1000).toFixed(0)} s  cycle ${n + 1} of ~${estimate()}  live: rss ${fmtBytes(mem.rss)}, ` +
            `${fmtInt(workload.liveHandles())} handles  |  ${lastBoundary}`,
        );
      }
      if (workload.round >= roundLimit || now >= timeLimit || problems.length >= 50) break;
      await endJob();
    }
    if (roundsPerCycle === 0) roundsPerCycle = workload.round;

    // The boundary: drain, GC, sample, check.
    const drainedOpen = workload.drain();
    for (const d of drainedOpen) {
      if (d.bytesInUse !== 0 || d.handles !== 0) problems.push(`cycle ${n}: after freeing all its handles, channel ${d.id} still has bytesInUse ${d.bytesInUse}, handles ${d.handles}`);
    }
    await release(workload, `after cycle ${n}`);
    if (args.mallocTrim) {
      const released = loadNative().mallocTrim();
      if (released !== undefined) trims.done++;
      if (released === true) trims.released++;
    }
    const m = manager.getResourceMetrics();
    const mem = process.memoryUsage();
    const v8Heap = v8.getHeapStatistics().total_physical_size;
    const malloc = loadNative().mallocStats();
    const resident = workload.native.residentBytes();
    const now = performance.now();
    lastCycleMs = now - cycleStart;
    checkDrained(workload, m, `after cycle ${n}`);
    const after = cycleCounts(workload, m);
    const delta = Object.fromEntries(CYCLE_COUNTS.map((k) => [k, after[k] - (k === 'rounds' || k === 'channel ids' ? 0 : before[k])])) as CycleCounts;
    before = after;
    if (reference === null) {
      reference = delta;
    } else {
      const differ = CYCLE_COUNTS.filter((k) => delta[k] !== reference?.[k]);
      if (differ.length > 0) problems.push(`cycle ${n} differs from cycle 0: ${differ.map((k) => `${k} ${delta[k]} vs ${reference?.[k]}`).join(', ')}`);
    }
    const values: Record<SeriesName, number> = {
      t: (now - start) / 1000,
      cycleSeconds: lastCycleMs / 1000,
      rss: mem.rss,
      v8Heap,
      outsideV8: mem.rss - v8Heap,
      heapUsed: mem.heapUsed,
      external: mem.external,
      arrayBuffers: mem.arrayBuffers,
      mallocInUse: malloc?.inUseBytes ?? NaN,
      mallocSystem: malloc?.systemBytes ?? NaN,
      resident,
      rest: mem.rss - v8Heap - resident,
      reserved: m.totals.reservedBytes,
      handles: m.totals.handles,
      bytesInUse: m.totals.bytesInUse,
      fragPool: m.fragmentation.pool,
      openChannels: Object.keys(m.channels).length,
    };
    for (const name of SERIES) series[name][n] = values[name];
    poolNames.forEach((name, i) => {
      poolReserved[i][n] = m.pools[name].reservedBytes;
      poolRetained[i][n] = m.pools[name].retainedFreeSlots;
    });
    n++;
    lastBoundary = `boundary ${n}: reserved ${fmtBytes(values.reserved)}, rss ${fmtBytes(values.rss)}, heap ${fmtBytes(values.heapUsed)}, handles ${values.handles}`;
    progress.text((now - start) / totalMs, `${(values.t).toFixed(0)}/${(totalMs / 1000).toFixed(0)} s  cycle ${n} of ~${estimate()} done  |  ${lastBoundary}`);
    if (problems.length >= 50) break;
    if (args.cycleCount !== null && n >= args.cycleCount) break;
    if (n >= MAX_BOUNDARIES) break;
    if (now - start + lastCycleMs > totalMs) break;
  }
  progress.done();
  const durationSeconds = (performance.now() - start) / 1000;
  const final = manager.getResourceMetrics();

  const warmup = cycleWarmup(n);
  const xs: number[] = [];
  for (let i = warmup; i < n; i++) xs.push(series.t[i] / 3600); // hours → slopes in bytes/hour
  const fitOf = (name: SeriesName): Fit => fitLine(xs, Array.from(series[name].subarray(warmup, n)));
  const result: CycleResult = {
    args: { ...args, cycleRounds: roundsPerCycle },
    machine: machineInfo(loadStart),
    durationSeconds,
    roundsPerCycle,
    cycles: n,
    warmup,
    series,
    poolNames,
    poolReserved,
    poolRetained,
    perCycle: reference ?? cycleCounts(workload, final),
    counters: workload.counters,
    start: { rss: startMem.rss, heapUsed: startMem.heapUsed, reserved: startReserved },
    fits: {
      reserved: fitOf('reserved'),
      rss: fitOf('rss'),
      outsideV8: fitOf('outsideV8'),
      v8Heap: fitOf('v8Heap'),
      heapUsed: fitOf('heapUsed'),
      external: fitOf('external'),
      mallocInUse: fitOf('mallocInUse'),
      resident: fitOf('resident'),
      rest: fitOf('rest'),
    },
    leaks: final.leaks,
    trims,
    problems,
  };
  process.stderr.write(`(sink ${workload.sinkValue})\n`);
  return { result, manager };
}

/** Min and max of `a[from..to)`. */
function range(a: Float64Array, from: number, to: number): { min: number; max: number } {
  let min = Infinity;
  let max = -Infinity;
  for (let i = from; i < to; i++) {
    if (a[i] < min) min = a[i];
    if (a[i] > max) max = a[i];
  }
  return { min, max };
}

function cycleGrowthLine(label: string, f: Fit, spread: { min: number; max: number }, exact: boolean): string {
  const span = `max − min over the fitted boundaries ${fmtBytes(spread.max - spread.min)}`;
  if (exact && spread.max === spread.min) {
    return `PASS ${label}: byte-identical (${fmtBytes(spread.max)}, ${fmtInt(spread.max)} B) at all ${f.n} fitted boundaries: zero growth`;
  }
  if (!Number.isFinite(f.slope) || !Number.isFinite(f.slopeStdErr)) return `INFO ${label}: not enough boundaries after the warm-up to fit (${span})`;
  const upper = f.slope + 2 * f.slopeStdErr;
  const lower = f.slope - 2 * f.slopeStdErr;
  const fit = `${fmtRate(f.slope)} ± ${fmtRate(f.slopeStdErr)}`;
  if (upper < GROWTH_TARGET) return `PASS ${label}: ${fit}; slope + 2 SE = ${fmtRate(upper)} < ${fmtRate(GROWTH_TARGET)} (${span})`;
  if (lower > GROWTH_TARGET) return `INFO ${label}: ${fit}; growth above the target: slope − 2 SE = ${fmtRate(lower)} > ${fmtRate(GROWTH_TARGET)} (${span})`;
  return `INFO ${label}: ${fit}; not resolved against ${fmtRate(GROWTH_TARGET)}: slope + 2 SE = ${fmtRate(upper)} (${span})`;
}

function cycleVerdictLines(r: CycleResult): string[] {
  const from = r.warmup;
  const to = r.cycles;
  const lines = [
    cycleGrowthLine('native reserved (totals.reservedBytes)', r.fits.reserved, range(r.series.reserved, from, to), true),
    cycleGrowthLine('RSS growth', r.fits.rss, range(r.series.rss, from, to), false),
    cycleGrowthLine('RSS outside the V8 heap', r.fits.outsideV8, range(r.series.outsideV8, from, to), false),
    cycleGrowthLine('  of which the pools\' resident pages (mincore)', r.fits.resident, range(r.series.resident, from, to), false),
    cycleGrowthLine('  the rest (C heap held, code, stacks)', r.fits.rest, range(r.series.rest, from, to), false),
    cycleGrowthLine('V8 heap, resident', r.fits.v8Heap, range(r.series.v8Heap, from, to), false),
    cycleGrowthLine('JS heapUsed growth', r.fits.heapUsed, range(r.series.heapUsed, from, to), false),
    cycleGrowthLine('external memory growth', r.fits.external, range(r.series.external, from, to), false),
  ];
  if (!Number.isNaN(r.series.mallocInUse[0])) {
    lines.push(cycleGrowthLine('C heap in use (glibc mallinfo2)', r.fits.mallocInUse, range(r.series.mallocInUse, from, to), true));
  }
  const frag = range(r.series.fragPool, 0, to);
  lines.push(`${verdict(frag.max < FRAGMENTATION_TARGET)} pool fragmentation at every boundary: ${fmtPct(frag.min)}–${fmtPct(frag.max)} (target < 5%)`);
  lines.push(
    r.problems.length === 0
      ? `PASS invariants: 0 handles and 0 bytesInUse after every drain, counters agree with the workload, every cycle made the same calls as the first`
      : `FAIL invariants: ${r.problems.length} violation(s)`,
  );
  return lines;
}

function cycleSummaryRows(r: CycleResult): string[][] {
  const pc = r.perCycle;
  const s = r.series;
  const from = r.warmup;
  const to = r.cycles;
  const mean = r.cycles > 0 ? s.cycleSeconds.subarray(0, to).reduce((a, b) => a + b, 0) / r.cycles : NaN;
  const fittedCount = to - from;
  const fitSpan = fittedCount > 0 ? s.t[to - 1] - (from > 0 ? s.t[from - 1] : 0) : 0;
  const reserved = range(s.reserved, from, to);
  const mallocSystem = range(s.mallocSystem, from, to);
  const handles = range(s.handles, 0, to);
  const inUse = range(s.bytesInUse, 0, to);
  const fitRow = (f: Fit): string => (Number.isFinite(f.slope) ? `${fitCell(f)} (R² ${Number.isFinite(f.r2) ? f.r2.toFixed(2) : 'n/a'})` : 'n/a');
  /** A series' fit and the spread of its fitted boundaries. */
  const fitted = (name: keyof CycleResult['fits'] & SeriesName): string => {
    const spread = range(s[name], from, to);
    return `${fitRow(r.fits[name])}; fitted boundaries ${fmtBytes(spread.min)}–${fmtBytes(spread.max)} (max − min ${fmtBytes(spread.max - spread.min)})`;
  };
  return [
    [
      'duration',
      `${r.durationSeconds.toFixed(1)} s: ${r.cycles} cycles of ${fmtInt(r.roundsPerCycle)} rounds (mean ${mean.toFixed(1)} s per cycle, boundary included); ` +
        `warm-up ${from} cycles excluded, ${fittedCount} boundaries fitted over ${(fitSpan / 60).toFixed(1)} min`,
    ],
    [
      'every cycle',
      `${fmtInt(pc.ops)} ops, ${fmtInt(pc.allocations)} allocations (${fmtInt(pc.directAllocations)} direct, ${fmtInt(pc.counterAllocations)} counter), ` +
        `${fmtInt(pc.refusals)} refused by quotas; ${fmtInt(pc.explicitFrees)} explicit frees, ${fmtInt(pc.closeFrees)} by closeChannel; ` +
        `${fmtInt(pc.channelsClosed)} channel closes over ${fmtInt(pc['channel ids'])} ids (${fmtInt(pc.viewChannels)} view-mode, ${fmtInt(pc.immediateChannels)} unsafeImmediateReuse), the same ids every cycle`,
    ],
    ['total ops', `${fmtInt(r.counters.ops)} (${fmtInt(r.counters.ops / r.durationSeconds)}/s)`],
    ['native reserved at fitted boundaries', `min ${fmtInt(reserved.min)} B, max ${fmtInt(reserved.max)} B (max − min ${fmtBytes(reserved.max - reserved.min)})${reserved.min === reserved.max ? ': byte-identical' : ''}`],
    ['native reserved growth (fit)', fitRow(r.fits.reserved)],
    ['RSS growth (fit)', fitted('rss')],
    ['RSS outside the V8 heap (fit)', fitted('outsideV8')],
    ['  of which the pools\' resident pages (fit)', fitted('resident')],
    ['  the rest (fit)', fitted('rest')],
    ['V8 heap, resident (fit)', fitted('v8Heap')],
    ['JS heapUsed growth (fit)', fitted('heapUsed')],
    ['external memory growth (fit)', fitted('external')],
    [
      'C heap in use (fit)',
      Number.isNaN(s.mallocInUse[0])
        ? 'n/a (not glibc ≥ 2.33)'
        : `${fitted('mallocInUse')}; held from the system ${fmtBytes(mallocSystem.min)}–${fmtBytes(mallocSystem.max)}`,
    ],
    ['handles / bytesInUse at every boundary', `${handles.min === handles.max ? fmtInt(handles.max) : `${fmtInt(handles.min)}–${fmtInt(handles.max)}`} / ${inUse.min === inUse.max ? fmtInt(inUse.max) : `${fmtInt(inUse.min)}–${fmtInt(inUse.max)}`}`],
    ['start (fresh manager, GC)', `RSS ${fmtBytes(r.start.rss)}, heap ${fmtBytes(r.start.heapUsed)}, reserved ${fmtBytes(r.start.reserved)}`],
    ['leaks detected', `${r.leaks.detected} (reclaimed ${r.leaks.reclaimed})`],
    ...(r.args.mallocTrim ? [['malloc_trim(0) at boundaries', `${r.trims.done} of ${r.cycles} (pages released at ${r.trims.released})`]] : []),
  ];
}

function cyclePoolRows(r: CycleResult): string[][] {
  return r.poolNames.map((name, i) => {
    const res = range(r.poolReserved[i], r.warmup, r.cycles);
    const ret = range(r.poolRetained[i], r.warmup, r.cycles);
    return [name, `${fmtInt(res.min)} B`, `${fmtInt(res.max)} B`, ret.min === ret.max ? fmtInt(ret.min) : `${fmtInt(ret.min)}–${fmtInt(ret.max)}`];
  });
}

const CYCLE_POOL_HEADERS = ['pool', 'reserved min', 'reserved max', 'retained free slots'];

function cycleSeriesRows(r: CycleResult, max: number): string[][] {
  const s = r.series;
  const rows: string[][] = [];
  const step = Math.max(1, Math.ceil(r.cycles / max));
  for (let i = 0; i < r.cycles; i++) {
    if (i % step !== 0 && i !== r.cycles - 1 && i !== r.warmup) continue;
    rows.push([
      `${i + 1}${i < r.warmup ? ' (w)' : ''}`,
      s.t[i].toFixed(1),
      s.cycleSeconds[i].toFixed(1),
      fmtBytes(s.rss[i]),
      fmtBytes(s.outsideV8[i]),
      fmtBytes(s.resident[i]),
      fmtBytes(s.v8Heap[i]),
      fmtBytes(s.heapUsed[i]),
      fmtBytes(s.external[i]),
      Number.isNaN(s.mallocInUse[i]) ? 'n/a' : fmtBytes(s.mallocInUse[i]),
      fmtInt(s.reserved[i]),
      fmtInt(s.handles[i]),
      fmtPct(s.fragPool[i]),
    ]);
  }
  return rows;
}

const CYCLE_SERIES_HEADERS = ['cycle', 't (s)', 'cycle (s)', 'RSS', 'RSS outside V8', 'pools resident', 'V8 heap', 'heapUsed', 'external', 'C heap in use', 'reserved (B)', 'handles', 'pool frag'];

function cycleConsoleSummary(r: CycleResult): string {
  const out: string[] = [
    '',
    `isopool soak, cycles${r.args.mallocTrim ? ' with malloc_trim(0) at each boundary' : ''} — ${r.args.minutes} min, seed ${r.args.seed}, ${fmtInt(r.roundsPerCycle)} rounds per cycle; ${r.machine.cpu}, ${r.machine.cores} cores, Node ${r.machine.node}`,
    '',
    mdTable(['', ''], cycleSummaryRows(r)),
    '',
    'Pools at the fitted boundaries:',
    mdTable(CYCLE_POOL_HEADERS, cyclePoolRows(r), [false, true, true, true]),
    '',
    ...cycleVerdictLines(r),
  ];
  if (r.problems.length > 0) out.push('', 'Invariant violations:', ...r.problems.map((p) => `- ${p}`));
  return `${out.join('\n')}\n`;
}

function cycleMode(args: Args): ReportMode {
  return args.mallocTrim ? 'cycles-trim' : 'cycles';
}

function cycleRunSection(r: CycleResult): string {
  const out: string[] = [
    ...sectionOpening(
      `minutes=${r.args.minutes} mode=${cycleMode(r.args)}`,
      `\`--minutes ${r.args.minutes} --cycles${r.args.mallocTrim ? ' --malloc-trim' : ''}\` (seed ${r.args.seed}, ${fmtInt(r.roundsPerCycle)} rounds per cycle)`,
      r,
      ' Identical cycles, channel ids reused every cycle (closed, then reopened with `openChannel`); each boundary ' +
        `sample is taken after the drain and a forced GC${r.args.mallocTrim ? ', and after `malloc_trim(0)` gave glibc\'s free pages back (a diagnostic A/B)' : ''}.`,
      cycleSummaryRows(r),
      cycleVerdictLines(r),
    ),
    'Pools at the fitted boundaries:',
    '',
    mdTable(CYCLE_POOL_HEADERS, cyclePoolRows(r), [false, true, true, true]),
    '',
    'Boundary samples (thinned; (w) = warm-up, not fitted; t counts from the start of the run):',
    '',
    mdTable(CYCLE_SERIES_HEADERS, cycleSeriesRows(r, 20), [false, true, true, true, true, true, true, true, true, true, true]),
    '',
  ];
  if (r.problems.length > 0) out.push('Invariant violations:', '', ...r.problems.map((p) => `- ${p}`), '');
  out.push(SECTION_END);
  return out.join('\n');
}

// -------------------------------------------------------------------------------------------------
// main

/** The final sample needs a forced GC: without --expose-gc, rerun this script in a child that has it. */
function rerunWithGc(): boolean {
  if (typeof globalThis.gc === 'function' || process.env.ISOPOOL_SOAK_CHILD === '1') return false;
  const child = spawnSync(process.execPath, [...process.execArgv, '--expose-gc', __filename, ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, ISOPOOL_SOAK_CHILD: '1' },
  });
  if (child.error !== undefined) throw child.error;
  process.exitCode = child.status ?? 1;
  return true;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (rerunWithGc()) return;
  if (typeof globalThis.gc !== 'function') process.stderr.write('warning: no --expose-gc; the final sample is taken without a forced GC\n');
  if (args.cycles) {
    const rounds = args.cycleRounds !== null ? `${args.cycleRounds} rounds` : `the rounds of ${args.cycleSeconds} s`;
    process.stderr.write(`isopool soak, cycles: ${args.minutes} min, seed ${args.seed}, cycles of ${rounds}${args.mallocTrim ? ', malloc_trim(0) at each boundary' : ''}\n`);
    if (args.mallocTrim && loadNative().mallocStats() === undefined) process.stderr.write('warning: --malloc-trim needs glibc; no trim is done here\n');
    const { result, manager } = await runCycles(args, new Progress());
    process.stdout.write(cycleConsoleSummary(result));
    if (args.report !== null) writeReport(args.report, result.machine, args.minutes, cycleMode(args), cycleRunSection(result));
    if (result.problems.length > 0) process.exitCode = 1;
    manager.close(); // last: the report is out even if close() throws (a crash, exit 1)
    return;
  }
  process.stderr.write(`isopool soak: ${args.minutes} min, seed ${args.seed}\n`);
  const { result, manager } = await run(args, new Progress());
  process.stdout.write(consoleSummary(result));
  if (args.report !== null) writeReport(args.report, result.machine, args.minutes, 'random', runSection(result));
  if (result.problems.length > 0) process.exitCode = 1;
  manager.close(); // last: the report is out even if close() throws (a crash, exit 1)
}

main().catch((error: unknown) => {
  process.stderr.write(`\nsoak crashed: ${describeError(error)}\n${error instanceof Error && error.stack !== undefined ? error.stack : ''}\n`);
  process.exitCode = 1;
});
