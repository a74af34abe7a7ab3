/**
 * Per-handle records by handle-table index: a `Map<id, record>` without the hashing.
 * @internal
 * @packageDocumentation
 */
import { placeAt, tableIndexOf } from '../handle';

/** A record names the id it belongs to: a slot of the table may later hold another id's. */
export interface IdRecord {
  readonly id: number;
  /** Native index of the handle's channel: records are also listed by channel. */
  readonly channel: number;
  /** The table's: the record's place in its channel's list. */
  pos: number;
}

/**
 * Records keyed by handle id, stored at the id's table index (id / 2^32, native/core/handle_table.h).
 *
 * A `Map` keyed by id hashed every lookup, and one that empties and refills (a round trip, a
 * channel's close) rehashed its table as it shrank and grew; closing a channel of 1,000 handles
 * spent about a fifth of its JS time in the Map (docs/DECISIONS.md "closeChannel cost").
 *
 * Two live records can share an index only if the native side reissued the index before this
 * thread released the older one (a shared manager's revocations, drained at its next call): the
 * later one then goes to a small overflow Map, so neither is lost.
 *
 * Records are also listed by channel index, so closing a channel visits its own records only
 * (rather than asking the native side for every id of the channel and looking each one up).
 */
export class RecordTable<R extends IdRecord> {
  readonly #slots: Array<R | undefined> = [];
  readonly #overflow = new Map<number, R>();
  #size = 0;
  readonly #byChannel: Array<R[] | undefined> = [];

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
    const held = this.#slots[index];
    // The slot holds another id, or this id already lives in the overflow.
    if (held === undefined ? this.#overflow.size !== 0 && this.#overflow.has(id) : held.id !== id) {
      this.#setOverflow(record);
      return;
    }
    if (held === undefined) this.#size++;
    else this.#unlist(held);
    placeAt(this.#slots, index, record);
    this.#list(record);
  }

  #setOverflow(record: R): void {
    const old = this.#overflow.get(record.id);
    if (old === undefined) this.#size++;
    else this.#unlist(old);
    this.#overflow.set(record.id, record);
    this.#list(record);
  }

  delete(id: number): boolean {
    const index = tableIndexOf(id);
    const record = this.#slots[index];
    if (record !== undefined && record.id === id) {
      this.#slots[index] = undefined;
      this.#size--;
      this.#unlist(record);
      return true;
    }
    if (this.#overflow.size === 0) return false;
    const other = this.#overflow.get(id);
    if (other === undefined) return false;
    this.#overflow.delete(id);
    this.#size--;
    this.#unlist(other);
    return true;
  }

  /** A copy of the records of channel index `channel` (the caller may delete as it goes). */
  ofChannel(channel: number): R[] {
    const list = this.#byChannel[channel];
    return list === undefined ? [] : list.slice();
  }

  #list(record: R): void {
    const lists = this.#byChannel;
    let list = lists[record.channel];
    if (list === undefined) {
      list = [];
      placeAt(lists, record.channel, list);
    }
    record.pos = list.length;
    list.push(record);
  }

  /** Swap-removes `record` from its channel's list. */
  #unlist(record: R): void {
    const list = this.#byChannel[record.channel] as R[];
    const last = list.pop() as R;
    if (last !== record) {
      list[record.pos] = last;
      last.pos = record.pos;
    }
    record.pos = -1;
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

/** Ids remembered at most (oldest first): only an id moved away and adopted back here that many transfers later is affected. */
const MOVES_KEPT = 65536;

/**
 * Transfers (`transferHandle`) seen by this thread, by id: how many times each id moved. A
 * handle object made before the latest move is inert. Entries go when this thread frees the id.
 */
export class MoveLog {
  readonly #moves = new Map<number, number>();

  /** How many times `id` moved (0: never, as seen here). */
  of(id: number): number {
    return this.#moves.size === 0 ? 0 : (this.#moves.get(id) ?? 0);
  }

  moved(id: number): void {
    const moves = this.#moves;
    const seen = moves.get(id);
    if (seen === undefined && moves.size >= MOVES_KEPT) moves.delete(moves.keys().next().value as number);
    moves.set(id, (seen ?? 0) + 1);
  }

  /** This thread freed `id`. */
  forget(id: number): void {
    if (this.#moves.size !== 0) this.#moves.delete(id);
  }
}
