/**
 * The slot cache of a private manager whose revocation is by `transfer()` (README "Access
 * modes"): backing stores of freed revocable slots, by token, each in an ArrayBuffer only this
 * cache references. The native side names the token of each slot (native/binding/abi.h AllocOut
 * CacheToken, InfoOut Recached) and decides which allocation takes which entry; the engine
 * revokes a freed handle's buffer by moving its backing store in here, and the fast lane's sync
 * returns parked slots' stores here.
 * @internal
 * @packageDocumentation
 */

/** `ArrayBuffer.prototype.transfer` (Node >= 21, or Node 20 with --harmony-rab-gsab-transfer). */
export type Transferable = ArrayBuffer & { transfer(): ArrayBuffer };

/** What the cache needs of the native manager. */
export interface SlotCacheNative {
  /** Forgets every native slot-cache entry (their ArrayBuffers are collected later). */
  flushSlotCache(): void;
  /** Revokes an ArrayBuffer by detaching it. */
  detach(ab: ArrayBuffer): void;
}

/** Entries kept at least (each is an ArrayBuffer object without memory of its own). */
const SLOT_CACHE_MIN = 4096;

export class SlotCache {
  readonly #native: SlotCacheNative;
  #entries: Array<Transferable | undefined> = [];
  #count = 0;
  #limit = SLOT_CACHE_MIN;

  constructor(native: SlotCacheNative) {
    this.#native = native;
  }

  /** Takes entry `token` (the native side handed it to an allocation), or undefined if it is missing. */
  take(token: number): ArrayBuffer | undefined {
    const cached = this.#entries[token];
    if (cached === undefined) return undefined;
    this.#entries[token] = undefined;
    this.#count--;
    // The entry was made by revoke()'s transfer() and nothing else holds it: hand it out as is.
    return cached;
  }

  /**
   * Revokes `ab` by moving its backing store into entry `token` (native marked it cached).
   * `live` (handles held) sizes the cache when it must be flushed.
   */
  revoke(token: number, ab: ArrayBuffer, live: number): void {
    let moved: ArrayBuffer;
    try {
      moved = (ab as Transferable).transfer();
    } catch {
      // Not movable (never expected for our buffers): revoke it the other way, forget the cache.
      this.#native.detach(ab);
      this.flush(live);
      return;
    }
    this.#entries[token] = moved as Transferable;
    if (++this.#count > this.#limit) this.flush(live);
  }

  /** The fast lane's sync returns a parked slot's backing store (in `ab`) to entry `token`. */
  put(token: number, ab: ArrayBuffer): void {
    if (this.#entries[token] === undefined) this.#count++;
    this.#entries[token] = ab as Transferable;
  }

  /** The native side evicted entry `token`. */
  drop(token: number): void {
    if (this.#entries[token] === undefined) return;
    this.#entries[token] = undefined;
    this.#count--;
  }

  /**
   * Drops every entry (their ArrayBuffers are collected later). Bounds the cache: it would
   * otherwise keep an entry for every slot address ever used, including released slabs'.
   */
  flush(live: number): void {
    this.#native.flushSlotCache();
    this.#entries = [];
    this.#count = 0;
    this.#limit = Math.max(SLOT_CACHE_MIN, 2 * live);
  }
}
