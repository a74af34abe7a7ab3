/**
 * Public types (SPEC.md §1, §5). Shapes may gain fields, never lose them.
 * @packageDocumentation
 */
import type { LimitScopeName } from './errors';

/** Where handle buffers come from in a channel. See the README's "Access modes". */
export type AccessMode = 'revocable' | 'view';
/** When a slot is zeroed before reuse. See the README's "Zeroing". */
export type ZeroMode = 'cross-channel' | 'always';
export type LeakDetectionMode = 'off' | 'sampled' | 'paranoid';

/** The violation codes of SPEC.md §2. */
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
  channelId: string | null;
  maxBytes: number;
  maxHandles: number;
  maxAllocationSize: number;
  /** Crossing it succeeds but emits `'pressure'`. */
  softBytes: number;
}

/** The settable fields of {@link ResourceLimits}. */
export type LimitFields = Pick<ResourceLimits, 'maxBytes' | 'maxHandles' | 'maxAllocationSize' | 'softBytes'>;

export interface PoolOptions {
  name: string;
  /** Bytes per slot, a safe integer >= 1. */
  slotSize: number;
  /** Free slots kept for reuse; the rest go back to the system. */
  queueSize: number;
}

export interface ChannelOptions {
  /** Per type, or `'*'` for the channel's total over all types. */
  limits?: Record<string, Partial<LimitFields>>;
  /** Default `'revocable'`. `'view'` is faster but does not revoke stale references. */
  access?: AccessMode;
  /** Default `'cross-channel'`. */
  zero?: ZeroMode;
}

export interface ResourceManagerOptions {
  pools?: PoolOptions[];
  /** Bytes (units for counters) per allocation, default 64 MiB. */
  maxAllocationSize?: number;
  /** Default true: an unknown channel id opens the channel with `channelDefaults`. */
  autoOpenChannels?: boolean;
  channelDefaults?: ChannelOptions;
  /** Default `'sampled'`. */
  leakDetection?: LeakDetectionMode;
  /** With `'sampled'`, 1 in this many allocations is watched (default 128). */
  leakSampleRate?: number;
  /** Default false. */
  hardened?: boolean;
  /** Attach to a process-wide native manager of this name (SPEC.md §3). */
  shared?: string;
}

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
  readonly resourceType: string;
  /** The requested size (bytes, or units for counters). */
  readonly size: number;
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

export interface Violation {
  code: ViolationCode;
  message: string;
}

export interface SecurityValidationResult {
  valid: boolean;
  handleId: number;
  channelId: string | null;
  violations: Violation[];
}

export interface ResourceIsolationResult {
  channelId: string;
  isolated: boolean;
  handleCount: number;
  /** Charged bytes. */
  bytesInUse: number;
  /** The channel's total limits (`'*'`). */
  limits: ResourceLimits;
  violations: Array<Violation & { count: number }>;
}

/** One handle's usage. */
export interface ResourceMetrics {
  handleId: number;
  resourceType: string;
  channelId: string | null;
  pool: string;
  requestedBytes: number;
  slotBytes: number;
  /** 1 − requestedBytes / slotBytes. */
  internalFragmentation: number;
  ageMs: number;
  /** Time the native core spent serving this allocation. */
  allocationLatencyNs: number;
  /** Charged bytes of the handle's channel (or of the unscoped domain). */
  channelBytesInUse: number;
}

export interface PoolMetrics {
  slotSize: number;
  queueSize: number;
  reservedBytes: number;
  liveSlots: number;
  /** Requested bytes of live slots. */
  liveBytes: number;
  retainedFreeSlots: number;
  hits: number;
  misses: number;
  /** Slabs returned to the system. */
  releasedToSystem: number;
  failures: number;
}

export interface ChannelMetrics {
  /** Charged bytes. */
  bytesInUse: number;
  handles: number;
  peakBytes: number;
  limitRejections: number;
  violations: Record<ViolationCode, number>;
}

export interface LatencyMetrics {
  p50: number;
  p99: number;
  p999: number;
  count: number;
}

/** A plain JSON-serialisable snapshot. */
export interface ManagerMetrics {
  /** Configured pools by name, plus `direct` for oversize allocations. */
  pools: Record<string, PoolMetrics>;
  channels: Record<string, ChannelMetrics>;
  /** The unscoped domain (allocations without a channel id). */
  unscoped: ChannelMetrics;
  totals: {
    handles: number;
    bytesInUse: number;
    requestedBytes: number;
    reservedBytes: number;
    allocations: number;
    deallocations: number;
    refusals: number;
  };
  latencyNs: { allocate: LatencyMetrics; deallocate: LatencyMetrics };
  fragmentation: { internal: number; pool: number };
  leaks: { detected: number; reclaimed: number };
}

export interface ChannelCloseReport {
  channelId: string;
  count: number;
  /** Charged bytes released. */
  bytes: number;
  handles: Array<{ id: number; resourceType: string; size: number; site?: string }>;
}

/** What a service hands to the code serving one tenant: it can touch only its own handles. */
export interface ChannelScope {
  readonly channelId: string;
  allocate(resourceType: string, size: number): ResourceHandle;
  /** False (and a CROSS_CHANNEL count) for another channel's handle. */
  deallocate(handle: ResourceHandle | number): boolean;
  validate(handle: ResourceHandle | number): SecurityValidationResult;
  /** Throws IsolationViolationError for another channel's handle. */
  track(handle: ResourceHandle | number): ResourceMetrics;
  limits(resourceType: string): ResourceLimits;
  close(): ChannelCloseReport;
}

/** The eight operations of the interface isopool implements. */
export interface IResourceManager {
  allocateResource(resourceType: string, size: number, channelId?: string): ResourceHandle;
  deallocateResource(handle: ResourceHandle | number): boolean;
  validateSecurityBoundaries(handle: ResourceHandle | number): SecurityValidationResult;
  verifyResourceIsolation(channelId: string): ResourceIsolationResult;
  trackResourceUsage(handle: ResourceHandle | number): ResourceMetrics;
  getResourceLimits(resourceType: string, channelId?: string): ResourceLimits;
  verifyCleanupCompletion(handle: ResourceHandle | number): boolean;
  getResourceMetrics(): ManagerMetrics;
}

export interface PressureEvent {
  channelId: string | null;
  resourceType: string;
  scope: LimitScopeName;
  bytesInUse: number;
  softBytes: number;
}

export interface ViolationEvent {
  channelId: string | null;
  code: ViolationCode;
  handleId: number;
}

export interface LeakEvent {
  handleId: number;
  resourceType: string;
  size: number;
  channelId: string | null;
  site: string | undefined;
}

export interface LimitEvent {
  channelId: string | null;
  resourceType: string;
  scope: LimitScopeName;
  limit: number;
  requested: number;
  inUse: number;
}
