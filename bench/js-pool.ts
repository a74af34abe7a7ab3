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

/** A handle of {@link JsHandlePool}: one object per allocation, so a stale one is recognised. */
export class JsPoolHandle {
  readonly id: number;
  readonly buffer: Buffer;
  /** The channel the buffer returns to; null once released. */
  channel: JsPoolChannel | null;

  constructor(id: number, buffer: Buffer, channel: JsPoolChannel) {
    this.id = id;
    this.buffer = buffer;
    this.channel = channel;
  }
}

/** A channel of {@link JsHandlePool} (what a scope is to isopool): its own free list and a byte quota. */
export interface JsPoolChannel {
  readonly name: string;
  /** Buffers of this channel only: none crosses to another channel. */
  readonly free: Buffer[];
  readonly maxBytes: number;
  bytes: number;
  open: boolean;
}

/**
 * A reference for the cost of the API's shape, not a baseline a user would pick instead of
 * isopool: about the least a pure-JS pool can do per round trip and still offer the call shape of
 * `scope.allocate(type, size)` returning a handle and `scope.deallocate(handle)`: argument
 * checks, a per-channel free list (no buffer crosses channels), a byte quota, a fresh handle
 * object with an id per allocation, and a release that refuses foreign, stale and double-released
 * handles and handles of another channel. It keeps no native memory, no exact per-type ledgers,
 * no zeroing, no revocation (a stale `buffer` still reaches the next owner's bytes, as in view
 * mode), no metrics, no leak detection, and no ids that stay invalid after release.
 */
export class JsHandlePool {
  readonly bufferSize: number;
  #nextId = 1;

  constructor(bufferSize: number) {
    this.bufferSize = bufferSize;
  }

  /** A channel with `prewarm` preallocated buffers and a quota of `maxBytes`. */
  openChannel(name: string, prewarm: number, maxBytes: number): JsPoolChannel {
    const free: Buffer[] = [];
    for (let i = 0; i < prewarm; i++) free.push(Buffer.allocUnsafeSlow(this.bufferSize));
    return { name, free, maxBytes, bytes: 0, open: true };
  }

  allocate(channel: JsPoolChannel, type: unknown, size: unknown): JsPoolHandle {
    if (!channel.open) throw new Error(`channel ${channel.name} is closed`);
    if (type !== 'buffer') throw new TypeError(`unknown resource type ${String(type)}`);
    if (typeof size !== 'number' || !Number.isInteger(size) || size < 1 || size > this.bufferSize) {
      throw new RangeError(`size must be an integer in [1, ${this.bufferSize}]`);
    }
    if (channel.bytes + this.bufferSize > channel.maxBytes) throw new RangeError(`channel ${channel.name} over its quota`);
    const pooled = channel.free.pop() ?? Buffer.allocUnsafeSlow(this.bufferSize);
    channel.bytes += this.bufferSize;
    const buffer = size === this.bufferSize ? pooled : pooled.subarray(0, size);
    return new JsPoolHandle(this.#nextId++, buffer, channel);
  }

  /** False (nothing changes) for a foreign, stale or already released handle, or another channel's. */
  deallocate(channel: JsPoolChannel, handle: unknown): boolean {
    if (!(handle instanceof JsPoolHandle) || handle.channel !== channel || !channel.open) return false;
    handle.channel = null;
    channel.bytes -= this.bufferSize;
    const buffer = handle.buffer;
    channel.free.push(buffer.length === this.bufferSize ? buffer : Buffer.from(buffer.buffer, buffer.byteOffset, this.bufferSize));
    return true;
  }
}
