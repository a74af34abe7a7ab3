/**
 * Leak detection (SPEC §2 "Leaks"): a handle whose buffer becomes unreachable without being
 * deallocated is found after GC, reported (metrics, 'leak' event, isopool:leak) and reclaimed.
 * FinalizationRegistry callbacks are asynchronous, hence collectUntil (gc + macrotask turns).
 */
import { expect } from 'chai';
import * as diagnostics from 'node:diagnostics_channel';
import { LeakDetectionMode, LeakEvent, ResourceHandle, ResourceManager } from '../lib';
import { SMALL_POOLS, channelMetrics, collectUntil, gc, tick } from './helpers';

/** Allocates `n` handles of 1000 bytes in `channelId` and drops every reference to them. */
function allocateAndDrop(mgr: ResourceManager, n: number, channelId: string): void {
  for (let i = 0; i < n; i++) {
    const h = mgr.allocateResource('buffer', 1000, channelId);
    h.buffer?.fill(i);
  }
}

function newManager(leakDetection: LeakDetectionMode, extra: { leakSampleRate?: number } = {}): ResourceManager {
  return new ResourceManager({ pools: SMALL_POOLS, leakDetection, ...extra });
}

describe('leaks', function () {
  this.timeout(60000);

  it("'paranoid' detects and reclaims every dropped handle, with a 'leak' event and site each", async () => {
    const mgr = newManager('paranoid');
    const events: LeakEvent[] = [];
    const published: unknown[] = [];
    const onMessage = (m: unknown): void => {
      published.push(m);
    };
    mgr.on('leak', (e: LeakEvent) => events.push(e));
    diagnostics.subscribe('isopool:leak', onMessage);
    try {
      const kept = mgr.allocateResource('buffer', 1000, 'leaky');
      allocateAndDrop(mgr, 5, 'leaky');
      expect(channelMetrics(mgr, 'leaky').bytesInUse, 'charged before GC').to.equal(6 * 4096);
      // The handles are reclaimed when their ArrayBuffers are collected; their slots go back to the
      // pool once the backing stores' finalizers have run too (a transfer()ed copy could outlive
      // the ArrayBuffer), which may be a turn later.
      const done = await collectUntil(
        () => mgr.getResourceMetrics().leaks.reclaimed >= 5 && mgr.getResourceMetrics().pools['s']?.liveSlots === 1,
      );
      expect(done, 'reclaimed within 50 GC rounds').to.equal(true);
      const m = mgr.getResourceMetrics();
      expect(m.leaks, 'leaks').to.deep.equal({ detected: 5, reclaimed: 5 });
      expect(channelMetrics(mgr, 'leaky').bytesInUse, 'only the kept handle is charged').to.equal(4096);
      expect(channelMetrics(mgr, 'leaky').handles, 'only the kept handle is live').to.equal(1);
      expect(m.pools['s']?.liveSlots, 'slots reclaimed').to.equal(1);
      expect(events.length, "one 'leak' event per handle").to.equal(5);
      for (const e of events) {
        expect([e.resourceType, e.size, e.channelId], 'event fields').to.deep.equal(['buffer', 1000, 'leaky']);
        expect(Number.isSafeInteger(e.handleId), 'handleId').to.equal(true);
        expect(e.site, 'site').to.be.a('string');
        expect((e.site as string).length, 'site not empty').to.be.greaterThan(0);
        expect(mgr.validateSecurityBoundaries(e.handleId).valid, 'leaked id is no longer live').to.equal(false);
        expect(mgr.verifyCleanupCompletion(e.handleId), 'leaked id fully released').to.equal(true);
      }
      expect(new Set(events.map((e) => e.handleId)).size, 'distinct handles').to.equal(5);
      expect(published, 'isopool:leak carries the same events').to.deep.equal(events);
      expect(mgr.validateSecurityBoundaries(kept).valid, 'the kept handle is still live').to.equal(true);
      expect(kept.buffer?.length, 'and usable').to.equal(1000);
    } finally {
      diagnostics.unsubscribe('isopool:leak', onMessage);
      mgr.close();
    }
  });

  it('never reports a deallocated handle or a reachable one as leaked', async () => {
    const mgr = newManager('paranoid');
    const events: LeakEvent[] = [];
    mgr.on('leak', (e: LeakEvent) => events.push(e));
    try {
      const kept: ResourceHandle[] = [];
      for (let i = 0; i < 3; i++) kept.push(mgr.allocateResource('buffer', 100, 'c'));
      (() => {
        for (let i = 0; i < 4; i++) mgr.deallocateResource(mgr.allocateResource('buffer', 100, 'c'));
      })();
      for (let i = 0; i < 10; i++) {
        gc();
        await tick();
      }
      expect(mgr.getResourceMetrics().leaks, 'nothing leaked').to.deep.equal({ detected: 0, reclaimed: 0 });
      expect(events, 'no events').to.deep.equal([]);
      expect(channelMetrics(mgr, 'c').handles, 'kept handles live').to.equal(kept.length);
    } finally {
      mgr.close();
    }
  });

  it("'off' detects nothing and keeps dropped handles charged", async () => {
    const mgr = newManager('off');
    const events: LeakEvent[] = [];
    mgr.on('leak', (e: LeakEvent) => events.push(e));
    try {
      allocateAndDrop(mgr, 5, 'leaky');
      for (let i = 0; i < 10; i++) {
        gc();
        await tick();
      }
      expect(mgr.getResourceMetrics().leaks, 'nothing detected').to.deep.equal({ detected: 0, reclaimed: 0 });
      expect(events, 'no events').to.deep.equal([]);
      expect(channelMetrics(mgr, 'leaky').bytesInUse, 'still charged').to.equal(5 * 4096);
      expect(mgr.closeChannel('leaky').count, 'closeChannel still frees them').to.equal(5);
    } finally {
      mgr.close();
    }
  });

  it("'sampled' with leakSampleRate 1 watches every allocation", async () => {
    const mgr = newManager('sampled', { leakSampleRate: 1 });
    try {
      allocateAndDrop(mgr, 4, 'leaky');
      const done = await collectUntil(() => mgr.getResourceMetrics().leaks.reclaimed >= 4);
      expect(done, 'reclaimed').to.equal(true);
      expect(mgr.getResourceMetrics().leaks, 'all found').to.deep.equal({ detected: 4, reclaimed: 4 });
      expect(channelMetrics(mgr, 'leaky').bytesInUse, 'refunded').to.equal(0);
    } finally {
      mgr.close();
    }
  });

  it('a reclaimed slot is reused safely by another channel', async () => {
    const mgr = newManager('paranoid');
    try {
      (() => {
        for (let i = 0; i < 4; i++) mgr.allocateResource('buffer', 4096, 'leaky').buffer?.fill(0x4c);
      })();
      await collectUntil(() => mgr.getResourceMetrics().leaks.reclaimed >= 4);
      expect(mgr.getResourceMetrics().leaks.reclaimed, 'reclaimed').to.equal(4);
      for (let i = 0; i < 8; i++) {
        const b = mgr.allocateResource('buffer', 4096, 'other').buffer as Buffer;
        expect(b.indexOf(0x4c), 'no leaked bytes visible').to.equal(-1);
      }
    } finally {
      mgr.close();
    }
  });
});

/** Allocates in a function with a recognisable name, so its allocation site can be checked. */
function allocateInNamedFunction(mgr: ResourceManager, channelId: string): ResourceHandle {
  return mgr.allocateResource('buffer', 1000, channelId);
}

describe('leaks: naming the culprit', function () {
  this.timeout(60000);

  it("'paranoid' leak events name the allocating file and function", async () => {
    const mgr = newManager('paranoid');
    const events: LeakEvent[] = [];
    mgr.on('leak', (e: LeakEvent) => events.push(e));
    try {
      (() => {
        for (let i = 0; i < 3; i++) allocateInNamedFunction(mgr, 'leaky');
      })();
      expect(await collectUntil(() => events.length >= 3), 'found').to.equal(true);
      expect(events.length, 'three leaks').to.equal(3);
      for (const e of events) {
        const first = (e.site ?? '').split('\n')[0] ?? '';
        expect(first, 'the first frame is the allocating function, in this file').to.match(/allocateInNamedFunction .*leaks\.test\.[jt]s:\d+/);
        expect(e.site, 'no isopool frames').to.not.match(/[\\/]lib[\\/](core|manager|channel)\.[jt]s/);
      }
    } finally {
      mgr.close();
    }
  });

  it("a site does not keep the allocating method's receiver alive: a leak held only by it is still found", async () => {
    // V8 captures a stack with each frame's receiver and formats it lazily. isopool formats a
    // site at the end of the allocation's turn at the latest, so it never holds the receiver
    // (here an object that holds the leaked buffer) longer than that.
    const mgr = newManager('paranoid');
    const events: LeakEvent[] = [];
    mgr.on('leak', (e: LeakEvent) => events.push(e));
    class Connection {
      buffer: Buffer | null = null;
      open(): void {
        this.buffer = mgr.allocateResource('buffer', 1000, 'leaky').buffer;
      }
    }
    try {
      (() => {
        new Connection().open();
      })();
      expect(await collectUntil(() => events.length >= 1), 'the leak is found').to.equal(true);
      expect((events[0]?.site ?? '').split('\n')[0], 'its site names the method').to.match(/open .*leaks\.test\.[jt]s:\d+/);
    } finally {
      mgr.close();
    }
  });

  it("'sampled' watches exactly 1 in leakSampleRate allocations (the 1st, 5th, 9th, ... for 4), without sites", async () => {
    const mgr = newManager('sampled', { leakSampleRate: 4 });
    const events: LeakEvent[] = [];
    mgr.on('leak', (e: LeakEvent) => events.push(e));
    try {
      const sizes: number[] = [];
      (() => {
        for (let i = 0; i < 16; i++) {
          sizes.push(100 + i);
          mgr.allocateResource('buffer', 100 + i, 'leaky');
        }
      })();
      await collectUntil(() => events.length >= 4);
      for (let i = 0; i < 10; i++) {
        gc();
        await tick();
      }
      expect(mgr.getResourceMetrics().leaks, 'four found and reclaimed').to.deep.equal({ detected: 4, reclaimed: 4 });
      expect(events.map((e) => e.size).sort((a, b) => a - b), 'allocations 0, 4, 8 and 12 were watched').to.deep.equal([100, 104, 108, 112]);
      for (const e of events) expect(e.site, "'sampled' records no site (only 'paranoid' pays for stack captures)").to.equal(undefined);
      expect(channelMetrics(mgr, 'leaky').handles, 'the 12 unwatched handles stay charged').to.equal(12);
    } finally {
      mgr.close();
    }
  });

  it('a revocable leak is reclaimed only once no buffer can reach its memory (a kept subarray delays it)', async () => {
    const mgr = newManager('paranoid');
    try {
      let view: Buffer | null = (() => {
        const h = mgr.allocateResource('buffer', 4096, 'leaky');
        (h.buffer as Buffer).fill(0x42);
        return (h.buffer as Buffer).subarray(100, 200); // the handle and its Buffer are dropped
      })();
      const early = await collectUntil(() => mgr.getResourceMetrics().leaks.detected > 0, 20);
      expect(early, 'not reclaimed while a subarray still reaches the ArrayBuffer').to.equal(false);
      expect(channelMetrics(mgr, 'leaky').handles, 'still live').to.equal(1);
      expect([view.length, view[0]], 'the subarray still reads its memory').to.deep.equal([100, 0x42]);
      view = null;
      expect(await collectUntil(() => mgr.getResourceMetrics().leaks.reclaimed === 1), 'reclaimed once unreachable').to.equal(true);
      expect(channelMetrics(mgr, 'leaky').handles, 'refunded').to.equal(0);
    } finally {
      mgr.close();
    }
  });

  it("closeChannel reports the handles still live at close, with their sites in 'paranoid'", () => {
    const paranoid = newManager('paranoid');
    const sampled = newManager('sampled', { leakSampleRate: 1000 });
    try {
      const p = [allocateInNamedFunction(paranoid, 'c'), allocateInNamedFunction(paranoid, 'c')];
      const s = [allocateInNamedFunction(sampled, 'c'), allocateInNamedFunction(sampled, 'c')];
      const rp = paranoid.closeChannel('c');
      expect([rp.count, rp.bytes, rp.handles.map((x) => x.id).sort()], 'paranoid report').to.deep.equal([2, 2 * 4096, p.map((h) => h.id).sort()]);
      for (const x of rp.handles) {
        expect([x.resourceType, x.size], 'entry').to.deep.equal(['buffer', 1000]);
        expect(x.site ?? '', 'site names the allocating function').to.match(/^\s*at allocateInNamedFunction .*leaks\.test\.[jt]s:\d+/);
      }
      const rs = sampled.closeChannel('c');
      expect(rs.handles.map((x) => x.id).sort(), "'sampled' report lists both").to.deep.equal(s.map((h) => h.id).sort());
      expect(
        rs.handles.map((x) => 'site' in x),
        "'sampled' records no sites, not even the watched (first) allocation's",
      ).to.deep.equal([false, false]);
    } finally {
      paranoid.close();
      sampled.close();
    }
  });
});
