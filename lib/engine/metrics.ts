/**
 * The manager's metrics (docs/MONITORING.md): the native snapshot, each channel's ledger and the
 * JS-side counters, as plain JSON-serialisable objects.
 * @internal
 * @packageDocumentation
 */
import type { FastLane } from '../lane/fast-lane';
import { CacheOut, UsageOut, VIOLATION_CODES } from '../native/abi';
import { readSnapshot } from '../native/binding';
import type { NativeLatency, NativeManager, NativePoolStats } from '../native/binding';
import type { ChannelMetrics, LatencyMetrics, ManagerMetrics, PoolMetrics, ViolationCode } from '../types';
import { UNSCOPED_INDEX } from './state';

/** What the engine knows that the native snapshot does not. */
export interface MetricsSources {
  readonly native: NativeManager;
  readonly poolNames: readonly string[];
  /** The open channels: [name, native index]. */
  readonly channels: ReadonlyArray<readonly [string, number]>;
  readonly leaksDetected: number;
  readonly leaksReclaimed: number;
  readonly revocation: ManagerMetrics['revocation']['method'];
  readonly fast: FastLane | null;
}

export function managerMetrics(src: MetricsSources): ManagerMetrics {
  const native = src.native;
  const snap = readSnapshot(native, src.poolNames);
  const pools: Record<string, PoolMetrics> = {};
  let poolLive = 0;
  let poolRetained = 0;
  let poolReserved = 0;
  for (const p of snap.pools) {
    pools[p.name] = poolMetrics(p);
    poolLive += p.liveSlots * p.slotSize;
    poolRetained += p.retainedFreeSlots * p.slotSize;
    poolReserved += p.reservedBytes;
  }
  pools.direct = poolMetrics(snap.direct);
  const channels: Record<string, ChannelMetrics> = {};
  for (const [name, index] of src.channels) channels[name] = channelMetrics(native, index);
  const unscoped = channelMetrics(native, UNSCOPED_INDEX);
  native.slotCacheStats(); // into `out`, read right away
  const buffersCreated = native.out[CacheOut.BuffersCreated];
  const buffersReused = native.out[CacheOut.BuffersReused];
  const fast = src.fast;
  return {
    pools,
    channels,
    unscoped,
    totals: {
      handles: snap.handles,
      bytesInUse: snap.bytesInUse,
      requestedBytes: snap.requestedBytes,
      reservedBytes: snap.reservedBytes,
      allocations: snap.allocations,
      deallocations: snap.deallocations,
      refusals: snap.refusals,
    },
    latencyNs: {
      allocate: latencyMetrics(snap.allocateLatency),
      deallocate: latencyMetrics(snap.deallocateLatency),
    },
    fragmentation: {
      internal: snap.liveSlotBytes > 0 ? 1 - snap.requestedBytes / snap.liveSlotBytes : 0,
      pool: poolReserved > 0 ? 1 - (poolLive + poolRetained) / poolReserved : 0,
    },
    leaks: {
      detected: src.leaksDetected + snap.threadExitReclaims,
      reclaimed: src.leaksReclaimed + snap.threadExitReclaims,
    },
    revocation: {
      method: src.revocation,
      buffersCreated,
      buffersReused: buffersReused + (fast?.revocableAllocations ?? 0),
      pendingRelease: snap.parkedHandles,
    },
    fastLane: fast === null
      ? { enabled: false, allocations: 0, deallocations: 0, syncs: 0 }
      : { enabled: fast.enabled, allocations: fast.allocations, deallocations: fast.deallocations, syncs: fast.syncs },
  };
}

/** One channel's ledger (UNSCOPED_INDEX: the unscoped domain's). */
export function channelMetrics(native: NativeManager, index: number): ChannelMetrics {
  native.channelUsage(index);
  const out = native.out;
  const violations = {} as Record<ViolationCode, number>;
  for (let k = 0; k < VIOLATION_CODES.length; k++) violations[VIOLATION_CODES[k]] = out[UsageOut.Violations + k];
  return {
    bytesInUse: out[UsageOut.Bytes],
    handles: out[UsageOut.Handles],
    peakBytes: out[UsageOut.PeakBytes],
    limitRejections: out[UsageOut.LimitRejections],
    violations,
  };
}

function latencyMetrics(l: NativeLatency): LatencyMetrics {
  return { p50: Math.round(l.p50), p99: Math.round(l.p99), p999: Math.round(l.p999), count: l.count, sumNs: l.sumNs, buckets: l.buckets };
}

function poolMetrics(p: NativePoolStats): PoolMetrics {
  return {
    slotSize: p.slotSize,
    queueSize: p.queueSize,
    reservedBytes: p.reservedBytes,
    liveSlots: p.liveSlots,
    liveBytes: p.liveBytes,
    retainedFreeSlots: p.retainedFreeSlots,
    hits: p.hits,
    misses: p.misses,
    releasedToSystem: p.releasedToSystem,
    failures: p.failures,
  };
}
