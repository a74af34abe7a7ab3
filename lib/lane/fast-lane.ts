/**
 * The fast lane of a private (not `shared`) manager: allocation and deallocation of pooled
 * memory without a native call, with exact ledgers whenever anything looks. View channels, and
 * revocable channels where revocation is by `transfer()` (see "Revocable slots" below).
 *
 * How it works
 * - A view handle's deallocation parks its slot in a JS free list of its (channel, type, pool)
 *   instead of freeing it natively. Natively, the slot stays allocated under the id the native
 *   side last issued for it (`nativeId`).
 * - An allocation of the same (channel, type, pool) takes a parked slot and hands it out under a
 *   fresh id that the native handle table reserved for this purpose in advance (`reserveIds`,
 *   32 per call). Same channel: no zeroing is due (README "Zeroing modes and their risks"), except with
 *   `zero: 'always'`, which is done here with `fill(0)`.
 * - What happened is journaled and applied natively in one call (`applyJournal`):
 *   an id handed out and freed again in JS is "burned" (counted as one allocation and one
 *   deallocation, and stale from then on); a slot that ends live under a new id is "reissued"
 *   (its native id is freed, the new one published over the same slot); a slot that ends
 *   parked is freed.
 * - {@link FastLane.sync} applies everything and frees every parked slot. The manager calls it
 *   before every operation that reads or changes native state other than these fast paths, so
 *   every observation (metrics, usage, validation, isolation checks...) sees exactly what it
 *   would have seen without the lane. Channels opening and closing leave the other channels'
 *   parked slots alone: {@link FastLane.syncChannel} settles the closing channel's part.
 *
 * Why limits still hold exactly without a native check: a parked slot stays charged natively, so
 * re-issuing it changes no ledger. The true usage after a fast allocation equals the native
 * usage, which the last native allocation admitted (a native allocation first frees the parked
 * slots of its channel; one that the type's total refuses while other channels have parked
 * slots frees them all and is made again: see {@link FastLane.holdsParked}; so does one for
 * which the system refuses a new slab while any channel has parked slots). Limits that
 * changed since a slot's native allocation make it ineligible (per-channel and type-total
 * epochs), and a limit on the
 * allocation size makes a slot serve only sizes up to the one natively admitted. A soft limit
 * keeps the lane out of its channel (or, on a type's total, out of the manager): a pressure event
 * needs the exact crossing.
 *
 * Not timed: fast allocations record no latency sample, and their handles report the time of the
 * sync as their allocation time (README "Access modes").
 *
 * Revocable slots (`'transfer'` revocation, lib/engine/engine.ts): a deallocation revokes the handle's
 * buffer by moving its backing store (`transfer()`) into a new ArrayBuffer that the parked slot
 * keeps, and the next allocation of the same channel, type, pool and exact size (a buffer is
 * exactly its size; the stack is searched a few slots deep for it) gets that ArrayBuffer. The
 * native slot cache names the handle that holds each backing store (its finalizer reports that
 * id: parked memory, see native/core/manager.h), so a Reissue of a revocable slot is followed by a
 * SlotOwner op, and a parked slot is freed with FreeCached, which puts its backing store back in
 * the slot cache. A buffer that user code moved away or detached is not parked: the native path
 * frees it and parks its memory until that backing store dies. Watched revocable handles stay
 * on the native path.
 *
 * Watched view handles (`'sampled'` leak detection; `'paranoid'` keeps the lane off) go through
 * the lane too. The leak registry watches the handle's Buffer, so the lane must not keep it: a
 * watched slot holds {@link NO_BUFFER} while it is live, and its next unwatched allocation makes
 * a new view. Its release says so ({@link Parked.Watched}), and the manager then unregisters it.
 * @internal
 * @packageDocumentation
 */
import { placeAt, tableIndexOf } from '../handle';
import { JournalOp, JournalOut } from '../native/abi';
import type { SlabExports } from './slabs';
import type { SlotCache, Transferable } from './slot-cache';
import type { LimitFields, ZeroMode } from '../types';

/** What the lane needs of a channel incarnation (the engine's LaneChannel is one). */
export interface LaneChannel {
  /** This incarnation's part of the lane. */
  readonly lane: ChannelLane;
  readonly zero: ZeroMode;
  open: boolean;
}

/** What {@link FastLane.release} did with a handle. */
export const enum Parked {
  /** Not parked: not the lane's, or not eligible. The caller frees it natively. */
  No = 0,
  Yes = 1,
  /** Parked, and the handle was watched for leaks: the caller unregisters it. */
  Watched = 2,
  /** Parked, and the handle's revocable buffer was revoked (moved out): the caller drops its record. */
  Revoked = 3,
}

/** A slot's `buffer` while no view of it may be kept by the lane (a watched handle's). */
const NO_BUFFER = Buffer.alloc(0);
/** A revocable slot's `slab`: it has its own ArrayBuffer (`ab`), never a slab export. */
const NO_SLAB = new ArrayBuffer(0);


/** What the native manager provides for the lane (manager_binding.cc). */
export interface FastLaneNative {
  readonly out: Float64Array;
  readonly fastIds: Float64Array;
  readonly journal: Float64Array;
  reserveIds(n: number): number;
  applyJournal(count: number): number;
}


/**
 * Pending journal ops are applied once there are this many (the journal holds up to 1,024). Applying costs ~50 ns an op (mostly
 * a Burn's cache misses on the handle table entry it retires), paid by whichever call applies:
 * with the full journal (1,024 ops, or the ~127 that build up between two `'sampled'` watched
 * allocations, which go native) one allocation in a hundred took 5-50 µs, the allocate p99.
 * Sixteen bounds that to ~1 µs, for one more native call per sixteen ops.
 */
const APPLY_AT = 16;
/**
 * Ids reserved per native call. A reservation costs ~40 ns an id (a cold handle-table entry
 * taken from the quarantine), paid by the allocation that refills: 256 at a time made one
 * lane allocation in 256 take ~10 µs, which with the watched allocations of `'sampled'` put
 * the allocate p99 at 7-9 µs (bench suite 2, Node 22); 32 at a time, 2.5 µs.
 */
const ID_BATCH = 32;
/** How deep a revocable allocation looks into its parked stack for a backing store of its size. */
const SAME_SIZE_DEPTH = 8;
/** Parked slots are memory held back from the native pools until the next sync. */
const PARKED_BYTES_MAX = 16 * 1024 * 1024;
const PARKED_SLOTS_MAX = 4096;

/** A channel incarnation's part of the lane (kept on the channel: no hashing on the hot path). */
export interface ChannelLane {
  /** Parked slots of the channel. */
  parked: number;
  /** Bumped by a limit change on one of the channel's scopes. */
  epoch: number;
  /** A `softBytes` limit on one of the channel's scopes: the lane leaves the channel alone. */
  soft: boolean;
  /** Parked slots by type * pools + pool (see FastLane.take). */
  stacks: Array<FastSlot[] | undefined>;
}

/** A new channel incarnation's lane state. */
export function newChannelLane(): ChannelLane {
  return { parked: 0, epoch: 0, soft: false, stacks: [] };
}

/** One pooled view-mode slot the lane knows. */
interface FastSlot {
  /** The id the native side has live for this slot. */
  nativeId: number;
  /** The id of the slot's current (live) or last (parked) JS handle. */
  id: number;
  live: boolean;
  /** In the dirty list: the native side does not know its current state. */
  dirty: boolean;
  readonly channel: LaneChannel;
  readonly type: number;
  /** Index of its stack in channel.lane.stacks. */
  readonly stack: number;
  readonly pool: number;
  readonly slotBytes: number;
  readonly slabKey: number;
  /** The slab's export; replaced if user code detached it (a BYOB read, transfer()). */
  slab: ArrayBuffer;
  readonly offset: number;
  /** The requested size the native side admitted for this slot. */
  readonly admitted: number;
  /** Limit epochs at that admission. */
  readonly channelEpoch: number;
  readonly typeEpoch: number;
  size: number;
  /**
   * A view of `size` bytes kept for the next handle, or {@link NO_BUFFER}: while the slot is live,
   * that means its handle is watched for leaks (its Buffer must stay collectable).
   */
  buffer: Buffer;
  /** Revocable slots (`'transfer'` revocation): the slot-cache token of the backing store, else -1. */
  readonly token: number;
  /**
   * Revocable slots: the ArrayBuffer that holds the backing store, the live handle's or, parked,
   * the one its deallocation moved the store into (which the next handle gets). Else null.
   */
  ab: ArrayBuffer | null;
}

/** What a fast allocation hands back. */
export interface FastAllocation {
  readonly id: number;
  readonly pool: number;
  readonly slotBytes: number;
  readonly buffer: Buffer;
}

/** A limit field that is set and finite. */
function isLimited(value: number | undefined): boolean {
  return value !== undefined && value !== Infinity;
}

export class FastLane {
  readonly #native: FastLaneNative;
  readonly #journal: Float64Array;
  readonly #slotSizes: readonly number[];
  #ops = 0;
  readonly #ids = new Float64Array(ID_BATCH);
  #idCount = 0;
  /**
   * Live view handles the lane may park, by table index (id / 2^32, native/core/handle_table.h): a
   * dense array, no hashing and no Map churn (a Map that empties and refills on every round
   * trip reallocates its table each time). An entry names its handle's id, so a slot whose
   * handle was freed is `undefined` or names another id.
   */
  readonly #live: Array<FastSlot | undefined> = [];
  #parkedSlots = 0;
  #parkedBytes = 0;
  /** Parked slots by type index (see {@link FastLane.holdsParked}). */
  readonly #parkedOfType: number[] = [];
  readonly #dirty: FastSlot[] = [];
  /** The stack whose top #parkedTop last returned (read by #handOut right after). */
  #topStack: FastSlot[] = [];
  /** Bumped by a limit change on a type's total (channel changes bump that channel's epoch). */
  #typeEpoch = 0;
  #sizeLimited = false;
  #softLimited = false;
  allocations = 0;
  /** Of `allocations`, those of revocable channels (each reused a cached backing store). */
  revocableAllocations = 0;
  deallocations = 0;
  syncs = 0;

  readonly #slabs: SlabExports;
  /** The manager's slot cache, where parked revocable slots' backing stores go back. */
  readonly #cache: SlotCache | null;
  /** Backing stores of FreeCached ops not applied yet: put in #cache once they are. */
  readonly #recacheTokens: number[] = [];
  readonly #recacheBuffers: ArrayBuffer[] = [];

  /**
   * `cache`: the manager's slot cache, when revocation is by `transfer()` (then revocable
   * channels take the lane too); null otherwise.
   */
  constructor(native: FastLaneNative, slotSizes: readonly number[], slabs: SlabExports, cache: SlotCache | null) {
    this.#native = native;
    this.#slabs = slabs;
    this.#cache = cache;
    this.#journal = native.journal;
    this.#slotSizes = slotSizes;
  }

  get enabled(): boolean {
    return !this.#softLimited;
  }

  /** Smallest pool that fits `n` bytes, or -1 (direct). */
  #poolOf(n: number): number {
    const sizes = this.#slotSizes;
    for (let i = 0; i < sizes.length; i++) if (n <= sizes[i]) return i;
    return -1;
  }

  #stackOf(type: number, pool: number): number {
    return type * this.#slotSizes.length + pool;
  }

  /**
   * A parked slot of (channel, type) that fits `n` bytes, handed out under a fresh id, or null
   * (then the caller allocates natively). `watched`: the handle is watched for leaks; its view is
   * a new one that the lane does not keep.
   */
  take(channel: LaneChannel, type: number, n: number, watched: boolean): FastAllocation | null {
    const slot = this.#parkedTop(channel, type, n);
    if (slot === null || (this.#sizeLimited && n > slot.admitted)) return null;
    if (slot.slab.byteLength === 0 && !this.#reexport(slot)) return null;
    const id = this.#handOut(channel, slot);
    if (id < 0) return null;
    const pool = slot.pool;
    if (watched) {
      slot.size = n;
      slot.buffer = NO_BUFFER;
      const buffer = Buffer.from(slot.slab, slot.offset, n);
      if (channel.zero === 'always') buffer.fill(0);
      return { id, pool, slotBytes: slot.slotBytes, buffer };
    }
    if (slot.size !== n || slot.buffer === NO_BUFFER) {
      slot.size = n;
      slot.buffer = Buffer.from(slot.slab, slot.offset, n);
    }
    if (channel.zero === 'always') slot.buffer.fill(0);
    return slot;
  }

  /**
   * A parked slot of revocable (channel, type) whose backing store is exactly `n` bytes (a
   * buffer is exactly its size; the top of the stack, or the nearest below it), handed out under
   * a fresh id with the ArrayBuffer that holds the store, or null. Only for handles not watched
   * for leaks (the lane keeps its buffer).
   */
  takeRevocable(channel: LaneChannel, type: number, n: number): FastSlot | null {
    const top = this.#parkedTop(channel, type, n);
    if (top === null) return null;
    const slot = top.ab !== null && top.ab.byteLength === n ? top : this.#sameSizeToTop(n);
    if (slot === null) return null;
    const ab = slot.ab;
    if (ab === null || this.#handOut(channel, slot) < 0) return null;
    this.revocableAllocations++;
    slot.size = n;
    slot.buffer = Buffer.from(ab);
    if (channel.zero === 'always') slot.buffer.fill(0);
    return slot;
  }

  /**
   * The slot on top of `channel`'s parked stack for (type, the pool of `n` bytes), or null (also
   * when the lane leaves the channel alone). Nothing changes; the caller checks the slot's
   * admitted size where an allocation-size limit is set.
   */
  #parkedTop(channel: LaneChannel, type: number, n: number): FastSlot | null {
    if (this.#parkedSlots === 0) return null;
    const pool = this.#poolOf(n);
    if (pool < 0) return null;
    const lane = channel.lane;
    if (lane.soft) return null;
    const stack = lane.stacks[this.#stackOf(type, pool)];
    if (stack === undefined || stack.length === 0) return null;
    this.#topStack = stack;
    return stack[stack.length - 1];
  }

  /**
   * The parked slot nearest the top of #topStack (just found by #parkedTop) whose backing store
   * is exactly `n` bytes, within {@link SAME_SIZE_DEPTH} slots, moved to the top; or null. A
   * pool serves many sizes, and a channel alternating between a few of them (headers and
   * bodies, say) would otherwise find the wrong size on top and go native every time.
   */
  #sameSizeToTop(n: number): FastSlot | null {
    const stack = this.#topStack;
    const top = stack.length - 1;
    const end = Math.max(0, top - SAME_SIZE_DEPTH);
    for (let i = top - 1; i >= end; i--) {
      const slot = stack[i];
      // A revocable slot's backing store is exactly the size admitted natively, so no
      // allocation-size limit can refuse `n` here.
      if (slot.ab !== null && slot.ab.byteLength === n) {
        stack[i] = stack[top];
        stack[top] = slot;
        return slot;
      }
    }
    return null;
  }

  /**
   * Unparks `slot` (the top of #topStack, just found by #parkedTop) as live under the next
   * reserved id, and returns that id; -1 (nothing changed) when no id can be reserved.
   */
  #handOut(channel: LaneChannel, slot: FastSlot): number {
    if (this.#idCount === 0 && !this.#refill()) return -1;
    this.#topStack.pop();
    this.#countParked(slot, -1);
    const id = this.#ids[--this.#idCount];
    slot.id = id;
    slot.live = true;
    this.#setLive(id, slot);
    this.allocations++;
    return id;
  }

  /**
   * A parked slot whose slab export user code detached (its memory moved to another ArrayBuffer
   * by a BYOB read or transfer() through some view of the slab) gets the slab exported afresh,
   * and a new view. False if the export is refused; the slot then stays parked, for the native
   * side to free.
   */
  #reexport(slot: FastSlot): boolean {
    const slab = this.#slabs.get(slot.slabKey);
    if (slab === null) return false;
    slot.slab = slab;
    slot.size = -1; // the kept view is over the detached export
    return true;
  }

  /**
   * Registers a view handle the native path just allocated, so its deallocation can park it.
   * `watched`: the lane does not keep its `buffer`.
   */
  adopt(id: number, channel: LaneChannel, type: number, pool: number, slotBytes: number, slabKey: number, slab: ArrayBuffer, offset: number, size: number, buffer: Buffer, watched: boolean): void {
    if (this.#softLimited || channel.lane.soft) return;
    this.#adoptSlot(id, channel, type, pool, slotBytes, size, slabKey, slab, offset, watched ? NO_BUFFER : buffer, -1, null);
  }

  /**
   * Registers a revocable handle (not watched for leaks) that the native path just allocated
   * with slot-cache entry `token`'s backing store in `ab`, so its deallocation can park it.
   */
  adoptRevocable(id: number, channel: LaneChannel, type: number, pool: number, slotBytes: number, size: number, ab: ArrayBuffer, token: number): void {
    if (this.#cache === null || this.#softLimited || channel.lane.soft) return;
    this.#adoptSlot(id, channel, type, pool, slotBytes, size, -1, NO_SLAB, 0, NO_BUFFER, token, ab);
  }

  /** A live slot for handle `id`, natively allocated now (so admitted under the current limits). */
  #adoptSlot(id: number, channel: LaneChannel, type: number, pool: number, slotBytes: number, size: number, slabKey: number, slab: ArrayBuffer, offset: number, buffer: Buffer, token: number, ab: ArrayBuffer | null): void {
    const ofType = this.#parkedOfType;
    while (ofType.length <= type) ofType.push(0);
    this.#setLive(id, {
      nativeId: id,
      id,
      live: true,
      dirty: false,
      channel,
      type,
      stack: this.#stackOf(type, pool),
      pool,
      slotBytes,
      slabKey,
      slab,
      offset,
      admitted: size,
      channelEpoch: channel.lane.epoch,
      typeEpoch: this.#typeEpoch,
      size,
      buffer,
      token,
      ab,
    });
  }

  /**
   * Parks live handle `id` (presented by `presenter`, null: the manager). {@link Parked.No} when
   * the lane cannot take it: not one of its handles, another channel's scope presented it, limits
   * changed since its allocation, or the parking space is full. The caller then syncs and frees
   * natively. {@link Parked.Watched}: parked, and the caller unregisters the handle's leak watch.
   */
  release(id: number, presenter: LaneChannel | null): Parked {
    const index = tableIndexOf(id);
    const slot = this.#live[index];
    if (slot === undefined || slot.id !== id) return Parked.No;
    const channel = slot.channel;
    if ((presenter !== null && presenter !== channel) || !channel.open) return Parked.No;
    const lane = channel.lane;
    if (slot.typeEpoch !== this.#typeEpoch || slot.channelEpoch !== lane.epoch) return Parked.No;
    if (this.#parkedSlots >= PARKED_SLOTS_MAX || this.#parkedBytes + slot.slotBytes > PARKED_BYTES_MAX) return Parked.No;
    let revoked = false;
    if (slot.token >= 0) {
      // The revocation: the backing store moves to a new ArrayBuffer only the lane holds, and
      // the handle's buffer is detached. One moved or detached by other code cannot vouch for
      // the memory: the native path frees it (parked until that store dies).
      const ab = slot.ab;
      if (ab === null || ab.byteLength === 0) return Parked.No;
      try {
        slot.ab = (ab as Transferable).transfer();
      } catch {
        return Parked.No;
      }
      slot.buffer = NO_BUFFER;
      revoked = true;
    }
    this.#live[index] = undefined;
    slot.live = false;
    if (id !== slot.nativeId) this.#push(JournalOp.Burn, id, slot.nativeId, slot.size);
    if (!slot.dirty) {
      slot.dirty = true;
      this.#dirty.push(slot);
    }
    let stack = lane.stacks[slot.stack];
    if (stack === undefined) {
      while (lane.stacks.length < slot.stack) lane.stacks.push(undefined);
      lane.stacks[slot.stack] = stack = [];
    }
    stack.push(slot);
    this.#countParked(slot, 1);
    this.deallocations++;
    if (revoked) return Parked.Revoked;
    return slot.buffer === NO_BUFFER ? Parked.Watched : Parked.Yes;
  }

  /** `id` is a live handle the lane handed out, which the native side learns only at the next sync. */
  handedOut(id: number): boolean {
    const slot = this.#live[tableIndexOf(id)];
    return slot !== undefined && slot.id === id && slot.nativeId !== id;
  }

  /** The native side freed or moved `id` (closeChannel, transferHandle, a native deallocation). */
  forget(id: number): void {
    const index = tableIndexOf(id);
    if (this.#live[index]?.id === id) this.#live[index] = undefined;
  }

  #setLive(id: number, slot: FastSlot): void {
    placeAt(this.#live, tableIndexOf(id), slot);
  }

  /**
   * Before a native allocation in `channel` (null: unscoped): parked slots stay charged
   * natively, which would over-count the ledgers that allocation is checked against and whose
   * peaks it updates. Frees the channel's parked slots natively. The other channels' parked
   * slots stay: the type's total is the one scope they share with it, and only a refusal by it
   * could be theirs ({@link FastLane.holdsParked}).
   */
  beforeNativeAllocation(channel: LaneChannel | null): void {
    if (channel !== null && channel.lane.parked > 0) this.#settle(channel, false);
  }

  /**
   * Whether parked slots of type `type` are charged in its total. A native allocation then
   * says so (`InArgs.AllocParked`): a refusal by the total comes back as `ParkedCharges`,
   * counted nowhere, and the caller syncs and asks again, so what a user sees is the answer
   * without parked slots. Their lane keeps them otherwise: a type total's hard limit costs no
   * sync while it has room.
   */
  holdsParked(type: number): boolean {
    return (this.#parkedOfType[type] ?? 0) > 0;
  }

  /** Whether any channel has parked slots (memory held back from the native pools until a sync). */
  holdsAnyParked(): boolean {
    return this.#parkedSlots > 0;
  }

  /** `slot` parked (d = 1) or unparked (d = -1): the lane's, its channel's and its type's counts. */
  #countParked(slot: FastSlot, d: 1 | -1): void {
    this.#parkedOfType[slot.type] += d; // sized by #adoptSlot
    this.#parkedSlots += d;
    this.#parkedBytes += d * slot.slotBytes;
    slot.channel.lane.parked += d;
  }

  /**
   * Makes the native side exact for `channel` alone (closeChannel): applies the journal, frees
   * the channel's parked slots and publishes the ids its live lane handles carry. Other channels'
   * parked slots stay in the lane: opening or closing one connection's channel does not send every
   * other connection's next allocation to the native path.
   */
  syncChannel(channel: LaneChannel): void {
    this.#settle(channel, true);
  }

  /**
   * Frees `channel`'s parked slots natively (a partial sync: the rest of the lane stays); with
   * `publish`, also publishes the ids of its live lane handles ({@link FastLane.syncChannel}).
   */
  #settle(channel: LaneChannel, publish: boolean): void {
    const dirty = this.#dirty;
    let kept = 0;
    for (let i = 0; i < dirty.length; i++) {
      const slot = dirty[i];
      if (slot.channel !== channel) {
        dirty[kept++] = slot;
      } else if (!slot.live) {
        slot.dirty = false;
        this.#pushFree(slot);
        this.#countParked(slot, -1);
      } else if (publish) {
        slot.dirty = false;
        this.#publish(slot);
      } else {
        dirty[kept++] = slot;
      }
    }
    dirty.length = kept;
    channel.lane.stacks.length = 0;
    this.#apply();
  }

  /** Journals a live slot's current id as its native one, if the lane handed it out under a new id. */
  #publish(slot: FastSlot): void {
    if (slot.id === slot.nativeId) return;
    this.#push(JournalOp.Reissue, slot.nativeId, slot.id, slot.size);
    if (slot.token >= 0) this.#push(JournalOp.SlotOwner, slot.nativeId, slot.id, slot.token);
    slot.nativeId = slot.id;
  }

  /**
   * The native side accepted a limit change (`update` on a type's total when `typeTotal`, else
   * on `channel`'s scopes). The caller synced before making it, so parked slots were freed under
   * the old limits; slots allocated before it become ineligible here.
   */
  limitsChanged(update: Partial<LimitFields>, typeTotal: boolean, channel: LaneChannel | null): void {
    if (typeTotal) this.#typeEpoch++;
    else if (channel !== null) channel.lane.epoch++;
    if (isLimited(update.maxAllocationSize)) this.#sizeLimited = true;
    if (isLimited(update.softBytes)) {
      // A type's total covers every channel; a channel's scopes only that channel.
      if (typeTotal) this.#softLimited = true;
      else if (channel !== null) channel.lane.soft = true;
    }
    if (this.#softLimited) this.#live.length = 0;
  }

  /** Makes the native side exact: applies the journal and frees every parked slot. */
  sync(): void {
    if (this.#dirty.length === 0 && this.#ops === 0) return;
    const dirty = this.#dirty;
    for (let i = 0; i < dirty.length; i++) {
      const slot = dirty[i];
      slot.dirty = false;
      if (!slot.live) {
        this.#pushFree(slot);
        slot.channel.lane.parked = 0;
        slot.channel.lane.stacks.length = 0;
      } else {
        this.#publish(slot);
      }
    }
    dirty.length = 0;
    this.#parkedSlots = 0;
    this.#parkedBytes = 0;
    this.#parkedOfType.fill(0);
    this.#apply();
    this.syncs++;
  }

  /** Frees parked `slot` natively; a revocable one's backing store goes back to the slot cache. */
  #pushFree(slot: FastSlot): void {
    const ab = slot.ab;
    if (slot.token < 0 || ab === null) {
      this.#push(JournalOp.Free, slot.nativeId, 0, 0);
      return;
    }
    this.#push(JournalOp.FreeCached, slot.nativeId, slot.token, 0);
    // After the push: a full journal is applied first, and delivers what it covers.
    this.#recacheTokens.push(slot.token);
    this.#recacheBuffers.push(ab);
    slot.ab = null;
  }

  #push(op: JournalOp, a: number, b: number, c: number): void {
    if (this.#ops >= APPLY_AT) this.#apply();
    const j = this.#journal;
    const at = this.#ops++ * 4;
    j[at] = op;
    j[at + 1] = a;
    j[at + 2] = b;
    j[at + 3] = c;
  }

  #apply(): void {
    const count = this.#ops;
    if (count === 0) return;
    this.#ops = 0;
    const failed = this.#native.applyJournal(count);
    if (failed !== -1) {
      // Never expected: the lane and the native table disagree. Nothing safe can continue.
      throw new Error(`isopool internal error: fast-lane journal op ${failed} of ${count} failed (native status ${this.#native.out[JournalOut.Status]})`);
    }
    // The slot cache takes the stores of the FreeCached ops just applied, before any allocation
    // can ask for them (an entry the native side did not mark cached is never asked for).
    const tokens = this.#recacheTokens;
    const cache = this.#cache;
    if (tokens.length === 0 || cache === null) return;
    const buffers = this.#recacheBuffers;
    for (let i = 0; i < tokens.length; i++) cache.put(tokens[i], buffers[i]);
    tokens.length = 0;
    buffers.length = 0;
  }

  #refill(): boolean {
    const got = this.#native.reserveIds(ID_BATCH);
    const ids = this.#native.fastIds;
    for (let i = 0; i < got; i++) this.#ids[i] = ids[i];
    this.#idCount = got;
    return got > 0;
  }
}
