/**
 * Size-class pools (SPEC §1 "Default pools", §5 "Fragmentation"): class selection, direct
 * allocations, slot reuse, retention capped at queueSize, fragmentation figures.
 *
 * Freed revocable memory returns to its pool once its buffer is collected (deferred reuse, the
 * default): tests of what a default manager does free, drop their references and `collect()` before
 * the reuse; tests of the pool mechanics alone use `unsafeImmediateReuse` (immediate return), and the
 * retention tests run in both modes.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { ResourceHandle, ResourceManager } from '../lib';
import { bufferOf, collect, collectUntil, expectCode, KiB, MiB, nodeCommand, pendingRelease, poolMetrics, SMALL_POOLS } from './helpers';

/**
 * Allocates `n` handles of `size` bytes (in `channel`, or unscoped), calls `atPeak` while they are
 * all live, and frees them, keeping no reference (an async test's suspended frame may keep its
 * locals, so the handles stay in this synchronous function).
 */
function allocateAndFree(mgr: ResourceManager, n: number, size: number, channel?: string, atPeak?: () => void): void {
  const hs: ResourceHandle[] = [];
  for (let i = 0; i < n; i++) hs.push(mgr.allocateResource('buffer', size, channel));
  atPeak?.();
  for (const h of hs) expect(mgr.deallocateResource(h), 'frees').to.equal(true);
}

describe('pools', () => {
  describe('default pools', () => {
    let mgr: ResourceManager;
    beforeEach(() => {
      mgr = new ResourceManager();
    });
    afterEach(() => {
      mgr.close();
    });

    it('lists small 4 KiB/500, medium 64 KiB/250, large 1 MiB/125', () => {
      const pools = mgr.getResourceMetrics().pools;
      for (const [name, slotSize, queueSize] of [
        ['small', 4 * KiB, 500],
        ['medium', 64 * KiB, 250],
        ['large', MiB, 125],
      ] as const) {
        expect(pools[name]?.slotSize, `${name}.slotSize`).to.equal(slotSize);
        expect(pools[name]?.queueSize, `${name}.queueSize`).to.equal(queueSize);
      }
    });

    const classes: Array<[number, string, number]> = [
      [1, 'small', 4096],
      [4096, 'small', 4096],
      [4097, 'medium', 65536],
      [65536, 'medium', 65536],
      [65537, 'large', MiB],
      [MiB, 'large', MiB],
      [MiB + 1, 'direct', MiB + 4096],
      [3 * MiB + 5, 'direct', 3 * MiB + 4096],
    ];
    for (const [size, pool, slotBytes] of classes) {
      it(`size ${size} is served by ${pool} with slot bytes ${slotBytes}`, () => {
        const h = mgr.allocateResource('buffer', size, 'c');
        expect(h.pool, 'handle.pool').to.equal(pool);
        expect(h.slotBytes, 'handle.slotBytes').to.equal(slotBytes);
        expect(bufferOf(h).length, 'buffer length is the requested size').to.equal(size);
        const u = mgr.trackResourceUsage(h);
        expect([u.pool, u.requestedBytes, u.slotBytes, u.channelBytesInUse], 'trackResourceUsage').to.deep.equal([
          pool,
          size,
          slotBytes,
          slotBytes,
        ]);
        const m = mgr.getResourceMetrics();
        expect(m.channels['c']?.bytesInUse, 'channel charged the slot bytes').to.equal(slotBytes);
        expect(m.totals.bytesInUse, 'totals.bytesInUse').to.equal(slotBytes);
        expect(m.totals.requestedBytes, 'totals.requestedBytes').to.equal(size);
        if (pool !== 'direct') {
          expect(m.pools[pool]?.liveSlots, `${pool}.liveSlots`).to.equal(1);
          expect(m.pools[pool]?.liveBytes, `${pool}.liveBytes (requested)`).to.equal(size);
        }
        expect(mgr.deallocateResource(h), 'frees').to.equal(true);
        const after = mgr.getResourceMetrics();
        expect([after.totals.bytesInUse, after.channels['c']?.bytesInUse], 'refunded').to.deep.equal([0, 0]);
      });
    }

    it('refuses a direct allocation above maxAllocationSize (paired with the direct ones above)', () => {
      expectCode(() => mgr.allocateResource('buffer', 64 * MiB + 1), 'ERR_INVALID_SIZE', '64 MiB + 1');
      expect(mgr.allocateResource('buffer', 64 * MiB).slotBytes, '64 MiB exactly is direct').to.equal(64 * MiB);
    });

    it('picks by the smallest class with custom pools', () => {
      const m2 = new ResourceManager({ pools: SMALL_POOLS });
      try {
        expect(
          [100, 4096, 4097, 65536, 65537, MiB, MiB + 1].map((s) => m2.allocateResource('buffer', s).pool),
          'pools by size',
        ).to.deep.equal(['s', 's', 'm', 'm', 'l', 'l', 'direct']);
      } finally {
        m2.close();
      }
    });

    it('serves everything direct with no pools', () => {
      const m2 = new ResourceManager({ pools: [] });
      try {
        const h = m2.allocateResource('buffer', 100, 'c');
        expect([h.pool, h.slotBytes], 'direct, rounded to 4 KiB').to.deep.equal(['direct', 4096]);
        expect(m2.getResourceMetrics().channels['c']?.bytesInUse, 'charged').to.equal(4096);
      } finally {
        m2.close();
      }
    });
  });

  describe('reuse and retention (custom small pools)', () => {
    let mgr: ResourceManager;
    beforeEach(() => {
      mgr = new ResourceManager({ pools: SMALL_POOLS });
    });
    afterEach(() => {
      mgr.close();
    });

    it('reuses a freed slot once its buffer is collected: hits rise by exactly one', async () => {
      allocateAndFree(mgr, 1, 4096, 'c');
      expect([pendingRelease(mgr), poolMetrics(mgr, 's').liveSlots], 'parked until collected, counted live').to.deep.equal([1, 1]);
      await collectUntil(() => pendingRelease(mgr) === 0);
      expect([pendingRelease(mgr), poolMetrics(mgr, 's').liveSlots], 'returned once collected').to.deep.equal([0, 0]);
      const before = poolMetrics(mgr, 's');
      mgr.allocateResource('buffer', 4096, 'c');
      const after = poolMetrics(mgr, 's');
      expect(after.hits - before.hits, 'one hit').to.equal(1);
      expect(after.misses - before.misses, 'no miss').to.equal(0);
      expect(after.reservedBytes, 'no new memory').to.equal(before.reservedBytes);
      expect(after.liveSlots, 'one live slot').to.equal(1);
    });

    it('unsafeImmediateReuse: reuses the same memory within a channel at once (old bytes visible, allocUnsafe semantics)', () => {
      const q = 8;
      mgr.openChannel('c', { unsafeImmediateReuse: true });
      const burst: ResourceHandle[] = [];
      for (let i = 0; i < 3 * q; i++) burst.push(mgr.allocateResource('buffer', 4096, 'c'));
      burst.forEach((h, i) => bufferOf(h).fill(i + 1));
      for (const h of burst) mgr.deallocateResource(h);
      expect(pendingRelease(mgr), 'nothing parked').to.equal(0);
      const hitsBefore = poolMetrics(mgr, 's').hits;
      const again: ResourceHandle[] = [];
      for (let i = 0; i < q; i++) again.push(mgr.allocateResource('buffer', 4096, 'c'));
      expect(poolMetrics(mgr, 's').hits - hitsBefore, 'all served from retained slots').to.equal(q);
      for (const h of again) {
        const b = bufferOf(h);
        const v = b[0];
        expect(v, 'a reused slot shows a byte the channel wrote').to.be.within(1, 3 * q);
        expect(b.every((x) => x === v), 'the whole slot is one old pattern').to.equal(true);
      }
    });

    for (const immediate of [false, true]) {
      const mode = immediate ? 'unsafeImmediateReuse' : 'deferred reuse, collected';
      /** Frees `n` unscoped (or channel `c`) allocations of `size`; collects them in the default mode. */
      const freeBurst = async (n: number, size: number, channel?: string, atPeak?: () => void): Promise<void> => {
        allocateAndFree(mgr, n, size, channel, atPeak);
        expect(pendingRelease(mgr), `${mode}: parked until collected`).to.equal(immediate ? 0 : n);
        if (!immediate) await collect();
        expect(pendingRelease(mgr), `${mode}: nothing parked before the check`).to.equal(0);
      };

      describe(mode, () => {
        beforeEach(() => {
          if (!immediate) return;
          mgr.close();
          mgr = new ResourceManager({ pools: SMALL_POOLS, channelDefaults: { unsafeImmediateReuse: true } });
        });

        it('retains at most queueSize free slots after a burst of 3x the queue, releasing the rest', async () => {
          const q = 8;
          await freeBurst(3 * q, 4096, 'c', () => {
            const peak = poolMetrics(mgr, 's');
            expect(peak.liveSlots, 'live slots at peak').to.equal(3 * q);
            expect(peak.reservedBytes, 'reserved at peak holds the burst').to.be.at.least(3 * q * 4096);
          });
          const p = poolMetrics(mgr, 's');
          expect(p.liveSlots, 'no live slots').to.equal(0);
          expect(p.liveBytes, 'no live bytes').to.equal(0);
          expect(p.retainedFreeSlots, 'retained = queueSize').to.equal(q);
          expect(p.releasedToSystem, 'memory went back to the system').to.be.greaterThan(0);
          expect(p.reservedBytes, 'reserved at least the retained slots').to.be.at.least(q * 4096);
          expect(p.reservedBytes, 'reserved well below the burst').to.be.lessThan(3 * q * 4096);
        });

        it('keeps slots up to queueSize (paired with the cap above): a burst of queueSize is all retained', async () => {
          const q = 8;
          await freeBurst(q, 100);
          const p = poolMetrics(mgr, 's');
          expect(p.retainedFreeSlots, 'all retained').to.equal(q);
          const hits = p.hits;
          for (let i = 0; i < q; i++) mgr.allocateResource('buffer', 100);
          expect(poolMetrics(mgr, 's').hits - hits, 'all reused').to.equal(q);
        });
      });
    }

    it('tracks and charges direct allocations, and frees them', () => {
      const h = mgr.allocateResource('buffer', 2 * MiB + 1, 'c');
      expect([h.pool, h.slotBytes], 'direct, rounded up to 4 KiB').to.deep.equal(['direct', 2 * MiB + 4096]);
      const m = mgr.getResourceMetrics();
      expect(m.channels['c']?.bytesInUse, 'channel charge').to.equal(2 * MiB + 4096);
      expect(m.totals.handles, 'tracked as a live handle').to.equal(1);
      expect(m.totals.reservedBytes, 'reserved includes the direct mapping').to.be.at.least(2 * MiB + 4096);
      const buf = bufferOf(h);
      buf[buf.length - 1] = 0x7f;
      expect(buf[2 * MiB], 'last byte writable').to.equal(0x7f);
      expect(mgr.verifyResourceIsolation('c').bytesInUse, 'isolation agrees').to.equal(2 * MiB + 4096);
      expect(mgr.deallocateResource(h), 'frees').to.equal(true);
      expect(mgr.getResourceMetrics().channels['c']?.bytesInUse, 'refunded').to.equal(0);
    });
  });

  describe('fragmentation', () => {
    it('is 0 and 0 for an empty manager', () => {
      const mgr = new ResourceManager();
      try {
        expect(mgr.getResourceMetrics().fragmentation, 'empty').to.deep.equal({ internal: 0, pool: 0 });
      } finally {
        mgr.close();
      }
    });

    it('internal = 1 - requested/slot bytes over live allocations (a parked slot counts until collected)', async () => {
      const mgr = new ResourceManager();
      try {
        let a: ResourceHandle | undefined = mgr.allocateResource('buffer', 1000);
        expect(mgr.getResourceMetrics().fragmentation.internal, '1000 in 4096').to.equal(1 - 1000 / 4096);
        mgr.allocateResource('buffer', 3000);
        expect(mgr.getResourceMetrics().fragmentation.internal, '4000 in 8192').to.equal(1 - 4000 / 8192);
        mgr.allocateResource('buffer', 4096);
        expect(mgr.getResourceMetrics().fragmentation.internal, '8096 in 12288').to.equal(1 - 8096 / 12288);
        mgr.deallocateResource(a);
        a = undefined;
        expect(mgr.getResourceMetrics().fragmentation.internal, 'parked: still 8096 in 12288').to.equal(1 - 8096 / 12288);
        await collect();
        expect(pendingRelease(mgr), 'collected').to.equal(0);
        expect(mgr.getResourceMetrics().fragmentation.internal, '7096 in 8192').to.equal(1 - 7096 / 8192);
        expect(mgr.trackResourceUsage(mgr.allocateResource('buffer', 1000)).internalFragmentation, 'per handle').to.equal(
          1 - 1000 / 4096,
        );
      } finally {
        mgr.close();
      }
    });

    it('pool = 1 - (live slot bytes + retained free slot bytes) / reserved', () => {
      const mgr = new ResourceManager({ pools: SMALL_POOLS });
      try {
        const hs: ResourceHandle[] = [];
        for (let i = 0; i < 20; i++) hs.push(mgr.allocateResource('buffer', 1000));
        for (let i = 0; i < 20; i++) hs.push(mgr.allocateResource('buffer', 5000));
        for (let i = 0; i < 30; i += 3) mgr.deallocateResource(hs[i] as ResourceHandle);
        const m = mgr.getResourceMetrics();
        let held = 0;
        let reserved = 0;
        for (const p of Object.values(m.pools)) {
          held += (p.liveSlots + p.retainedFreeSlots) * p.slotSize;
          reserved += p.reservedBytes;
        }
        expect(reserved, 'pools reserve memory').to.be.greaterThan(0);
        expect(m.totals.reservedBytes, 'totals.reservedBytes sums the pools').to.equal(reserved);
        expect(m.fragmentation.pool, 'pool fragmentation').to.be.closeTo(1 - held / reserved, 1e-12);
      } finally {
        mgr.close();
      }
    });

    it('stays below 5% after a burst of 3x the queue is fully freed and collected (default pools)', async function () {
      this.timeout(60000);
      const mgr = new ResourceManager();
      try {
        allocateAndFree(mgr, 1500, 4096, 'c');
        expect(pendingRelease(mgr), 'parked until collected').to.equal(1500);
        await collect();
        expect(pendingRelease(mgr), 'collected').to.equal(0);
        const m = mgr.getResourceMetrics();
        expect(m.pools['small']?.retainedFreeSlots, 'small retains its queue').to.equal(500);
        expect(m.pools['small']?.reservedBytes, 'small reserves at least its queue').to.be.at.least(500 * 4096);
        expect(m.fragmentation.pool, 'pool fragmentation < 5%').to.be.lessThan(0.05);
        expect(m.fragmentation.internal, 'nothing live').to.equal(0);
      } finally {
        mgr.close();
      }
    });
  });

  it('queueSize 1 pools survive bursts in both access modes, revocable with and without deferred reuse (a one-cell ring must not hang the second free)', function () {
    this.timeout(60_000);
    // In a child process with a timeout: the bug was an infinite loop, which would block mocha.
    // Revocable memory goes back to the ring at the free (unsafeImmediateReuse) or, by default, when
    // the collected buffers' finalizers run (a whole burst at once).
    const lib = path.join(__dirname, '..', 'lib');
    const script = `
      const { ResourceManager } = require(${JSON.stringify(lib)});
      const collect = async () => { for (let i = 0; i < 3; i++) { global.gc(); await new Promise((r) => setImmediate(r)); } };
      const burst = (s) => {
        const hs = [];
        for (let i = 0; i < 5; i++) hs.push(s.allocate('buffer', 4096));
        for (const h of hs) if (!s.deallocate(h)) throw new Error('deallocate refused');
      };
      (async () => {
        const m = new ResourceManager({ pools: [{ name: 'one', slotSize: 4096, queueSize: 1 }], leakDetection: 'off' });
        const modes = [['deferred', { access: 'revocable' }], ['immediate', { access: 'revocable', unsafeImmediateReuse: true }], ['view', { access: 'view' }]];
        for (const [name, options] of modes) {
          const s = m.openChannel(name, options);
          for (let round = 0; round < 3; round++) {
            burst(s);
            await collect();
          }
          s.close();
        }
        const metrics = m.getResourceMetrics();
        const p = metrics.pools.one;
        console.log(JSON.stringify({ live: p.liveSlots, retained: p.retainedFreeSlots, handles: metrics.totals.handles, pending: metrics.revocation.pendingRelease }));
        m.close();
      })().catch((e) => { console.error(e); process.exitCode = 1; });
    `;
    const run = spawnSync(...nodeCommand(['--expose-gc', '-e', script]), { encoding: 'utf8', timeout: 30_000 });
    expect(run.signal, `no hang (stderr: ${run.stderr})`).to.equal(null);
    expect(run.status, run.stderr).to.equal(0);
    const out = JSON.parse(run.stdout.trim()) as { live: number; retained: number; handles: number; pending: number };
    expect(out.pending, 'nothing parked after the collections').to.equal(0);
    expect(out.live, 'nothing live').to.equal(0);
    expect(out.handles, 'no live handles').to.equal(0);
    expect(out.retained, 'queueSize 1 keeps at most one free slot (per access mode)').to.be.within(1, 2);
  });
  describe('retired view slabs (emptied while exported) go back within the same job', () => {
    // A view slab's memory is exported once as an ArrayBuffer that the manager caches through a
    // WeakRef, which keeps it alive at least to the end of the current job. A manager without the
    // view fast lane (shared, hardened, 'paranoid') that keeps emptying new slabs would hold every
    // one of them until then if retired exports were not detached at the next export (150 bursts
    // of 64 would pin ~35 MiB here, and with hardened guard pages a longer loop runs out of
    // mappings, vm.max_map_count, and crashes the process).
    const POOL = [{ name: 's', slotSize: 4096, queueSize: 4 }]; // 4 slots per slab
    const BURST = 64;
    const variants: Array<[string, object]> = [
      ['shared', { shared: `retired-slabs-${process.pid}` }],
      ['hardened', { hardened: true }],
      ["'paranoid'", { leakDetection: 'paranoid' }],
    ];
    for (const [name, extra] of variants) {
      it(`${name}: reserved bytes stay within a few bursts over 150 bursts in one synchronous loop`, () => {
        const mgr = new ResourceManager({ pools: POOL, leakDetection: 'off', channelDefaults: { access: 'view' }, ...extra });
        try {
          let maxReserved = 0;
          for (let round = 0; round < 150; round++) {
            const hs: ResourceHandle[] = [];
            for (let i = 0; i < BURST; i++) {
              const h = mgr.allocateResource('buffer', 100, 'c');
              bufferOf(h)[0] = i;
              hs.push(h);
            }
            for (const h of hs) expect(mgr.deallocateResource(h)).to.equal(true);
            maxReserved = Math.max(maxReserved, poolMetrics(mgr, 's').reservedBytes);
          }
          const p = poolMetrics(mgr, 's');
          // Each burst maps 16 slabs and keeps one slab's worth of free slots (queueSize 4): the
          // other 15 are retired and released before the next burst's first new export.
          expect(maxReserved, 'at most about two bursts of slabs mapped at any time').to.be.at.most(2 * BURST * 4096 + 4 * 4096);
          expect(p.releasedToSystem, 'the retired slabs were unmapped').to.be.at.least(149 * 15);
          expect(p.liveSlots).to.equal(0);
        } finally {
          mgr.close();
        }
      });
    }

    it('a stale view on a released slab reads nothing; live handles on other slabs keep their bytes', () => {
      const mgr = new ResourceManager({ pools: POOL, leakDetection: 'off', shared: `retired-stale-${process.pid}`, channelDefaults: { access: 'view' } });
      try {
        const first = Array.from({ length: BURST }, (_, i) => {
          const h = mgr.allocateResource('buffer', 4096, 'c');
          bufferOf(h).fill(i);
          return h;
        });
        const stale = first.map((h) => bufferOf(h));
        for (const h of first) mgr.deallocateResource(h);
        const releasedBefore = poolMetrics(mgr, 's').releasedToSystem;
        const second = Array.from({ length: BURST }, (_, i) => {
          const h = mgr.allocateResource('buffer', 4096, 'c');
          bufferOf(h).fill(0x80 + i);
          return h;
        });
        const released = poolMetrics(mgr, 's').releasedToSystem - releasedBefore;
        expect(released, 'the first burst\'s retired slabs were released by the second burst').to.be.at.least(BURST / 4 - 1);
        const emptied = stale.filter((b) => b.length === 0).length;
        expect(emptied, 'exactly the views on released slabs are emptied (4 slots per slab)').to.equal(4 * released);
        for (const b of stale) if (b.length !== 0) expect(b.length, 'a stale view on a slab still in use keeps its extent').to.equal(4096);
        second.forEach((h, i) => {
          const b = bufferOf(h);
          expect(b.length).to.equal(4096);
          expect(b.every((x) => x === 0x80 + i), `live handle ${i} keeps its bytes`).to.equal(true);
        });
      } finally {
        mgr.close();
      }
    });
  });
});
