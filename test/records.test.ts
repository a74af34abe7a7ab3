/**
 * The per-handle record table (lib/records.ts): records keyed by id, stored at the id's handle-table
 * index, with an overflow for a second live id on the same index. Checked against a Map model.
 */
import { expect } from 'chai';
import { RecordTable } from '../lib/records';
import { mulberry32 } from './random';

interface Rec {
  readonly id: number;
  readonly tag: number;
}

const INDEX = 4294967296; // ids are index * 2^32 + generation * 2^12 + check

function idAt(index: number, generation: number): number {
  return index * INDEX + generation * 4096 + 7;
}

function sorted(values: Iterable<Rec>): Rec[] {
  return [...values].sort((a, b) => a.id - b.id || a.tag - b.tag);
}

describe('RecordTable (per-handle records by table index)', function () {
  it('finds a record only by its own id, not by another id of the same index', function () {
    const table = new RecordTable<Rec>();
    const id = idAt(5, 1);
    table.set({ id, tag: 1 });
    expect(table.get(id)).to.deep.equal({ id, tag: 1 });
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
    table.set({ id: older, tag: 1 });
    table.set({ id: newer, tag: 2 });
    expect(table.size).to.equal(2);
    expect(table.get(older)?.tag).to.equal(1);
    expect(table.get(newer)?.tag).to.equal(2);
    // The older one goes first: the newer one is still found, and can be replaced and deleted.
    expect(table.delete(older)).to.equal(true);
    expect(table.get(newer)?.tag).to.equal(2);
    table.set({ id: newer, tag: 3 });
    expect(table.size).to.equal(1);
    expect(table.get(newer)?.tag).to.equal(3);
    expect(sorted(table.values())).to.deep.equal([{ id: newer, tag: 3 }]);
    expect(table.delete(newer)).to.equal(true);
    expect(table.size).to.equal(0);
    expect([...table.values()]).to.deep.equal([]);
  });

  it('lets the loop over values() delete the record it is on', function () {
    const table = new RecordTable<Rec>();
    const ids = [idAt(0, 1), idAt(2, 1), idAt(2, 9), idAt(40, 1)];
    ids.forEach((id, tag) => table.set({ id, tag }));
    const seen: number[] = [];
    for (const record of table.values()) {
      seen.push(record.id);
      expect(table.delete(record.id)).to.equal(true);
    }
    expect(seen.sort((a, b) => a - b)).to.deep.equal([...ids].sort((a, b) => a - b));
    expect(table.size).to.equal(0);
  });

  it('answers like a Map over a random workload with reissued indexes', function () {
    const random = mulberry32(0x5eed);
    const table = new RecordTable<Rec>();
    const model = new Map<number, Rec>();
    for (let step = 0; step < 20_000; step++) {
      // Few indexes and generations, so indexes collide often.
      const id = idAt(Math.floor(random() * 64), 1 + Math.floor(random() * 4));
      const r = random();
      if (r < 0.45) {
        const record = { id, tag: step };
        table.set(record);
        model.set(id, record);
      } else if (r < 0.8) {
        expect(table.delete(id)).to.equal(model.delete(id));
      } else {
        expect(table.get(id)).to.equal(model.get(id));
      }
      expect(table.size).to.equal(model.size);
    }
    expect(sorted(table.values())).to.deep.equal(sorted(model.values()));
  });
});
