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
import { Handle, isWellFormedId } from '../handle';
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
  VIOLATION_CODES,
} from '../native/abi';
import type { NativeManager } from '../native/binding';
import { ChannelDirectory } from './channels';
import { ChannelClose } from './close';
import { effectiveLimits, isolationOf, scopeLimits } from './limits';
import { HandleChecks } from './checks';
import { LeakWatch } from './leaks';
import type { LeakHeld } from './leaks';
import { managerMetrics } from './metrics';
import { MoveLog, RecordTable } from './records';
import { TypeDirectory } from './resource-types';
import { Notices } from './notices';
import { handleIdArg, limitError, statusError } from './status';
import type { StatusContext } from './status';
import {
  UNSCOPED_INDEX,
  bufferOf,
  channelBits,
  isRevocable,
  poolNameOf,
  transferAvailable,
  unrevocable,
} from './state';
import type { ChannelState, EngineOptions, LiveRecord, TypeState } from './state';

export type { EngineOptions } from './state';
import type {
  AccessMode,
  ChannelCloseReport,
  LimitFields,
  ManagerMetrics,
  ResourceIsolationResult,
  ResourceLimits,
  ResourceMetrics,
  SecurityValidationResult,
} from '../types';
import { checkChannelId, checkSize, checkTypeName, mergeChannelOptions } from '../validate';
import type { CheckedChannelOptions } from '../validate';

const BUFFER_DETACHED_KIND = VIOLATION_CODES.indexOf('BUFFER_DETACHED');

export class Engine implements HandleOwner {
  readonly #native: NativeManager;
  readonly #out: Float64Array;
  readonly #in: Float64Array;
  readonly #poolNames: string[];
  readonly #maxAllocationSize: number;
  readonly #autoOpen: boolean;
  readonly #defaults: CheckedChannelOptions;
  readonly #events: EventSink;
  readonly #shared: boolean;
  /** Shared managers: non-zero while other threads' frees wait to be drained (NativeManager.revocations). */
  readonly #revocations: Uint32Array | null;

  readonly #types: TypeDirectory;
  readonly #channels: ChannelDirectory;
  readonly #notices: Notices;
  readonly #checks: HandleChecks;
  readonly #records = new RecordTable<LiveRecord>();
  /** View-mode slab ArrayBuffers by slab key, held weakly: live views keep them alive. */
  readonly #slabs: SlabExports;
  readonly #leaks: LeakWatch;
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
  /** Transfers seen by this thread: a handle object made before an id's latest one is inert. */
  readonly #moves = new MoveLog();
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
    this.#events = options.events;
    this.#shared = options.shared;
    this.#revocations = options.native.revocations ?? null;
    this.#channels = new ChannelDirectory(options.native, options.shared);
    this.#notices = new Notices(options.native, options.events);
    this.#leaks = new LeakWatch(options.leakDetection, options.leakSampleRate, (held) => this.#onCollected(held));
    this.#slotCache = !options.shared && transferAvailable() && options.native.slotCacheStats();
    this.#slabs = new SlabExports(options.native);
    this.#cache = this.#slotCache ? new SlotCache(options.native) : null;
    // native.hardened: also true for every manager of an addon built hardened (-DISOPOOL_HARDENED=1).
    const laneOff = options.shared || options.hardened || options.native.hardened || options.leakDetection === 'paranoid' || process.env.ISOPOOL_FASTLANE === 'off';
    this.#fast = laneOff ? null : new FastLane(options.native, options.slotSizes, this.#slabs, this.#cache);
    this.#types = new TypeDirectory(options.native);
    this.#checks = new HandleChecks(options.native, this.#channels, this.#types, this.#records, this.#notices, options.poolNames);
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
   * (the fast lane's sync), except for allocate, deallocate, openChannel, closeChannel and the
   * `channel` lookup: see {@link Engine.checkOpenHot}.
   */
  checkOpen(operation: string): void {
    this.checkOpenHot(operation);
    this.#fast?.sync(); // null for shared managers
  }

  /**
   * checkOpen for allocate and deallocate, which sync the fast lane themselves when they go
   * native, and for openChannel, closeChannel and the `channel` lookup: a new channel has
   * nothing in the lane, a closing one syncs its own part ({@link Engine.closeChannel}), and a
   * lookup observes nothing.
   */
  checkOpenHot(operation: string): void {
    if (this.#closed) throw new ManagerClosedError(operation);
    if (this.#revocations !== null && this.#revocations[0] !== 0) this.#drainRevocations();
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
    this.#channels.checkOpen(state);
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





  /** Presenter's native index: -1 for the manager itself. Throws if the scope's channel closed. */
  #presenterIndex(presenter: ChannelState | null): number {
    if (presenter === null) return -1;
    this.checkScopeOpen(presenter);
    return presenter.index;
  }

  /**
   * #presenterIndex for a call that passes `presenter.owner` to the native side, which checks it
   * (another thread of a shared manager may have closed the channel; elsewhere `open` says it).
   */
  #presenterHot(presenter: ChannelState | null): number {
    if (presenter === null) return -1;
    if (!presenter.open) throw new ChannelClosedError(presenter.name);
    return presenter.index;
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
    // A channel just created has nothing in the lane: no sync before its limits.
    if (created) for (const [type, l] of limits) this.#applyLimits(type, index, l, false);
    return { state, created };
  }




  closeChannel(channelId: unknown): ChannelCloseReport {
    const state = this.openChannelState(channelId);
    // The native side learns this channel's lane handles and gets its parked slots back; other
    // channels keep theirs (their ledgers are not what the close reports or changes).
    this.#fast?.syncChannel(state);
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
    this.#notices.emit(mask, id, state);
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

  /**
   * Sets the given fields on one scope; the others keep the values the native manager has.
   * `sync`: first free every parked slot, so none is kept under limits it was not admitted by.
   */
  #applyLimits(type: number, channel: number, update: Readonly<Partial<LimitFields>>, sync = true): void {
    if (sync) this.#fast?.sync();
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
    const watched = this.#leaks.nextWatched();
    const fast = this.#fast;
    if (fast !== null) {
      if (channel !== null && channel.access === 'view' && type.memory) {
        const taken = fast.take(channel, type.index, n, watched);
        if (taken !== null) {
          this.#leaks.counted();
          const handle = new Handle(this, taken.id, type.name, n, channel.name, taken.buffer, poolNameOf(this.#poolNames, taken.pool), taken.slotBytes, 'view', presenter);
          if (watched) this.#track(taken.id, type, n, channel, null, taken.buffer, handle, true, -1);
          return handle;
        }
      } else if (channel !== null && type.memory && !watched && this.#slotCache && !channel.deferred) {
        const taken = fast.takeRevocable(channel, type.index, n);
        if (taken !== null) {
          this.#leaks.counted();
          const handle = new Handle(this, taken.id, type.name, n, channel.name, taken.buffer, poolNameOf(this.#poolNames, taken.pool), taken.slotBytes, 'revocable', presenter);
          this.#track(taken.id, type, n, channel, taken.ab, taken.buffer, handle, false, taken.token);
          return handle;
        }
      }
      fast.beforeNativeAllocation(channel);
    }
    let revocable = isRevocable(type, channel);
    let result = this.#nativeAllocate(type, n, channel, revocable);
    // Refusals the lane's parked slots may have caused: the type's total counted them
    // (ParkedCharges), or the system refused a new slab while they hold free memory the pools
    // would otherwise have. The answer is the one without them.
    if (fast !== null && (result === NativeStatus.ParkedCharges || (result === NativeStatus.PoolExhausted && fast.holdsAnyParked()))) {
      fast.sync();
      result = this.#nativeAllocate(type, n, channel, revocable);
    }
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
      if (error instanceof ResourceLimitError) this.#notices.limit(error);
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
    const handle = new Handle(this, id, type.name, n, channelName, buffer, poolNameOf(this.#poolNames, pool), slotBytes, access, presenter);

    this.#leaks.counted();
    if (watched || ab !== null) this.#track(id, type, n, channel, ab, buffer, handle, watched, token);
    if (softCrossed !== NativeLimitScope.None && this.#events.wants('pressure')) {
      this.#notices.pressure(type, channel, softCrossed);
    }
    return handle;
  }

  /**
   * Records a new handle that needs a {@link LiveRecord}: one watched for leaks, or one with its
   * own ArrayBuffer (revocable) to revoke when it is freed by id.
   */
  #track(id: number, type: TypeState, n: number, channel: ChannelState | null, ab: ArrayBuffer | null, buffer: Buffer | null, handle: Handle, watched: boolean, token: number): void {
    const site = this.#leaks.siteFor(watched);
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
      this.#leaks.watch(target, { id, resourceType: type.name, size: n, channelId: channel === null ? null : channel.name, site }, record);
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
    input[InArgs.AllocParked] = this.#fast !== null && this.#fast.holdsParked(type.index) ? 1 : 0;
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
  #freeHeld(id: number, presenterIndex: number, record: LiveRecord | undefined, owner = 0): number {
    const input = this.#in;
    input[InArgs.FreeId] = id;
    input[InArgs.FreePresenter] = presenterIndex;
    input[InArgs.FreeReason] = NativeFreeReason.Deallocate;
    input[InArgs.FreeOwner] = owner;
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



  #allocationError(status: number, type: TypeState, size: number, channel: ChannelState | null): IsopoolError {
    if (status !== NativeStatus.ResourceLimit) return this.#statusError(status, { type: type.name, channel: channel?.name, size });
    return limitError(this.#out, type.name, size, channel === null ? null : channel.name);
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
      this.#leaks.unwatch(record);
      record.site?.drop();
    }
    if (record.deferred) return; // left attached: its memory returns when it dies
    const ab = bufferOf(record);
    if (ab === undefined || ab.byteLength === 0) return;
    if (recached) this.#cache?.revoke(record.token, ab, this.#records.size);
    else this.#native.detach(ab);
  }

  deallocate(handle: unknown, presenter: ChannelState | null): boolean {
    const id = handleIdArg(handle);
    if (!isWellFormedId(id)) {
      this.#presenterIndex(presenter); // a closed scope is refused first
      this.#notices.malformed(presenter, id);
      return false;
    }
    // A shared manager's scope may have been closed by another thread: the native free checks
    // the incarnation (FreeOwner) instead of a lookup here.
    const presenterIndex = this.#presenterHot(presenter);
    const fast = this.#fast;
    if (fast !== null && this.#park(fast, id, presenter)) return true;
    const record = this.#records.get(id);
    // The native side must know every fast-lane id first (this one may be parked or burned, or a
    // watched lane handle, which has a record, presented by another channel).
    if (fast !== null && (record === undefined || fast.handedOut(id))) fast.sync();
    const status = this.#freeHeld(id, presenterIndex, record, presenter === null ? 0 : presenter.owner);
    if (status === NativeStatus.Ok) {
      fast?.forget(id);
      this.#moves.forget(id);
      // Hardened: a damaged canary is reported by a successful free (native/core/hardening.h).
      const freedMask = this.#out[InfoOut.ViolationMask];
      const ownerIndex = this.#out[InfoOut.Channel];
      this.#release(id, record, this.#out[InfoOut.Recached] === 1);
      if (freedMask !== 0) this.#notices.emit(freedMask, id, this.#channels.at(ownerIndex) ?? null);
      return true;
    }
    if (status === NativeStatus.ChannelClosed && presenter !== null) {
      this.checkScopeOpen(presenter); // marks the scope closed and throws
      throw new ChannelClosedError(presenter.name);
    }
    this.#notices.emit(this.#out[InfoOut.ViolationMask], id, presenter);
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
    if (this.#moves.of(id) !== moves) return;
    const scope = presenter as ChannelState | null;
    // A shared manager's scope closed by another thread: the native free refuses (FreeOwner).
    if (scope !== null && !scope.open) return;
    const fast = this.#fast;
    if (fast !== null && this.#park(fast, id, scope)) return;
    const record = this.#records.get(id);
    if (fast !== null && (record === undefined || fast.handedOut(id))) fast.sync();
    if (this.#native.lookup(id) !== NativeStatus.Ok || this.#out[InfoOut.InTransit] === 1) return;
    if (this.#freeHeld(id, scope === null ? -1 : scope.index, record, scope === null ? 0 : scope.owner) === NativeStatus.Ok) {
      fast?.forget(id);
      this.#moves.forget(id);
      this.#release(id, record, this.#out[InfoOut.Recached] === 1);
    }
  }





  // ---------------------------------------------------------------------------------------------
  // checks








  validate(handle: unknown, presenter: ChannelState | null): SecurityValidationResult {
    return this.#checks.validate(handle, presenter, this.#presenterIndex(presenter));
  }

  track(handle: unknown, presenter: ChannelState | null): ResourceMetrics {
    return this.#checks.track(handle, presenter, this.#presenterIndex(presenter));
  }

  verifyCleanup(handle: unknown): boolean {
    return this.#checks.verifyCleanup(handle);
  }

  verifyIsolation(channelId: unknown): ResourceIsolationResult {
    return isolationOf(this.#native, this.openChannelState(channelId));
  }

  // ---------------------------------------------------------------------------------------------
  // threads (docs/THREADS.md)

  transfer(handle: unknown): number {
    const id = handleIdArg(handle);
    if (!isWellFormedId(id)) throw new InvalidHandleError(id, 'is not a handle id (a non-negative safe integer)');
    const record = this.#records.get(id);
    if (unrevocable(record) && this.#native.lookup(id) === NativeStatus.Ok) {
      // Another ArrayBuffer may hold this memory: moving it would give two threads access.
      this.#native.countViolation(this.#out[InfoOut.Channel], BUFFER_DETACHED_KIND);
      this.#notices.emit(1 << BUFFER_DETACHED_KIND, id, null);
      throw new InvalidHandleError(id, 'cannot be transferred: its buffer was detached by other code (deallocate it instead)');
    }
    const status = this.#native.beginTransfer(id, bufferOf(record));
    if (status !== NativeStatus.Ok) throw this.#statusError(status, { id });
    this.#moves.moved(id);
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
    const handleObj = new Handle(this, id, type?.name ?? 'unknown', size, this.#channels.nameOf(ownerIndex), buffer, poolNameOf(this.#poolNames, out[InfoOut.Pool]), out[InfoOut.SlotBytes], access, null, this.#moves.of(id));
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
    this.#leaks.detected++;
    const record = this.#records.get(held.id);
    this.#records.delete(held.id);
    // Revocable: the handle's ArrayBuffer was collected, but a transfer()ed copy may live on;
    // the memory waits (parked) until the backing store itself is gone.
    if (this.#native.free(held.id, -1, NativeFreeReason.Leak, undefined, record !== undefined && record.ab !== null) === NativeStatus.Ok) {
      this.#leaks.reclaimed++;
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
      leaksDetected: this.#leaks.detected,
      leaksReclaimed: this.#leaks.reclaimed,
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
