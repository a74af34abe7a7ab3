/**
 * The open channels of one manager, by name and by native index. A private manager's directory
 * is the truth; a shared one's is a cache checked against the native manager, where other
 * threads open and close channels.
 * @internal
 * @packageDocumentation
 */
import { ChannelClosedError, UnknownChannelError } from '../errors';
import { FindOut, NativeStatus } from '../native/abi';
import type { NativeManager } from '../native/binding';
import { checkChannelId } from '../validate';
import { UNSCOPED_INDEX, channelState } from './state';
import type { ChannelState } from './state';

export class ChannelDirectory {
  readonly #native: NativeManager;
  readonly #shared: boolean;
  readonly #byName = new Map<string, ChannelState>();
  readonly #byIndex: Array<ChannelState | undefined> = [];

  constructor(native: NativeManager, shared: boolean) {
    this.#native = native;
    this.#shared = shared;
  }

  /** The incarnation cached for `name`, unchecked (the hot path of an allocation by name). */
  cached(name: string): ChannelState | undefined {
    return this.#byName.get(name);
  }

  /**
   * The current incarnation of open channel `name`, or undefined. With `verify`, a shared
   * manager's cache is checked against the native manager first.
   */
  lookup(name: string, verify: boolean): ChannelState | undefined {
    const cached = this.#byName.get(name);
    if (cached !== undefined && !(verify && this.#shared)) return cached;
    if (cached === undefined && !this.#shared) return undefined;
    const index = this.#native.findChannel(name);
    if (index < 0) {
      if (cached !== undefined) this.forget(cached);
      return undefined;
    }
    const out = this.#native.out;
    const bits = out[FindOut.Bits];
    const owner = out[FindOut.Owner];
    if (cached !== undefined && cached.index === index && cached.owner === owner) return cached;
    if (cached !== undefined) this.forget(cached);
    return this.#add(channelState(name, index, owner, bits));
  }

  /** Throws ERR_CHANNEL_CLOSED unless `state` is open (a shared manager's other threads may have closed it). */
  checkOpen(state: ChannelState): void {
    // Shared: another thread may have closed (and reopened) it; the scope is of this incarnation.
    if (state.open && this.#shared && this.lookup(state.name, true) !== state) state.open = false;
    if (!state.open) throw new ChannelClosedError(state.name);
  }

  /** Whether `name` is remembered as closed natively. */
  isClosed(name: string): boolean {
    return this.#native.findChannel(name) === -2;
  }

  /** ERR_CHANNEL_CLOSED or ERR_UNKNOWN_CHANNEL for a name that is not open. */
  notOpen(name: string): ChannelClosedError | UnknownChannelError {
    return this.isClosed(name) ? new ChannelClosedError(name) : new UnknownChannelError(name);
  }

  /** The open channel `channelId` (checked), never opening it. */
  openState(channelId: unknown): ChannelState {
    const name = checkChannelId(channelId);
    const state = this.lookup(name, true);
    if (state !== undefined) return state;
    throw this.notOpen(name);
  }

  /** A channel this thread just opened natively at `index` with option `bits`. */
  opened(name: string, index: number, bits: number): ChannelState {
    this.#native.findChannel(name);
    return this.#add(channelState(name, index, this.#native.out[FindOut.Owner], bits));
  }

  /**
   * Undoes an auto-open: the channel disappears as if never opened, unless another thread of a
   * shared manager has started to use it (then it stays open, as if that thread opened it).
   */
  discard(state: ChannelState): void {
    if (this.#native.discardChannel(state.index, state.owner) !== NativeStatus.Ok) return;
    this.forget(state);
  }

  /** Drops an incarnation that native closed or discarded. */
  forget(state: ChannelState): void {
    state.open = false;
    if (this.#byName.get(state.name) === state) this.#byName.delete(state.name);
    if (this.#byIndex[state.index] === state) this.#byIndex[state.index] = undefined;
  }

  /** The incarnation at native index `index`, if this thread knows it. */
  at(index: number): ChannelState | undefined {
    return this.#byIndex[index];
  }

  /** The name of the channel at `index` (null: the unscoped domain or unknown). */
  nameOf(index: number): string | null {
    if (index <= UNSCOPED_INDEX) return null;
    return this.#byIndex[index]?.name ?? null;
  }

  values(): IterableIterator<ChannelState> {
    return this.#byName.values();
  }

  /** The manager closed: every incarnation is gone. */
  closeAll(): void {
    for (const state of this.#byName.values()) state.open = false;
    this.#byName.clear();
  }

  #add(state: ChannelState): ChannelState {
    this.#byName.set(state.name, state);
    this.#byIndex[state.index] = state;
    return state;
  }
}
