/**
 * Revocable access (SPEC §1 "Access modes").
 *
 * - `unsafeImmediateReuse` channels (and the unscoped domain under that channelDefaults): on
 *   deallocation, closeChannel, close() and transferHandle the handle's buffer is detached; writes
 *   through a revoked reference land nowhere.
 * - Deferred reuse (the default): a free leaves the buffer attached with its length and bytes, the
 *   id stale, and the memory parked (`revocation.pendingRelease`) until the buffer is collected;
 *   only then does the slot return to its pool. transferHandle still detaches at once.
 */
import { expect } from 'chai';
import { ResourceHandle, ResourceManager } from '../lib';
import { SMALL_POOLS, bufferOf, collect, containsByte, expectCode, filledWith, poolMetrics } from './helpers';

function expectRevoked(buf: Buffer, what: string): void {
  expect(buf.length, `${what}: length`).to.equal(0);
  expect(buf.byteLength, `${what}: byteLength`).to.equal(0);
  expect(buf.buffer.byteLength, `${what}: the ArrayBuffer is detached`).to.equal(0);
  expect(buf[0], `${what}: reads see nothing`).to.equal(undefined);
}

/** Writes through a (revoked) reference every way a caller might: index writes, fill, write. */
function scribble(buf: Buffer, byte: number): void {
  for (let i = 0; i < 4096; i++) buf[i] = byte;
  try {
    buf.fill(byte);
  } catch {
    // a detached buffer refuses fill: nothing landed
  }
  try {
    buf.write('stale write');
  } catch {
    // a detached buffer refuses write: nothing landed
  }
}

describe('revocation (unsafeImmediateReuse): a freed buffer is detached at once', () => {
  let mgr: ResourceManager;
  beforeEach(() => {
    mgr = new ResourceManager({ pools: SMALL_POOLS, channelDefaults: { unsafeImmediateReuse: true } });
  });
  afterEach(() => {
    mgr.close();
  });

  it('a live revocable buffer is its own ArrayBuffer of exactly size bytes (paired with revocation)', () => {
    const h = mgr.allocateResource('buffer', 1000, 'a');
    const buf = bufferOf(h);
    expect([buf.length, buf.byteLength, buf.byteOffset, buf.buffer.byteLength], 'live extents').to.deep.equal([1000, 1000, 0, 1000]);
  });

  it('deallocateResource detaches the buffer (handle.buffer and a kept reference)', () => {
    const h = mgr.allocateResource('buffer', 1000, 'a');
    const kept = bufferOf(h);
    kept.fill(1);
    expect(mgr.deallocateResource(h), 'freed').to.equal(true);
    expectRevoked(kept, 'kept reference');
    if (h.buffer !== null) expectRevoked(h.buffer, 'handle.buffer');
  });

  it('deallocate by id and scope.deallocate detach too', () => {
    const a = mgr.allocateResource('buffer', 100, 'a');
    const b = mgr.channel('a').allocate('buffer', 100);
    const ka = bufferOf(a);
    const kb = bufferOf(b);
    mgr.deallocateResource(a.id);
    mgr.channel('a').deallocate(b);
    expectRevoked(ka, 'by id');
    expectRevoked(kb, 'by scope');
  });

  it('[Symbol.dispose] detaches', () => {
    const h = mgr.allocateResource('buffer', 100, 'a');
    const kept = bufferOf(h);
    h[Symbol.dispose]();
    expectRevoked(kept, 'disposed');
  });

  it('closeChannel detaches every buffer of the channel, and only those', () => {
    const hs: ResourceHandle[] = [];
    for (let i = 0; i < 5; i++) hs.push(mgr.allocateResource('buffer', 100 + i, 'a'));
    const other = bufferOf(mgr.allocateResource('buffer', 100, 'b'));
    const kept = hs.map(bufferOf);
    mgr.closeChannel('a');
    kept.forEach((b, i) => expectRevoked(b, `handle ${i}`));
    expect(other.length, 'channel b untouched').to.equal(100);
  });

  it('close() detaches every buffer', () => {
    const kept = [mgr.allocateResource('buffer', 10, 'a'), mgr.allocateResource('buffer', 5000), mgr.allocateResource('buffer', 2 * 1024 * 1024)].map(
      bufferOf,
    );
    mgr.close();
    kept.forEach((b, i) => expectRevoked(b, `handle ${i}`));
  });

  it('transferHandle detaches the transferring reference', () => {
    const h = mgr.allocateResource('buffer', 10, 'a');
    const kept = bufferOf(h);
    mgr.transferHandle(h);
    expectRevoked(kept, 'in transit');
    mgr.deallocateResource(mgr.adoptHandle(h.id));
  });

  it('a direct (oversize) buffer is revoked too', () => {
    const h = mgr.allocateResource('buffer', 2 * 1024 * 1024, 'a');
    const kept = bufferOf(h);
    mgr.deallocateResource(h);
    expectRevoked(kept, 'direct');
  });

  it('writes through a revoked buffer land nowhere: the slot reuser never sees them', () => {
    const a = mgr.allocateResource('buffer', 4096, 'a');
    const stale = bufferOf(a);
    stale.fill(0x11);
    mgr.deallocateResource(a);
    const hits = poolMetrics(mgr, 's').hits;
    // every slot retained by the pool is reused; the stale writer scribbles after each allocation
    const again: Buffer[] = [];
    for (let i = 0; i < 8; i++) {
      again.push(bufferOf(mgr.allocateResource('buffer', 4096, 'a')));
      scribble(stale, 0x99);
    }
    expect(poolMetrics(mgr, 's').hits - hits, 'all 8 came from retained slots, the freed one among them').to.equal(8);
    for (const b of again) {
      expect(containsByte(b, 0x99), 'no stale write visible').to.equal(false);
    }
    expect(again.some((b) => filledWith(b, 0x11)), 'the slot was reused in-channel (old bytes, allocUnsafe semantics)').to.equal(true);
  });

  it('a cross-channel reuser sees zeros, not the old owner bytes and not stale writes', () => {
    const a = mgr.allocateResource('buffer', 4096, 'a');
    const stale = bufferOf(a);
    stale.fill(0x22);
    mgr.deallocateResource(a);
    const b = bufferOf(mgr.allocateResource('buffer', 4096, 'b'));
    scribble(stale, 0x99);
    expect(b.every((x) => x === 0), 'zeroed for the new owner').to.equal(true);
  });

  it('view mode does not revoke (documented risk), paired with revocable above', () => {
    mgr.openChannel('v', { access: 'view' });
    const h = mgr.allocateResource('buffer', 100, 'v');
    const kept = bufferOf(h);
    mgr.deallocateResource(h);
    expect(kept.length, 'a view keeps its length after deallocation').to.equal(100);
    expect(mgr.verifyCleanupCompletion(h), 'but the handle is released').to.equal(true);
  });
});

/** Freed handles whose memory waits for their buffer to be collected. */
function pending(mgr: ResourceManager): number {
  return mgr.getResourceMetrics().revocation.pendingRelease;
}

/** A freed handle's buffer under deferred reuse: attached, with its length and its bytes. */
function expectAttached(buf: Buffer, size: number, byte: number, what: string): void {
  expect([buf.length, buf.byteLength, buf.buffer.byteLength], `${what}: not detached, same length`).to.deep.equal([size, size, size]);
  expect(filledWith(buf, byte), `${what}: same bytes`).to.equal(true);
}

/** A freed id under deferred reuse: stale for every handle method, its cleanup still pending. */
function expectStaleParked(mgr: ResourceManager, id: number, what: string): void {
  expectCode(() => mgr.trackResourceUsage(id), 'ERR_STALE_HANDLE', `${what}: the id is stale`);
  expect(mgr.validateSecurityBoundaries(id).valid, `${what}: no longer valid`).to.equal(false);
  expect(mgr.verifyCleanupCompletion(id), `${what}: memory parked, cleanup not complete`).to.equal(false);
}

describe('revocation: deferred reuse (the default) leaves a freed buffer attached until it is collected', () => {
  let mgr: ResourceManager;
  beforeEach(() => {
    mgr = new ResourceManager({ pools: SMALL_POOLS });
  });
  afterEach(() => {
    mgr.close();
  });

  /**
   * Allocates `count` buffers of `size` in channel 'a', fills handle i with byte i + 1, frees them
   * with `free` and checks the deferred state while the buffers are still referenced. Returns only
   * the ids, so nothing of the freed buffers stays reachable from the caller.
   */
  function freeAndCheck(count: number, size: number, free: (hs: ResourceHandle[]) => void, what: string): number[] {
    const hs: ResourceHandle[] = [];
    for (let i = 0; i < count; i++) hs.push(mgr.allocateResource('buffer', size, 'a'));
    const kept = hs.map(bufferOf);
    kept.forEach((b, i) => b.fill(i + 1));
    free(hs);
    kept.forEach((b, i) => expectAttached(b, size, i + 1, `${what}, kept reference ${i}`));
    hs.forEach((h, i) => {
      expect(h.buffer, `${what}, handle ${i}: handle.buffer is the same Buffer`).to.equal(kept[i]);
      expectStaleParked(mgr, h.id, `${what}, handle ${i}`);
    });
    // A stale reference still writes its own memory, which no other handle can hold yet.
    kept[0]!.fill(0x5a);
    expect(filledWith(kept[0]!, 0x5a), `${what}: the parked memory is still the buffer's own`).to.equal(true);
    return hs.map((h) => h.id);
  }

  async function expectReleasedAfterCollect(ids: number[], basePending: number, baseLive: number, what: string): Promise<void> {
    await collect();
    expect(pending(mgr), `${what}: pendingRelease back to its baseline once collected`).to.equal(basePending);
    ids.forEach((id, i) => expect(mgr.verifyCleanupCompletion(id), `${what}, handle ${i}: cleanup complete once collected`).to.equal(true));
    expect(poolMetrics(mgr, 's').liveSlots, `${what}: the slots returned to pool s`).to.equal(baseLive);
  }

  it('deallocateResource leaves the buffer attached with its bytes, the id stale, the memory parked until collected', async () => {
    const basePending = pending(mgr);
    const baseLive = poolMetrics(mgr, 's').liveSlots;
    const ids = freeAndCheck(1, 1000, (hs) => expect(mgr.deallocateResource(hs[0]!), 'freed').to.equal(true), 'deallocateResource');
    expect(pending(mgr), 'pendingRelease counts the parked handle').to.equal(basePending + 1);
    expect(poolMetrics(mgr, 's').liveSlots, 'the parked slot still counts as live').to.equal(baseLive + 1);
    expect(mgr.getResourceMetrics().totals.handles, 'no live handle').to.equal(0);
    expect(mgr.getResourceMetrics().channels['a']?.bytesInUse, 'channel a refunded').to.equal(0);
    await expectReleasedAfterCollect(ids, basePending, baseLive, 'deallocateResource');
  });

  it('deallocate by id, scope.deallocate and [Symbol.dispose] park the same way', async () => {
    const basePending = pending(mgr);
    const baseLive = poolMetrics(mgr, 's').liveSlots;
    const ids = freeAndCheck(
      3,
      100,
      (hs) => {
        expect(mgr.deallocateResource(hs[0]!.id), 'freed by id').to.equal(true);
        expect(mgr.channel('a').deallocate(hs[1]!), 'freed by scope').to.equal(true);
        hs[2]![Symbol.dispose]();
      },
      'by id / by scope / disposed',
    );
    expect(pending(mgr), 'pendingRelease counts the three').to.equal(basePending + 3);
    expect(poolMetrics(mgr, 's').liveSlots, 'the parked slots still count as live').to.equal(baseLive + 3);
    await expectReleasedAfterCollect(ids, basePending, baseLive, 'by id / by scope / disposed');
  });

  it('closeChannel frees every handle of the channel but leaves their buffers attached, parked until collected', async () => {
    const basePending = pending(mgr);
    const baseLive = poolMetrics(mgr, 's').liveSlots;
    const other = bufferOf(mgr.allocateResource('buffer', 100, 'b'));
    other.fill(7);
    const ids = freeAndCheck(5, 100, () => expect(mgr.closeChannel('a').count, 'freed handles').to.equal(5), 'closeChannel');
    expect(pending(mgr), 'pendingRelease counts the five').to.equal(basePending + 5);
    expect(poolMetrics(mgr, 's').liveSlots, 'parked slots and the live one of b').to.equal(baseLive + 6);
    expectAttached(other, 100, 7, 'channel b untouched');
    await expectReleasedAfterCollect(ids, basePending, baseLive + 1, 'closeChannel');
    expectAttached(other, 100, 7, 'channel b still live after the collection');
  });

  it('close() leaves every buffer attached with its bytes, and collecting them afterwards is safe', async () => {
    const sizes = [10, 5000, 2 * 1024 * 1024];
    let kept: Buffer[] | undefined = [
      mgr.allocateResource('buffer', 10, 'a'),
      mgr.allocateResource('buffer', 5000),
      mgr.allocateResource('buffer', 2 * 1024 * 1024),
    ].map(bufferOf);
    kept.forEach((b, i) => b.fill(i + 1));
    mgr.close();
    kept.forEach((b, i) => expectAttached(b, sizes[i]!, i + 1, `handle ${i}`));
    kept.forEach((b) => b.fill(0x5a));
    expect(kept.every((b) => filledWith(b, 0x5a)), 'still the buffers own memory after close()').to.equal(true);
    kept = undefined;
    await collect();
    expect(mgr.getResourceMetrics().totals.handles, 'the final snapshot has no live handle').to.equal(0);
  });

  it('a direct (oversize) buffer is parked too, until collected', async () => {
    const basePending = pending(mgr);
    const ids = (() => {
      const h = mgr.allocateResource('buffer', 2 * 1024 * 1024, 'a');
      const kept = bufferOf(h);
      kept.fill(3);
      mgr.deallocateResource(h);
      expectAttached(kept, 2 * 1024 * 1024, 3, 'direct');
      expectStaleParked(mgr, h.id, 'direct');
      return [h.id];
    })();
    expect(pending(mgr), 'pendingRelease counts the direct buffer').to.equal(basePending + 1);
    await collect();
    expect(pending(mgr), 'pendingRelease back once collected').to.equal(basePending);
    expect(mgr.verifyCleanupCompletion(ids[0]!), 'cleanup complete once collected').to.equal(true);
  });

  it('the freed slot is not reused while its buffer lives; once collected it is the next slot served, zeroed for another channel', async () => {
    let stale: Buffer | undefined = (() => {
      const a = mgr.allocateResource('buffer', 4096, 'a');
      const b = bufferOf(a);
      b.fill(0x22);
      mgr.deallocateResource(a);
      return b;
    })();
    // Every free slot the pool retains goes to channel 'a' (same owner: reuse would show old bytes).
    const retained = poolMetrics(mgr, 's').retainedFreeSlots;
    expect(retained, 'the first slab left free slots to serve').to.be.greaterThan(0);
    const again: Buffer[] = [];
    for (let i = 0; i < retained; i++) {
      again.push(bufferOf(mgr.allocateResource('buffer', 4096, 'a')));
      stale.fill(0x99);
    }
    expect(poolMetrics(mgr, 's').retainedFreeSlots, 'every retained slot served').to.equal(0);
    again.forEach((b, i) => {
      expect(containsByte(b, 0x22), `buffer ${i}: not the parked slot (no old bytes)`).to.equal(false);
      expect(containsByte(b, 0x99), `buffer ${i}: no stale write visible`).to.equal(false);
    });
    expect(poolMetrics(mgr, 's').liveSlots, 'the served slots and the parked one').to.equal(retained + 1);
    stale = undefined;
    await collect();
    const m = poolMetrics(mgr, 's');
    expect([m.liveSlots, m.retainedFreeSlots], 'the parked slot returned: the only retained one').to.deep.equal([retained, 1]);
    const hits = m.hits;
    const next = bufferOf(mgr.allocateResource('buffer', 4096, 'b'));
    expect(poolMetrics(mgr, 's').hits - hits, 'served from the returned slot').to.equal(1);
    expect(next.every((x) => x === 0), 'zeroed for the new owner: neither the old bytes nor the stale writes').to.equal(true);
  });

  it('transferHandle leaves the sender\'s buffer attached: its memory waits for it as well as for the adopter\'s', async () => {
    const id = ((): number => {
      const h = mgr.allocateResource('buffer', 10, 'a');
      bufferOf(h).fill(0x41);
      const moved = mgr.transferHandle(h);
      expect([bufferOf(h).length, bufferOf(h)[0]], 'the sender\'s buffer is not detached').to.deep.equal([10, 0x41]);
      const adopted = mgr.adoptHandle(moved);
      expect(bufferOf(adopted)[0], 'the adopter sees the same memory').to.equal(0x41);
      expect(mgr.deallocateResource(adopted), 'freed by the adopter').to.equal(true);
      return moved;
    })();
    expect(mgr.getResourceMetrics().revocation.pendingRelease, 'parked while either buffer lives').to.equal(1);
    await collect();
    expect(mgr.getResourceMetrics().revocation.pendingRelease, 'released once both are collected').to.equal(0);
    expect(mgr.verifyCleanupCompletion(id), 'fully released').to.equal(true);
  });

  it('transferHandle detaches the transferring reference at once in an unsafeImmediateReuse channel', () => {
    mgr.openChannel('i', { unsafeImmediateReuse: true });
    const h = mgr.allocateResource('buffer', 10, 'i');
    const kept = bufferOf(h);
    mgr.transferHandle(h);
    expectRevoked(kept, 'in transit');
    mgr.deallocateResource(mgr.adoptHandle(h.id));
  });
});
