/**
 * Revocation by `ArrayBuffer.prototype.transfer()` (Node >= 21), on `unsafeImmediateReuse`
 * channels (here through channelDefaults, so the unscoped domain too).
 *
 * Where transfer() exists, a manager that is not `shared` creates each slot's external
 * ArrayBuffer once and then moves its backing store: out of a handle's buffer at deallocation
 * (which detaches that buffer) into a new ArrayBuffer kept in a private cache, which the next
 * allocation of the slot hands out. On Node 20 every allocation gets a new external ArrayBuffer,
 * detached on release, unless Node was started with `--harmony-rab-gsab-transfer`. Each test
 * states what must hold on the Node it runs on. `npm test` on Node 20 passes that flag
 * (.mocharc.js); CI also runs the suite on Node 20 without it, and on 22, 24 and 26.
 *
 * Deferred reuse (the default) never uses the cache: each allocation gets a new external
 * ArrayBuffer, which a free leaves attached until it is collected.
 */
import { expect } from 'chai';
import { ResourceManager } from '../lib';
import type { ResourceHandle } from '../lib';
import { bufferOf, collect, collectUntil, filledWith, poolMetrics } from './helpers';

const HAS_TRANSFER = typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === 'function';
const POOLS = [{ name: 's', slotSize: 4096, queueSize: 4 }];
/** Immediate reuse everywhere: the mode the slot cache serves. */
const IMMEDIATE = { unsafeImmediateReuse: true };

function revocation(mgr: ResourceManager): { method: string; buffersCreated: number; buffersReused: number; pendingRelease: number } {
  return mgr.getResourceMetrics().revocation;
}

describe(`revocation by transfer() on unsafeImmediateReuse channels (${HAS_TRANSFER ? 'available' : 'not available'} on ${process.version})`, () => {
  let mgr: ResourceManager;
  beforeEach(() => {
    mgr = new ResourceManager({ pools: POOLS, leakDetection: 'off', channelDefaults: IMMEDIATE });
  });
  afterEach(() => mgr.close());

  it('is the method exactly where ArrayBuffer.prototype.transfer exists, and never for shared managers', () => {
    expect(revocation(mgr).method, 'a plain manager').to.equal(HAS_TRANSFER ? 'transfer' : 'detach');
    // Set by .mocharc.js where it adds --harmony-rab-gsab-transfer (Node 20), and by .ci/run for
    // its Node 20 run without it: proves which method the run got.
    const expected = process.env.ISOPOOL_EXPECT_REVOCATION;
    if (expected !== undefined) expect(revocation(mgr).method, 'ISOPOOL_EXPECT_REVOCATION').to.equal(expected);
    const shared = new ResourceManager({ shared: 'transfer-revocation-test', leakDetection: 'off', channelDefaults: IMMEDIATE });
    try {
      expect(revocation(shared).method, 'a shared manager').to.equal('detach');
    } finally {
      shared.close();
    }
    const saved = process.env.ISOPOOL_REVOCATION;
    process.env.ISOPOOL_REVOCATION = 'detach';
    try {
      const forced = new ResourceManager({ leakDetection: 'off', channelDefaults: IMMEDIATE });
      expect(revocation(forced).method, 'ISOPOOL_REVOCATION=detach').to.equal('detach');
      forced.close();
    } finally {
      if (saved === undefined) delete process.env.ISOPOOL_REVOCATION;
      else process.env.ISOPOOL_REVOCATION = saved;
    }
  });

  it('a steady round trip creates no ArrayBuffer after the first (transfer) or one per allocation (detach)', () => {
    const c = mgr.openChannel('a');
    c.deallocate(c.allocate('buffer', 4096));
    const before = revocation(mgr);
    for (let i = 0; i < 1000; i++) {
      const h = c.allocate('buffer', 4096);
      bufferOf(h)[0] = i & 0xff;
      expect(c.deallocate(h), 'freed').to.equal(true);
    }
    const after = revocation(mgr);
    if (HAS_TRANSFER) {
      expect(after.buffersCreated - before.buffersCreated, 'no new external ArrayBuffer').to.equal(0);
      expect(after.buffersReused - before.buffersReused, 'every allocation moved a cached backing store').to.equal(1000);
    } else {
      expect(after.buffersCreated - before.buffersCreated, 'one external ArrayBuffer per allocation').to.equal(1000);
      expect(after.buffersReused, 'nothing reused').to.equal(0);
    }
  });

  it('is zero-copy: bytes written through a moved buffer are in the native slot', () => {
    const c = mgr.openChannel('a');
    c.deallocate(c.allocate('buffer', 100));
    const h = c.allocate('buffer', 100);
    expect(revocation(mgr).buffersReused, 'the second allocation moved the cached store').to.equal(HAS_TRANSFER ? 1 : 0);
    bufferOf(h).fill(0x5a);
    expect(c.deallocate(h), 'freed').to.equal(true);
    // Another length cannot use the cached 100-byte store: the addon makes a new ArrayBuffer over
    // the slot's native memory, which shows what the moved buffer wrote (same channel: not zeroed).
    const created = revocation(mgr).buffersCreated;
    const fresh = c.allocate('buffer', 200);
    expect(revocation(mgr).buffersCreated, 'a fresh ArrayBuffer over the slot').to.equal(created + 1);
    expect(filledWith(bufferOf(fresh).subarray(0, 100), 0x5a), 'the writes reached native memory').to.equal(true);
    expect(filledWith(bufferOf(fresh).subarray(100), 0), 'and nothing past them').to.equal(true);
  });

  it('a released buffer reads and writes nothing, and is never the next handle\'s buffer', () => {
    const c = mgr.openChannel('a');
    c.deallocate(c.allocate('buffer', 512));
    const first = c.allocate('buffer', 512);
    const stale = bufferOf(first);
    const staleAb = stale.buffer;
    expect(c.deallocate(first), 'freed').to.equal(true);
    expect(stale.length, 'revoked view').to.equal(0);
    expect(staleAb.byteLength, 'revoked ArrayBuffer').to.equal(0);
    const second = c.allocate('buffer', 512);
    expect(bufferOf(second).buffer, 'a new ArrayBuffer object').to.not.equal(staleAb);
    bufferOf(second).fill(0x33);
    expect(() => stale.fill(0x77), 'Buffer methods refuse a detached buffer').to.throw(TypeError);
    stale[0] = 0x77;
    expect(() => new Uint8Array(staleAb), 'no new view of the detached ArrayBuffer').to.throw(TypeError);
    expect(filledWith(bufferOf(second), 0x33), 'the stale references wrote nothing').to.equal(true);
    expect(stale[0], 'and read nothing').to.equal(undefined);
  });

  it('closeChannel, close() and transferHandle revoke moved buffers too', () => {
    const c = mgr.openChannel('a');
    c.deallocate(c.allocate('buffer', 64));
    const closed = bufferOf(c.allocate('buffer', 64));
    mgr.closeChannel('a');
    expect(closed.length, 'closeChannel').to.equal(0);

    const d = mgr.openChannel('d');
    d.deallocate(d.allocate('buffer', 64));
    const h = d.allocate('buffer', 64);
    const moved = bufferOf(h);
    const id = mgr.transferHandle(h);
    expect(moved.length, 'transferHandle').to.equal(0);
    const adopted = mgr.adoptHandle(id);
    expect(bufferOf(adopted).length, 'the adopted buffer reaches the memory').to.equal(64);
    expect(mgr.deallocateResource(adopted), 'and is freed').to.equal(true);

    d.deallocate(d.allocate('buffer', 64));
    const last = bufferOf(d.allocate('buffer', 64));
    mgr.close();
    expect(last.length, 'close()').to.equal(0);
    mgr = new ResourceManager({ pools: POOLS, leakDetection: 'off', channelDefaults: IMMEDIATE }); // for afterEach
  });

  it('a buffer stolen with transfer() is never cached again: its slot comes back with a fresh buffer', async () => {
    if (!HAS_TRANSFER) {
      // Node 20 has no transfer(): test/revocation-steal.test.ts covers the BYOB theft there.
      expect(revocation(mgr).method).to.equal('detach');
      return;
    }
    const c = mgr.openChannel('a');
    c.deallocate(c.allocate('buffer', 4096));
    let h: ResourceHandle | undefined = c.allocate('buffer', 4096);
    bufferOf(h).fill(0x11);
    let stolen: Uint8Array | undefined = new Uint8Array((bufferOf(h).buffer as ArrayBuffer & { transfer(): ArrayBuffer }).transfer());
    expect(c.deallocate(h), 'freed').to.equal(true);
    h = undefined;
    expect(poolMetrics(mgr, 's').liveSlots, 'parked while the stolen buffer lives').to.equal(1);
    const v = mgr.openChannel('victim');
    const victims = Array.from({ length: 8 }, () => v.allocate('buffer', 4096));
    for (const x of victims) bufferOf(x).fill(0x42);
    expect(filledWith(Buffer.from(stolen.buffer, stolen.byteOffset, stolen.byteLength), 0x11), 'no victim byte').to.equal(true);
    for (const x of victims) v.deallocate(x);
    stolen = undefined;
    const released = await collectUntil(() => poolMetrics(mgr, 's').liveSlots === 0, 100);
    expect(released, 'the slot returns once the stolen store died').to.equal(true);
  });

  it('a leaked moved buffer is found and its slot reclaimed', async () => {
    const m = new ResourceManager({ pools: POOLS, leakDetection: 'paranoid', channelDefaults: IMMEDIATE });
    try {
      const c = m.openChannel('a');
      c.deallocate(c.allocate('buffer', 256));
      (() => {
        const h = c.allocate('buffer', 256);
        bufferOf(h).fill(1);
      })();
      expect(m.getResourceMetrics().revocation.buffersReused, 'the leaked one was moved').to.equal(HAS_TRANSFER ? 1 : 0);
      const done = await collectUntil(() => m.getResourceMetrics().leaks.reclaimed === 1 && poolMetrics(m, 's').liveSlots === 0, 100);
      expect(done, 'detected, reclaimed, slot back').to.equal(true);
    } finally {
      m.close();
    }
  });
});

describe(`revocation by transfer(): deferred reuse (the default) never uses the slot cache (${HAS_TRANSFER ? 'available' : 'not available'} on ${process.version})`, () => {
  let mgr: ResourceManager;
  beforeEach(() => {
    mgr = new ResourceManager({ pools: POOLS, leakDetection: 'off' });
  });
  afterEach(() => mgr.close());

  /** 100 round trips in a default channel; returns nothing that reaches the freed buffers. */
  function roundTrips(): void {
    const c = mgr.openChannel('a');
    for (let i = 0; i < 100; i++) {
      const h = c.allocate('buffer', 4096);
      const b = bufferOf(h);
      b.fill(i & 0xff);
      expect(c.deallocate(h), 'freed').to.equal(true);
      expect([b.length, b.buffer.byteLength, b[4095]], `round ${i}: not revoked, same bytes`).to.deep.equal([4096, 4096, i & 0xff]);
    }
  }

  it('a round trip creates one ArrayBuffer per allocation and leaves each freed one attached, parked until collected', async () => {
    const before = revocation(mgr);
    roundTrips();
    const after = revocation(mgr);
    expect(after.method, 'the manager method is still the same').to.equal(before.method);
    expect(after.buffersCreated - before.buffersCreated, 'one external ArrayBuffer per allocation').to.equal(100);
    expect(after.buffersReused - before.buffersReused, 'no cached backing store moved').to.equal(0);
    expect(after.pendingRelease - before.pendingRelease, 'every freed buffer parked').to.equal(100);
    expect(poolMetrics(mgr, 's').liveSlots, 'parked slots are live').to.equal(100);
    await collect();
    expect(revocation(mgr).pendingRelease, 'nothing parked once collected').to.equal(before.pendingRelease);
    expect(poolMetrics(mgr, 's').liveSlots, 'every slot returned').to.equal(0);
  });
});
