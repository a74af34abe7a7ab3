/**
 * Public types (README "API at a glance", docs/MONITORING.md). Shapes may gain fields, never lose them.
 * @packageDocumentation
 */
import type { LimitScopeName } from './errors';

/** Where handle buffers come from in a channel. See the README's "Access modes". */
export type AccessMode = 'revocable' | 'view';
/** When a slot is zeroed before reuse. See the README's "Zeroing". */
export type ZeroMode = 'cross-channel' | 'always';
/** How leaks are found: `'off'`, `'sampled'` (1 in `leakSampleRate` allocations, the default) or `'paranoid'` (every allocation, with its allocation site). */
export type LeakDetectionMode = 'off' | 'sampled' | 'paranoid';

/** The violation codes of README "Violations and hardened mode". */
export type ViolationCode =
  | 'FORGED_HANDLE'
  | 'STALE_HANDLE'
  | 'CHANNEL_CLOSED'
  | 'CROSS_CHANNEL'
  | 'OUT_OF_BOUNDS'
  | 'CANARY_CORRUPTED'
  | 'BUFFER_DETACHED';

/** Effective limits; `Infinity` for none. For counted types, bytes are units. */
export interface ResourceLimits {
  /** The type, or `'*'` for a channel's total over all types. */
  resourceType: string;
  /** The channel, or `null` for a type's total over every channel. */
  channelId: string | null;
  /** Bytes (units for counted types) that may be charged at once. */
  maxBytes: number;
  /** Handles that may be live at once. */
  maxHandles: number;
  /** Largest single allocation (bytes, or units). */
  maxAllocationSize: number;
  /** Crossing it succeeds but emits `'pressure'`. */
  softBytes: number;
}

/** The settable fields of {@link ResourceLimits}. */
export type LimitFields = Pick<ResourceLimits, 'maxBytes' | 'maxHandles' | 'maxAllocationSize' | 'softBytes'>;

/** One size-class pool of `ResourceManagerOptions.pools`. */
export interface PoolOptions {
  /** The pool's name in metrics and `ResourceHandle.pool`. */
  name: string;
  /** Bytes per slot, a safe integer >= 1. */
  slotSize: number;
  /** Free slots kept for reuse; the rest go back to the system. */
  queueSize: number;
}

/** Options of a channel: `openChannel(id, options)` and `channelDefaults`. */
export interface ChannelOptions {
  /** Per type, or `'*'` for the channel's total over all types. */
  limits?: Record<string, Partial<LimitFields>>;
  /** Default `'revocable'`. `'view'` is faster but does not revoke stale references. */
  access?: AccessMode;
  /** Default `'cross-channel'`. */
  zero?: ZeroMode;
  /**
   * Revocable channels only; default `false`. By default a freed buffer is not revoked: its
   * memory returns to the pool only once nothing (Node I/O included) can reach the buffer any
   * more. `true` revokes and reuses at once, even while Node I/O may still use the buffer:
   * unsafe, see the README's security model.
   */
  unsafeImmediateReuse?: boolean;
}

/** Options of `new ResourceManager(options)`; every field is optional. */
export interface ResourceManagerOptions {
  /** Size-class pools; default small (4 KiB, 500 retained), medium (64 KiB, 250), large (1 MiB, 125). */
  pools?: PoolOptions[];
  /** Bytes (units for counters) per allocation, default 64 MiB. */
  maxAllocationSize?: number;
  /** Default true: an unknown channel id opens the channel with `channelDefaults`. */
  autoOpenChannels?: boolean;
  /**
   * Options every new channel starts with (limits are copied per channel). `limits['*'].maxHandles`
   * defaults to `DEFAULT_CHANNEL_MAX_HANDLES` (65,536) when not given here.
   */
  channelDefaults?: ChannelOptions;
  /** Default `'sampled'`. */
  leakDetection?: LeakDetectionMode;
  /** With `'sampled'`, 1 in this many allocations is watched (default 128). */
  leakSampleRate?: number;
  /** Default false. */
  hardened?: boolean;
  /** Attach to a process-wide native manager of this name (docs/THREADS.md). */
  shared?: string;
}

/** Options of `defineResourceType(name, options)`. */
export interface ResourceTypeOptions {
  /** Only `'counter'` can be defined: counted, non-memory resources. */
  kind: 'counter';
  /** Type-level limits (the type's total over every channel). */
  limits?: Partial<LimitFields>;
}

/** One allocation. Deallocate it (or dispose it) exactly once. */
export interface ResourceHandle {
  /** Opaque safe integer; a `number` where a handle is taken is this id. */
  readonly id: number;
  /** `'buffer'` or a type defined with `defineResourceType`. */
  readonly resourceType: string;
  /** The requested size (bytes, or units for counters). */
  readonly size: number;
  /** The owning channel, or `null` for the unscoped domain. */
  readonly channelId: string | null;
  /** Exactly `size` bytes for memory types; `null` for counted types. */
  readonly buffer: Buffer | null;
  /** Pool name, `'direct'` for oversize memory, `'counter'` for counted types. */
  readonly pool: string;
  /** Bytes (units) the slot holds; what the ledgers are charged. */
  readonly slotBytes: number;
  /** Deallocates; a second dispose is a no-op. */
  [Symbol.dispose](): void;
}

/** One security-boundary violation found by a check. */
export interface Violation {
  /** What kind of violation. */
  code: ViolationCode;
  /** A human-readable explanation naming the handle. */
  message: string;
}

/** What `validateSecurityBoundaries` (and `ChannelScope.validate`) returns. */
export interface SecurityValidationResult {
  /** True only for a live handle presented where it may be used. */
  valid: boolean;
  /** The id that was checked. */
  handleId: number;
  /** The handle's owning channel when known, else `null`. */
  channelId: string | null;
  /** Empty when valid. */
  violations: Violation[];
}

/** What `verifyResourceIsolation(channelId)` returns. */
export interface ResourceIsolationResult {
  /** The checked channel. */
  channelId: string;
  /** False when the ledger disagrees with the live handles, a slot is owned twice, or violations were recorded against the channel. */
  isolated: boolean;
  /** Live handles of the channel. */
  handleCount: number;
  /** Charged bytes. */
  bytesInUse: number;
  /** The channel's total limits (`'*'`). */
  limits: ResourceLimits;
  /** Violations recorded against the channel, non-zero codes only. */
  violations: Array<
    Violation & {
      /** Times this code was counted against the channel. */
      count: number;
    }
  >;
}

/** One handle's usage. */
export interface ResourceMetrics {
  /** The handle's id. */
  handleId: number;
  /** The handle's resource type. */
  resourceType: string;
  /** The owning channel, or `null` for the unscoped domain. */
  channelId: string | null;
  /** Pool name, `'direct'` for oversize memory, `'counter'` for counted types. */
  pool: string;
  /** The requested size (bytes, or units). */
  requestedBytes: number;
  /** Bytes (units) charged: the slot size, or the size rounded up to 4 KiB for direct memory. */
  slotBytes: number;
  /** 1 − requestedBytes / slotBytes. */
  internalFragmentation: number;
  /** Milliseconds since the allocation. */
  ageMs: number;
  /** Time the native core spent serving this allocation. */
  allocationLatencyNs: number;
  /** Charged bytes of the handle's channel (or of the unscoped domain). */
  channelBytesInUse: number;
}

/** One pool's counters in {@link ManagerMetrics.pools}. */
export interface PoolMetrics {
  /** Bytes per slot (0 for `direct`). */
  slotSize: number;
  /** Free slots the pool keeps for reuse at most. */
  queueSize: number;
  /** Bytes the pool holds from the system. */
  reservedBytes: number;
  /** Slots in use. */
  liveSlots: number;
  /** Requested bytes of live slots. */
  liveBytes: number;
  /** Free slots kept for reuse. */
  retainedFreeSlots: number;
  /** Allocations served from a retained free slot. */
  hits: number;
  /** Allocations that needed new memory. */
  misses: number;
  /** Slabs returned to the system. */
  releasedToSystem: number;
  /** Allocations the system refused memory for. */
  failures: number;
}

/** One channel's (or the unscoped domain's) counters in {@link ManagerMetrics}. */
export interface ChannelMetrics {
  /** Charged bytes. */
  bytesInUse: number;
  /** Live handles. */
  handles: number;
  /** Highest charged bytes so far. */
  peakBytes: number;
  /** Allocations refused by a limit. */
  limitRejections: number;
  /** Violations counted against the channel, by code (every code listed, zeros included). */
  violations: Record<ViolationCode, number>;
}

/** Latency quantiles of one native operation, in whole nanoseconds (estimated from log2 buckets). */
export interface LatencyMetrics {
  /** Median, ns. */
  p50: number;
  /** 99th percentile, ns. */
  p99: number;
  /** 99.9th percentile, ns. */
  p999: number;
  /** Operations measured. */
  count: number;
  /** Their total time, ns. */
  sumNs: number;
  /**
   * Operations per log2 bucket: `buckets[i]` counts those that took [2^i, 2^(i+1)) ns (bucket 0
   * also 0 ns, the last bucket also anything longer). The buckets sum to `count`.
   */
  buckets: number[];
}

/** A plain JSON-serialisable snapshot. */
export interface ManagerMetrics {
  /** Configured pools by name, plus `direct` for oversize allocations. */
  pools: Record<string, PoolMetrics>;
  /** Open channels by id. */
  channels: Record<string, ChannelMetrics>;
  /** The unscoped domain (allocations without a channel id). */
  unscoped: ChannelMetrics;
  /** Totals over every channel and the unscoped domain. */
  totals: {
    /** Live handles. */
    handles: number;
    /** Charged bytes (units for counted types) in use. */
    bytesInUse: number;
    /**
     * Requested bytes (units) of the live handles, plus those of freed handles whose memory waits
     * for its buffer to be collected (`revocation.pendingRelease`): the pools' `liveBytes`.
     */
    requestedBytes: number;
    /** Bytes every pool holds from the system. */
    reservedBytes: number;
    /** Successful allocations since the manager was created. */
    allocations: number;
    /** Deallocations (explicit, by channel close, by leak reclaim). */
    deallocations: number;
    /** Allocations refused by a limit. */
    refusals: number;
  };
  /** Native latency of allocate and deallocate. */
  latencyNs: {
    /** Of successful allocations. */
    allocate: LatencyMetrics;
    /** Of successful deallocations. */
    deallocate: LatencyMetrics;
  };
  /** Internal and pool fragmentation, each 0 when its denominator is 0. */
  fragmentation: {
    /** 1 − requested / slot bytes over live allocations. */
    internal: number;
    /** 1 − (live + retained free slot bytes) / reserved bytes. */
    pool: number;
  };
  /** Leaked handles detected, and those whose slot was reclaimed. */
  leaks: {
    /** Leaked handles found after GC. */
    detected: number;
    /** Of those, the ones whose slot was reclaimed. */
    reclaimed: number;
  };
  /** How revocable buffers are made and revoked (README "Access modes"). */
  revocation: {
    /**
     * `'transfer'` (Node >= 21, managers that are not `shared`): each slot's ArrayBuffer backing
     * store is created once, moved into a handle's buffer with `ArrayBuffer.prototype.transfer()`
     * and moved back out (which detaches the handle's buffer) on release. `'detach'`: a new
     * external ArrayBuffer per allocation, detached on release.
     */
    method: 'transfer' | 'detach';
    /** External ArrayBuffers created over slots (allocations and adoptions) by this thread's manager object. */
    buffersCreated: number;
    /** Allocations served by a cached backing store, natively or by the fast lane (`'transfer'` only). */
    buffersReused: number;
    /**
     * Freed handles whose memory waits until nothing can reach their buffer (deferred reuse, the
     * default for revocable memory; also buffers whose memory other code moved away). Their
     * slots count as live in `pools` until the garbage collector frees the buffer. Also the
     * handles of a closed channel of more than 16,384 handles whose memory is still coming back
     * (a slice per turn of the event loop; their slots and type totals count until then).
     */
    pendingRelease: number;
  };
  /**
   * The fast lane (README "Access modes"): allocations and deallocations served in JavaScript
   * from slots the same channel freed, applied to the native ledgers before anything observes
   * them. View channels, and revocable channels where revocation is by `transfer()` (handles
   * not watched for leaks). Included in `totals` and the pools' `hits`; not in `latencyNs` (not timed).
   */
  fastLane: {
    /**
     * False for `shared` and `hardened` managers, `leakDetection: 'paranoid'`,
     * `ISOPOOL_FASTLANE=off`, and once a type's total has a `softBytes` limit. (A channel with a
     * `softBytes` limit on one of its scopes is left to the native path; others keep the lane.)
     */
    enabled: boolean;
    /** Allocations served by the lane. */
    allocations: number;
    /** Deallocations that parked their slot in the lane. */
    deallocations: number;
    /** Times the lane's journal was applied and its parked slots freed (before observations). */
    syncs: number;
  };
}

/** What `closeChannel` (and `ChannelScope.close`) returns: what the channel still held. */
export interface ChannelCloseReport {
  /** The closed channel. */
  channelId: string;
  /** Handles freed by the close. */
  count: number;
  /** Charged bytes released. */
  bytes: number;
  /**
   * The freed handles; `site` is the allocation site where it is known (paranoid leak detection).
   * For a close of more than 16,384 handles the list is built when first read (a getter, which
   * also finishes returning their memory); `JSON.stringify` includes it.
   */
  handles: Array<{
    /** The freed handle's id (now stale). */
    id: number;
    /** Its resource type. */
    resourceType: string;
    /** Its requested size. */
    size: number;
    /** Where it was allocated, when known. */
    site?: string;
  }>;
}

/** What a service hands to the code serving one tenant: it can touch only its own handles. */
export interface ChannelScope {
  /** The scope's channel. */
  readonly channelId: string;
  /** Allocates in this channel; like `allocateResource(type, size, channelId)`. */
  allocate(resourceType: string, size: number): ResourceHandle;
  /** False (and a CROSS_CHANNEL count) for another channel's handle. */
  deallocate(handle: ResourceHandle | number): boolean;
  /**
   * Like `validateSecurityBoundaries`. Another channel's live id gets exactly a forged id's answer
   * (`FORGED_HANDLE`, no owner): a scope is no oracle for other channels' ids. The use is counted
   * as `CROSS_CHANNEL` against this channel, and the manager-level view tells them apart.
   */
  validate(handle: ResourceHandle | number): SecurityValidationResult;
  /** Throws InvalidHandleError (`ERR_INVALID_HANDLE`) for another channel's handle, as for a forged id. */
  track(handle: ResourceHandle | number): ResourceMetrics;
  /**
   * Writes the handle's buffer to `stream` and deallocates the handle once the write is over:
   * when its callback runs (success or failure), or, in a channel with deferred reuse (the
   * default), when the stream closes first. Resolves when written; rejects with the write's
   * error. The handle belongs to the call from then on; do not free it yourself. Refuses a
   * handle `track` refuses, an id without its object, and counted types (typed errors, nothing
   * changed).
   */
  write(stream: NodeJS.WritableStream, handle: ResourceHandle): Promise<void>;
  /**
   * Writes the handle's whole buffer to `file` (a descriptor or a `FileHandle`) at `position`
   * (`null`: the current position), then deallocates the handle, whether the write succeeded or
   * failed. Resolves the bytes written. Refuses bad arguments as `write` does.
   */
  writeFile(file: number | import('node:fs/promises').FileHandle, handle: ResourceHandle, position?: number | null): Promise<number>;
  /** This channel's effective limits for a type (or `'*'`). */
  limits(resourceType: string): ResourceLimits;
  /** Closes the channel; like `closeChannel(channelId)`. */
  close(): ChannelCloseReport;
}

/** The eight operations of the interface isopool implements. */
export interface IResourceManager {
  /** Allocates `size` bytes (units) of a type, in a channel or the unscoped domain. */
  allocateResource(resourceType: string, size: number, channelId?: string): ResourceHandle;
  /** Frees a handle: true once; false for a double free, stale, forged or foreign handle. */
  deallocateResource(handle: ResourceHandle | number): boolean;
  /** Checks a handle or id; never throws for a number or handle. */
  validateSecurityBoundaries(handle: ResourceHandle | number): SecurityValidationResult;
  /** Checks a channel's ledger against its live handles and recorded violations. */
  verifyResourceIsolation(channelId: string): ResourceIsolationResult;
  /** One live handle's usage. */
  trackResourceUsage(handle: ResourceHandle | number): ResourceMetrics;
  /** The effective limits, field by field the tightest that applies. */
  getResourceLimits(resourceType: string, channelId?: string): ResourceLimits;
  /** True only for an issued handle that is fully released. */
  verifyCleanupCompletion(handle: ResourceHandle | number): boolean;
  /** A plain JSON-serialisable snapshot. */
  getResourceMetrics(): ManagerMetrics;
}

/** Payload of `'pressure'` and `isopool:pressure`: an allocation crossed a `softBytes` limit (it succeeded). Published once the operation is complete; a listener or subscriber that throws changes nothing the operation did (its error is re-thrown from `process.nextTick`). */
export interface PressureEvent {
  /** The channel, or `null` for the unscoped domain. */
  channelId: string | null;
  /** The type of the allocation that crossed the soft limit. */
  resourceType: string;
  /** Which scope's `softBytes` was crossed. */
  scope: LimitScopeName;
  /** Charged bytes (units) in that scope after the allocation. */
  bytesInUse: number;
  /** The soft limit crossed. */
  softBytes: number;
}

/** Payload of `'violation'` and `isopool:violation`: a refused use of a handle, counted against `channelId`. Published once the operation is complete; a listener or subscriber that throws changes nothing the operation did (its error is re-thrown from `process.nextTick`). */
export interface ViolationEvent {
  /** The channel the violation is counted against (`null`: the unscoped domain). */
  channelId: string | null;
  /** What kind of violation. */
  code: ViolationCode;
  /** The id that was presented. */
  handleId: number;
}

/** Payload of `'leak'` and `isopool:leak`: a handle found unreachable without being deallocated; its slot is reclaimed. Published once the operation is complete; a listener or subscriber that throws changes nothing the operation did (its error is re-thrown from `process.nextTick`). */
export interface LeakEvent {
  /** The leaked handle's id (no longer valid). */
  handleId: number;
  /** The leaked handle's type. */
  resourceType: string;
  /** Its requested size. */
  size: number;
  /** Its channel, or `null` for the unscoped domain. */
  channelId: string | null;
  /** The allocation site (a stack line) with `'paranoid'` detection, else `undefined`. */
  site: string | undefined;
}

/** Payload of `isopool:limit` (diagnostics_channel only): an allocation refused by a hard limit. Published once the operation is complete; a listener or subscriber that throws changes nothing the operation did (its error is re-thrown from `process.nextTick`). */
export interface LimitEvent {
  /** The channel of the refused allocation, or `null`. */
  channelId: string | null;
  /** The type of the refused allocation. */
  resourceType: string;
  /** Which scope refused. */
  scope: LimitScopeName;
  /** The limit's value. */
  limit: number;
  /** What the allocation asked for: charged bytes, or 1 handle. */
  requested: number;
  /** Usage in that scope when refused. */
  inUse: number;
}
