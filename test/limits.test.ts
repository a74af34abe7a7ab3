/**
 * Limits at every scope (SPEC §1 "Limits"): a type's total, a channel's total ('*'), a type within
 * a channel; channelDefaults; maxHandles; maxAllocationSize per scope; softBytes pressure. A
 * refusal throws ResourceLimitError with exact fields and leaves usage unchanged.
 */
import { expect } from 'chai';
import * as diagnostics from 'node:diagnostics_channel';
import { ResourceHandle, ResourceManager } from '../lib';
import { MiB, channelMetrics, expectCode, expectLimitError, expectUnchanged, stateOf } from './helpers';

interface PressureEvent {
  channelId: string | null;
  resourceType: string;
  scope: string;
  bytesInUse: number;
  softBytes: number;
}

describe('limits', () => {
  let mgr: ResourceManager;
  beforeEach(() => {
    mgr = new ResourceManager();
  });
  afterEach(() => {
    mgr.close();
  });

  describe("a type's total", () => {
    it('covers every channel plus the unscoped domain', () => {
      mgr.setResourceLimits('buffer', { maxBytes: 3 * 4096 });
      mgr.allocateResource('buffer', 4096, 'a');
      mgr.allocateResource('buffer', 4096, 'b');
      mgr.allocateResource('buffer', 4096);
      for (const ch of ['a', 'b', 'c', undefined]) {
        const before = stateOf(mgr);
        const err = expectLimitError(() => mgr.allocateResource('buffer', 4096, ch), `4th allocation (${String(ch)})`);
        expect([err.limit, err.requested, err.inUse, err.scope], 'limit, requested, inUse, scope').to.deep.equal([
          3 * 4096,
          4096,
          3 * 4096,
          'type',
        ]);
        if (ch !== 'c') expect(stateOf(mgr), 'usage unchanged').to.deep.equal(before);
      }
      expect(mgr.getResourceMetrics().totals.bytesInUse, 'still at the limit').to.equal(3 * 4096);
    });

    it('admits up to the limit exactly, and again after a free', () => {
      mgr.setResourceLimits('buffer', { maxBytes: 2 * 4096 });
      const a = mgr.allocateResource('buffer', 4096);
      mgr.allocateResource('buffer', 4096);
      expectLimitError(() => mgr.allocateResource('buffer', 1), 'over');
      mgr.deallocateResource(a);
      expect(mgr.allocateResource('buffer', 4096).size, 'fits again after a free').to.equal(4096);
    });

    it("reports requested as the refused allocation's own charge, not a previous one's", () => {
      mgr.setResourceLimits('buffer', { maxBytes: 8192 });
      mgr.allocateResource('buffer', 100);
      const big = expectLimitError(() => mgr.allocateResource('buffer', 5000), 'a 64 KiB slot over 8 KiB');
      expect([big.limit, big.requested, big.inUse], 'charged 65536').to.deep.equal([8192, 65536, 4096]);
      mgr.allocateResource('buffer', 4096);
      mgr.defineResourceType('conn', { kind: 'counter', limits: { maxBytes: 5 } });
      mgr.allocateResource('conn', 4);
      const units = expectLimitError(() => mgr.allocateResource('conn', 3), '4 + 3 units over 5');
      expect([units.limit, units.requested, units.inUse], 'requested 3 units').to.deep.equal([5, 3, 4]);
    });

    it('counts refusals (only the refusal counters move)', () => {
      mgr.setResourceLimits('buffer', { maxBytes: 4096 });
      mgr.allocateResource('buffer', 4096, 'a');
      const refusals = mgr.getResourceMetrics().totals.refusals;
      expectLimitError(() => mgr.allocateResource('buffer', 4096, 'a'), 'over');
      expect(mgr.getResourceMetrics().totals.refusals, 'totals.refusals').to.equal(refusals + 1);
      expect(channelMetrics(mgr, 'a').limitRejections, 'channel limitRejections').to.equal(1);
    });

    it('maxBytes 0 blocks everything; Infinity lifts the limit', () => {
      mgr.setResourceLimits('buffer', { maxBytes: 0 });
      const err = expectLimitError(() => mgr.allocateResource('buffer', 1), 'maxBytes 0');
      expect([err.limit, err.inUse], 'limit 0, inUse 0').to.deep.equal([0, 0]);
      mgr.setResourceLimits('buffer', { maxBytes: Infinity });
      expect(mgr.getResourceLimits('buffer').maxBytes, 'lifted').to.equal(Infinity);
      expect(mgr.allocateResource('buffer', 1).size, 'allocates again').to.equal(1);
    });
  });

  describe("a channel's total ('*')", () => {
    it('setResourceLimits("*", l, ch) limits the channel over all types', () => {
      mgr.defineResourceType('conn', { kind: 'counter' });
      mgr.openChannel('a');
      mgr.setResourceLimits('*', { maxBytes: 2 * 4096 }, 'a');
      mgr.allocateResource('buffer', 4096, 'a');
      mgr.allocateResource('buffer', 4096, 'a');
      const err = expectLimitError(() => mgr.allocateResource('buffer', 4096, 'a'), 'third in a');
      expect([err.limit, err.requested, err.inUse, err.scope], 'fields').to.deep.equal([2 * 4096, 4096, 2 * 4096, 'channel']);
      expectLimitError(() => mgr.allocateResource('conn', 1, 'a'), 'a counter in a full channel');
      expect(mgr.allocateResource('buffer', 4096, 'b').channelId, 'another channel is not limited').to.equal('b');
      expect(mgr.allocateResource('buffer', 4096).channelId, 'the unscoped domain is not limited').to.equal(null);
    });

    it('openChannel(ch, {limits: {"*": l}}) sets it at open', () => {
      mgr.openChannel('a', { limits: { '*': { maxBytes: 4096, maxHandles: 5 } } });
      expect(mgr.getResourceLimits('*', 'a').maxBytes, 'reported').to.equal(4096);
      mgr.allocateResource('buffer', 100, 'a');
      const err = expectLimitError(() => mgr.allocateResource('buffer', 100, 'a'), 'second 4 KiB slot');
      expect([err.limit, err.inUse, err.scope], 'fields').to.deep.equal([4096, 4096, 'channel']);
    });

    it('charges slot bytes: a 5000-byte request costs 65536', () => {
      mgr.openChannel('a', { limits: { '*': { maxBytes: 100000 } } });
      const h = mgr.allocateResource('buffer', 5000, 'a');
      const u = mgr.trackResourceUsage(h);
      expect([u.requestedBytes, u.slotBytes, u.channelBytesInUse], 'requested, slot, channel').to.deep.equal([5000, 65536, 65536]);
      const err = expectLimitError(() => mgr.allocateResource('buffer', 5000, 'a'), 'second 5000 (10000 requested < 100000)');
      expect([err.limit, err.inUse, err.scope], 'fields').to.deep.equal([100000, 65536, 'channel']);
      expect(mgr.allocateResource('buffer', 4096, 'a').slotBytes, 'a 4 KiB slot still fits').to.equal(4096);
      expect(channelMetrics(mgr, 'a').bytesInUse, 'charged').to.equal(65536 + 4096);
    });
  });

  describe('a type within a channel', () => {
    it('setResourceLimits(type, l, ch) limits only that channel', () => {
      mgr.openChannel('a');
      mgr.setResourceLimits('buffer', { maxBytes: 4096 }, 'a');
      mgr.allocateResource('buffer', 4096, 'a');
      const before = stateOf(mgr);
      const err = expectLimitError(() => mgr.allocateResource('buffer', 4096, 'a'), 'second in a');
      expect([err.limit, err.requested, err.inUse, err.scope], 'fields').to.deep.equal([4096, 4096, 4096, 'channel-type']);
      expect(stateOf(mgr), 'usage unchanged').to.deep.equal(before);
      expect(mgr.allocateResource('buffer', 4096, 'b').size, 'b unaffected').to.equal(4096);
    });

    it('openChannel(ch, {limits: {[type]: l}}) sets it at open, and other types are free', () => {
      mgr.defineResourceType('conn', { kind: 'counter' });
      mgr.openChannel('a', { limits: { conn: { maxBytes: 2 } } });
      mgr.allocateResource('conn', 2, 'a');
      const err = expectLimitError(() => mgr.allocateResource('conn', 1, 'a'), 'third unit');
      expect([err.limit, err.requested, err.inUse, err.scope], 'fields').to.deep.equal([2, 1, 2, 'channel-type']);
      expect(mgr.allocateResource('buffer', 4096, 'a').size, 'buffer is not limited').to.equal(4096);
    });
  });

  describe('channelDefaults.limits', () => {
    it('seeds every new channel with its own ledger', () => {
      const m2 = new ResourceManager({ channelDefaults: { limits: { '*': { maxHandles: 2 } } } });
      try {
        for (const ch of ['a', 'b']) {
          m2.allocateResource('buffer', 10, ch);
          m2.allocateResource('buffer', 10, ch);
          const err = expectLimitError(() => m2.allocateResource('buffer', 10, ch), `third handle in ${ch}`);
          expect([err.limit, err.inUse, err.scope], 'fields').to.deep.equal([2, 2, 'channel']);
        }
        m2.openChannel('c');
        expect(m2.getResourceLimits('*', 'c').maxHandles, 'explicitly opened channel seeded too').to.equal(2);
        for (let i = 0; i < 3; i++) m2.allocateResource('buffer', 10);
        expect(m2.getResourceMetrics().totals.handles, 'the unscoped domain is not a channel').to.equal(7);
      } finally {
        m2.close();
      }
    });

    it('openChannel limits override the defaults for that channel', () => {
      const m2 = new ResourceManager({ channelDefaults: { limits: { buffer: { maxBytes: 4096 } } } });
      try {
        m2.openChannel('big', { limits: { buffer: { maxBytes: 3 * 4096 } } });
        for (let i = 0; i < 3; i++) m2.allocateResource('buffer', 4096, 'big');
        m2.allocateResource('buffer', 4096, 'small');
        expectLimitError(() => m2.allocateResource('buffer', 4096, 'small'), 'default still applies elsewhere');
      } finally {
        m2.close();
      }
    });
  });

  describe('maxHandles', () => {
    it('limits live handles at each scope', () => {
      mgr.openChannel('a');
      mgr.setResourceLimits('buffer', { maxHandles: 1 }, 'a');
      const h = mgr.allocateResource('buffer', 1, 'a');
      const err = expectLimitError(() => mgr.allocateResource('buffer', 1, 'a'), 'second handle');
      expect([err.limit, err.inUse, err.scope], 'fields').to.deep.equal([1, 1, 'channel-type']);
      mgr.deallocateResource(h);
      expect(mgr.allocateResource('buffer', 1, 'a').size, 'after a free').to.equal(1);
      mgr.setResourceLimits('buffer', { maxHandles: 2 });
      mgr.allocateResource('buffer', 1);
      const err2 = expectLimitError(() => mgr.allocateResource('buffer', 1, 'b'), 'type total handles');
      expect([err2.limit, err2.inUse, err2.scope], 'fields').to.deep.equal([2, 2, 'type']);
    });
  });

  describe('maxAllocationSize per scope', () => {
    it('refuses a single allocation above a channel-type maxAllocationSize', () => {
      mgr.openChannel('a');
      mgr.setResourceLimits('buffer', { maxAllocationSize: 8192 }, 'a');
      expect(mgr.getResourceLimits('buffer', 'a').maxAllocationSize, 'reported').to.equal(8192);
      expect(mgr.allocateResource('buffer', 8192, 'a').size, 'at the limit').to.equal(8192);
      expectUnchanged(
        mgr,
        () => {
          expectCode(() => mgr.allocateResource('buffer', 8193, 'a'), 'ERR_RESOURCE_LIMIT', 'above');
        },
        'maxAllocationSize',
      );
      expect(mgr.allocateResource('buffer', 8193, 'b').size, 'other channel unaffected').to.equal(8193);
    });

    it('refuses above a type-total and a channel-total maxAllocationSize', () => {
      mgr.setResourceLimits('buffer', { maxAllocationSize: MiB });
      expectCode(() => mgr.allocateResource('buffer', MiB + 1), 'ERR_RESOURCE_LIMIT', 'type total');
      mgr.openChannel('a', { limits: { '*': { maxAllocationSize: 4096 } } });
      expect(mgr.getResourceLimits('buffer', 'a').maxAllocationSize, 'tightest').to.equal(4096);
      expectCode(() => mgr.allocateResource('buffer', 4097, 'a'), 'ERR_RESOURCE_LIMIT', 'channel total');
      expect(mgr.allocateResource('buffer', 4096, 'a').size, 'at the limit').to.equal(4096);
    });
  });

  describe('softBytes', () => {
    it("emits 'pressure' when crossed, and the allocation succeeds", () => {
      const events: PressureEvent[] = [];
      mgr.on('pressure', (e: PressureEvent) => events.push(e));
      mgr.openChannel('a');
      mgr.setResourceLimits('buffer', { softBytes: 6000 }, 'a');
      mgr.allocateResource('buffer', 4096, 'a');
      expect(events.length, 'below softBytes: no event').to.equal(0);
      const h = mgr.allocateResource('buffer', 4096, 'a');
      expect(h.size, 'the allocation succeeded').to.equal(4096);
      expect(events, 'one pressure event').to.deep.equal([
        { channelId: 'a', resourceType: 'buffer', scope: 'channel-type', bytesInUse: 8192, softBytes: 6000 },
      ]);
      expect(channelMetrics(mgr, 'a').bytesInUse, 'charged').to.equal(8192);
    });

    it('publishes isopool:pressure on diagnostics_channel for a channel total', () => {
      const seen: unknown[] = [];
      const onMessage = (msg: unknown): void => {
        seen.push(msg);
      };
      diagnostics.subscribe('isopool:pressure', onMessage);
      try {
        mgr.openChannel('a', { limits: { '*': { softBytes: 4096 } } });
        mgr.allocateResource('buffer', 4096, 'a');
        expect(seen.length, 'at softBytes: not crossed').to.equal(0);
        mgr.allocateResource('buffer', 1, 'a');
        expect(seen, 'one message').to.deep.equal([
          { channelId: 'a', resourceType: 'buffer', scope: 'channel', bytesInUse: 8192, softBytes: 4096 },
        ]);
      } finally {
        diagnostics.unsubscribe('isopool:pressure', onMessage);
      }
    });

    it('publishes isopool:limit on a refusal', () => {
      const seen: unknown[] = [];
      const onMessage = (msg: unknown): void => {
        seen.push(msg);
      };
      diagnostics.subscribe('isopool:limit', onMessage);
      try {
        mgr.openChannel('a');
        mgr.setResourceLimits('buffer', { maxBytes: 4096 }, 'a');
        mgr.allocateResource('buffer', 4096, 'a');
        expectLimitError(() => mgr.allocateResource('buffer', 4096, 'a'), 'over');
        expect(seen, 'one message').to.deep.equal([
          { channelId: 'a', resourceType: 'buffer', scope: 'channel-type', limit: 4096, requested: 4096, inUse: 4096 },
        ]);
      } finally {
        diagnostics.unsubscribe('isopool:limit', onMessage);
      }
    });
  });

  describe('getResourceLimits', () => {
    it('returns the tightest limit field by field, with resourceType and channelId', () => {
      mgr.setResourceLimits('buffer', { maxBytes: 100000, maxHandles: 10 });
      mgr.openChannel('a', { limits: { '*': { maxBytes: 50000, softBytes: 40000 } } });
      mgr.setResourceLimits('buffer', { maxHandles: 5, maxAllocationSize: 8192, maxBytes: 70000 }, 'a');
      expect(mgr.getResourceLimits('buffer', 'a'), 'buffer in a').to.deep.equal({
        resourceType: 'buffer',
        channelId: 'a',
        maxBytes: 50000,
        maxHandles: 5,
        maxAllocationSize: 8192,
        softBytes: 40000,
      });
      expect(mgr.getResourceLimits('buffer'), 'buffer total').to.deep.equal({
        resourceType: 'buffer',
        channelId: null,
        maxBytes: 100000,
        maxHandles: 10,
        maxAllocationSize: 64 * MiB,
        softBytes: Infinity,
      });
      mgr.openChannel('b');
      expect(mgr.getResourceLimits('buffer', 'b'), 'buffer in an unlimited channel: the type total').to.deep.equal({
        resourceType: 'buffer',
        channelId: 'b',
        maxBytes: 100000,
        maxHandles: 10,
        maxAllocationSize: 64 * MiB,
        softBytes: Infinity,
      });
      expect(mgr.channel('a').limits('buffer'), 'scope.limits agrees').to.deep.equal(mgr.getResourceLimits('buffer', 'a'));
    });

    it('refuses limits of a channel that was never opened or is closed', () => {
      expectCode(() => mgr.setResourceLimits('buffer', { maxBytes: 1 }, 'never'), 'ERR_UNKNOWN_CHANNEL', 'set, unknown');
      expectCode(() => mgr.getResourceLimits('buffer', 'never'), 'ERR_UNKNOWN_CHANNEL', 'get, unknown');
      expectCode(() => mgr.channel('never'), 'ERR_UNKNOWN_CHANNEL', 'and it was not opened');
      mgr.openChannel('c');
      mgr.closeChannel('c');
      expectCode(() => mgr.setResourceLimits('*', { maxBytes: 1 }, 'c'), 'ERR_CHANNEL_CLOSED', 'set, closed');
      expectCode(() => mgr.getResourceLimits('buffer', 'c'), 'ERR_CHANNEL_CLOSED', 'get, closed');
    });

    it('setResourceLimits changes only the fields given', () => {
      mgr.setResourceLimits('buffer', { maxBytes: 1000 * 4096 });
      mgr.setResourceLimits('buffer', { maxHandles: 7 });
      const l = mgr.getResourceLimits('buffer');
      expect([l.maxBytes, l.maxHandles], 'both kept').to.deep.equal([1000 * 4096, 7]);
    });

    it('a refusal under the tightest limit leaves every handle live', () => {
      mgr.openChannel('a');
      mgr.setResourceLimits('*', { maxHandles: 3 }, 'a');
      const hs: ResourceHandle[] = [];
      for (let i = 0; i < 3; i++) hs.push(mgr.allocateResource('buffer', 64, 'a'));
      expectLimitError(() => mgr.allocateResource('buffer', 64, 'a'), 'fourth');
      for (const h of hs) expect(mgr.validateSecurityBoundaries(h).valid, 'still live').to.equal(true);
      expect(mgr.verifyResourceIsolation('a').handleCount, 'three').to.equal(3);
    });
  });
});
