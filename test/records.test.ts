/**
 * The per-handle record table (lib/engine/records.ts): records keyed by id, stored at the id's handle-table
 * index, with an overflow for a second live id on the same index. Checked against a Map model.
 */
import { expect } from 'chai';
import { RecordTable } from '../lib/engine/records';
import { mulberry32 } from './random';

interface Rec {
  readonly id: number;
  readonly tag: number;
  readonly channel: number;
  pos: number;
}

/** A record of `id` in channel `channel` (default 1). */
function rec(id: number, tag: number, channel = 1): Rec {
  return { id, tag, channel, pos: -1 };
}

/** Records without the table's bookkeeping, for comparisons. */
function plain(records: Iterable<Rec>): Array<{ id: number; tag: number; channel: number }> {
  return [...records].map(({ id, tag, channel }) => ({ id, tag, channel })).sort((a, b) => a.id - b.id || a.tag - b.tag);
}

const INDEX = 4294967296; // ids are index * 2^32 + generation * 2^12 + check

function idAt(index: number, generation: number): number {
  return index * INDEX + generation * 4096 + 7;
}

describe('RecordTable (per-handle records by table index)', function () {
  it('finds a record only by its own id, not by another id of the same index', function () {
    const table = new RecordTable<Rec>();
    const id = idAt(5, 1);
    table.set(rec(id, 1));
    expect(table.get(id)?.tag).to.equal(1);
    expect(table.get(idAt(5, 2))).to.equal(undefined);
    expect(table.get(idAt(6, 1))).to.equal(undefined);
    expect(table.get(idAt(1_000_000, 1))).to.equal(undefined); // far past the end
    expect(table.size).to.equal(1);
    expect(table.delete(idAt(5, 2))).to.equal(false);
    expect(table.size).to.equal(1);
    expect(table.delete(id)).to.equal(true);
    expect(table.get(id)).to.equal(undefined);
    expect(table.size).to.equal(0);
    expect(table.delete(id)).to.equal(false);
  });

  it('keeps two live ids of one index (a reissued index whose older record is not yet released)', function () {
    const table = new RecordTable<Rec>();
    const older = idAt(3, 1);
    const newer = idAt(3, 2);
    table.set(rec(older, 1));
    table.set(rec(newer, 2));
    expect(table.size).to.equal(2);
    expect(table.get(older)?.tag).to.equal(1);
    expect(table.get(newer)?.tag).to.equal(2);
    // The older one goes first: the newer one is still found, and can be replaced and deleted.
    expect(table.delete(older)).to.equal(true);
    expect(table.get(newer)?.tag).to.equal(2);
    table.set(rec(newer, 3));
    expect(table.size).to.equal(1);
    expect(table.get(newer)?.tag).to.equal(3);
    expect(plain(table.values())).to.deep.equal([{ id: newer, tag: 3, channel: 1 }]);
    expect(plain(table.ofChannel(1))).to.deep.equal([{ id: newer, tag: 3, channel: 1 }]);
    expect(table.delete(newer)).to.equal(true);
    expect(table.size).to.equal(0);
    expect([...table.values()]).to.deep.equal([]);
    expect(table.ofChannel(1)).to.deep.equal([]);
  });

  it('lets the loop over values() delete the record it is on', function () {
    const table = new RecordTable<Rec>();
    const ids = [idAt(0, 1), idAt(2, 1), idAt(2, 9), idAt(40, 1)];
    ids.forEach((id, tag) => table.set(rec(id, tag)));
    const seen: number[] = [];
    for (const record of table.values()) {
      seen.push(record.id);
      expect(table.delete(record.id)).to.equal(true);
    }
    expect(seen.sort((a, b) => a - b)).to.deep.equal([...ids].sort((a, b) => a - b));
    expect(table.size).to.equal(0);
  });

  it('answers like a Map over a random workload with reissued indexes, and lists by channel', function () {
    const random = mulberry32(0x5eed);
    const table = new RecordTable<Rec>();
    const model = new Map<number, Rec>();
    const channels = [0, 1, 2, 7];
    for (let step = 0; step < 20_000; step++) {
      // Few indexes and generations, so indexes collide often.
      const id = idAt(Math.floor(random() * 64), 1 + Math.floor(random() * 4));
      const r = random();
      if (r < 0.45) {
        // A replacement may name another channel than the record it replaces.
        const record = rec(id, step, channels[Math.floor(random() * channels.length)]);
        table.set(record);
        model.set(id, record);
      } else if (r < 0.8) {
        expect(table.delete(id)).to.equal(model.delete(id));
      } else {
        expect(table.get(id)).to.equal(model.get(id));
      }
      expect(table.size).to.equal(model.size);
      if (step % 500 === 0 || step === 19_999) {
        for (const channel of [...channels, 3, 100]) {
          const expected = [...model.values()].filter((m) => m.channel === channel);
          expect(plain(table.ofChannel(channel)), `channel ${channel} at step ${step}`).to.deep.equal(plain(expected));
        }
      }
    }
    expect(plain(table.values())).to.deep.equal(plain(model.values()));
  });

  it('gives a copy of a channel list that survives deleting its records', function () {
    const table = new RecordTable<Rec>();
    for (let i = 1; i <= 5; i++) table.set(rec(idAt(i, 1), i, 4));
    table.set(rec(idAt(9, 1), 9, 5));
    const listed = table.ofChannel(4);
    for (const record of listed) expect(table.delete(record.id)).to.equal(true);
    expect(listed.map((r) => r.tag).sort()).to.deep.equal([1, 2, 3, 4, 5]);
    expect(table.ofChannel(4)).to.deep.equal([]);
    expect(plain(table.ofChannel(5))).to.deep.equal([{ id: idAt(9, 1), tag: 9, channel: 5 }]);
    expect(table.size).to.equal(1);
  });
});
