/**
 * ResourceManager: the public entry point (README "Default pools").
 * @packageDocumentation
 */
import { EventEmitter } from 'node:events';
import { scopeOf } from './scope';
import { Engine } from './engine/engine';
import { InvalidArgumentError, describeValue } from './errors';
import { createEventSink } from './events';
import { loadNative } from './native/loader';
import type { NativeConfig, NativeManager, NativePoolConfig } from './native/binding';
import type {
  ChannelCloseReport,
  ChannelOptions,
  ChannelScope,
  IResourceManager,
  LeakDetectionMode,
  LeakEvent,
  ManagerMetrics,
  PoolOptions,
  PressureEvent,
  ResourceHandle,
  ResourceIsolationResult,
  ResourceLimits,
  ResourceManagerOptions,
  ResourceMetrics,
  ResourceTypeOptions,
  SecurityValidationResult,
  ViolationEvent,
} from './types';
import { NO_CHANNEL_OPTIONS, checkChannelOptions, checkCount, checkLimits, checkOptionalBoolean, isRecord, oneOf, readList, readOptions } from './validate';
import type { CheckedChannelOptions } from './validate';

/** The default pools (README "Default pools"). */
export const DEFAULT_POOLS: readonly PoolOptions[] = Object.freeze([
  Object.freeze({ name: 'small', slotSize: 4 * 1024, queueSize: 500 }),
  Object.freeze({ name: 'medium', slotSize: 64 * 1024, queueSize: 250 }),
  Object.freeze({ name: 'large', slotSize: 1024 * 1024, queueSize: 125 }),
]);
/** The default `maxAllocationSize`: 64 MiB (bytes, or units for counted types). */
export const DEFAULT_MAX_ALLOCATION_SIZE = 64 * 1024 * 1024;
/** The default `leakSampleRate`: with `leakDetection: 'sampled'`, 1 in 128 allocations is watched. */
export const DEFAULT_LEAK_SAMPLE_RATE = 128;
/**
 * The `maxHandles` of every channel's total unless `channelDefaults` or the channel's own limits
 * set it: 16,384, 1/128 of the manager's handle table, so no single channel can fill the table
 * and refuse everyone else, and closing a channel at its cap stays within tens of milliseconds
 * (README, "Limits"; docs/DECISIONS.md, "Limits").
 */
export const DEFAULT_CHANNEL_MAX_HANDLES = 16384;

const OPTION_KEYS = [
  'pools',
  'maxAllocationSize',
  'autoOpenChannels',
  'channelDefaults',
  'leakDetection',
  'leakSampleRate',
  'hardened',
  'shared',
] as const;

/**
 * Events of a ResourceManager. Each is emitted once the operation that causes it has made all its
 * changes, so a listener that calls back into the manager sees the operation complete. A
 * listener that throws changes nothing the operation did or returns, and does not keep later
 * listeners from the event: its error is re-thrown from `process.nextTick` (it reaches
 * `'uncaughtException'`), as Node does for `diagnostics_channel` subscribers.
 */
export interface ResourceManagerEvents {
  /** A soft limit (`softBytes`) was crossed by a successful allocation. */
  pressure: [PressureEvent];
  /** A handle whose buffer became unreachable without deallocation was found and reclaimed. */
  leak: [LeakEvent];
  /** A forged, stale, foreign or otherwise refused use of a handle (counted in the metrics). */
  violation: [ViolationEvent];
}

/**
 * Pooled native memory and counted resources with per-channel isolation, quotas, security
 * validation and metrics. Emits `'pressure'`, `'leak'` and `'violation'` (see
 * {@link ResourceManagerEvents}: a listener that throws never fails the operation).
 */
export class ResourceManager extends EventEmitter implements IResourceManager, Disposable {
  readonly #engine: Engine;

  constructor(options: ResourceManagerOptions = {}) {
    super();
    const parsed = parseOptions(options);
    const config: NativeConfig = { pools: parsed.pools, maxAllocationSize: parsed.maxAllocationSize, hardened: parsed.hardened };
    if (parsed.shared !== undefined) config.shared = parsed.shared;
    const native = constructNative(config);
    this.#engine = new Engine({
      native,
      poolNames: parsed.pools.map((p) => p.name),
      slotSizes: parsed.pools.map((p) => p.slotSize),
      hardened: parsed.hardened,
      maxAllocationSize: parsed.maxAllocationSize,
      autoOpenChannels: parsed.autoOpenChannels,
      channelDefaults: parsed.channelDefaults,
      leakDetection: parsed.leakDetection,
      leakSampleRate: parsed.leakSampleRate,
      events: createEventSink(this),
      shared: parsed.shared !== undefined,
    });
  }

  /**
   * Allocates `size` bytes (or units, for counted types) of `resourceType`, charged to `channelId`
   * (opened on first use unless `autoOpenChannels` is false) or to the unscoped domain.
   */
  allocateResource(resourceType: string, size: number, channelId?: string): ResourceHandle {
    this.#engine.checkOpenHot('allocateResource');
    return this.#engine.allocate(resourceType, size, channelId, null);
  }

  /** Frees a live handle: true once; false for a double free, stale, forged or foreign handle. */
  deallocateResource(handle: ResourceHandle | number): boolean {
    this.#engine.checkOpenHot('deallocateResource');
    return this.#engine.deallocate(handle, null);
  }

  /** Checks a handle or id against every security boundary (README "Security model"); counts what it finds. */
  validateSecurityBoundaries(handle: ResourceHandle | number): SecurityValidationResult {
    this.#engine.checkOpen('validateSecurityBoundaries');
    return this.#engine.validate(handle, null);
  }

  /** Compares a channel's ledger with its live handles and reports recorded violations. */
  verifyResourceIsolation(channelId: string): ResourceIsolationResult {
    this.#engine.checkOpen('verifyResourceIsolation');
    return this.#engine.verifyIsolation(channelId);
  }

  /** Usage of one live handle. Throws InvalidHandleError / StaleHandleError. */
  trackResourceUsage(handle: ResourceHandle | number): ResourceMetrics {
    this.#engine.checkOpen('trackResourceUsage');
    return this.#engine.track(handle, null);
  }

  /** Effective limits for a type (or `'*'`) in a channel or overall: the tightest field by field. */
  getResourceLimits(resourceType: string, channelId?: string): ResourceLimits {
    this.#engine.checkOpen('getResourceLimits');
    return this.#engine.getLimits(resourceType, channelId);
  }

  /** True only for an issued handle that is fully released (slot, ledger, buffer). */
  verifyCleanupCompletion(handle: ResourceHandle | number): boolean {
    this.#engine.checkOpen('verifyCleanupCompletion');
    return this.#engine.verifyCleanup(handle);
  }

  /** A plain JSON-serialisable snapshot; after close(), the final snapshot. */
  getResourceMetrics(): ManagerMetrics {
    return this.#engine.metrics();
  }

  /**
   * Opens a channel (isolation domain). Without options on an open channel, returns its scope;
   * with options on an open channel, throws ERR_INVALID_ARGUMENT.
   */
  openChannel(channelId: string, options?: ChannelOptions): ChannelScope {
    this.#engine.checkOpenHot('openChannel');
    const checked = options === undefined ? undefined : checkChannelOptions('options', options);
    // Reading the options ran the caller's code (getters, Proxy traps), which may have closed the manager.
    if (checked !== undefined) this.#engine.checkOpenHot('openChannel');
    return scopeOf(this.#engine, this.#engine.openChannel(channelId, checked));
  }

  /** The scope of an open channel. */
  channel(channelId: string): ChannelScope {
    this.#engine.checkOpenHot('channel'); // a lookup: nothing in the lane to sync
    return scopeOf(this.#engine, this.#engine.openChannelState(channelId));
  }

  /** Frees everything the channel holds, revokes its buffers and closes it. */
  closeChannel(channelId: string): ChannelCloseReport {
    this.#engine.checkOpenHot('closeChannel');
    return this.#engine.closeChannel(channelId);
  }

  /**
   * Sets limits (partial: other fields keep their values): a type's total (no channelId), a
   * channel's total (`'*'` with channelId) or a type within a channel.
   */
  setResourceLimits(resourceType: string, limits: Partial<ResourceLimits>, channelId?: string): void {
    this.#engine.checkOpen('setResourceLimits');
    const checked = checkLimits('limits', limits);
    this.#engine.checkOpen('setResourceLimits'); // reading `limits` ran the caller's code
    this.#engine.setLimits(resourceType, checked, channelId);
  }

  /** Adds a counted, non-memory resource type: `{ kind: 'counter', limits? }`. */
  defineResourceType(name: string, options: ResourceTypeOptions): void {
    this.#engine.checkOpen('defineResourceType');
    const o = readOptions('options', options, ['kind', 'limits']);
    if (o.kind !== 'counter') {
      throw new InvalidArgumentError('options.kind', `options.kind must be 'counter', got ${describeValue(o.kind)}`);
    }
    const limits = o.limits === undefined ? undefined : checkLimits('options.limits', o.limits);
    this.#engine.checkOpen('defineResourceType'); // reading `options` ran the caller's code
    this.#engine.defineType(name, limits);
  }

  /** Releases this thread's access (the buffer is revoked) and puts the handle in transit. */
  transferHandle(handle: ResourceHandle | number): number {
    this.#engine.checkOpen('transferHandle');
    return this.#engine.transfer(handle);
  }

  /** Takes a handle out of transit, with zero-copy access to the same memory. */
  adoptHandle(id: number): ResourceHandle {
    this.#engine.checkOpen('adoptHandle');
    return this.#engine.adopt(id);
  }

  /** Revokes every buffer and releases the native manager. A second close is a no-op. */
  close(): void {
    this.#engine.close();
  }

  /** Same as {@link ResourceManager.close}: `using manager = new ResourceManager()`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

// Typed listener signatures for the manager's events.
export interface ResourceManager {
  /**
   * Listens to `'pressure'`, `'leak'` or `'violation'` (also published on diagnostics_channel).
   * An error the listener throws is re-thrown from `process.nextTick`, never from the operation.
   */
  on<E extends keyof ResourceManagerEvents>(event: E, listener: (...args: ResourceManagerEvents[E]) => void): this;
  /** Listens to the next `'pressure'`, `'leak'` or `'violation'` event. */
  once<E extends keyof ResourceManagerEvents>(event: E, listener: (...args: ResourceManagerEvents[E]) => void): this;
  /** Removes a listener added with `on` or `once`. */
  off<E extends keyof ResourceManagerEvents>(event: E, listener: (...args: ResourceManagerEvents[E]) => void): this;
}

/** The constructor options, read once and checked (frozen). */
interface ParsedOptions {
  readonly pools: NativePoolConfig[];
  readonly maxAllocationSize: number;
  readonly autoOpenChannels: boolean;
  readonly channelDefaults: CheckedChannelOptions;
  readonly leakDetection: LeakDetectionMode;
  readonly leakSampleRate: number;
  readonly hardened: boolean;
  readonly shared: string | undefined;
}

/** The native manager; a shared one whose pools differ is refused with ERR_INVALID_ARGUMENT. */
function constructNative(config: NativeConfig): NativeManager {
  try {
    return new (loadNative().NativeManager)(config);
  } catch (cause) {
    if (config.shared !== undefined && isRecord(cause) && cause.code === 'ERR_INVALID_ARGUMENT') {
      throw new InvalidArgumentError(
        'shared',
        `shared manager ${describeValue(config.shared)} exists with other pools or maxAllocationSize; every thread must pass the same ones`,
      );
    }
    throw cause;
  }
}

/**
 * Reads the constructor options once into a frozen snapshot (lib/validate.ts "snapshots") and
 * checks it; nothing of `options` is read again.
 */
function parseOptions(options: unknown): ParsedOptions {
  const o = readOptions('options', options, OPTION_KEYS, '');
  const maxAllocationSize =
    o.maxAllocationSize === undefined ? DEFAULT_MAX_ALLOCATION_SIZE : checkCount('maxAllocationSize', o.maxAllocationSize, 1, false);
  const pools = parsePools(o.pools === undefined ? DEFAULT_POOLS : o.pools);
  const autoOpenChannels = checkOptionalBoolean('autoOpenChannels', o.autoOpenChannels) ?? true;
  const hardened = checkOptionalBoolean('hardened', o.hardened) ?? false;
  const leakDetection = oneOf('leakDetection', o.leakDetection, LEAK_DETECTION_MODES) ?? 'sampled';
  const leakSampleRate = o.leakSampleRate === undefined ? DEFAULT_LEAK_SAMPLE_RATE : checkCount('leakSampleRate', o.leakSampleRate, 1, false);
  const shared = o.shared;
  if (shared !== undefined && (typeof shared !== 'string' || shared.length === 0)) {
    throw new InvalidArgumentError('shared', `shared must be a non-empty string, got ${describeValue(shared)}`);
  }
  const checked = o.channelDefaults === undefined ? NO_CHANNEL_OPTIONS : checkChannelOptions('channelDefaults', o.channelDefaults);
  // Every channel's total gets the default handle cap unless channelDefaults sets its own.
  const total = checked.limits.find(([type]) => type === '*');
  const limits =
    total === undefined
      ? [...checked.limits, Object.freeze(['*', Object.freeze({ maxHandles: DEFAULT_CHANNEL_MAX_HANDLES })] as const)]
      : total[1].maxHandles !== undefined
        ? checked.limits
        : checked.limits.map((entry) => (entry === total ? Object.freeze(['*', Object.freeze({ maxHandles: DEFAULT_CHANNEL_MAX_HANDLES, ...total[1] })] as const) : entry));
  const channelDefaults: CheckedChannelOptions = Object.freeze({ ...checked, limits: Object.freeze(limits) });
  return Object.freeze({ pools, maxAllocationSize, autoOpenChannels, channelDefaults, leakDetection, leakSampleRate, hardened, shared });
}

const POOL_KEYS = ['name', 'slotSize', 'queueSize'] as const;
const LEAK_DETECTION_MODES = ['off', 'sampled', 'paranoid'] as const satisfies readonly LeakDetectionMode[];

function parsePools(pools: unknown): NativePoolConfig[] {
  const list = readList('pools', pools, 'an array of { name, slotSize, queueSize }');
  const out: NativePoolConfig[] = [];
  const names = new Set<string>();
  for (let i = 0; i < list.length; i++) {
    const arg = `pools[${i}]`;
    const p = readOptions(arg, list[i], POOL_KEYS);
    const name = p.name;
    if (typeof name !== 'string' || name.length === 0 || name === 'direct' || name === 'counter' || names.has(name)) {
      throw new InvalidArgumentError(`${arg}.name`, `${arg}.name must be a unique non-empty string other than 'direct' and 'counter', got ${describeValue(name)}`);
    }
    names.add(name);
    const slotSize = checkCount(`${arg}.slotSize`, p.slotSize, 1, false);
    const queueSize = checkCount(`${arg}.queueSize`, p.queueSize, 0, false);
    if (queueSize > 0xffffffff) throw new InvalidArgumentError(`${arg}.queueSize`, `${arg}.queueSize must be below 2^32, got ${queueSize}`);
    out.push(Object.freeze({ name, slotSize, queueSize }));
  }
  out.sort((a, b) => a.slotSize - b.slotSize);
  for (let i = 1; i < out.length; i++) {
    if (out[i].slotSize === out[i - 1].slotSize) {
      throw new InvalidArgumentError('pools', `pools ${describeValue(out[i - 1].name)} and ${describeValue(out[i].name)} have the same slotSize ${out[i].slotSize}`);
    }
  }
  return out;
}
