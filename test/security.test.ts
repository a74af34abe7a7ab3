/**
 * Security boundaries (SPEC §2): every violation code reachable through the public API, forged-id
 * rejection, double free, verifyCleanupCompletion, per-channel violation counting, events.
 */
import { expect } from 'chai';
import * as diagnostics from 'node:diagnostics_channel';
import { ResourceHandle, ResourceManager, ViolationEvent } from '../lib';
import { mulberry32 } from './random';
import {
  SMALL_POOLS,
  bufferOf,
  channelMetrics,
  collect,
  detachExternally,
  expectCode,
  filledWith,
  poolMetrics,
  stateOf,
  totalViolations,
  unscopedMetrics,
  violations,
} from './helpers';


/** Immediate reuse for every channel and the unscoped domain: a free revokes and reuses at once. */
const IMMEDIATE = { unsafeImmediateReuse: true };

/** A uniformly random safe integer in [0, 2^53). */
function randomSafeInteger(next: () => number): number {
  const hi = Math.floor(next() * 2 ** 21);
  const lo = Math.floor(next() * 2 ** 32);
  return hi * 2 ** 32 + lo;
}

describe('security', () => {
  let mgr: ResourceManager;
  beforeEach(() => {
    mgr = new ResourceManager({ pools: SMALL_POOLS });
  });
  afterEach(() => {
    mgr.close();
  });

  describe('FORGED_HANDLE', () => {
    it('rejects 10,000 random safe integers among 1,000 live handles, and counts them', () => {
      const live: ResourceHandle[] = [];
      for (let i = 0; i < 1000; i++) live.push(mgr.allocateResource('buffer', 16, i % 2 ? 'a' : undefined));
      const liveIds = new Set(live.map((h) => h.id));
      const next = mulberry32(0x15090001);
      const before = totalViolations(mgr, 'FORGED_HANDLE');
      let tried = 0;
      for (let i = 0; i < 10000; i++) {
        const id = randomSafeInteger(next);
        if (liveIds.has(id)) continue;
        tried++;
        const r = mgr.validateSecurityBoundaries(id);
        if (r.valid || r.violations.length !== 1 || r.violations[0]?.code !== 'FORGED_HANDLE') {
          expect.fail(`random id ${id} was not rejected as FORGED_HANDLE: ${JSON.stringify(r)}`);
        }
      }
      expect(tried, 'ids tried').to.equal(10000);
      expect(totalViolations(mgr, 'FORGED_HANDLE') - before, 'each counted').to.equal(10000);
      expect(unscopedMetrics(mgr).violations['FORGED_HANDLE'], 'counted against the unscoped domain (DECISIONS)').to.equal(10000);
      for (const h of live) expect(mgr.validateSecurityBoundaries(h).valid, 'live ids still valid').to.equal(true);
    });

    it('rejects ids near a live id (id ± 2^k)', () => {
      const h = mgr.allocateResource('buffer', 16);
      for (let bit = 0; bit < 53; bit++) {
        const up = h.id + 2 ** bit;
        const forged = Number.isSafeInteger(up) ? up : h.id - 2 ** bit;
        const r = mgr.validateSecurityBoundaries(forged);
        expect(r.valid, `id with bit ${bit} flipped`).to.equal(false);
        expect(mgr.deallocateResource(forged), `deallocate with bit ${bit} flipped`).to.equal(false);
      }
      expect(mgr.validateSecurityBoundaries(h).valid, 'the real one is valid').to.equal(true);
    });

    it('reports the violation with a message and the handle id', () => {
      const r = mgr.validateSecurityBoundaries(4242);
      expect([r.valid, r.handleId, r.channelId], 'result').to.deep.equal([false, 4242, null]);
      expect(r.violations.length, 'one violation').to.equal(1);
      expect(r.violations[0]?.code, 'code').to.equal('FORGED_HANDLE');
      expect(r.violations[0]?.message, 'message').to.be.a('string').and.not.equal('');
    });

    it('a forged id presented to a scope counts against that channel', () => {
      const s = mgr.openChannel('a');
      expect(s.validate(4242).violations.map((v) => v.code), 'code').to.deep.equal(['FORGED_HANDLE']);
      expect(s.deallocate(4243), 'deallocate').to.equal(false);
      expectCode(() => s.track(4244), 'ERR_INVALID_HANDLE', 'track');
      expect(channelMetrics(mgr, 'a').violations['FORGED_HANDLE'], 'counted on a: validate, deallocate, track').to.equal(3);
    });
  });

  describe('STALE_HANDLE', () => {
    it('a freed id is stale everywhere', () => {
      const s = mgr.openChannel('a');
      const h = s.allocate('buffer', 16);
      expect(s.deallocate(h), 'freed').to.equal(true);
      const r = mgr.validateSecurityBoundaries(h);
      expect([r.valid, r.handleId], 'invalid').to.deep.equal([false, h.id]);
      expect(r.violations.map((v) => v.code), 'codes').to.deep.equal(['STALE_HANDLE']);
      expect(s.validate(h.id).violations.map((v) => v.code), 'through the scope').to.deep.equal(['STALE_HANDLE']);
      expectCode(() => mgr.trackResourceUsage(h), 'ERR_STALE_HANDLE', 'track');
      expectCode(() => s.track(h), 'ERR_STALE_HANDLE', 'scope track');
      expect(mgr.deallocateResource(h), 'double free').to.equal(false);
      expect(totalViolations(mgr, 'STALE_HANDLE'), 'counted: validate ×2, track ×2, double free').to.equal(5);
      expect(channelMetrics(mgr, 'a').violations['STALE_HANDLE'], 'all five count on a, the channel of the freed id').to.equal(5);
    });

    it('a freed id stays stale after its slot is reused', () => {
      const h = mgr.allocateResource('buffer', 16, 'a');
      mgr.deallocateResource(h);
      const reused: ResourceHandle[] = [];
      for (let i = 0; i < 50; i++) reused.push(mgr.allocateResource('buffer', 16, 'a'));
      expect(reused.some((x) => x.id === h.id), 'the id is not re-issued').to.equal(false);
      expect(mgr.validateSecurityBoundaries(h).violations.map((v) => v.code), 'still stale').to.deep.equal(['STALE_HANDLE']);
      expect(mgr.deallocateResource(h), 'cannot free the reuser').to.equal(false);
      for (const x of reused) expect(mgr.validateSecurityBoundaries(x).valid, 'reusers intact').to.equal(true);
    });
  });

  describe('CHANNEL_CLOSED', () => {
    it('an id freed by its channel close reports CHANNEL_CLOSED', () => {
      const h = mgr.allocateResource('buffer', 16, 'a');
      mgr.closeChannel('a');
      const r = mgr.validateSecurityBoundaries(h);
      expect([r.valid, r.handleId], 'invalid').to.deep.equal([false, h.id]);
      expect(r.violations.map((v) => v.code), 'codes').to.deep.equal(['CHANNEL_CLOSED']);
      expect(mgr.deallocateResource(h), 'deallocate').to.equal(false);
      expectCode(() => mgr.trackResourceUsage(h), 'ERR_STALE_HANDLE', 'track');
      expect(totalViolations(mgr, 'CHANNEL_CLOSED'), 'counted: validate, deallocate, track').to.equal(3);
    });
  });

  describe('CROSS_CHANNEL', () => {
    it('is counted per channel; scope.validate answers it as a forged id (no oracle)', () => {
      const h = mgr.openChannel('a').allocate('buffer', 16);
      const r = mgr.openChannel('b').validate(h);
      expect([r.valid, r.handleId, r.channelId, r.violations.map((v) => v.code)], 'result').to.deep.equal([false, h.id, null, ['FORGED_HANDLE']]);
      expect(channelMetrics(mgr, 'b').violations, 'b').to.deep.equal(violations({ CROSS_CHANNEL: 1 }));
      expect(channelMetrics(mgr, 'a').violations, 'a').to.deep.equal(violations({}));
      expect(mgr.validateSecurityBoundaries(h).valid, 'the manager itself may use it').to.equal(true);
    });
  });

  describe('BUFFER_DETACHED', () => {
    for (const [mode, options] of [
      ['deferred reuse, the default', {}],
      ['unsafeImmediateReuse', IMMEDIATE],
    ] as const) {
      it(`a live revocable handle whose buffer was detached by other code is reported; its memory returns once the moved-out store dies (${mode})`, async () => {
        mgr.close();
        mgr = new ResourceManager({ pools: SMALL_POOLS, channelDefaults: options });
        let h: ResourceHandle | undefined = mgr.allocateResource('buffer', 4096, 'a');
        const id = h.id;
        let buf: Buffer | undefined = bufferOf(h);
        const method = await detachExternally(buf.buffer as ArrayBuffer);
        expect(method, `Node ${process.version} can detach the handle's ArrayBuffer from outside`).to.not.equal(null);
        expect(buf.length, 'detached').to.equal(0);
        const r = mgr.validateSecurityBoundaries(h);
        expect([r.valid, r.handleId, r.channelId], `result (detached via ${String(method)})`).to.deep.equal([false, id, 'a']);
        expect(r.violations.map((v) => v.code), 'codes').to.deep.equal(['BUFFER_DETACHED']);
        expect(channelMetrics(mgr, 'a').violations['BUFFER_DETACHED'], 'counted on the owner').to.equal(1);
        expect(mgr.verifyCleanupCompletion(h), 'not released').to.equal(false);
        expect(mgr.deallocateResource(h), 'the owner can still free it').to.equal(true);
        expect(mgr.getResourceMetrics().totals.handles, 'no live handle').to.equal(0);
        // In both modes: the memory other code moved out may still be reached, so it waits.
        expect(mgr.verifyCleanupCompletion(id), 'parked while the moved-out memory may live').to.equal(false);
        expect(mgr.getResourceMetrics().revocation.pendingRelease, 'counted as pending').to.equal(1);
        h = undefined;
        buf = undefined;
        await collect();
        expect(mgr.verifyCleanupCompletion(id), 'released once nothing reaches the memory').to.equal(true);
        expect([poolMetrics(mgr, 's').liveSlots, mgr.getResourceMetrics().revocation.pendingRelease], 'slot back, nothing parked').to.deep.equal([0, 0]);
      });
    }

    it('an intact live handle is not reported (paired with the above)', () => {
      const h = mgr.allocateResource('buffer', 4096, 'a');
      expect(mgr.validateSecurityBoundaries(h).violations, 'no violations').to.deep.equal([]);
      expect(channelMetrics(mgr, 'a').violations, 'nothing counted').to.deep.equal(violations({}));
    });
  });

  describe('double free', () => {
    for (const [mode, options] of [
      ['deferred reuse, the default: the slot returns when collected', {}],
      ['unsafeImmediateReuse: the slot returns at once', IMMEDIATE],
    ] as const) {
      it(`returns false and never puts a slot in the free queue twice (${mode})`, async () => {
        mgr.close();
        mgr = new ResourceManager({ pools: SMALL_POOLS, channelDefaults: options });
        let a: ResourceHandle | undefined = mgr.allocateResource('buffer', 4096, 'a');
        expect(mgr.deallocateResource(a), 'first').to.equal(true);
        const afterFirst = stateOf(mgr);
        expect(mgr.deallocateResource(a), 'second, by handle').to.equal(false);
        expect(mgr.deallocateResource(a.id), 'third, by id').to.equal(false);
        expect(mgr.channel('a').deallocate(a), 'fourth, by scope').to.equal(false);
        a[Symbol.dispose]();
        expect(stateOf(mgr), 'pools and ledgers unchanged by the double frees').to.deep.equal(afterFirst);
        a = undefined;
        await collect();
        expect(poolMetrics(mgr, 's').liveSlots, 'the freed slot is back').to.equal(0);
        const retained = poolMetrics(mgr, 's').retainedFreeSlots;
        const b = bufferOf(mgr.allocateResource('buffer', 4096, 'a'));
        const c = bufferOf(mgr.allocateResource('buffer', 4096, 'a'));
        b.fill(0xb1);
        c.fill(0xc2);
        expect(filledWith(b, 0xb1), 'b keeps its bytes: b and c are distinct memory').to.equal(true);
        expect(filledWith(c, 0xc2), 'c keeps its bytes').to.equal(true);
        expect(poolMetrics(mgr, 's').liveSlots, 'two live slots').to.equal(2);
        expect(retained, 'retained count never exceeds the slots actually freed').to.be.at.most(8);
      });

      it(`many double frees never duplicate slots (${mode})`, async () => {
        mgr.close();
        mgr = new ResourceManager({ pools: SMALL_POOLS, channelDefaults: options });
        const hs: Array<ResourceHandle | undefined> = [];
        for (let i = 0; i < 8; i++) hs.push(mgr.allocateResource('buffer', 4096, 'a'));
        hs.forEach((h, i) => {
          mgr.deallocateResource(h!);
          mgr.deallocateResource(h!);
          mgr.deallocateResource(h!.id);
          hs[i] = undefined;
        });
        await collect();
        expect(poolMetrics(mgr, 's').liveSlots, 'every freed slot is back').to.equal(0);
        const bufs: Buffer[] = [];
        for (let i = 0; i < 16; i++) bufs.push(bufferOf(mgr.allocateResource('buffer', 4096, 'a')));
        bufs.forEach((b, i) => b.fill(i + 1));
        bufs.forEach((b, i) => expect(filledWith(b, i + 1), `buffer ${i} distinct`).to.equal(true));
        expect(poolMetrics(mgr, 's').liveSlots, 'sixteen live slots').to.equal(16);
      });
    }
  });

  describe('verifyCleanupCompletion', () => {
    it('unsafeImmediateReuse: is false while live, true after deallocation and after closeChannel, false for forged', () => {
      mgr.close();
      mgr = new ResourceManager({ pools: SMALL_POOLS, channelDefaults: IMMEDIATE });
      const h = mgr.allocateResource('buffer', 16, 'a');
      const g = mgr.allocateResource('buffer', 16, 'b');
      expect(mgr.verifyCleanupCompletion(h), 'live').to.equal(false);
      mgr.deallocateResource(h);
      expect(mgr.verifyCleanupCompletion(h), 'after deallocate').to.equal(true);
      mgr.closeChannel('b');
      expect(mgr.verifyCleanupCompletion(g), 'after closeChannel').to.equal(true);
      expect(mgr.verifyCleanupCompletion(123456789), 'forged').to.equal(false);
      expect(mgr.verifyCleanupCompletion(-1), 'malformed').to.equal(false);
    });

    it('deferred reuse (the default): is false while live and while the freed memory is parked, true once collected, false for forged', async () => {
      const ids = (() => {
        const h = mgr.allocateResource('buffer', 16, 'a');
        const g = mgr.allocateResource('buffer', 16, 'b');
        expect(mgr.verifyCleanupCompletion(h), 'live').to.equal(false);
        mgr.deallocateResource(h);
        expect(mgr.verifyCleanupCompletion(h), 'after deallocate: parked while its buffer lives').to.equal(false);
        mgr.closeChannel('b');
        expect(mgr.verifyCleanupCompletion(g), 'after closeChannel: parked while its buffer lives').to.equal(false);
        return [h.id, g.id];
      })();
      expect(mgr.getResourceMetrics().revocation.pendingRelease, 'both parked').to.equal(2);
      await collect();
      expect(ids.map((id) => mgr.verifyCleanupCompletion(id)), 'complete once collected').to.deep.equal([true, true]);
      expect(mgr.verifyCleanupCompletion(123456789), 'forged').to.equal(false);
      expect(mgr.verifyCleanupCompletion(-1), 'malformed').to.equal(false);
    });

    it('is false while a handle is in transit', async () => {
      const id = (() => {
        const h = mgr.allocateResource('buffer', 16);
        mgr.transferHandle(h);
        expect(mgr.verifyCleanupCompletion(h.id), 'in transit').to.equal(false);
        mgr.deallocateResource(mgr.adoptHandle(h.id));
        expect(mgr.verifyCleanupCompletion(h.id), 'after adopt + free: parked while the adopted buffer lives').to.equal(false);
        return h.id;
      })();
      await collect();
      expect(mgr.verifyCleanupCompletion(id), 'after adopt + free, once collected').to.equal(true);
    });
  });

  describe('hardened mode', () => {
    it('serves, validates and frees handles like the default mode', async () => {
      const hard = new ResourceManager({ pools: SMALL_POOLS, hardened: true });
      try {
        const id = (() => {
          const h = hard.allocateResource('buffer', 4096, 'a');
          const buf = bufferOf(h);
          buf.fill(0x5e);
          expect(filledWith(buf, 0x5e), 'the whole extent is usable').to.equal(true);
          expect(hard.validateSecurityBoundaries(h), 'valid, no canary or bounds violation').to.deep.equal({
            valid: true,
            handleId: h.id,
            channelId: 'a',
            violations: [],
          });
          expect(hard.deallocateResource(h), 'freed').to.equal(true);
          expect(hard.validateSecurityBoundaries(h).violations.map((v) => v.code), 'then stale').to.deep.equal(['STALE_HANDLE']);
          expect(hard.verifyCleanupCompletion(h), 'parked while its buffer lives (deferred reuse)').to.equal(false);
          return h.id;
        })();
        await collect();
        expect(hard.verifyCleanupCompletion(id), 'released once collected').to.equal(true);
      } finally {
        hard.close();
      }
    });
  });

  describe('counting and events', () => {
    it('counts every violation per channel and kind', () => {
      const a = mgr.openChannel('a');
      const b = mgr.openChannel('b');
      const ha = a.allocate('buffer', 16);
      const hb = b.allocate('buffer', 16);
      b.deallocate(hb);
      b.validate(hb); // STALE on b
      b.deallocate(hb); // STALE on b
      b.validate(ha); // CROSS on b
      b.deallocate(ha); // CROSS on b
      a.validate(999999); // FORGED on a
      expect(channelMetrics(mgr, 'a').violations, 'a').to.deep.equal(violations({ FORGED_HANDLE: 1 }));
      expect(channelMetrics(mgr, 'b').violations, 'b').to.deep.equal(violations({ STALE_HANDLE: 2, CROSS_CHANNEL: 2 }));
      expect(unscopedMetrics(mgr).violations, 'unscoped untouched').to.deep.equal(violations({}));
    });

    it("emits 'violation' and publishes isopool:violation", () => {
      const events: ViolationEvent[] = [];
      const published: unknown[] = [];
      const onMessage = (m: unknown): void => {
        published.push(m);
      };
      mgr.on('violation', (e: ViolationEvent) => events.push(e));
      diagnostics.subscribe('isopool:violation', onMessage);
      try {
        const s = mgr.openChannel('a');
        const h = s.allocate('buffer', 16);
        s.deallocate(h);
        s.validate(h);
        const want = [{ channelId: 'a', code: 'STALE_HANDLE', handleId: h.id }];
        expect(events, 'EventEmitter').to.deep.equal(want);
        expect(published, 'diagnostics_channel').to.deep.equal(want);
      } finally {
        diagnostics.unsubscribe('isopool:violation', onMessage);
      }
    });

    it("works with no 'violation' listener", () => {
      expect(mgr.listenerCount('violation'), 'no listener').to.equal(0);
      expect(mgr.deallocateResource(5555), 'no throw').to.equal(false);
    });
  });
});
