/**
 * Revocable access (SPEC §1 "Access modes"): on deallocation, closeChannel, close() and
 * transferHandle the handle's buffer is detached; writes through a revoked reference land nowhere.
 */
import { expect } from 'chai';
import { ResourceHandle, ResourceManager } from '../lib';
import { SMALL_POOLS, bufferOf, containsByte, filledWith, poolMetrics } from './helpers';

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

describe('revocation', () => {
  let mgr: ResourceManager;
  beforeEach(() => {
    mgr = new ResourceManager({ pools: SMALL_POOLS });
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
