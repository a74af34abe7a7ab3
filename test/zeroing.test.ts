/**
 * Zeroing (SPEC §1 "Zeroing"): a slot is zeroed before it goes to a different owner (the unscoped
 * domain counts as one); within the same channel reuse is not zeroed in 'cross-channel' mode
 * (Buffer.allocUnsafe semantics) and is zeroed in 'always' mode. Holds for revocable and view.
 *
 * Revocable memory uses deferred reuse by default: a freed slot returns to its pool only once its
 * buffer has been collected. Every test here runs in that default mode and collects the freed
 * buffers (no reference to them survives the synchronous helpers) before the reuse it checks.
 */
import { expect } from 'chai';
import { AccessMode, ChannelOptions, ResourceHandle, ResourceManager } from '../lib';
import { SMALL_POOLS, allZero, bufferOf, collect, collectUntil, containsByte, pendingRelease, poolMetrics } from './helpers';

const Q = 8; // queueSize of pool 's' in SMALL_POOLS
const SLOT = 4096;

/**
 * Allocates 3×Q full slots in `writer`, fills slot i with byte `mark(i)`, frees them all. Keeps no
 * reference to the freed buffers, so {@link settle} can collect them.
 */
function writeAndFree(mgr: ResourceManager, writer: string | undefined, mark: (i: number) => number): void {
  const hs: ResourceHandle[] = [];
  for (let i = 0; i < 3 * Q; i++) hs.push(mgr.allocateResource('buffer', SLOT, writer));
  hs.forEach((h, i) => bufferOf(h).fill(mark(i)));
  for (const h of hs) mgr.deallocateResource(h);
}

/**
 * The freed memory of `parked` handles waits for its buffers (deferred reuse: revocable memory; view
 * memory returns at once, `parked` 0). Collects them and checks every slot went back to pool 's'.
 */
async function settle(mgr: ResourceManager, parked: number): Promise<void> {
  expect(pendingRelease(mgr), 'freed revocable memory waits for its buffers to be collected').to.equal(parked);
  expect(poolMetrics(mgr, 's').liveSlots, 'pool s counts the parked slots as live').to.equal(parked);
  await collect();
  expect(pendingRelease(mgr), 'nothing parked once the buffers are collected').to.equal(0);
  expect(poolMetrics(mgr, 's').liveSlots, 'every slot is back in pool s').to.equal(0);
}

/** Allocates `n` handles of `size` bytes in `channel` and frees them, keeping no reference. */
function allocateAndFree(mgr: ResourceManager, channel: string, size: number, n: number): void {
  const hs: ResourceHandle[] = [];
  for (let i = 0; i < n; i++) hs.push(mgr.allocateResource('buffer', size, channel));
  for (const h of hs) mgr.deallocateResource(h);
}

/** Allocates Q full slots in `reader`, checking that all of them came from retained slots. */
function reuse(mgr: ResourceManager, reader: string | undefined): Buffer[] {
  const hits = poolMetrics(mgr, 's').hits;
  const out: Buffer[] = [];
  for (let i = 0; i < Q; i++) out.push(bufferOf(mgr.allocateResource('buffer', SLOT, reader)));
  expect(poolMetrics(mgr, 's').hits - hits, 'every slot was a reused one').to.equal(Q);
  return out;
}

describe('zeroing', () => {
  const combos: Array<[AccessMode, 'cross-channel' | 'always']> = [
    ['revocable', 'cross-channel'],
    ['revocable', 'always'],
    ['view', 'cross-channel'],
    ['view', 'always'],
  ];

  for (const [access, zero] of combos) {
    describe(`${access} channels, zero: '${zero}'`, () => {
      const burst = access === 'revocable' ? 3 * Q : 0; // parked by a writeAndFree
      let mgr: ResourceManager;
      beforeEach(() => {
        mgr = new ResourceManager({ pools: SMALL_POOLS });
        const opts: ChannelOptions = { access, zero };
        mgr.openChannel('writer', opts);
        mgr.openChannel('reader', opts);
        mgr.openChannel('writer2', opts);
      });
      afterEach(() => {
        mgr.close();
      });

      it('a second channel never reads bytes another channel wrote', async () => {
        writeAndFree(mgr, 'writer', () => 0xab);
        await settle(mgr, burst);
        const bufs = reuse(mgr, 'reader');
        bufs.forEach((b, i) => {
          expect(containsByte(b, 0xab), `reader slot ${i} holds none of writer's bytes`).to.equal(false);
          expect(allZero(b), `reader slot ${i} is zeroed`).to.equal(true);
        });
      });

      if (access === 'revocable') {
        // the unscoped domain is revocable: it shares slabs with revocable channels only
        it('an unscoped writer counts as another owner', async () => {
          writeAndFree(mgr, undefined, () => 0xcd);
          await settle(mgr, burst);
          const bufs = reuse(mgr, 'reader');
          bufs.forEach((b, i) => expect(allZero(b), `reader slot ${i} is zeroed`).to.equal(true));
        });

        it('the unscoped domain never reads a channel bytes', async () => {
          writeAndFree(mgr, 'writer', () => 0xef);
          await settle(mgr, burst);
          const bufs = reuse(mgr, undefined);
          bufs.forEach((b, i) => expect(allZero(b), `unscoped slot ${i} is zeroed`).to.equal(true));
        });
      }

      if (zero === 'cross-channel') {
        it('reuse within the same channel is not zeroed (allocUnsafe semantics): old bytes are visible', async () => {
          writeAndFree(mgr, 'writer', (i) => i + 1);
          await settle(mgr, burst);
          const bufs = reuse(mgr, 'writer');
          bufs.forEach((b, i) => {
            const v = b[0] as number;
            expect(v, `slot ${i} shows a byte the channel wrote`).to.be.within(1, 3 * Q);
            expect(b.every((x) => x === v), `slot ${i} is one whole old pattern`).to.equal(true);
          });
        });
      } else {
        it("reuse within the same channel is zeroed in 'always' mode", async () => {
          writeAndFree(mgr, 'writer', (i) => i + 1);
          await settle(mgr, burst);
          const bufs = reuse(mgr, 'writer');
          bufs.forEach((b, i) => expect(allZero(b), `slot ${i} is zeroed`).to.equal(true));
        });
      }

      it('a reopened channel is a new owner: its reuse is zeroed', async () => {
        writeAndFree(mgr, 'writer2', () => 0x5c);
        mgr.closeChannel('writer2');
        mgr.openChannel('writer2', { access, zero });
        // the old incarnation's memory returns only now, after the reopen
        await settle(mgr, burst);
        const bufs = reuse(mgr, 'writer2');
        bufs.forEach((b, i) => expect(allZero(b), `slot ${i} is zeroed for the new incarnation`).to.equal(true));
      });
    });
  }

  it('a slot freed by closeChannel is zeroed for the next owner', async () => {
    const mgr = new ResourceManager({ pools: SMALL_POOLS });
    try {
      for (let i = 0; i < 3 * Q; i++) bufferOf(mgr.allocateResource('buffer', SLOT, 'gone')).fill(0x77);
      expect(mgr.closeChannel('gone').count, 'closeChannel freed the burst').to.equal(3 * Q);
      await settle(mgr, 3 * Q);
      const bufs = reuse(mgr, 'next');
      bufs.forEach((b, i) => expect(allZero(b), `slot ${i} is zeroed`).to.equal(true));
    } finally {
      mgr.close();
    }
  });

  it('a partly written small allocation does not leak the rest of the slot to another channel', async () => {
    const mgr = new ResourceManager({ pools: SMALL_POOLS });
    try {
      writeAndFree(mgr, 'writer', () => 0x42);
      await settle(mgr, 3 * Q);
      const hits = poolMetrics(mgr, 's').hits;
      allocateAndFree(mgr, 'reader', 100, Q);
      expect(poolMetrics(mgr, 's').hits - hits, 'reused slots').to.equal(Q);
      await settle(mgr, Q);
      // the reader now owns those slots; a full-slot allocation in the reader shows only zeros,
      // never the writer's bytes beyond the first 100
      const bufs = reuse(mgr, 'reader');
      bufs.forEach((b, i) => expect(containsByte(b, 0x42), `slot ${i}`).to.equal(false));
    } finally {
      mgr.close();
    }
  });

  // The slot's dirty extent (native/core/slab_pool.h SlotMeta::dirty: the bytes the last owner may
  // have written) must not shrink when the same owner takes the slot again for fewer bytes, or
  // the next owner's zeroing would leave the first owner's bytes past the smaller size.
  // One pool of one 4 KiB slot per slab, queueSize 1: the pool holds exactly one slot, so every
  // allocation below gets the same memory (reservedBytes stays 4096, one miss, then hits).
  for (const access of ['view', 'revocable'] as AccessMode[]) {
    it(`${access}: a smaller same-channel reuse does not shrink what the next channel's zeroing covers`, async () => {
      const mgr = new ResourceManager({ pools: [{ name: 'one', slotSize: SLOT, queueSize: 1 }], leakDetection: 'off' });
      try {
        const a = mgr.openChannel('a', { access });
        const b = mgr.openChannel('b', { access });
        /** The pool's one slot is free again (reading metrics applies the fast lane; a GC frees revocable memory whose reuse waits for its buffer to die). */
        const slotFree = async (what: string): Promise<void> => {
          const free = await collectUntil(() => poolMetrics(mgr, 'one').retainedFreeSlots === 1);
          expect(free, `${what}: the slot is free for reuse`).to.equal(true);
        };
        // Each step in a function of its own: a handle in this async function's scope would stay
        // reachable across the awaits, and its memory would never come back.
        ((): void => {
          const first = a.allocate('buffer', SLOT);
          bufferOf(first).fill(0xaa);
          expect(a.deallocate(first), 'a frees its 4096 bytes').to.equal(true);
        })();
        await slotFree('after the 4096-byte free');

        ((): void => {
          const small = a.allocate('buffer', 16);
          expect(bufferOf(small).toString('hex'), "a's 16-byte reuse: same slot, same owner, not zeroed").to.equal('aa'.repeat(16));
          expect(a.deallocate(small), 'a frees its 16 bytes').to.equal(true);
        })();
        await slotFree('after the 16-byte free');

        const other = b.allocate('buffer', SLOT);
        const buf = bufferOf(other);
        const pool = poolMetrics(mgr, 'one');
        expect([pool.reservedBytes, pool.misses, pool.hits], 'one slot served all three allocations').to.deep.equal([SLOT, 1, 2]);
        expect(buf.length, "b's buffer").to.equal(SLOT);
        expect(buf.indexOf(0xaa), "b sees none of a's bytes").to.equal(-1);
        expect(allZero(buf), "b's 4096 bytes are zero").to.equal(true);
      } finally {
        mgr.close();
      }
    });
  }
});
