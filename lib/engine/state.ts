/**
 * What the engine knows of resource types, channel incarnations and live handles, and the small
 * rules read off them.
 * @internal
 * @packageDocumentation
 */
import { newChannelLane } from '../lane/fast-lane';
import type { LaneChannel } from '../lane/fast-lane';
import type { Transferable } from '../lane/slot-cache';
import type { EventSink } from '../events';
import type { NativeManager } from '../native/binding';
import type { AccessMode, LeakDetectionMode, ZeroMode } from '../types';
import type { CheckedChannelOptions } from '../validate';
import type { AllocationSite } from './sites';

/** A resource type: `memory` types are pooled buffers, the others counted units. */
export interface TypeState {
  readonly name: string;
  readonly index: number;
  readonly memory: boolean;
}

/** One incarnation of an open channel. */
export interface ChannelState extends LaneChannel {
  readonly name: string;
  readonly index: number;
  readonly access: AccessMode;
  readonly zero: ZeroMode;
  /**
   * Revocable memory freed here waits for its buffer to die before any reuse (the default; see
   * README "Security model"). False only for `unsafeImmediateReuse` channels and view channels.
   */
  readonly deferred: boolean;
  /** Native owner epoch of this incarnation: allocations check it, so a recycled index is never charged. */
  readonly owner: number;
  /** The scope object handed out for this incarnation (created lazily by the manager). */
  scope: unknown;
}

/** Per live handle, only where something must be done at release: revoke a buffer or unwatch a leak. */
export interface LiveRecord {
  readonly id: number;
  /** Place in its channel's list of records (lib/engine/records.ts). */
  pos: number;
  /**
   * The handle's own ArrayBuffer (revocable memory), to revoke it when the handle is freed by id.
   * Held weakly only when the handle is watched for leaks (so a leak stays collectable); else
   * strongly: a WeakRef would keep it alive to the end of the current job anyway, and costs an
   * allocation on the hot path.
   */
  readonly ab: ArrayBuffer | WeakRef<ArrayBuffer> | null;
  /** Allocation site, when recorded. */
  readonly site: AllocationSite | undefined;
  /** Registered with the leak registry (this record is the unregister token). */
  readonly watched: boolean;
  /** Native index of the handle's channel (0: unscoped). */
  readonly channel: number;
  /** Slot-cache entry of the buffer's backing store (`'transfer'` revocation), or -1. */
  readonly token: number;
  /** Deferred release: freeing it leaves the buffer attached; its memory waits for the buffer to die. */
  readonly deferred: boolean;
}

/**
 * Revocation by `transfer()` unless `ISOPOOL_REVOCATION=detach` (a diagnostic switch, for
 * comparing the two methods on one Node; README "Access modes").
 */
export function transferAvailable(): boolean {
  if (process.env.ISOPOOL_REVOCATION === 'detach') return false;
  return typeof (ArrayBuffer.prototype as Partial<Transferable>).transfer === 'function';
}

export const UNSCOPED_INDEX = 0;
/** The built-in memory type (native index 0). */
export const BUFFER_TYPE: TypeState = Object.freeze({ name: 'buffer', index: 0, memory: true });

/** Memory in the unscoped domain or a revocable channel: its buffer is its own, revocable ArrayBuffer. */
export function isRevocable(type: TypeState, channel: ChannelState | null): boolean {
  return type.memory && (channel === null || channel.access === 'revocable');
}

/** A new open channel incarnation from its native option bits (see {@link channelBits}). */
export function channelState(name: string, index: number, owner: number, bits: number): ChannelState {
  return {
    name,
    index,
    owner,
    access: bits & 1 ? 'view' : 'revocable',
    zero: bits & 2 ? 'always' : 'cross-channel',
    deferred: (bits & 5) === 0,
    open: true,
    scope: undefined,
    lane: newChannelLane(),
  };
}

/** The native channel option bits: access (1), zero (2), immediate reuse (4). */
export function channelBits(access: AccessMode, zero: ZeroMode, immediate: boolean): number {
  return (access === 'view' ? 1 : 0) | (zero === 'always' ? 2 : 0) | (immediate ? 4 : 0);
}

/** The revocable ArrayBuffer of a record, if it is still reachable. */
export function bufferOf(record: LiveRecord | undefined): ArrayBuffer | undefined {
  const ab = record?.ab;
  if (ab === undefined || ab === null) return undefined;
  return ab instanceof WeakRef ? ab.deref() : ab;
}

/**
 * A revocable handle whose buffer we can no longer revoke ourselves: detached by other code
 * (`transfer()`, a BYOB stream read...) or, held weakly, collected. Another ArrayBuffer may
 * still reach its memory, so freeing it must park the memory until that backing store dies.
 */
export function unrevocable(record: LiveRecord | undefined): boolean {
  if (record === undefined || record.ab === null) return false;
  const ab = bufferOf(record);
  return ab === undefined || ab.byteLength === 0;
}

/** A pool's public name by native index (-1: direct, -2: a counted type). */
export function poolNameOf(names: readonly string[], pool: number): string {
  if (pool === -1) return 'direct';
  if (pool === -2) return 'counter';
  return names[pool] ?? `pool${pool}`;
}

/** What a manager gives its engine. */
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
