/**
 * ChannelScope: what a service hands to the code serving one tenant or connection.
 * Every call presents the scope's channel, so another channel's handles are refused and counted.
 * @packageDocumentation
 */
import * as fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { Engine } from './engine/engine';
import type { ChannelState } from './engine/state';
import { InvalidArgumentError, describeValue } from './errors';
import { Handle } from './handle';
import type {
  ChannelCloseReport,
  ChannelScope,
  ResourceHandle,
  ResourceLimits,
  ResourceMetrics,
  SecurityValidationResult,
} from './types';

/** @internal */
export class Scope implements ChannelScope {
  readonly #engine: Engine;
  readonly #state: ChannelState;

  constructor(core: Engine, state: ChannelState) {
    this.#engine = core;
    this.#state = state;
  }

  get channelId(): string {
    return this.#state.name;
  }

  allocate(resourceType: string, size: number): ResourceHandle {
    this.#engine.checkOpenHot('ChannelScope.allocate');
    return this.#engine.allocate(resourceType, size, undefined, this.#state);
  }

  deallocate(handle: ResourceHandle | number): boolean {
    this.#engine.checkOpenHot('ChannelScope.deallocate');
    return this.#engine.deallocate(handle, this.#state);
  }

  validate(handle: ResourceHandle | number): SecurityValidationResult {
    this.#engine.checkOpen('ChannelScope.validate');
    return this.#engine.validate(handle, this.#state);
  }

  track(handle: ResourceHandle | number): ResourceMetrics {
    this.#engine.checkOpen('ChannelScope.track');
    return this.#engine.track(handle, this.#state);
  }

  limits(resourceType: string): ResourceLimits {
    this.#engine.checkOpen('ChannelScope.limits');
    this.#engine.checkScopeOpen(this.#state);
    return this.#engine.getLimits(resourceType, this.#state.name);
  }

  write(stream: NodeJS.WritableStream, handle: ResourceHandle): Promise<void> {
    if (typeof stream !== 'object' || stream === null || typeof stream.write !== 'function') {
      throw new InvalidArgumentError('stream', `stream must be a writable stream, got ${describeValue(stream)}`);
    }
    const buffer = this.#owned('ChannelScope.write', handle);
    const deferred = this.#state.deferred;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (err: unknown): void => {
        if (settled) return;
        settled = true;
        stream.removeListener('close', onClose);
        this.#free(handle);
        if (err === undefined || err === null) resolve();
        else reject(err);
      };
      // A deferred channel's memory waits for the buffer anyway, so a stream that closes without
      // calling back (a user stream that drops writes) still gives the handle back. Elsewhere only
      // the write's own callback says that Node is done with the memory.
      const onClose = (): void => {
        if (!deferred) return;
        const errored = (stream as { errored?: unknown }).errored;
        settle(errored ?? prematureClose(handle.id, this.#state.name));
      };
      stream.on('close', onClose);
      try {
        // A destroy with an error fails the write with that error (the stream's `errored`): a net
        // socket destroyed mid-write calls back without one.
        stream.write(buffer, (err?: Error | null) => settle((stream as { errored?: unknown }).errored ?? err));
      } catch (err) {
        settle(err);
      }
    });
  }

  writeFile(file: number | FileHandle, handle: ResourceHandle, position: number | null = null): Promise<number> {
    const isFd = typeof file === 'number';
    if (isFd ? !Number.isSafeInteger(file) || file < 0 : typeof file !== 'object' || file === null || typeof file.write !== 'function') {
      throw new InvalidArgumentError('file', `file must be a file descriptor or a FileHandle, got ${describeValue(file)}`);
    }
    if (position !== null && (typeof position !== 'number' || !Number.isSafeInteger(position) || position < 0)) {
      throw new InvalidArgumentError('position', `position must be null or a non-negative safe integer, got ${describeValue(position)}`);
    }
    const buffer = this.#owned('ChannelScope.writeFile', handle);
    const writeSome = (offset: number): Promise<number> => {
      const at = position === null ? null : position + offset;
      if (!isFd) return (file as FileHandle).write(buffer, offset, buffer.length - offset, at).then((r) => r.bytesWritten);
      return new Promise<number>((resolve, reject) => {
        fs.write(file as number, buffer, offset, buffer.length - offset, at, (err, n) => (err === null ? resolve(n) : reject(err)));
      });
    };
    const run = async (): Promise<number> => {
      let written = 0;
      try {
        while (written < buffer.length) {
          const n = await writeSome(written);
          if (n <= 0) break;
          written += n;
        }
      } finally {
        this.#free(handle);
      }
      return written;
    };
    return run();
  }

  /**
   * The buffer of a live memory handle of this channel, for a helper that takes ownership of it.
   * Refuses (typed error, nothing changed) what `track` refuses, ids without their object (the
   * buffer travels with the object) and counted types.
   */
  #owned(operation: string, handle: ResourceHandle): Buffer {
    this.#engine.checkOpen(operation);
    if (typeof handle !== 'object' || handle === null || Handle.idOf(handle) === undefined) {
      throw new InvalidArgumentError('handle', `handle must be a ResourceHandle object (its buffer is written), got ${describeValue(handle)}`);
    }
    this.#engine.track(handle, this.#state);
    const buffer = handle.buffer;
    if (buffer === null) throw new InvalidArgumentError('handle', `handle ${handle.id} is of a counted type: it has no buffer to write`);
    return buffer;
  }

  /** Gives back a handle a helper owns; already freed (the channel or manager closed) is fine. */
  #free(handle: ResourceHandle): void {
    if (this.#engine.closed || !this.#state.open) return;
    this.#engine.deallocate(handle, this.#state);
  }

  close(): ChannelCloseReport {
    this.#engine.checkOpenHot('ChannelScope.close');
    this.#engine.checkScopeOpen(this.#state);
    return this.#engine.closeChannel(this.#state.name);
  }
}

/** A stream that closed before its write called back (Node's own code for that). */
function prematureClose(id: number, channel: string): Error {
  const error = new Error(`isopool: the stream closed before writing handle ${id} of channel ${describeValue(channel)}`);
  return Object.assign(error, { code: 'ERR_STREAM_PREMATURE_CLOSE' });
}

/** The scope of a channel incarnation, created once. */
export function scopeOf(core: Engine, state: ChannelState): ChannelScope {
  if (state.scope === undefined) state.scope = new Scope(core, state);
  return state.scope as ChannelScope;
}
