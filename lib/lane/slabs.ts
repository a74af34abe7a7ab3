/**
 * ArrayBuffers over whole slabs (view memory, and the fast lane's view slots): one export per
 * slab, shared by every view of it, held weakly so an unused slab's export can be collected.
 * @internal
 * @packageDocumentation
 */

/** What the exports need of the native manager. */
export interface SlabNative {
  /** An external ArrayBuffer over slab `key`, or -status. */
  exportSlab(key: number): ArrayBuffer | number;
  /** A slab the native side retired (emptied and given back while exported), or -1. */
  takeRetiredSlab(): number;
  /** Detaches a retired slab's export (undefined: none is alive). */
  releaseSlab(ab: ArrayBuffer | undefined): void;
}

export class SlabExports {
  readonly #native: SlabNative;
  readonly #exports = new Map<number, WeakRef<ArrayBuffer>>();
  #sweepAt = 64;

  constructor(native: SlabNative) {
    this.#native = native;
  }

  /** The export of slab `key`, or null if the native side refuses one. */
  get(key: number): ArrayBuffer | null {
    const cached = this.#exports.get(key)?.deref();
    // A slab export is never empty: a detached one had its memory taken over by user code (a
    // BYOB read into a view, transfer()), which the stale export cannot serve; export it afresh.
    if (cached !== undefined && cached.byteLength !== 0) return cached;
    this.releaseRetired();
    const exported = this.#native.exportSlab(key);
    if (typeof exported === 'number') return null;
    if (this.#exports.size >= this.#sweepAt) {
      for (const [k, ref] of this.#exports) if (ref.deref() === undefined) this.#exports.delete(k);
      this.#sweepAt = Math.max(64, this.#exports.size * 2);
    }
    this.#exports.set(key, new WeakRef(exported));
    return exported;
  }

  /**
   * Detaches the exports of slabs the native side has retired (emptied and given back while
   * exported), so they are unmapped now rather than when the garbage collector finds them: the
   * WeakRef keeps each one alive at least to the end of the current job, and a loop that keeps
   * emptying new slabs (small `queueSize`, no fast lane) would otherwise hold every slab it ever
   * mapped until then. Stale views of freed handles on those slabs become empty. Runs before
   * each new export, so at most the slabs of one burst wait.
   */
  releaseRetired(): void {
    for (let key = this.#native.takeRetiredSlab(); key >= 0; key = this.#native.takeRetiredSlab()) {
      this.#native.releaseSlab(this.#exports.get(key)?.deref());
      this.#exports.delete(key);
    }
  }

  clear(): void {
    this.#exports.clear();
  }
}
