/**
 * Per-handle records by handle-table index: what `Map<id, record>` did, without hashing.
 * @internal
 * @packageDocumentation
 */
import { tableIndexOf } from './handle';

/** A record names the id it belongs to: a slot of the table may later hold another id's. */
export interface IdRecord {
  readonly id: number;
}

/**
 * Records keyed by handle id, stored at the id's table index (id / 2^32, native/handle_table.h).
 *
 * A `Map` keyed by id hashed every lookup, and one that empties and refills (a round trip, a
 * channel's close) rehashed its table as it shrank and grew; closing a channel of 1,000 handles
 * spent about a fifth of its JS time in the Map (docs/DECISIONS.md "closeChannel cost").
 *
 * Two live records can share an index only if the native side reissued the index before this
 * thread released the older one (a shared manager's revocations, drained at its next call): the
 * later one then goes to a small overflow Map, so neither is lost.
 */
export class RecordTable<R extends IdRecord> {
  #slots: Array<R | undefined> = [];
  readonly #overflow = new Map<number, R>();
  #size = 0;

  get size(): number {
    return this.#size;
  }

  get(id: number): R | undefined {
    const record = this.#slots[tableIndexOf(id)];
    if (record !== undefined && record.id === id) return record;
    return this.#overflow.size === 0 ? undefined : this.#overflow.get(id);
  }

  /** Adds or replaces the record of `record.id`. */
  set(record: R): void {
    const id = record.id;
    const index = tableIndexOf(id);
    const slots = this.#slots;
    const held = slots[index];
    if (held !== undefined && held.id !== id) {
      if (!this.#overflow.has(id)) this.#size++;
      this.#overflow.set(id, record);
      return;
    }
    if (held === undefined) {
      if (this.#overflow.has(id)) {
        this.#overflow.set(id, record);
        return;
      }
      this.#size++;
      // Grow densely: a write far past the end would turn the array into a dictionary.
      while (slots.length < index) slots.push(undefined);
    }
    slots[index] = record;
  }

  delete(id: number): boolean {
    const index = tableIndexOf(id);
    const record = this.#slots[index];
    if (record !== undefined && record.id === id) {
      this.#slots[index] = undefined;
      this.#size--;
      return true;
    }
    if (this.#overflow.size !== 0 && this.#overflow.delete(id)) {
      this.#size--;
      return true;
    }
    return false;
  }

  /** Every record, in table-index order then overflow order; deleting the current one is allowed. */
  *values(): IterableIterator<R> {
    const slots = this.#slots;
    for (let i = 0; i < slots.length; i++) {
      const record = slots[i];
      if (record !== undefined) yield record;
    }
    yield* this.#overflow.values();
  }
}
