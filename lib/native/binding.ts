/**
 * The addon's interface as lib/ sees it: {@link NativeManager}, the class the addon exports,
 * and the decoding of its snapshot. ./loader.ts loads the addon and checks it against this
 * interface ({@link narrowAddon}); everything else in lib/ uses only what is declared here.
 *
 * Calling convention (native/binding/abi.h): arguments are primitives; results that have
 * several numbers are written into the manager's scratch `out` Float64Array
 * (ids are safe integers, so they fit a double exactly). The slot layouts and number
 * codes are in ./abi.ts, generated from the C++ headers.
 * @internal
 * @packageDocumentation
 */
import { SnapshotOut } from './abi';
import type { BufferMode } from './abi';

/** native/core/handle_table.h `kMaxIndex`: how many handles one manager can hold live at once. */
export const HANDLE_TABLE_CAPACITY = 2 ** 21 - 1;

export interface NativePoolConfig {
  name: string;
  slotSize: number;
  queueSize: number;
}

export interface NativeConfig {
  pools: NativePoolConfig[];
  maxAllocationSize: number;
  hardened: boolean;
  /** Attach to (or create) the process-wide manager of this name. */
  shared?: string;
}

export interface NativeLatency {
  count: number;
  p50: number;
  p99: number;
  p999: number;
  sumNs: number;
  /** Samples per log2 bucket: bucket i covers [2^i, 2^(i+1)) ns. */
  buckets: number[];
}

export interface NativePoolStats {
  name: string;
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

export interface NativeSnapshot {
  pools: NativePoolStats[];
  direct: NativePoolStats;
  handles: number;
  bytesInUse: number;
  requestedBytes: number;
  reservedBytes: number;
  allocations: number;
  deallocations: number;
  refusals: number;
  liveSlotBytes: number;
  retainedFreeBytes: number;
  allocateLatency: NativeLatency;
  deallocateLatency: NativeLatency;
  /** Freed handles whose memory waits for a buffer over it to die (deferred reuse, another thread's buffer, moved memory). */
  parkedHandles: number;
  /** Live handles reclaimed because the thread holding them exited. */
  threadExitReclaims: number;
}

function readLatency(v: Float64Array, at: number): NativeLatency {
  const buckets: number[] = [];
  for (let i = 0; i < SnapshotOut.LatencyBuckets; i++) buckets.push(v[at + 5 + i]);
  return { count: v[at], p50: v[at + 1], p99: v[at + 2], p999: v[at + 3], sumNs: v[at + 4], buckets };
}

function readPool(v: Float64Array, at: number, name: string): NativePoolStats {
  return {
    name,
    slotSize: v[at],
    queueSize: v[at + 1],
    reservedBytes: v[at + 2],
    liveSlots: v[at + 3],
    liveBytes: v[at + 4],
    retainedFreeSlots: v[at + 5],
    hits: v[at + 6],
    misses: v[at + 7],
    releasedToSystem: v[at + 8],
    failures: v[at + 9],
  };
}

/** `native.snapshot()`, named; `poolNames` in configuration order. */
export function readSnapshot(native: NativeManager, poolNames: readonly string[]): NativeSnapshot {
  native.snapshot();
  const v = native.snap;
  const pools: NativePoolStats[] = [];
  for (let i = 0; i < poolNames.length; i++) pools.push(readPool(v, SnapshotOut.Pools + i * SnapshotOut.PoolLength, poolNames[i]));
  return {
    pools,
    direct: readPool(v, SnapshotOut.Direct, 'direct'),
    handles: v[SnapshotOut.Handles],
    bytesInUse: v[SnapshotOut.BytesInUse],
    requestedBytes: v[SnapshotOut.RequestedBytes],
    reservedBytes: v[SnapshotOut.ReservedBytes],
    allocations: v[SnapshotOut.Allocations],
    deallocations: v[SnapshotOut.Deallocations],
    refusals: v[SnapshotOut.Refusals],
    liveSlotBytes: v[SnapshotOut.LiveSlotBytes],
    retainedFreeBytes: v[SnapshotOut.RetainedFreeBytes],
    allocateLatency: readLatency(v, SnapshotOut.AllocateLatency),
    deallocateLatency: readLatency(v, SnapshotOut.DeallocateLatency),
    parkedHandles: v[SnapshotOut.ParkedHandles],
    threadExitReclaims: v[SnapshotOut.ThreadExitReclaims],
  };
}

/** The addon's `NativeManager` instance. Every method is synchronous. */
export interface NativeManager {
  /** Scratch results, length >= 32. Overwritten by every call. */
  readonly out: Float64Array;
  /**
   * Arguments of allocIn() and freeIn() (InArgs), length 8. freeIn() with FreeOwner > 0 refuses
   * with ChannelClosed, changing nothing, unless the presenter is that open incarnation.
   */
  readonly in: Float64Array;
  /**
   * allocate() with its arguments in `in` (the hot path: an own function of this object, with no
   * argument conversions). Same results.
   */
  allocIn(): ArrayBuffer | number;
  /** free() with `ab` as argument and the others in `in`. Same results. */
  freeIn(ab?: ArrayBuffer): number;

  /**
   * Whether the manager is hardened: created with `hardened: true`, or any manager of an addon
   * built with -DISOPOOL_HARDENED=1 (native/core/hardening.h), which the options cannot tell.
   */
  readonly hardened: boolean;

  /**
   * Fast lane (single-owner managers, view-mode memory): the ids reserveIds() wrote, length 256.
   * Each is the id the handle table will publish for its index; until applyJournal() consumes it
   * (Reissue or Burn) it is unissued (validate reports it forged).
   */
  readonly fastIds: Float64Array;
  /**
   * Fast lane: applyJournal()'s ops, 4 doubles each, [op, a, b, c], up to 1024 ops (length 4096):
   * - op 1 Reissue: a = old id, b = new id (from fastIds), c = size. As a free of the old id and an
   *   allocation of `size` landing on its slot: the old id becomes stale, the new one live with the
   *   same slot, channel and type; ledgers unchanged; allocations, deallocations and the pool's hits
   *   + 1. The old id must be a live pooled handle (view or revocable) and `size` must pick the
   *   same pool. The new id's holder is the old one's, attached as the old one's was.
   * - op 2 Free: a = id. Exactly freeIn() with in = [id, -1, 0 (Deallocate), 0, -1] and no buffer.
   * - op 3 Burn: a = id (from fastIds), b = source id, c = size. The id counts as an allocation of
   *   `size` over the slot of live handle `source` (same channel, type and pool), freed again: it is
   *   stale from now on; allocations, deallocations and that pool's hits + 1; ledgers unchanged.
   * - op 4 FreeCached: a = id, b = slot-cache token. Op 2, and the backing store goes back to the
   *   slot cache as entry b (the caller puts the ArrayBuffer holding it there), as freeIn() with
   *   that token does.
   * - op 5 SlotOwner: a = old id, b = new id, c = slot-cache token: after op 1 on a revocable slot,
   *   the token's backing store belongs to the new id's handle (its finalizer reports that id).
   *   No-op when the token's buffer is gone.
   */
  readonly journal: Float64Array;
  /**
   * Reserves min(n, 256) ids for the fast lane into fastIds[0..got) and returns got (fewer when the
   * handle table is full; 0 when refused: a shared or hardened manager, after release(), or n not a
   * non-negative integer).
   */
  reserveIds(n: number): number;
  /**
   * Applies journal ops 0..count-1 in order. Returns -1 when all succeeded; else the index of the
   * first op that failed (the ops before it are applied, it and the later ones are not), with its
   * status in out[0]. -2 (nothing applied) if count is not an integer in 0..1024; -3 after release()
   * (out[0] = ManagerClosed).
   */
  applyJournal(count: number): number;

  /** kind 0 = memory, 1 = counter. Returns the type index (>= 0) or -status. */
  defineType(name: string, kind: number): number;
  /** Type index or -1; out[0] = kind (0 memory, 1 counter) when found. */
  findType(name: string): number;
  /** Returns the channel index (>= 0) or -status; out[0] = 1 if created, 0 if it was open. access 0 revocable / 1 view; zero 0 cross-channel / 1 always. */
  openChannel(name: string, access: number, zero: number, immediateReuse: number): number;
  /** >= 0 open index (out[0] = access | zero << 1, out[1] = owner epoch); -1 unknown; -2 closed. */
  findChannel(name: string): number;
  /**
   * Begins closing the channel: from now on its handles are freed to every caller and its name
   * is closed. Returns status; out[0] = handles to free, out[1] = their charged bytes.
   */
  closeChannel(channel: number): number;
  /** Claims up to `max` handles of a close under way: [id, type, size, charged, violation mask] per handle, or -status. */
  closeChannelClaim(channel: number, max: number): Float64Array | number;
  /** Frees the last claim's handles (the k-th's memory parked until its buffer dies where keep[k]); returns how many are left, or -status. */
  closeChannelFinish(channel: number, keep: Uint8Array | null): number;
  /**
   * Closes incarnation `owner` of a channel as if it was never opened (undoing an auto-open),
   * if it holds no handles and no allocation is in flight in it. Returns status (INVALID_ARGUMENT: in use; CHANNEL_CLOSED: that incarnation is gone).
   */
  discardChannel(channel: number, owner: number): number;
  /** access | (zero << 1) of an open channel. */
  channelOptions(channel: number): number;
  /** type -1 = '*' (channel total); channel -1 = type total. Infinity = none. Returns status. */
  setLimits(type: number, channel: number, maxBytes: number, maxHandles: number, maxAllocationSize: number, softBytes: number): number;
  /** Effective limits into out (LimitsOut). */
  getLimits(type: number, channel: number): void;
  /** The limits set on exactly that scope (setLimits addressing) into out (LimitsOut). */
  getScopeLimits(type: number, channel: number): void;
  /**
   * Shared managers: ids that other threads freed while this wrapper holds their revocable
   * buffers; detach them (their memory is parked until then). undefined if none.
   */
  drainRevocations(): Float64Array | undefined;
  /**
   * Shared managers only: `[0]` is non-zero while drainRevocations() has ids for this wrapper
   * (any thread sets it; the drain clears it), so a call need not go native to ask.
   */
  readonly revocations?: Uint32Array;

  /**
   * Allocates. With `mode` Fresh and a memory type, returns a fresh external ArrayBuffer of
   * exactly `size` bytes over the slot (revocable mode); with SlotCache, that or status Ok and a
   * cache entry to take (AllocOut.CacheToken); otherwise returns a status (0 = ok).
   * Results in out (AllocOut) on success, refusal details on ResourceLimit. With `expectedOwner`
   * (> 0), refuses with ChannelClosed if the channel index now belongs to another incarnation.
   */
  allocate(type: number, size: number, channel: number, mode: BufferMode, expectedOwner?: number): ArrayBuffer | number;
  /**
   * Frees `id` (presented by channel `presenter`, -1 = manager). Detaches `ab` if given and the free
   * succeeded. `keepUntilReleased` (or an `ab` that is already detached): our buffer cannot vouch
   * for the memory, which is parked until the buffer's backing store dies. `cacheToken` (slot
   * cache): the handle's cache entry; InfoOut.Recached = 1 tells the caller to revoke its buffer
   * by moving the backing store into that entry. Returns status; out (InfoOut) describes the
   * freed handle.
   */
  free(id: number, presenter: number, reason: number, ab: ArrayBuffer | undefined, keepUntilReleased?: boolean, cacheToken?: number): number;
  /** Violation mask for presenting id to presenter (-1 = manager); counts them. out (InfoOut) if live. */
  validate(id: number, presenter: number): number;
  /** Status; out (InfoOut) for a live id. Counts nothing. */
  lookup(id: number): number;
  isReleased(id: number): boolean;
  countViolation(channel: number, kind: number): void;
  /** Detaches an ArrayBuffer created by this addon (revocation without a free). */
  detach(ab: ArrayBuffer): void;
  /** External ArrayBuffer over a whole slab (view mode), or -status. */
  exportSlab(slabKey: number): ArrayBuffer | number;
  /** The key of a slab this thread exported that has been retired since (emptied and given back), or -1. */
  takeRetiredSlab(): number;
  /** Bytes of the manager's mappings resident in memory (mincore); a soak diagnostic. */
  residentBytes(): number;
  /**
   * If `ab` is this thread's attached export of a retired slab: detaches it and releases the
   * export now (the slab is unmapped once no export holds it) rather than when `ab` is collected.
   * True if released.
   */
  releaseSlab(ab: ArrayBuffer | undefined): boolean;

  /** Live -> in transit; detaches `ab` if given. Returns status. */
  beginTransfer(id: number, ab: ArrayBuffer | undefined): number;
  /** In transit -> live. external: return a new external ArrayBuffer over the memory. Returns it or a status; out (InfoOut). */
  adopt(id: number, external: boolean): ArrayBuffer | number;

  channelUsage(channel: number): void;
  /** channel -1 = the type's total. */
  typeUsage(type: number, channel: number): void;
  /** out[0] = live handles, out[1] = charged bytes, recounted from the handle table. */
  recountChannel(channel: number): void;
  /** [name, index] of every open channel. */
  openChannels(): Array<[string, number]>;
  /** Writes the statistics into `snap` (SnapshotOut) and returns how many values; readSnapshot() names them. */
  snapshot(): number;
  /** snapshot()'s values, overwritten by each call. */
  readonly snap: Float64Array;
  injectAllocationFailures(n: number): void;
  /** Frees every live handle this wrapper allocated or adopted (not those in transit); returns how many. */
  reclaimHeld(): number;
  /** The JS slot cache dropped every entry. */
  flushSlotCache(): void;
  /** out[0] = slot buffers created, out[1] = allocations served by the slot cache. False: no slot cache (shared). */
  slotCacheStats(): boolean;
  /** Drops the wrapper's reference to the native core (close()). Exported buffers keep memory alive. */
  release(): void;
}

export interface NativeAddon {
  NativeManager: new (config: NativeConfig) => NativeManager;
  /** Size of a system page, for direct-allocation rounding. */
  pageSize: number;
  /** The binding's contract version (native/binding/addon.cc kBindingVersion; lib/native/loader.ts BINDING_VERSION). */
  bindingVersion: number;
  /**
   * The process's C heap as glibc counts it (`mallinfo2`), or `undefined` on another libc.
   * A soak diagnostic (bench/soak.ts): walks every malloc arena under its lock.
   */
  mallocStats(): MallocStats | undefined;
  /**
   * Asks glibc to return every arena's free pages to the system (`malloc_trim(0)`): true if any
   * were released, `undefined` where {@link mallocStats} is. A soak diagnostic (`--malloc-trim`).
   */
  mallocTrim(): boolean | undefined;
}

/** {@link NativeAddon.mallocStats}: bytes in allocated chunks, and bytes held from the system. */
export interface MallocStats {
  inUseBytes: number;
  systemBytes: number;
}
