/**
 * Threads (SPEC §3): shared managers across worker_threads, zero-copy transfer, exact limits
 * under three threads, cross-thread revocation, thread-exit reclaim, view slabs exported by two
 * threads, and misuse.
 */
import { expect } from 'chai';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { ResourceManager } from '../lib';
import { KiB, SMALL_POOLS, channelMetrics, expectCode, gc, poolMetrics, tick, viewBursts } from './helpers';

const WORKER = path.join(__dirname, 'fixtures', 'thread-worker.js');

type Reply = { ok: true; [key: string]: unknown } | { ok: false; code: string; message: string };

/** A worker attached to the shared manager `shared`, driven by request/reply messages. */
class Peer {
  readonly worker: Worker;
  readonly #replies: Reply[] = [];
  readonly #waiting: Array<(r: Reply) => void> = [];
  readonly exited: Promise<number>;

  constructor(shared: string, pools?: typeof SMALL_POOLS) {
    this.worker = new Worker(WORKER, { workerData: { shared, pools } });
    this.worker.on('message', (r: Reply) => {
      const w = this.#waiting.shift();
      if (w) w(r);
      else this.#replies.push(r);
    });
    this.exited = new Promise((resolve) => this.worker.once('exit', resolve));
  }

  next(): Promise<Reply> {
    const r = this.#replies.shift();
    if (r) return Promise.resolve(r);
    return new Promise((resolve, reject) => {
      this.#waiting.push(resolve);
      this.worker.once('error', reject);
    });
  }

  async ready(): Promise<this> {
    const r = await this.next();
    expect(r, 'worker attached').to.deep.include({ ok: true, ready: true });
    return this;
  }

  async call(cmd: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.worker.postMessage(cmd);
    const r = await this.next();
    if (!r.ok) throw new Error(`worker ${String(cmd.op)} failed: ${r.code} ${r.message}`);
    return r;
  }
}

let seq = 0;
function sharedName(): string {
  return `threads-test-${process.pid}-${++seq}`;
}

describe('threads (shared managers)', function () {
  this.timeout(60000);
  const open: ResourceManager[] = [];
  function manager(shared: string, extra: { pools?: typeof SMALL_POOLS } = {}): ResourceManager {
    const m = new ResourceManager({ shared, pools: extra.pools ?? SMALL_POOLS });
    open.push(m);
    return m;
  }
  afterEach(() => {
    for (const m of open.splice(0)) m.close();
  });

  it('attaches every manager of one name to the same channels, limits and ledgers', () => {
    const name = sharedName();
    const a = manager(name);
    const b = manager(name);
    a.openChannel('t', { limits: { '*': { maxBytes: 8 * KiB } } });
    const h = a.allocateResource('buffer', 100, 't');
    expect(b.channel('t').channelId, 'b sees the channel a opened').to.equal('t');
    expect(b.getResourceLimits('*', 't').maxBytes, 'and its limits').to.equal(8 * KiB);
    expect(channelMetrics(b, 't').bytesInUse, 'and its ledger').to.equal(4 * KiB);
    b.allocateResource('buffer', 100, 't');
    expectCode(() => a.allocateResource('buffer', 100, 't'), 'ERR_RESOURCE_LIMIT', 'one quota across both');
    expect(b.deallocateResource(h.id), 'b frees a handle a allocated (by id)').to.equal(true);
    expect(channelMetrics(a, 't').handles, 'one handle left').to.equal(1);
  });

  it('a scope whose channel another attachment closed and reopened refuses to free, by id or by dispose, changing nothing', () => {
    const name = sharedName();
    const a = manager(name);
    const b = manager(name);
    const old = a.openChannel('t');
    const h = old.allocate('buffer', 100);
    expect(b.closeChannel('t').count, 'b closes the channel under a').to.equal(1);
    const fresh = b.openChannel('t');
    const hb = fresh.allocate('buffer', 100);
    const before = a.getResourceMetrics();
    expectCode(() => old.deallocate(hb.id), 'ERR_CHANNEL_CLOSED', "the old scope presents the new incarnation's handle");
    expectCode(() => old.deallocate(h), 'ERR_CHANNEL_CLOSED', 'and its own freed handle');
    expectCode(() => old.deallocate(-1), 'ERR_CHANNEL_CLOSED', 'a malformed id is refused for the closed scope first');
    h[Symbol.dispose]();
    const after = a.getResourceMetrics();
    expect(after.channels.t, 'no ledger or violation count moved').to.deep.equal(before.channels.t);
    expect(after.unscoped, 'nothing counted unscoped').to.deep.equal(before.unscoped);
    expect(after.totals, 'the new handle is still live').to.deep.equal(before.totals);
    expectCode(() => old.allocate('buffer', 100), 'ERR_CHANNEL_CLOSED', 'the scope stays closed');
    expect(fresh.validate(hb).valid, 'the new incarnation still owns its handle').to.equal(true);
    expect(fresh.deallocate(hb), 'and frees it').to.equal(true);
  });

  it("a refused allocation never closes a channel another manager of the name opened (it only undoes its own auto-open)", () => {
    const name = sharedName();
    const a = manager(name);
    const b = manager(name);
    a.openChannel('kept', { limits: { '*': { maxAllocationSize: 1000 } } });
    // b finds 'kept' open; its refused allocation must not undo an open that was not its own.
    expectCode(() => b.allocateResource('buffer', 2000, 'kept'), 'ERR_RESOURCE_LIMIT', 'above the channel maxAllocationSize');
    expect(a.channel('kept').channelId, 'still open for a').to.equal('kept');
    expect(a.getResourceLimits('*', 'kept').maxAllocationSize, 'with its limits').to.equal(1000);
    expect(a.allocateResource('buffer', 100, 'kept').channelId, 'a allocates in it').to.equal('kept');
    // b's own auto-open of a new channel is still undone when its allocation is refused.
    a.setResourceLimits('buffer', { maxAllocationSize: 1000 });
    expectCode(() => b.allocateResource('buffer', 2000, 'fresh'), 'ERR_RESOURCE_LIMIT', 'above the type maxAllocationSize');
    expectCode(() => a.channel('fresh'), 'ERR_UNKNOWN_CHANNEL', "b's auto-open was undone: unknown, not closed");
  });

  it('refuses a shared manager opened with different pools or maxAllocationSize', () => {
    const name = sharedName();
    manager(name);
    expectCode(
      () => new ResourceManager({ shared: name, pools: [{ name: 'other', slotSize: 8192, queueSize: 4 }] }),
      'ERR_INVALID_ARGUMENT',
      'other pools',
    );
    expectCode(
      () => new ResourceManager({ shared: name, pools: SMALL_POOLS, maxAllocationSize: 1024 }),
      'ERR_INVALID_ARGUMENT',
      'other maxAllocationSize',
    );
    expectCode(() => new ResourceManager({ shared: '' }), 'ERR_INVALID_ARGUMENT', 'empty name');
  });

  it('transfers a handle to a worker and back: the same memory, not a copy', async () => {
    const name = sharedName();
    const m = manager(name);
    const peer = await new Peer(name, SMALL_POOLS).ready();
    try {
      // unsafeImmediateReuse: a transfer detaches the sender's buffer (deferred reuse pins it instead).
      m.openChannel('x', { unsafeImmediateReuse: true });
      const h = m.allocateResource('buffer', 4096, 'x');
      h.buffer!.write('from main', 'latin1');
      const before = m.getResourceMetrics();
      const id = m.transferHandle(h);
      expect(h.buffer!.length, 'the sender lost access').to.equal(0);
      const reply = await peer.call({ op: 'adopt-read-write-transfer', id, write: 'from worker' });
      expect(reply.seen, 'the worker reads the bytes main wrote').to.equal('from main');
      expect(reply.revokedHere, 'the worker lost access when it transferred back').to.equal(true);
      const back = m.adoptHandle(reply.back as number);
      expect(back.id, 'same handle').to.equal(h.id);
      expect(back.buffer!.toString('latin1', 0, 11), 'main reads what the worker wrote').to.equal('from worker');
      const after = m.getResourceMetrics();
      expect(after.totals.allocations, 'no allocation was made for the transfer').to.equal(before.totals.allocations);
      expect(poolMetrics(m, 's').liveSlots, 'one slot, never copied').to.equal(1);
      expect(channelMetrics(m, 'x'), 'ownership and charge unchanged').to.include({ handles: 1, bytesInUse: 4096 });
      expect(m.deallocateResource(back), 'freed once').to.equal(true);
    } finally {
      await peer.worker.terminate();
    }
  });

  it('holds a hard limit exactly while three threads hammer one channel', async () => {
    const name = sharedName();
    const m = manager(name);
    const limit = 16 * 4096;
    m.openChannel('hot', { limits: { '*': { maxBytes: limit } } });
    const peers = await Promise.all([new Peer(name, SMALL_POOLS).ready(), new Peer(name, SMALL_POOLS).ready()]);
    try {
      const cmd = { op: 'hammer', channel: 'hot', iterations: 20000, size: 1000, hold: 7 };
      const local = (async () => {
        let refused = 0;
        const live = [];
        for (let i = 0; i < 20000; i++) {
          try {
            live.push(m.allocateResource('buffer', 1000, 'hot'));
          } catch (err) {
            if ((err as { code?: string }).code !== 'ERR_RESOURCE_LIMIT') throw err;
            refused++;
          }
          if (live.length > 7) m.deallocateResource(live.shift()!);
          if (i % 1000 === 0) await tick();
        }
        for (const h of live) m.deallocateResource(h);
        return refused;
      })();
      const [r1, r2, r0] = await Promise.all([peers[0].call(cmd), peers[1].call(cmd), local]);
      const c = channelMetrics(m, 'hot');
      expect(c.peakBytes, 'peak never above the hard limit').to.be.at.most(limit);
      expect(c.bytesInUse, 'all freed').to.equal(0);
      expect(c.handles, 'no handle left').to.equal(0);
      const refusals = (r1.refused as number) + (r2.refused as number) + r0;
      expect(c.limitRejections, 'every refusal counted once').to.equal(refusals);
      expect(refusals, '3 threads × 8 held > 16 slots: the limit was hit').to.be.greaterThan(0);
    } finally {
      await Promise.all(peers.map((p) => p.worker.terminate()));
    }
  });

  it('reclaims what a worker still holds when it exits, and reports it as leaks', async () => {
    const name = sharedName();
    const m = manager(name);
    const peer = await new Peer(name, SMALL_POOLS).ready();
    await peer.call({ op: 'allocate-and-keep', channel: 'leaver', count: 5, size: 2000, fill: 7 });
    expect(channelMetrics(m, 'leaver'), 'held by the worker').to.include({ handles: 5, bytesInUse: 5 * 4096 });
    const leaksBefore = m.getResourceMetrics().leaks.detected;
    peer.worker.postMessage({ op: 'exit-holding' });
    expect(await peer.exited, 'worker exit code').to.equal(0);
    const after = m.getResourceMetrics();
    expect(channelMetrics(m, 'leaver'), 'reclaimed at thread exit').to.include({ handles: 0, bytesInUse: 0 });
    expect(after.leaks.detected - leaksBefore, 'five leaks detected').to.equal(5);
    expect(after.leaks.reclaimed - leaksBefore, 'five leaks reclaimed').to.equal(5);
    expect(poolMetrics(m, 's').liveSlots, 'their slots are back in the pool').to.equal(0);
  });

  /** Polls (gc on this thread too) until pool s of `m` has no live slot; returns its liveSlots. */
  async function drained(m: ResourceManager): Promise<number> {
    for (let i = 0; i < 50 && poolMetrics(m, 's').liveSlots !== 0; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 10));
    }
    return poolMetrics(m, 's').liveSlots;
  }

  it("unsafeImmediateReuse: revokes a worker's buffer when another thread closes its channel; the memory waits for it", async () => {
    const name = sharedName();
    const m = manager(name);
    m.openChannel('victim', { unsafeImmediateReuse: true });
    const peer = await new Peer(name, SMALL_POOLS).ready();
    try {
      await peer.call({ op: 'allocate-and-keep', channel: 'victim', count: 1, size: 4096, fill: 0x5a });
      const report = m.closeChannel('victim');
      expect(report.count, 'the handle is freed by the close').to.equal(1);
      expect(poolMetrics(m, 's').liveSlots, 'its slot is parked, not reused, while the worker can reach it').to.equal(1);
      const before = await peer.call({ op: 'read-kept', index: 0 });
      expect(before, 'the worker still sees only its own bytes before it runs isopool again').to.include({ first: 0x5a });
      await peer.call({ op: 'touch' });
      const after = await peer.call({ op: 'read-kept', index: 0 });
      expect(after.length, 'revoked in the worker on its next call').to.equal(0);
      expect(await drained(m), 'the slot returned once the buffer was released').to.equal(0);
    } finally {
      await peer.worker.terminate();
    }
  });

  it("deferred reuse (the default): a worker's buffer stays attached when another thread closes its channel; the memory waits until the worker drops it", async () => {
    const name = sharedName();
    const m = manager(name);
    const peer = await new Peer(name, SMALL_POOLS).ready();
    try {
      await peer.call({ op: 'allocate-and-keep', channel: 'victim', count: 1, size: 4096, fill: 0x5a });
      const report = m.closeChannel('victim');
      expect(report.count, 'the handle is freed by the close').to.equal(1);
      expect(poolMetrics(m, 's').liveSlots, 'its slot is parked, not reused, while the worker can reach it').to.equal(1);
      expect(m.getResourceMetrics().revocation.pendingRelease, 'one parked handle').to.equal(1);
      await peer.call({ op: 'touch' });
      const after = await peer.call({ op: 'read-kept', index: 0 });
      expect(after, 'not revoked in the worker, even after its next call').to.include({ length: 4096, first: 0x5a });
      expect(await drained(m), 'still parked while the worker holds the buffer').to.equal(1);
      await peer.call({ op: 'drop-kept' });
      expect(await drained(m), 'the slot returned once the worker dropped the buffer').to.equal(0);
      expect(m.getResourceMetrics().revocation.pendingRelease, 'nothing parked').to.equal(0);
    } finally {
      await peer.worker.terminate();
    }
  });

  it('refuses adopting a stale, forged or already adopted id, and transferring twice', () => {
    const m = manager(sharedName());
    const h = m.allocateResource('buffer', 100);
    const id = m.transferHandle(h);
    expectCode(() => m.transferHandle(id), 'ERR_INVALID_HANDLE', 'transfer of an id in transit');
    const adopted = m.adoptHandle(id);
    expectCode(() => m.adoptHandle(id), 'ERR_INVALID_HANDLE', 'adopted twice');
    expectCode(() => m.adoptHandle(id + 1), 'ERR_INVALID_HANDLE', 'forged');
    expect(m.deallocateResource(adopted), 'freed').to.equal(true);
    expectCode(() => m.adoptHandle(id), 'ERR_STALE_HANDLE', 'freed');
    expectCode(() => m.transferHandle(id), 'ERR_STALE_HANDLE', 'transfer of a freed id');
  });

  it('keeps the addon loaded while workers come and go', async () => {
    const name = sharedName();
    const m = manager(name);
    for (let i = 0; i < 4; i++) {
      const peer = await new Peer(name, SMALL_POOLS).ready();
      await peer.call({ op: 'allocate-and-keep', channel: `w${i}`, count: 1, size: 10, fill: i });
      peer.worker.postMessage({ op: 'exit-holding' });
      expect(await peer.exited, `worker ${i} exit code`).to.equal(0);
    }
    const h = m.allocateResource('buffer', 10, 'main');
    expect(h.buffer!.length, 'main still allocates after 4 workers left').to.equal(10);
    expect(m.getResourceMetrics().totals.handles, 'only main’s handle is live').to.equal(1);
  });
  it('view slabs two threads export are unmapped once emptied, and neither thread sees the other\'s bytes', async () => {
    // Both threads export the same slabs (one channel, one pool); a slab emptied by either is
    // given back at each thread's next export (pools.test.ts: retired view slabs).
    const name = sharedName();
    const m = manager(name);
    m.openChannel('v', { access: 'view' });
    const peer = await new Peer(name, SMALL_POOLS).ready();
    try {
      const BURSTS = 200;
      const BURST = 64;
      const remote = peer.call({ op: 'view-bursts', channel: 'v', bursts: BURSTS, burst: BURST, size: 4096, mark: 0xa1 });
      const { wrong, maxReserved } = viewBursts(m, 'v', BURSTS, BURST, 4096, 0xb2); // meanwhile, on this thread
      const r = await remote;
      expect(r.wrong, "the worker's handles kept their bytes").to.equal(0);
      expect(wrong, "main's handles kept their bytes").to.equal(0);
      // Without the early release the worker's synchronous loop alone pinned every slab it
      // emptied: ~200 bursts x 7 slabs x 32 KiB.
      const most = Math.max(maxReserved, r.maxReserved as number);
      expect(most, 'reserved stays within a few bursts of both threads').to.be.at.most(3 * 1024 * 1024);
      expect(poolMetrics(m, 's').liveSlots, 'everything freed').to.equal(0);
    } finally {
      await peer.worker.terminate();
    }
  });
});
