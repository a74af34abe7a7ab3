/**
 * The baseline a careful user would write instead of isopool: a plain JavaScript free list of
 * preallocated, fixed-size Buffers. No isolation, no quotas, no revocation, no zeroing, no metrics:
 * a stale reference kept after `release` reads and writes whatever the next owner puts there.
 * @packageDocumentation
 */

/**
 * A LIFO stack of `Buffer.allocUnsafeSlow(bufferSize)` buffers.
 *
 * Invariant: every buffer in the stack is `bufferSize` bytes and is not held by a caller
 * (the pool trusts callers: it does not check for double release).
 */
export class JsBufferPool {
  readonly bufferSize: number; // bytes per buffer, ≥ 1
  readonly #free: Buffer[] = [];

  /** Preallocates `prewarm` buffers of `bufferSize` bytes each (unpooled, off the shared 8 KiB slab). */
  constructor(bufferSize: number, prewarm: number) {
    this.bufferSize = bufferSize;
    for (let i = 0; i < prewarm; i++) this.#free.push(Buffer.allocUnsafeSlow(bufferSize));
  }

  /** Pops a free buffer, or allocates a new one when the stack is empty. Contents are stale. */
  acquire(): Buffer {
    const buffer = this.#free.pop();
    return buffer === undefined ? Buffer.allocUnsafeSlow(this.bufferSize) : buffer;
  }

  /** Pushes `buffer` back for reuse. */
  release(buffer: Buffer): void {
    this.#free.push(buffer);
  }

  /** Free buffers currently held. */
  get freeCount(): number {
    return this.#free.length;
  }
}
