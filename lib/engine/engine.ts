/**
 * The manager's engine: channel policy, handle bookkeeping, revocation, leak detection and
 * metrics over one {@link NativeManager}. `ResourceManager` and `ChannelScope` are thin public
 * wrappers around it; `presenter` arguments say which channel's scope made a call (or none).
 * @internal
 * @packageDocumentation
 */
import {
  ChannelClosedError,
  InvalidArgumentError,
  InvalidHandleError,
  IsopoolError,
  ManagerClosedError,
  PoolExhaustedError,
  ResourceLimitError,
  UnknownChannelError,
  describeValue,
} from '../errors';
import type { EventSink } from '../events';
import { FastLane, Parked } from '../lane/fast-lane';
import { SlabExports } from '../lane/slabs';
import { SlotCache } from '../lane/slot-cache';
import { Handle, handleIdOf, isWellFormedId } from '../handle';
import type { HandleOwner } from '../handle';
import {
  AllocOut,
  BufferMode,
  CloseOut,
  InArgs,
  InfoOut,
  NativeFreeReason,
  NativeLimitScope,
  NativeStatus,
  OpenOut,
  UsageOut,
  VIOLATION_CODES,
} from '../native/abi';
import type { NativeManager } from '../native/binding';
import { ChannelDirectory } from './channels';
import { ChannelClose } from './close';
import { effectiveLimits, isolationOf, scopeLimits } from './limits';
import { managerMetrics } from './metrics';
import { RecordTable } from './records';
import { TypeDirectory } from './resource-types';
import { SCOPE_NAMES, limitError, statusError, trackError, violationList } from './status';
import type { StatusContext } from './status';
import { AllocationSite } from './sites';
import {
  UNSCOPED_INDEX,
  bufferOf,
  channelBits,
  isRevocable,
  transferAvailable,
  unrevocable,
} from './state';
import type { ChannelState, LiveRecord, TypeState } from './state';
import type {
  AccessMode,
  ChannelCloseReport,
  LeakDetectionMode,
  LimitFields,
  ManagerMetrics,
  ResourceIsolationResult,
  ResourceLimits,
  ResourceMetrics,
  SecurityValidationResult,
} from '../types';
import { checkChannelId, checkSize, checkTypeName } from '../validate';
import type { CheckedChannelOptions } from '../validate';

/** Transfers remembered per thread (see Engine.#moves). */
const MOVES_KEPT = 65536;
/** What the leak registry remembers of a watched handle (never the handle or its buffer). */
interface LeakHeld {
  readonly id: number;
  readonly resourceType: string;
  readonly size: number;
  readonly channelId: string | null;
  readonly site: AllocationSite | undefined;
}

export interface EngineOptions {
  native: NativeManager;
  poolNames: string[];
  /** Slot sizes of the pools, in pool index order. */
  slotSizes: number[];
  hardened: boolean;
  maxAllocationSize: number;
  autoOpenChannels: boolean;
  channelDefaults: CheckedChannelOptions;
  leakDetection: LeakDetectionMode;
  leakSampleRate: number;
  events: EventSink;
  /** Attached to a process-wide manager: other threads may change channels, types and limits. */
  shared: boolean;
}

const BUFFER_DETACHED_KIND = VIOLATION_CODES.indexOf('BUFFER_DETACHED');
const FORGED_BIT = 1 << VIOLATION_CODES.indexOf('FORGED_HANDLE');
const CROSS_CHANNEL_BIT = 1 << VIOLATION_CODES.indexOf('CROSS_CHANNEL');

export class Engine implements HandleOwner {
  readonly #native: NativeManager;
  readonly #out: Float64Array;
  readonly #in: Float64Array;
  readonly #poolNames: string[];
  readonly #maxAllocationSize: number;
  readonly #autoOpen: boolean;
  readonly #defaults: CheckedChannelOptions;
  readonly #leakMode: LeakDetectionMode;
  readonly #leakRate: number;
  readonly #events: EventSink;
  readonly #shared: boolean;

  readonly #types: TypeDirectory;
  readonly #channels: ChannelDirectory;
  readonly #records = new RecordTable<LiveRecord>();
  /** View-mode slab ArrayBuffers by slab key, held weakly: live views keep them alive. */
  readonly #slabs: SlabExports;
  readonly #leaks: FinalizationRegistry<LeakHeld>;
  #leaksDetected = 0;
  #leaksReclaimed = 0;
  #allocationCount = 0;
  /**
   * Revocation by transfer (see BufferMode.SlotCache): backing stores of freed slots by token,
   * each in an ArrayBuffer only this object references.
   */
  readonly #slotCache: boolean;
  readonly #cache: SlotCache | null;
  /** View-mode fast lane (lib/lane/fast-lane.ts); null for shared and hardened managers and 'paranoid' leak detection. */
  readonly #fast: FastLane | null;
  #closed = false;
  #unscopedDeferred = true;
  /**
   * Transfers (`transferHandle`) seen by this thread, by id: a handle object made before the
   * latest one is inert. Entries go when this thread frees the id; at most MOVES_KEPT (oldest
   * first), which only matters for an id moved away and adopted back here that many transfers later.
   */
  readonly #moves = new Map<number, number>();
  /** Closes of large channels whose memory is still coming back (#closeLater). */
  readonly #closing = new Set<ChannelClose>();
  #finalMetrics: ManagerMetrics | null = null;

  constructor(options: EngineOptions) {
    this.#native = options.native;
    this.#out = options.native.out;
    this.#in = options.native.in;
    this.#poolNames = options.poolNames;
    this.#maxAllocationSize = options.maxAllocationSize;
    this.#autoOpen = options.autoOpenChannels;
    this.#defaults = options.channelDefaults;
    this.#leakMode = options.leakDetection;
    this.#leakRate = options.leakSampleRate;
    this.#events = options.events;
    this.#shared = options.shared;
    this.#channels = new ChannelDirectory(options.native, options.shared);
    this.#leaks = new FinalizationRegistry<LeakHeld>((held) => this.#onCollected(held));
    this.#slotCache = !options.shared && transferAvailable() && options.native.slotCacheStats();
    this.#slabs = new SlabExports(options.native);
    this.#cache = this.#slotCache ? new SlotCache(options.native) : null;
    this.#fast = fastLaneFor(options, this.#slabs, this.#cache);
    this.#types = new TypeDirectory(options.native);
    // The unscoped domain (revocable) reuses memory as channelDefaults says.
    if (options.channelDefaults.unsafeImmediateReuse === true) this.#native.openChannel('', 0, 0, 1);
    this.#unscopedDeferred = (this.#native.channelOptions(UNSCOPED_INDEX) & 4) === 0;
  }

  /** Whether a channel's (null: the unscoped domain's) freed revocable memory waits for its buffer to die. */
  #isDeferred(channel: ChannelState | null): boolean {
    return channel === null ? this.#unscopedDeferred : channel.deferred;
  }

  get closed(): boolean {
    return this.#closed;
  }

  // ---------------------------------------------------------------------------------------------
  // guards and lookups

  /**
   * Every public operation starts here. It also makes the native side exact for what follows
   * (the fast lane's sync), except for allocate and deallocate: see {@link Engine.checkOpenHot}.
   */
  checkOpen(operation: string): void {
    this.checkOpenHot(operation);
    this.#fast?.sync(); // null for shared managers
  }

  /** checkOpen for allocate and deallocate, which sync the fast lane themselves when they go native. */
  checkOpenHot(operation: string): void {
    if (this.#closed) throw new ManagerClosedError(operation);
    if (this.#shared) this.#drainRevocations();
  }

  /**
   * Shared managers: another thread freed handles whose buffers this thread holds (closeChannel,
   * or a deallocation by id). Their memory waits, parked, until the buffers here are detached.
   */
  #drainRevocations(): void {
    const ids = this.#native.drainRevocations();
    if (ids === undefined) return;
    for (let i = 0; i < ids.length; i++) this.#release(ids[i], this.#records.get(ids[i]));
  }

  /** Throws ERR_CHANNEL_CLOSED for a scope whose channel incarnation was closed. */
  checkScopeOpen(state: ChannelState): void {
    // Shared: another thread may have closed (and reopened) it; the scope is of this incarnation.
    if (state.open && this.#shared && this.#channels.lookup(state.name, true) !== state) state.open = false;
    if (!state.open) throw new ChannelClosedError(state.name);
  }








  /**
   * The open channel `name`, opening it if allowed. `created` is true only if this call opened
   * it (on a shared manager another thread may have opened it first, or may be using it).
   */
  #channelForWork(name: string): { state: ChannelState; created: boolean } {
    const state = this.#channels.lookup(name, false);
    if (state !== undefined) return { state, created: false };
    if (this.#channels.isClosed(name)) throw new ChannelClosedError(name);
    if (!this.#autoOpen) throw new UnknownChannelError(name);
    return this.#open(name, undefined);
  }

  /** The open channel `name`, never opening it. */
  openChannelState(channelId: unknown): ChannelState {
    return this.#channels.openState(channelId);
  }



  #poolName(pool: number): string {
    if (pool === -1) return 'direct';
    if (pool === -2) return 'counter';
    return this.#poolNames[pool] ?? `pool${pool}`;
  }

  /** Presenter's native index: -1 for the manager itself. Throws if the scope's channel closed. */
  #presenterIndex(presenter: ChannelState | null): number {
    if (presenter === null) return -1;
    this.checkScopeOpen(presenter);
    return presenter.index;
  }

  #handleId(handle: unknown, argument = 'handle'): number {
    const id = handleIdOf(handle);
    if (id === undefined) {
      throw new InvalidArgumentError(argument, `${argument} must be a ResourceHandle or a handle id (number), got ${describeValue(handle)}`);
    }
    return id;
  }

  // ---------------------------------------------------------------------------------------------
  // channels

  /** Opens (or returns) a channel. `options` undefined: return the open channel or open with defaults. */
  openChannel(channelId: unknown, options: CheckedChannelOptions | undefined): ChannelState {
    const name = checkChannelId(channelId);
    const existing = this.#channels.lookup(name, true);
    if (existing !== undefined) {
      if (options !== undefined) {
        throw new InvalidArgumentError(
          'options',
          `channel ${describeValue(name)} is already open; change its limits with setResourceLimits`,
        );
      }
      return existing;
    }
    return this.#open(name, options).state;
  }

  /**
   * Opens a channel with channelDefaults overridden by `explicit`. Explicit limits must name known
   * types; default limits for types not defined yet are applied when the type is defined.
   */
  #open(name: string, explicit: CheckedChannelOptions | undefined): { state: ChannelState; created: boolean } {
    const options = explicit === undefined ? this.#defaults : mergeChannelOptions(this.#defaults, explicit);
    const explicitTypes = new Set(explicit?.limits.map(([t]) => t));
    // Resolve every limit's type before anything changes.
    const limits: Array<readonly [number, Partial<LimitFields>]> = [];
    for (const [typeName, l] of options.limits) {
      if (typeName === '*') limits.push([-1, l]);
      else if (explicitTypes.has(typeName) || this.#types.has(typeName)) limits.push([this.#types.get(typeName).index, l]);
    }
    const access = options.access ?? 'revocable';
    const zero = options.zero ?? 'cross-channel';
    const immediate = access === 'revocable' && options.unsafeImmediateReuse === true;
    const index = this.#native.openChannel(name, access === 'view' ? 1 : 0, zero === 'always' ? 1 : 0, immediate ? 1 : 0);
    if (index < 0) throw this.#statusError(-index, { channel: name });
    const created = this.#out[OpenOut.Created] === 1;
    if (!created && explicit !== undefined) {
      throw new InvalidArgumentError('options', `channel ${describeValue(name)} is already open; change its limits with setResourceLimits`);
    }
    // The incarnation as native has it (another thread of a shared manager may have won the open).
    const state = this.#channels.lookup(name, true) ?? this.#channels.opened(name, index, channelBits(access, zero, immediate));
    if (created) for (const [type, l] of limits) this.#applyLimits(type, index, l);
    return { state, created };
  }




  closeChannel(channelId: unknown): ChannelCloseReport {
    const state = this.openChannelState(channelId);
    // From here on the channel's handles are freed to every caller and the name is closed;
    // the ChannelClose frees them.
    const status = this.#native.closeChannel(state.index);
    if (status !== NativeStatus.Ok) throw this.#statusError(status, { channel: state.name });
    const count = this.#out[CloseOut.Count];
    const bytes = this.#out[CloseOut.Bytes];
    this.#channels.forget(state);
    const close = new ChannelClose(this, this.#native, state, count);
    const report = close.begin(bytes);
    if (close.left > 0) {
      this.#closing.add(close);
      const slice = (): void => {
        if (this.#closed) return;
        if (close.slice()) setImmediate(slice);
        else this.#closing.delete(close);
      };
      setImmediate(slice);
    }
    return report;
  }

  /**
   * ChannelClose's part of each freed handle: drops its record (revoking its buffer if
   * `revoking`), forgets it in the fast lane; true if its buffer could not be revoked (another
   * ArrayBuffer may still reach the memory, which must then stay parked).
   */
  closeRecord(id: number, revoking: boolean, close: ChannelClose): boolean {
    const record = this.#records.get(id);
    let keep = false;
    if (record !== undefined) {
      if (record.site !== undefined) close.noteSite(id, record.site.text); // #release drops it
      keep = revoking && unrevocable(record);
      this.#release(id, record);
    }
    this.#fast?.forget(id);
    return keep;
  }

  /** ChannelClose: a damaged canary found by the close (counted unscoped; the event names the channel). */
  closeViolations(mask: number, id: number, state: ChannelState): void {
    this.#emitViolations(mask, id, state);
  }

  /** ChannelClose: a resource type's name by native index. */
  typeName(type: number): string {
    return this.#types.at(type)?.name ?? 'unknown';
  }

  // ---------------------------------------------------------------------------------------------
  // limits and types

  /** `limits`: a checked snapshot (lib/validate.ts checkLimits). */
  setLimits(resourceType: unknown, checked: Readonly<Partial<LimitFields>>, channelId: unknown): void {
    const typeName = checkTypeName(resourceType);
    const channel = channelId === undefined ? null : this.openChannelState(channelId);
    this.#applyLimits(this.#limitType(typeName, channel), channel === null ? -1 : channel.index, checked);
  }

  /** Sets the given fields on one scope; the others keep the values the native manager has. */
  #applyLimits(type: number, channel: number, update: Readonly<Partial<LimitFields>>): void {
    this.#fast?.sync();
    const merged: LimitFields = { ...scopeLimits(this.#native, type, channel), ...update };
    const status = this.#native.setLimits(type, channel, merged.maxBytes, merged.maxHandles, merged.maxAllocationSize, merged.softBytes);
    if (status !== NativeStatus.Ok) throw this.#statusError(status, {});
    this.#fast?.limitsChanged(update, channel === -1, this.#channels.at(channel) ?? null);
  }

  getLimits(resourceType: unknown, channelId: unknown): ResourceLimits {
    const typeName = checkTypeName(resourceType);
    const channel = channelId === undefined ? null : this.openChannelState(channelId);
    return effectiveLimits(this.#native, typeName, this.#limitType(typeName, channel), channel);
  }

  /** The native type index a limit call names ('*': -1, a channel's total, which needs a channel). */
  #limitType(typeName: string, channel: ChannelState | null): number {
    if (typeName !== '*') return this.#types.get(typeName).index;
    if (channel === null) throw new InvalidArgumentError('resourceType', "resourceType '*' (a channel's total) needs a channelId");
    return -1;
  }

  defineType(name: unknown, limits: Readonly<Partial<LimitFields>> | undefined): void {
    const typeName = checkTypeName(name, 'name');
    if (typeName === '*' || this.#types.has(typeName)) {
      throw new InvalidArgumentError('name', `resource type ${describeValue(typeName)} already exists or is reserved`);
    }
    const index = this.#native.defineType(typeName, 1);
    if (index < 0) throw this.#statusError(-index, {});
    this.#types.add({ name: typeName, index, memory: false });
    if (limits !== undefined) this.#applyLimits(index, -1, limits);
    const seeded = this.#defaults.limits.find(([t]) => t === typeName);
    if (seeded !== undefined) for (const state of this.#channels.values()) this.#applyLimits(index, state.index, seeded[1]);
  }

  // ---------------------------------------------------------------------------------------------
  // allocation

  allocate(resourceType: unknown, size: unknown, channelId: unknown, presenter: ChannelState | null): Handle {
    const type = this.#types.get(resourceType);
    checkSize(size, this.#maxAllocationSize);
    let channel: ChannelState | null = presenter;
    /** A channel this call auto-opened: undone if the allocation fails. */
    let opened: ChannelState | null = null;
    if (presenter !== null) {
      if (!presenter.open) throw new ChannelClosedError(presenter.name);
    } else if (channelId !== undefined) {
      const name = checkChannelId(channelId);
      channel = this.#channels.cached(name) ?? null;
      if (channel === null) {
        const found = this.#channelForWork(name);
        channel = found.state;
        if (found.created) opened = found.state;
      }
    }
    const n = size as number;
    const native = this.#native;
    const watched = this.#leakMode === 'paranoid' || (this.#leakMode === 'sampled' && this.#allocationCount % this.#leakRate === 0);
    const fast = this.#fast;
    if (fast !== null) {
      if (channel !== null && channel.access === 'view' && type.memory) {
        const taken = fast.take(channel, type.index, n, watched);
        if (taken !== null) {
          this.#allocationCount++;
          const handle = new Handle(this, taken.id, type.name, n, channel.name, taken.buffer, this.#poolName(taken.pool), taken.slotBytes, 'view', presenter);
          if (watched) this.#track(taken.id, type, n, channel, null, taken.buffer, handle, true, -1);
          return handle;
        }
      } else if (channel !== null && type.memory && !watched && this.#slotCache && !channel.deferred) {
        const taken = fast.takeRevocable(channel, type.index, n);
        if (taken !== null) {
          this.#allocationCount++;
          const handle = new Handle(this, taken.id, type.name, n, channel.name, taken.buffer, this.#poolName(taken.pool), taken.slotBytes, 'revocable', presenter);
          this.#track(taken.id, type, n, channel, taken.ab, taken.buffer, handle, false, taken.token);
          return handle;
        }
      }
      fast.beforeNativeAllocation(channel);
    }
    let revocable = isRevocable(type, channel);
    let result = this.#nativeAllocate(type, n, channel, revocable);
    if (result === NativeStatus.ChannelClosed && channel !== null && this.#shared) {
      // Another thread closed this incarnation (and may have reopened the name, maybe with
      // another access mode): look again.
      this.#channels.forget(channel);
      if (presenter !== null) throw new ChannelClosedError(channel.name);
      const found = this.#channelForWork(channel.name);
      channel = found.state;
      opened = found.created ? found.state : null;
      revocable = isRevocable(type, channel);
      result = this.#nativeAllocate(type, n, channel, revocable);
    }
    const out = this.#out;
    if (typeof result === 'number' && result !== NativeStatus.Ok) {
      const error = this.#allocationError(result, type, n, channel);
      if (opened !== null) this.#channels.discard(opened);
      if (error instanceof ResourceLimitError) this.#emitLimit(error);
      throw error;
    }
    const id = out[AllocOut.Id];
    const pool = out[AllocOut.Pool];
    const slotBytes = out[AllocOut.SlotBytes];
    const softCrossed = out[AllocOut.SoftCrossed];
    let buffer: Buffer | null = null;
    let ab: ArrayBuffer | null = null;
    let token = -1;
    if (revocable && this.#slotCache && !this.#isDeferred(channel)) {
      token = out[AllocOut.CacheToken];
      const evict = out[AllocOut.CacheEvict];
      if (evict >= 0) this.#cache?.drop(evict);
      if (typeof result === 'number') result = this.#takeCached(token, id, n, opened);
    }
    if (typeof result !== 'number') {
      ab = result;
      buffer = Buffer.from(result);
      if (token >= 0 && fast !== null && pool >= 0 && channel !== null && !watched) fast.adoptRevocable(id, channel, type.index, pool, slotBytes, n, ab, token);
    } else if (type.memory) {
      const offset = out[AllocOut.SlabOffset];
      const slab = this.#slabs.get(out[AllocOut.SlabKey]);
      if (slab === null) {
        native.free(id, -1, NativeFreeReason.Deallocate, undefined);
        if (opened !== null) this.#channels.discard(opened);
        throw new PoolExhaustedError(n);
      }
      buffer = Buffer.from(slab, offset, n);
      if (fast !== null && pool >= 0 && channel !== null) fast.adopt(id, channel, type.index, pool, slotBytes, out[AllocOut.SlabKey], slab, offset, n, buffer, watched);
    }
    const channelName = channel === null ? null : channel.name;
    const access: AccessMode | null = type.memory ? (revocable ? 'revocable' : 'view') : null;
    const handle = new Handle(this, id, type.name, n, channelName, buffer, this.#poolName(pool), slotBytes, access, presenter);

    this.#allocationCount++;
    if (watched || ab !== null) this.#track(id, type, n, channel, ab, buffer, handle, watched, token);
    if (softCrossed !== NativeLimitScope.None && this.#events.wants('pressure')) {
      this.#emitPressure(type, channel, softCrossed);
    }
    return handle;
  }

  /**
   * Records a new handle that needs a {@link LiveRecord}: one watched for leaks, or one with its
   * own ArrayBuffer (revocable) to revoke when it is freed by id.
   */
  #track(id: number, type: TypeState, n: number, channel: ChannelState | null, ab: ArrayBuffer | null, buffer: Buffer | null, handle: Handle, watched: boolean, token: number): void {
    // Only 'paranoid' records sites: a capture is ~3.5 µs of V8 reading optimised frames back
    // (docs/DECISIONS.md "Leak sites"), which was the p99 of a default-options allocation.
    const site = watched && this.#leakMode === 'paranoid' ? new AllocationSite() : undefined;
    const record: LiveRecord = {
      id,
      pos: -1,
      ab: ab === null || !watched ? ab : new WeakRef(ab),
      site,
      watched,
      channel: channel === null ? UNSCOPED_INDEX : channel.index,
      token,
      deferred: ab !== null && this.#isDeferred(channel),
    };
    this.#records.set(record);
    if (watched) {
      // Revocable: the ArrayBuffer itself (once it is collected nothing can reach the slot).
      // View: the Buffer view (a stale view may still reach the slab: view mode's documented risk).
      const target: object = ab ?? buffer ?? handle;
      this.#leaks.register(target, { id, resourceType: type.name, size: n, channelId: channel === null ? null : channel.name, site }, record);
    }
  }

  /** The native allocation: revocable memory comes back as its own ArrayBuffer (or a slot-cache entry). */
  #nativeAllocate(type: TypeState, size: number, channel: ChannelState | null, revocable: boolean): ArrayBuffer | number {
    const input = this.#in;
    input[InArgs.AllocType] = type.index;
    input[InArgs.AllocSize] = size;
    input[InArgs.AllocChannel] = channel === null ? UNSCOPED_INDEX : channel.index;
    input[InArgs.AllocMode] = !revocable ? BufferMode.None : this.#slotCache && !this.#isDeferred(channel) ? BufferMode.SlotCache : BufferMode.Fresh;
    input[InArgs.AllocOwner] = channel === null ? 0 : channel.owner;
    return this.#native.allocIn();
  }

  /** The ArrayBuffer of slot-cache entry `token`, handed to handle `id` (it leaves the cache). */
  #takeCached(token: number, id: number, size: number, opened: ChannelState | null): ArrayBuffer {
    const cached = this.#cache?.take(token);
    if (cached === undefined) {
      // The native side and this cache disagree: a bug. Undo the allocation rather than serve it.
      this.#native.free(id, -1, NativeFreeReason.Deallocate, undefined);
      if (opened !== null) this.#channels.discard(opened);
      throw new PoolExhaustedError(size);
    }
    return cached;
  }

  /**
   * Frees a handle this thread holds; its buffer (if any) is revoked by #release afterwards,
   * with `recached` from out[InfoOut.Recached].
   */
  #freeHeld(id: number, presenterIndex: number, record: LiveRecord | undefined): number {
    const input = this.#in;
    input[InArgs.FreeId] = id;
    input[InArgs.FreePresenter] = presenterIndex;
    input[InArgs.FreeReason] = NativeFreeReason.Deallocate;
    if (record === undefined) {
      // View memory, counters, or a revocable handle this thread never held a buffer for.
      input[InArgs.FreeKeep] = 0;
      input[InArgs.FreeToken] = -1;
      return this.#native.freeIn();
    }
    if (record.deferred) {
      // Not revoked: native parks the memory until the buffer dies (Node I/O may still use it).
      input[InArgs.FreeKeep] = 1;
      input[InArgs.FreeToken] = -1;
      return this.#native.freeIn();
    }
    const keep = unrevocable(record);
    input[InArgs.FreeKeep] = keep ? 1 : 0;
    if (record.token >= 0 && !keep) {
      input[InArgs.FreeToken] = record.token;
      return this.#native.freeIn();
    }
    input[InArgs.FreeToken] = -1;
    return this.#native.freeIn(bufferOf(record));
  }

  #emitPressure(type: TypeState, channel: ChannelState | null, scope: number): void {
    const scopeName = SCOPE_NAMES[scope] ?? 'type';
    let bytesInUse: number;
    if (scopeName === 'type') {
      this.#native.typeUsage(type.index, -1);
      bytesInUse = this.#out[UsageOut.Bytes];
    } else if (scopeName === 'channel') {
      this.#native.channelUsage(channel === null ? UNSCOPED_INDEX : channel.index);
      bytesInUse = this.#out[UsageOut.Bytes];
    } else {
      this.#native.typeUsage(type.index, channel === null ? UNSCOPED_INDEX : channel.index);
      bytesInUse = this.#out[UsageOut.Bytes];
    }
    const scopeType = scopeName === 'channel' ? -1 : type.index;
    const scopeChannel = scopeName === 'type' ? -1 : (channel?.index ?? UNSCOPED_INDEX);
    this.#events.pressure({
      channelId: channel === null ? null : channel.name,
      resourceType: type.name,
      scope: scopeName,
      bytesInUse,
      softBytes: scopeLimits(this.#native, scopeType, scopeChannel).softBytes,
    });
  }

  #allocationError(status: number, type: TypeState, size: number, channel: ChannelState | null): IsopoolError {
    if (status !== NativeStatus.ResourceLimit) return this.#statusError(status, { type: type.name, channel: channel?.name, size });
    return limitError(this.#out, type.name, size, channel === null ? null : channel.name);
  }

  /** `isopool:limit` for a refusal, once the refused allocation is fully undone. */
  #emitLimit(error: ResourceLimitError): void {
    if (!this.#events.wants('limit')) return;
    const { channelId, resourceType, scope, limit, requested, inUse } = error;
    this.#events.limit({ channelId, resourceType, scope, limit, requested, inUse });
  }

  // ---------------------------------------------------------------------------------------------
  // release

  /**
   * Revokes and unwatches a freed handle's JS side. `recached`: the native side expects the
   * buffer's backing store back in the slot cache (a revocation too: the buffer is detached).
   */
  #release(id: number, record: LiveRecord | undefined, recached = false): void {
    if (record === undefined) return;
    this.#records.delete(id);
    if (record.watched) {
      this.#leaks.unregister(record);
      record.site?.drop();
    }
    if (record.deferred) return; // left attached: its memory returns when it dies
    const ab = bufferOf(record);
    if (ab === undefined || ab.byteLength === 0) return;
    if (recached) this.#cache?.revoke(record.token, ab, this.#records.size);
    else this.#native.detach(ab);
  }

  deallocate(handle: unknown, presenter: ChannelState | null): boolean {
    const id = this.#handleId(handle);
    const presenterIndex = this.#presenterIndex(presenter);
    if (!isWellFormedId(id)) {
      this.#countMalformed(presenter, id);
      return false;
    }
    const fast = this.#fast;
    if (fast !== null && this.#park(fast, id, presenter)) return true;
    const record = this.#records.get(id);
    // The native side must know every fast-lane id first (this one may be parked or burned, or a
    // watched lane handle, which has a record, presented by another channel).
    if (fast !== null && (record === undefined || fast.handedOut(id))) fast.sync();
    const status = this.#freeHeld(id, presenterIndex, record);
    if (status === NativeStatus.Ok) {
      fast?.forget(id);
      if (this.#moves.size !== 0) this.#moves.delete(id);
      // Hardened: a damaged canary is reported by a successful free (native/core/hardening.h).
      const freedMask = this.#out[InfoOut.ViolationMask];
      const ownerIndex = this.#out[InfoOut.Channel];
      this.#release(id, record, this.#out[InfoOut.Recached] === 1);
      if (freedMask !== 0) this.#emitViolations(freedMask, id, this.#channels.at(ownerIndex) ?? null);
      return true;
    }
    this.#emitViolations(this.#out[InfoOut.ViolationMask], id, presenter);
    return false;
  }

  /** Parks `id` in the fast lane if it can take it (and drops a watched handle's leak watch). */
  #park(fast: FastLane, id: number, presenter: ChannelState | null): boolean {
    const parked = fast.release(id, presenter);
    if (parked === Parked.No) return false;
    if (parked === Parked.Watched) this.#release(id, this.#records.get(id));
    else if (parked === Parked.Revoked) this.#records.delete(id);
    return true;
  }

  /**
   * `[Symbol.dispose]` of a handle object: frees it through the checks of the scope that issued
   * it (`presenter`), unless the object is inert: its manager or scope closed, its id freed, in
   * transit, or moved by a transfer since the object was made (`moves`). Inert disposes count nothing.
   */
  disposeHandle(id: number, presenter: unknown, moves: number): void {
    if (this.#closed) return;
    if (this.#moves.size !== 0 && (this.#moves.get(id) ?? 0) !== moves) return;
    const scope = presenter as ChannelState | null;
    if (scope !== null && (!scope.open || (this.#shared && this.#channels.lookup(scope.name, true) !== scope))) return;
    const fast = this.#fast;
    if (fast !== null && this.#park(fast, id, scope)) return;
    const record = this.#records.get(id);
    if (fast !== null && (record === undefined || fast.handedOut(id))) fast.sync();
    if (this.#native.lookup(id) !== NativeStatus.Ok || this.#out[InfoOut.InTransit] === 1) return;
    if (this.#freeHeld(id, scope === null ? -1 : scope.index, record) === NativeStatus.Ok) {
      fast?.forget(id);
      this.#moves.delete(id);
      this.#release(id, record, this.#out[InfoOut.Recached] === 1);
    }
  }

  #countMalformed(presenter: ChannelState | null, id: number): void {
    const kind = VIOLATION_CODES.indexOf('FORGED_HANDLE');
    this.#native.countViolation(presenter === null ? UNSCOPED_INDEX : presenter.index, kind);
    this.#emitViolations(1 << kind, id, presenter);
  }

  #emitViolations(mask: number, id: number, presenter: ChannelState | null): void {
    if (mask === 0 || !this.#events.wants('violation')) return;
    const channelId = presenter === null ? null : presenter.name;
    for (let bit = 0; bit < VIOLATION_CODES.length; bit++) {
      if (mask & (1 << bit)) this.#events.violation({ channelId, code: VIOLATION_CODES[bit], handleId: id });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // checks

  validate(handle: unknown, presenter: ChannelState | null): SecurityValidationResult {
    const id = this.#handleId(handle);
    const presenterIndex = this.#presenterIndex(presenter);
    if (!isWellFormedId(id)) {
      this.#countMalformed(presenter, id);
      return { valid: false, handleId: id, channelId: null, violations: violationList(1, id) };
    }
    let mask = this.#native.validate(id, presenterIndex);
    const out = this.#out;
    if (presenter !== null && (mask & CROSS_CHANNEL_BIT) !== 0) {
      // Counted natively as CROSS_CHANNEL against the presenter, and the operator's event says so;
      // the scope's answer is a forged id's, so a scope is no oracle for other channels' ids.
      this.#emitViolations(mask, id, presenter);
      return { valid: false, handleId: id, channelId: null, violations: violationList(FORGED_BIT, id) };
    }
    // Live: none of the bits that mean "not a live handle" (canary/bounds damage is on a live one).
    const notLive = (1 << VIOLATION_CODES.indexOf('FORGED_HANDLE')) | (1 << VIOLATION_CODES.indexOf('STALE_HANDLE')) | (1 << VIOLATION_CODES.indexOf('CHANNEL_CLOSED'));
    const live = (mask & notLive) === 0;
    let owner: string | null = null;
    if (live) {
      owner = this.#channels.nameOf(out[InfoOut.Channel]);
      if (this.#isDetached(id, handle)) {
        mask |= 1 << BUFFER_DETACHED_KIND;
        this.#native.countViolation(presenter === null ? out[InfoOut.Channel] : presenterIndex, BUFFER_DETACHED_KIND);
      }
    }
    // CANARY_CORRUPTED is counted against the owner channel (native), so its event names the owner.
    const canary = mask & (1 << VIOLATION_CODES.indexOf('CANARY_CORRUPTED'));
    const ownerState = canary !== 0 ? (this.#channels.at(out[InfoOut.Channel]) ?? null) : null;
    this.#emitViolations(mask & ~canary, id, presenter);
    if (canary !== 0) this.#emitViolations(canary, id, ownerState);
    return { valid: mask === 0, handleId: id, channelId: owner, violations: violationList(mask, id) };
  }

  /** A live revocable handle whose buffer was detached by code other than ours. */
  #isDetached(id: number, handle: unknown): boolean {
    const record = this.#records.get(id);
    if (record === undefined || record.ab === null) return false;
    const ab = bufferOf(record);
    if (ab !== undefined && ab.byteLength === 0) return true;
    // `id` was read from `handle` once already (#handleId); its buffer is read once here.
    const buffer = Handle.is(handle) ? handle.buffer : null;
    return buffer !== null && buffer.byteLength === 0;
  }

  track(handle: unknown, presenter: ChannelState | null): ResourceMetrics {
    const id = this.#handleId(handle);
    const presenterIndex = this.#presenterIndex(presenter);
    if (!isWellFormedId(id)) {
      this.#countMalformed(presenter, id);
      throw new InvalidHandleError(id, 'is not a handle id (a non-negative safe integer)');
    }
    const mask = this.#native.validate(id, presenterIndex);
    const out = this.#out;
    const error = trackError(mask, id, presenter !== null);
    if (error !== null) {
      this.#emitViolations(mask, id, presenter);
      throw error;
    }
    const type = this.#types.at(out[InfoOut.Type]);
    const channelIndex = out[InfoOut.Channel];
    const size = out[InfoOut.Size];
    const slotBytes = out[InfoOut.SlotBytes];
    const pool = this.#poolName(out[InfoOut.Pool]);
    const ageNs = out[InfoOut.AgeNs];
    const latency = out[InfoOut.LatencyNs];
    this.#native.channelUsage(channelIndex < 0 ? UNSCOPED_INDEX : channelIndex);
    const result: ResourceMetrics = {
      handleId: id,
      resourceType: type?.name ?? 'unknown',
      channelId: this.#channels.nameOf(channelIndex),
      pool,
      requestedBytes: size,
      slotBytes,
      internalFragmentation: slotBytes > 0 ? 1 - size / slotBytes : 0,
      ageMs: ageNs / 1e6,
      allocationLatencyNs: latency,
      channelBytesInUse: this.#out[UsageOut.Bytes],
    };
    // A live handle with damage (hardened canary, bounds): reported once the result is read.
    this.#emitViolations(mask, id, presenter);
    return result;
  }

  verifyCleanup(handle: unknown): boolean {
    const id = this.#handleId(handle);
    if (!isWellFormedId(id)) return false;
    if (!this.#native.isReleased(id)) return false;
    // A revocable buffer must be revoked too (view-mode buffers are never revoked: SPEC §1).
    // `id` was read from `handle` once already (#handleId); access and buffer are read once here.
    if (Handle.is(handle) && handle.access === 'revocable') {
      const buffer = handle.buffer;
      if (buffer !== null) return buffer.byteLength === 0;
    }
    return true;
  }

  verifyIsolation(channelId: unknown): ResourceIsolationResult {
    return isolationOf(this.#native, this.openChannelState(channelId));
  }

  // ---------------------------------------------------------------------------------------------
  // threads (SPEC §3)

  transfer(handle: unknown): number {
    const id = this.#handleId(handle);
    if (!isWellFormedId(id)) throw new InvalidHandleError(id, 'is not a handle id (a non-negative safe integer)');
    const record = this.#records.get(id);
    if (unrevocable(record) && this.#native.lookup(id) === NativeStatus.Ok) {
      // Another ArrayBuffer may hold this memory: moving it would give two threads access.
      this.#native.countViolation(this.#out[InfoOut.Channel], BUFFER_DETACHED_KIND);
      this.#emitViolations(1 << BUFFER_DETACHED_KIND, id, null);
      throw new InvalidHandleError(id, 'cannot be transferred: its buffer was detached by other code (deallocate it instead)');
    }
    const status = this.#native.beginTransfer(id, bufferOf(record));
    if (status !== NativeStatus.Ok) throw this.#statusError(status, { id });
    const moves = this.#moves;
    const seen = moves.get(id);
    if (seen === undefined && moves.size >= MOVES_KEPT) moves.delete(moves.keys().next().value as number);
    moves.set(id, (seen ?? 0) + 1);
    this.#fast?.forget(id);
    this.#release(id, record);
    return id;
  }

  adopt(id: unknown): Handle {
    if (typeof id !== 'number') throw new InvalidArgumentError('id', `id must be a handle id (number), got ${describeValue(id)}`);
    if (!isWellFormedId(id)) throw new InvalidHandleError(id, 'is not a handle id (a non-negative safe integer)');
    // Adopted memory always gets its own ArrayBuffer (revocable even in a view channel: the
    // adopting thread has no slab view cached, and an own buffer can be revoked again).
    const result = this.#native.adopt(id, true);
    if (typeof result === 'number' && result !== NativeStatus.Ok) throw this.#statusError(result, { id });
    const out = this.#out;
    const type = this.#types.at(out[InfoOut.Type]);
    const size = out[InfoOut.Size];
    let buffer: Buffer | null = null;
    let ab: ArrayBuffer | null = null;
    if (typeof result !== 'number') {
      ab = result;
      buffer = Buffer.from(result);
    }
    const ownerIndex = out[InfoOut.Channel];
    const access: AccessMode | null = ab === null ? null : 'revocable';
    const handleObj = new Handle(this, id, type?.name ?? 'unknown', size, this.#channels.nameOf(ownerIndex), buffer, this.#poolName(out[InfoOut.Pool]), out[InfoOut.SlotBytes], access, null, this.#moves.get(id) ?? 0);
    if (ab !== null) {
      // Deferred as native decides it: revocable slab memory of a channel without immediate reuse
      // (a view channel's adopted memory returns at once, so its own buffer must be revoked).
      const channel = ownerIndex < 0 ? UNSCOPED_INDEX : ownerIndex;
      const deferred = (this.#native.channelOptions(channel) & 5) === 0;
      this.#records.set({ id, pos: -1, ab, site: undefined, watched: false, channel, token: -1, deferred });
    }
    return handleObj;
  }

  // ---------------------------------------------------------------------------------------------
  // leaks

  #onCollected(held: LeakHeld): void {
    if (this.#closed) return;
    // A watched view handle may be a fast-lane one that the native side does not know yet.
    if (this.#fast?.handedOut(held.id) === true) this.#fast.sync();
    if (this.#native.lookup(held.id) !== NativeStatus.Ok) return;
    this.#fast?.forget(held.id);
    this.#leaksDetected++;
    const record = this.#records.get(held.id);
    this.#records.delete(held.id);
    // Revocable: the handle's ArrayBuffer was collected, but a transfer()ed copy may live on;
    // the memory waits (parked) until the backing store itself is gone.
    if (this.#native.free(held.id, -1, NativeFreeReason.Leak, undefined, record !== undefined && record.ab !== null) === NativeStatus.Ok) {
      this.#leaksReclaimed++;
    }
    if (this.#events.wants('leak')) {
      this.#events.leak({ handleId: held.id, resourceType: held.resourceType, size: held.size, channelId: held.channelId, site: held.site?.text });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // metrics

  metrics(): ManagerMetrics {
    if (this.#finalMetrics !== null) return structuredClone(this.#finalMetrics);
    this.#fast?.sync();
    const channels: Array<[string, number]> = [];
    if (this.#shared) {
      // From the native manager: a shared one's channels are every thread's.
      for (const [name, index] of this.#native.openChannels()) if (index !== UNSCOPED_INDEX) channels.push([name, index]);
    } else {
      // A private manager's channel cache is authoritative (no JS strings made by the addon).
      for (const state of this.#channels.values()) channels.push([state.name, state.index]);
    }
    return managerMetrics({
      native: this.#native,
      poolNames: this.#poolNames,
      channels,
      leaksDetected: this.#leaksDetected,
      leaksReclaimed: this.#leaksReclaimed,
      revocation: this.#slotCache ? 'transfer' : 'detach',
      fast: this.#fast,
    });
  }

  // ---------------------------------------------------------------------------------------------
  // lifecycle

  close(): void {
    if (this.#closed) return;
    for (const close of this.#closing) close.finish();
    this.#closing.clear();
    this.#fast?.sync();
    // Revoke every buffer, then free what this manager (this thread's attachment) holds, so the
    // final snapshot shows everything released.
    for (const record of this.#records.values()) {
      if (unrevocable(record)) this.#native.free(record.id, -1, NativeFreeReason.ManagerClose, undefined, true);
      this.#release(record.id, record);
    }
    this.#native.reclaimHeld();
    this.#cache?.flush(0);
    this.#finalMetrics = this.metrics();
    this.#closed = true;
    this.#channels.closeAll();
    this.#slabs.clear();
    this.#native.release();
  }

  // ---------------------------------------------------------------------------------------------
  // status -> error

  #statusError(status: number, ctx: StatusContext): IsopoolError {
    return statusError(status, ctx, this.#out, this.#maxAllocationSize);
  }

}

/**
 * The fast lane (view channels; revocable ones too under `transfer()` revocation), where it
 * applies: a private manager (one JS thread), not hardened
 * (every free checks canaries), not 'paranoid' (every allocation is watched), and not turned off
 * with `ISOPOOL_FASTLANE=off` (a diagnostic switch, for comparisons; README "Access modes").
 */
function fastLaneFor(options: EngineOptions, slabs: SlabExports, cache: SlotCache | null): FastLane | null {
  // native.hardened: also true for every manager of an addon built hardened (-DISOPOOL_HARDENED=1).
  if (options.shared || options.hardened || options.native.hardened || options.leakDetection === 'paranoid') return null;
  if (process.env.ISOPOOL_FASTLANE === 'off') return null;
  return new FastLane(options.native, options.slotSizes, slabs, cache);
}

/** Whole nanoseconds: the native histogram's quantiles are bucket interpolations. */


/** channelDefaults, overridden by explicit options (limits merged per type key). */
export function mergeChannelOptions(defaults: CheckedChannelOptions, options: CheckedChannelOptions): CheckedChannelOptions {
  const limits = new Map(defaults.limits);
  for (const [type, l] of options.limits) limits.set(type, Object.freeze({ ...limits.get(type), ...l }));
  return Object.freeze({
    limits: Object.freeze([...limits]),
    access: options.access ?? defaults.access,
    zero: options.zero ?? defaults.zero,
    unsafeImmediateReuse: options.unsafeImmediateReuse ?? defaults.unsafeImmediateReuse,
  });
}

