/**
 * Revocation against stolen buffers. Code holding a revocable buffer can move its memory to a
 * new ArrayBuffer that isopool never saw: `ArrayBuffer.prototype.transfer()` (Node >= 21) or a
 * BYOB stream read (every Node). Detaching the handle's own buffer then revokes nothing, so the
 * memory must not serve anyone else until that new ArrayBuffer is gone.
 */
import { expect } from 'chai';
import { ResourceManager } from '../lib';
import type { ResourceHandle } from '../lib';
import { bufferOf, expectCode, gc, poolMetrics, tick } from './helpers';

/** Moves `ab`'s memory into a new ArrayBuffer (detaching `ab`) and returns a view over all of it. */
async function steal(ab: ArrayBuffer): Promise<Uint8Array> {
  const transfer = (ab as unknown as { transfer?: () => ArrayBuffer }).transfer;
  if (typeof transfer === 'function') return new Uint8Array(transfer.call(ab));
  const stream = new ReadableStream({
    type: 'bytes',
    pull(controller: ReadableByteStreamController): void {
      controller.byobRequest?.respond(1); // "fills" 1 byte without writing it
    },
  });
  const reader = stream.getReader({ mode: 'byob' });
  const { value } = await reader.read(new Uint8Array(ab));
  reader.releaseLock();
  await stream.cancel();
  if (value === undefined) throw new Error('the BYOB read returned no view');
  return new Uint8Array(value.buffer);
}

const POOLS = [{ name: 's', slotSize: 4096, queueSize: 4 }];

describe('revocation: a stolen buffer never sees another owner', () => {
  let mgr: ResourceManager;
  beforeEach(() => {
    mgr = new ResourceManager({ pools: POOLS, leakDetection: 'off' });
  });
  afterEach(() => mgr.close());

  /** Allocates in `victim` until the pool has handed out `slots` distinct slots, writing 0x42. */
  function fillVictim(slots: number): ResourceHandle[] {
    const v = mgr.openChannel('victim');
    const held: ResourceHandle[] = [];
    for (let i = 0; i < slots; i++) {
      const h = v.allocate('buffer', 4096);
      bufferOf(h).fill(0x42);
      held.push(h);
    }
    return held;
  }

  it('deallocateResource parks the memory while the stolen buffer lives', async () => {
    const a = mgr.openChannel('attacker');
    const h = a.allocate('buffer', 4096);
    bufferOf(h).fill(0x11);
    const stolen = await steal(bufferOf(h).buffer as ArrayBuffer);
    expect(a.validate(h).violations.map((v) => v.code), 'the detach is seen').to.deep.equal(['BUFFER_DETACHED']);
    expect(a.deallocate(h), 'the handle is freed').to.equal(true);
    expect(stolen.byteLength, 'the stolen copy still reaches the memory').to.equal(4096);
    fillVictim(64);
    expect(stolen.every((b) => b === 0x11), 'the stolen memory still holds only the attacker bytes').to.equal(true);
    expect(poolMetrics(mgr, 's').liveSlots, '64 victim slots + the parked one').to.equal(65);
  });

  it('closeChannel parks it too', async () => {
    const a = mgr.openChannel('attacker');
    const h = a.allocate('buffer', 4096);
    bufferOf(h).fill(0x22);
    const stolen = await steal(bufferOf(h).buffer as ArrayBuffer);
    const report = mgr.closeChannel('attacker');
    expect(report.count, 'freed by the close').to.equal(1);
    expect(report.handles[0]?.id, 'reported').to.equal(h.id);
    fillVictim(64);
    expect(stolen.every((b) => b === 0x22), 'no victim byte reaches the stolen copy').to.equal(true);
  });

  it('the memory returns to the pool once the stolen buffer is collected', async () => {
    const a = mgr.openChannel('attacker');
    let h: ResourceHandle | undefined = a.allocate('buffer', 4096);
    let stolen: Uint8Array | undefined = await steal(bufferOf(h).buffer as ArrayBuffer);
    expect(stolen.byteLength, 'stolen').to.equal(4096);
    expect(a.deallocate(h), 'freed').to.equal(true);
    h = undefined;
    stolen = undefined;
    expect(poolMetrics(mgr, 's').liveSlots, 'parked while it may be reachable').to.equal(1);
    for (let i = 0; i < 100 && poolMetrics(mgr, 's').liveSlots !== 0; i++) {
      gc();
      await tick();
    }
    expect(poolMetrics(mgr, 's').liveSlots, 'released after the backing store died').to.equal(0);
  });

  it('refuses to transfer a handle whose buffer was stolen', async () => {
    const a = mgr.openChannel('attacker');
    const h = a.allocate('buffer', 4096);
    await steal(bufferOf(h).buffer as ArrayBuffer);
    expectCode(() => mgr.transferHandle(h), 'ERR_INVALID_HANDLE', 'transfer of a stolen buffer');
    expect(mgr.getResourceMetrics().channels.attacker?.violations.BUFFER_DETACHED, 'counted once, by the refused transfer').to.equal(1);
    expect(a.deallocate(h), 'it can still be freed').to.equal(true);
  });
});

describe('view mode: a stolen slab buffer', () => {
  // In view mode every handle of a slab is a view of one ArrayBuffer over the whole slab, so a
  // BYOB read into a view (or transfer() of its .buffer) moves the whole slab's memory to a new
  // ArrayBuffer and empties every view of that slab (README "Access modes").
  const SLAB_SLOTS = 4; // 4 KiB slots, queueSize 4: 4 slots per slab

  for (const [name, shared] of [['fast lane', undefined], ['no fast lane (shared)', `stolen-slab-${process.pid}`]] as const) {
    it(`${name}: later allocations on that slab get working buffers again`, async () => {
      const mgr = new ResourceManager({ pools: POOLS, leakDetection: 'off', shared, channelDefaults: { access: 'view' } });
      try {
        const h = mgr.allocateResource('buffer', 4096, 'c');
        const neighbour = mgr.allocateResource('buffer', 4096, 'c');
        bufferOf(h).fill(0x11);
        const stolen = await steal(bufferOf(h).buffer as ArrayBuffer);
        expect(stolen.byteLength, 'the whole slab moved').to.equal(SLAB_SLOTS * 4096);
        expect(bufferOf(neighbour).length, 'a live view of the same slab is emptied too (the documented risk)').to.equal(0);
        expect(mgr.deallocateResource(h)).to.equal(true);
        for (let round = 0; round < 3; round++) {
          const again = mgr.allocateResource('buffer', 4096, 'c');
          const b = bufferOf(again);
          expect(b.length, `round ${round}: a full-size buffer, not one over the detached export`).to.equal(4096);
          b.fill(0x30 + round);
          expect(b[4095], 'writes land').to.equal(0x30 + round);
          expect(mgr.deallocateResource(again)).to.equal(true);
        }
        expect(mgr.deallocateResource(neighbour)).to.equal(true);
        expect(mgr.getResourceMetrics().totals.handles, 'nothing leaked').to.equal(0);
      } finally {
        mgr.close();
      }
    });
  }

  it('a retired slab stays mapped while a stolen buffer reaches it, and is unmapped after', async () => {
    // No fast lane (shared), so freed slabs are retired and given back (pools.test.ts).
    const mgr = new ResourceManager({ pools: POOLS, leakDetection: 'off', shared: `stolen-retired-${process.pid}`, channelDefaults: { access: 'view' } });
    try {
      const burst = (fill: number): ResourceHandle[] =>
        Array.from({ length: 64 }, () => {
          const x = mgr.allocateResource('buffer', 4096, 'c');
          bufferOf(x).fill(fill);
          return x;
        });
      const first = burst(0x11);
      let stolen: Uint8Array | undefined = await steal(bufferOf(first[0]).buffer as ArrayBuffer);
      // Free in reverse so the retained free slots (queueSize 4) come from the last slab and the
      // stolen one is wholly free, hence retired.
      for (const x of [...first].reverse()) expect(mgr.deallocateResource(x)).to.equal(true);
      const second = burst(0x22); // new exports: the retired slabs' exports are released here
      for (const x of second) mgr.deallocateResource(x);
      const settle = async (): Promise<number> => {
        for (let i = 0; i < 20; i++) {
          gc();
          await tick();
        }
        return poolMetrics(mgr, 's').reservedBytes;
      };
      const settled = await settle(); // every export the collector could take is gone
      expect(stolen.every((b) => b === 0x11), 'the stolen slab still holds its bytes (still mapped)').to.equal(true);
      stolen = undefined;
      const after = await settle();
      expect(settled - after, 'exactly the stolen slab is unmapped once the stolen buffer is gone').to.equal(SLAB_SLOTS * 4096);
    } finally {
      mgr.close();
    }
  });
});
