/**
 * The ResourceHandle object handed to users.
 * @packageDocumentation
 */
import type { AccessMode, ResourceHandle } from './types';

/** What a handle needs from its manager to dispose itself. */
export interface HandleOwner {
  /**
   * Frees the handle if it is still live and still this object's: `presenter` is the scope that
   * issued it (its checks apply), `moves` the number of transfers of `id` this object has seen.
   * No violation is counted for an already-freed or moved handle.
   */
  disposeHandle(id: number, presenter: unknown, moves: number): void;
}

/**
 * @internal The concrete handle. Its identity (`id`, `resourceType`, `size`, `channelId`...) is
 * fixed at creation in private fields, read through getters (assigning one throws), and every
 * operation takes the id from the private field, never from a property a holder could shadow.
 * Only objects made here are accepted as handles (a private-field brand check: look-alikes,
 * prototypes and Proxies are refused). Freezing the object would say the same, at a cost of
 * about a third of a view-mode round trip.
 */
export class Handle implements ResourceHandle {
  #owner: HandleOwner | null;
  readonly #id: number;
  readonly #resourceType: string;
  readonly #size: number;
  readonly #channelId: string | null;
  readonly #buffer: Buffer | null;
  readonly #pool: string;
  readonly #slotBytes: number;
  readonly #access: AccessMode | null;
  /** The scope state that issued it (null: the manager). */
  readonly #presenter: unknown;
  /** Transfers of this id seen by the issuing thread when this object was made. */
  readonly #moves: number;

  constructor(
    owner: HandleOwner,
    id: number,
    resourceType: string,
    size: number,
    channelId: string | null,
    buffer: Buffer | null,
    pool: string,
    slotBytes: number,
    access: AccessMode | null,
    presenter: unknown = null,
    moves = 0,
  ) {
    this.#owner = owner;
    this.#id = id;
    this.#resourceType = resourceType;
    this.#size = size;
    this.#channelId = channelId;
    this.#buffer = buffer;
    this.#pool = pool;
    this.#slotBytes = slotBytes;
    this.#access = access;
    this.#presenter = presenter;
    this.#moves = moves;
  }

  get id(): number {
    return this.#id;
  }
  get resourceType(): string {
    return this.#resourceType;
  }
  get size(): number {
    return this.#size;
  }
  get channelId(): string | null {
    return this.#channelId;
  }
  get buffer(): Buffer | null {
    return this.#buffer;
  }
  get pool(): string {
    return this.#pool;
  }
  get slotBytes(): number {
    return this.#slotBytes;
  }
  /** How the buffer is exposed: `'revocable'`, `'view'`, or `null` for counted types. */
  get access(): AccessMode | null {
    return this.#access;
  }

  /** The identity as a plain object (what `JSON.stringify` and `util.inspect` show). */
  toJSON(): { id: number; resourceType: string; size: number; channelId: string | null; pool: string; slotBytes: number; access: AccessMode | null } {
    return { id: this.#id, resourceType: this.#resourceType, size: this.#size, channelId: this.#channelId, pool: this.#pool, slotBytes: this.#slotBytes, access: this.#access };
  }

  [Symbol.for('nodejs.util.inspect.custom')](): object {
    return { ...this.toJSON(), buffer: this.#buffer };
  }

  /**
   * True for a handle this module made, by its private field: no getter or Proxy trap runs (a
   * Proxy around a handle is not a handle, where `instanceof` would ask its `getPrototypeOf` trap).
   */
  static is(value: unknown): value is Handle {
    return typeof value === 'object' && value !== null && #owner in value;
  }

  /** Deallocates; a second dispose (or one after deallocation or transfer) is a no-op. */
  [Symbol.dispose](): void {
    const owner = this.#owner;
    if (owner === null) return;
    this.#owner = null;
    owner.disposeHandle(this.#id, this.#presenter, this.#moves);
  }

  /** The issued id of a genuine handle object, or undefined for anything else. */
  static idOf(value: object): number | undefined {
    return #id in value ? (value as Handle).#id : undefined;
  }
}

/** The id of a handle argument (read once), or undefined if the argument is neither a handle object nor a number. */
export function handleIdOf(handle: unknown): number | undefined {
  if (typeof handle === 'number') return handle;
  if (typeof handle === 'object' && handle !== null) return Handle.idOf(handle);
  return undefined;
}

/** The handle-table index of an id (native/core/handle_table.h: index * 2^32 + generation * 2^12 + check). */
export function tableIndexOf(id: number): number {
  return Math.floor(id / 4294967296);
}

/** A number that could be an id at all (a non-negative safe integer). */
export function isWellFormedId(id: number): boolean {
  return Number.isSafeInteger(id) && id >= 0;
}

/**
 * Writes `array[index] = value`, first growing the array densely: a write far past the end would
 * turn it into a dictionary.
 */
export function placeAt<T>(array: Array<T | undefined>, index: number, value: T): void {
  while (array.length < index) array.push(undefined);
  array[index] = value;
}
