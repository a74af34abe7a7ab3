/**
 * Every public method of ResourceManager and ChannelScope: the happy path, paired with the input
 * it must refuse. Deeper cases live in the concept files (limits, security, lifecycle, ...).
 */
import { expect } from 'chai';
import { ResourceHandle, ResourceManager } from '../lib';
import { bufferOf, collect, collectUntil, expectCode, filledWith, KiB, MiB } from './helpers';

describe('allocation: every public method', () => {
  let mgr: ResourceManager;
  beforeEach(() => {
    mgr = new ResourceManager();
  });
  afterEach(() => {
    mgr.close();
  });

  describe('allocateResource', () => {
    it('returns an unscoped handle with a Buffer of exactly size bytes', () => {
      const h = mgr.allocateResource('buffer', 1000);
      expect(Number.isSafeInteger(h.id), 'id is a safe integer').to.equal(true);
      // id = table index * 2^32 + generation * 2^12 + check bits (native/core/handle_table.h)
      expect(Math.floor(h.id / 2 ** 32), "a fresh manager's first handle: table index 1").to.equal(1);
      expect(Math.floor(h.id / 2 ** 12) % 2 ** 20, "the entry's first generation").to.equal(1);
      expect(h.resourceType, 'resourceType').to.equal('buffer');
      expect(h.size, 'size is the requested size').to.equal(1000);
      expect(h.channelId, 'no channel id: unscoped (null)').to.equal(null);
      const buf = bufferOf(h);
      expect(Buffer.isBuffer(buf), 'a Node Buffer').to.equal(true);
      expect(buf.length, 'buffer length').to.equal(1000);
      expect(h.pool, 'pool (DECISIONS)').to.equal('small');
      expect(h.slotBytes, 'slotBytes (DECISIONS)').to.equal(4096);
      buf.fill(0x5a);
      expect(filledWith(buf, 0x5a), 'the buffer is writable memory').to.equal(true);
    });

    it('scopes the handle to a channel id', () => {
      const h = mgr.allocateResource('buffer', 10, 'tenant-1');
      expect(h.channelId, 'channelId').to.equal('tenant-1');
      expect(mgr.getResourceMetrics().channels['tenant-1']?.handles, 'auto-opened channel holds 1 handle').to.equal(1);
    });

    it('issues unique ids', () => {
      const ids = new Set<number>();
      const handles: ResourceHandle[] = [];
      for (let i = 0; i < 500; i++) {
        const h = mgr.allocateResource('buffer', 64, i % 2 === 0 ? 'a' : undefined);
        handles.push(h);
        ids.add(h.id);
      }
      for (const h of handles) mgr.deallocateResource(h);
      for (let i = 0; i < 500; i++) ids.add(mgr.allocateResource('buffer', 64).id);
      expect(ids.size, '1000 allocations, 1000 distinct ids (freed ids are not re-issued)').to.equal(1000);
    });

    it('refuses a bad size, an unknown type and a bad channel id', () => {
      expectCode(() => mgr.allocateResource('buffer', 0), 'ERR_INVALID_SIZE', 'size 0');
      expectCode(() => mgr.allocateResource('nope', 10), 'ERR_UNKNOWN_RESOURCE_TYPE', 'unknown type');
      expectCode(() => mgr.allocateResource('buffer', 10, ''), 'ERR_INVALID_ARGUMENT', 'empty channel id');
      expect(mgr.getResourceMetrics().totals.allocations, 'nothing allocated').to.equal(0);
    });
  });

  describe('deallocateResource', () => {
    it('frees by handle and by id, true once, then false', () => {
      const a = mgr.allocateResource('buffer', 100);
      const b = mgr.allocateResource('buffer', 100);
      expect(mgr.deallocateResource(a), 'by handle').to.equal(true);
      expect(mgr.deallocateResource(b.id), 'by id').to.equal(true);
      expect(mgr.deallocateResource(a), 'double free by handle').to.equal(false);
      expect(mgr.deallocateResource(b.id), 'double free by id').to.equal(false);
      const t = mgr.getResourceMetrics().totals;
      expect([t.handles, t.allocations, t.deallocations], 'handles, allocations, deallocations').to.deep.equal([0, 2, 2]);
    });

    it('refuses a non-handle argument', () => {
      expectCode(() => mgr.deallocateResource('1' as unknown as number), 'ERR_INVALID_ARGUMENT', 'string');
    });
  });

  describe('validateSecurityBoundaries', () => {
    it('accepts a live handle and rejects a forged id', () => {
      const h = mgr.allocateResource('buffer', 100, 'a');
      expect(mgr.validateSecurityBoundaries(h), 'live handle').to.deep.equal({
        valid: true,
        handleId: h.id,
        channelId: 'a',
        violations: [],
      });
      expect(mgr.validateSecurityBoundaries(h.id).valid, 'live id').to.equal(true);
      const forged = mgr.validateSecurityBoundaries(424242);
      expect(forged.valid, 'forged').to.equal(false);
      expect(forged.handleId, 'forged handleId').to.equal(424242);
      expect(forged.violations.map((v) => v.code), 'forged codes').to.deep.equal(['FORGED_HANDLE']);
    });

    it('refuses a non-handle argument', () => {
      expectCode(() => mgr.validateSecurityBoundaries({} as unknown as number), 'ERR_INVALID_ARGUMENT', 'object');
    });
  });

  describe('verifyResourceIsolation', () => {
    it('reports the channel ledger against its live handles', () => {
      mgr.allocateResource('buffer', 1000, 'a');
      mgr.allocateResource('buffer', 5000, 'a');
      const r = mgr.verifyResourceIsolation('a');
      expect(r.channelId, 'channelId').to.equal('a');
      expect(r.isolated, 'isolated').to.equal(true);
      expect(r.handleCount, 'handleCount').to.equal(2);
      expect(r.bytesInUse, 'charged bytes: 4096 + 65536').to.equal(4096 + 65536);
      expect(r.violations, 'no violations').to.deep.equal([]);
      expect(r.limits.maxBytes, 'limits: no maxBytes').to.equal(Infinity);
    });

    it('refuses an unknown channel', () => {
      expectCode(() => mgr.verifyResourceIsolation('never-opened'), 'ERR_UNKNOWN_CHANNEL', 'unknown channel');
    });
  });

  describe('trackResourceUsage', () => {
    it('reports requested and slot bytes', () => {
      const beforeAllocate = process.hrtime.bigint();
      const h = mgr.allocateResource('buffer', 5000, 'a');
      const afterAllocate = process.hrtime.bigint();
      while (process.hrtime.bigint() - afterAllocate < 2_000_000n); // 2 ms of age
      const beforeTrack = process.hrtime.bigint();
      const u = mgr.trackResourceUsage(h);
      const afterTrack = process.hrtime.bigint();
      expect(u.handleId, 'handleId').to.equal(h.id);
      expect(u.resourceType, 'resourceType').to.equal('buffer');
      expect(u.channelId, 'channelId').to.equal('a');
      expect(u.pool, 'pool').to.equal('medium');
      expect(u.requestedBytes, 'requestedBytes').to.equal(5000);
      expect(u.slotBytes, 'slotBytes').to.equal(65536);
      expect(u.internalFragmentation, 'internalFragmentation').to.equal(1 - 5000 / 65536);
      // native ages run at CLOCK_MONOTONIC's rate (the TSC calibrated against it), as process.hrtime
      expect(u.ageMs, 'ageMs: between the bounds measured around the two calls').to.be.within(
        Number(beforeTrack - afterAllocate) / 1e6,
        Number(afterTrack - beforeAllocate) / 1e6,
      );
      expect(u.allocationLatencyNs, 'allocationLatencyNs: a native allocation takes time, within the call').to.be.within(1, Number(afterAllocate - beforeAllocate));
      expect(u.channelBytesInUse, 'channelBytesInUse').to.equal(65536);
      expect(mgr.trackResourceUsage(h.id).requestedBytes, 'by id').to.equal(5000);
    });

    it('reports allocationLatencyNs 0 for a fast-lane allocation (README "Access modes": not timed)', () => {
      const scope = mgr.openChannel('v', { access: 'view' });
      const first = scope.allocate('buffer', 100);
      expect(mgr.trackResourceUsage(first).allocationLatencyNs, 'the native allocation is timed').to.be.above(0);
      const allocationsBefore = mgr.getResourceMetrics().fastLane.allocations; // (a metrics read applies the lane: before the free)
      scope.deallocate(first);
      const again = scope.allocate('buffer', 100);
      expect(mgr.getResourceMetrics().fastLane.allocations - allocationsBefore, 'served by the fast lane').to.equal(1);
      expect(mgr.trackResourceUsage(again).allocationLatencyNs, 'the lane allocation is not timed').to.equal(0);
    });

    it('refuses forged and freed handles', () => {
      const h = mgr.allocateResource('buffer', 10);
      mgr.deallocateResource(h);
      expectCode(() => mgr.trackResourceUsage(h), 'ERR_STALE_HANDLE', 'freed handle');
      expectCode(() => mgr.trackResourceUsage(777777), 'ERR_INVALID_HANDLE', 'forged id');
    });
  });

  describe('getResourceLimits', () => {
    it('returns Infinity for no limit and the manager maxAllocationSize', () => {
      expect(mgr.getResourceLimits('buffer'), 'defaults').to.deep.equal({
        resourceType: 'buffer',
        channelId: null,
        maxBytes: Infinity,
        maxHandles: Infinity,
        maxAllocationSize: 64 * MiB,
        softBytes: Infinity,
      });
    });

    it('refuses an unknown type', () => {
      expectCode(() => mgr.getResourceLimits('nope'), 'ERR_UNKNOWN_RESOURCE_TYPE', 'unknown type');
    });
  });

  describe('verifyCleanupCompletion', () => {
    it('is false while live and while the freed memory is parked (deferred reuse), true once collected', async () => {
      let h: ResourceHandle | undefined = mgr.allocateResource('buffer', 10);
      const id = h.id;
      expect(mgr.verifyCleanupCompletion(h), 'live').to.equal(false);
      mgr.deallocateResource(h);
      expect(mgr.verifyCleanupCompletion(h), 'freed, its buffer still reachable').to.equal(false);
      h = undefined;
      await collectUntil(() => mgr.getResourceMetrics().revocation.pendingRelease === 0);
      expect(mgr.verifyCleanupCompletion(id), 'freed and collected, by id').to.equal(true);
      expect(mgr.verifyCleanupCompletion(31337), 'forged').to.equal(false);
    });

    it('is true at once after a free with unsafeImmediateReuse', () => {
      const m = new ResourceManager({ channelDefaults: { unsafeImmediateReuse: true } });
      try {
        const h = m.allocateResource('buffer', 10);
        expect(m.verifyCleanupCompletion(h), 'live').to.equal(false);
        m.deallocateResource(h);
        expect(m.verifyCleanupCompletion(h), 'freed').to.equal(true);
        expect(m.verifyCleanupCompletion(h.id), 'freed, by id').to.equal(true);
      } finally {
        m.close();
      }
    });

    it('refuses a non-handle argument', () => {
      expectCode(() => mgr.verifyCleanupCompletion('x' as unknown as number), 'ERR_INVALID_ARGUMENT', 'string');
    });
  });

  describe('getResourceMetrics', () => {
    it('counts allocations, live handles and bytes', async () => {
      const live = mgr.allocateResource('buffer', 1000, 'a');
      (() => {
        const h = mgr.allocateResource('buffer', 2 * KiB);
        mgr.deallocateResource(h);
      })();
      expect(mgr.getResourceMetrics().revocation.pendingRelease, 'the freed memory is parked').to.equal(1);
      await collect(); // the freed buffer dies: its slot leaves the pools' live bytes
      const m = mgr.getResourceMetrics();
      expect(m.revocation.pendingRelease, 'nothing parked').to.equal(0);
      expect(m.totals.allocations, 'allocations').to.equal(2);
      expect(m.totals.deallocations, 'deallocations').to.equal(1);
      expect(m.totals.handles, 'handles').to.equal(1);
      expect(m.totals.bytesInUse, 'charged bytes').to.equal(4096);
      expect(m.totals.requestedBytes, 'requested bytes').to.equal(1000);
      expect(m.channels['a']?.bytesInUse, 'channel a charged').to.equal(4096);
      expect(mgr.deallocateResource(live), 'the live handle stayed live through the collection').to.equal(true);
    });
  });

  describe('openChannel / channel', () => {
    it('opens a channel and returns its scope; channel() finds it', () => {
      const s = mgr.openChannel('c1');
      expect(s.channelId, 'scope channelId').to.equal('c1');
      const h = mgr.channel('c1').allocate('buffer', 10);
      expect(h.channelId, 'allocated through channel()').to.equal('c1');
      expect(mgr.verifyResourceIsolation('c1').handleCount, 'same ledger').to.equal(1);
    });

    it('refuses a bad channel id and an unknown channel', () => {
      expectCode(() => mgr.openChannel(''), 'ERR_INVALID_ARGUMENT', 'empty id');
      expectCode(() => mgr.openChannel(7 as unknown as string), 'ERR_INVALID_ARGUMENT', 'number id');
      expectCode(() => mgr.channel('never'), 'ERR_UNKNOWN_CHANNEL', 'channel() of unknown');
    });
  });

  describe('closeChannel', () => {
    it('frees everything the channel holds and reports it', () => {
      const a = mgr.allocateResource('buffer', 1000, 'c');
      const b = mgr.allocateResource('buffer', 5000, 'c');
      const report = mgr.closeChannel('c');
      expect(report.channelId, 'channelId').to.equal('c');
      expect(report.count, 'count').to.equal(2);
      expect(report.bytes, 'charged bytes released').to.equal(4096 + 65536);
      const handles = report.handles
        .map((x) => ({ id: x.id, resourceType: x.resourceType, size: x.size }))
        .sort((x, y) => x.id - y.id);
      const expected = [a, b]
        .map((x) => ({ id: x.id, resourceType: 'buffer', size: x.size }))
        .sort((x, y) => x.id - y.id);
      expect(handles, 'handles').to.deep.equal(expected);
      expect(mgr.getResourceMetrics().totals.handles, 'no live handles').to.equal(0);
    });

    it('refuses an unknown and a closed channel', () => {
      expectCode(() => mgr.closeChannel('never'), 'ERR_UNKNOWN_CHANNEL', 'unknown');
      mgr.openChannel('c');
      mgr.closeChannel('c');
      expectCode(() => mgr.closeChannel('c'), 'ERR_CHANNEL_CLOSED', 'closed twice');
    });
  });

  describe('setResourceLimits', () => {
    it('sets a type total that getResourceLimits reports and allocation obeys', () => {
      mgr.setResourceLimits('buffer', { maxHandles: 1 });
      expect(mgr.getResourceLimits('buffer').maxHandles, 'maxHandles').to.equal(1);
      mgr.allocateResource('buffer', 10);
      expectCode(() => mgr.allocateResource('buffer', 10), 'ERR_RESOURCE_LIMIT', 'second handle');
    });

    it('refuses an unknown type and a bad value', () => {
      expectCode(() => mgr.setResourceLimits('nope', { maxBytes: 1 }), 'ERR_UNKNOWN_RESOURCE_TYPE', 'unknown type');
      expectCode(() => mgr.setResourceLimits('buffer', { maxBytes: -1 }), 'ERR_INVALID_ARGUMENT', 'negative');
    });
  });

  describe('defineResourceType', () => {
    it('adds a counter type', () => {
      mgr.defineResourceType('conn', { kind: 'counter' });
      const h = mgr.allocateResource('conn', 2);
      expect([h.resourceType, h.size, h.buffer], 'counter handle').to.deep.equal(['conn', 2, null]);
    });

    it('refuses a redefinition', () => {
      mgr.defineResourceType('conn', { kind: 'counter' });
      expectCode(() => mgr.defineResourceType('conn', { kind: 'counter' }), 'ERR_INVALID_ARGUMENT', 'redefine');
    });
  });

  describe('transferHandle / adoptHandle', () => {
    it('moves a handle through transit with the same memory, channel and charge', () => {
      mgr.openChannel('a', { unsafeImmediateReuse: true });
      const h = mgr.allocateResource('buffer', 1000, 'a');
      const buf = bufferOf(h);
      buf.fill(0x33);
      const id = mgr.transferHandle(h);
      expect(id, 'transfer returns the id').to.equal(h.id);
      expect(buf.length, 'the old buffer is detached (unsafeImmediateReuse; deferred reuse pins it instead)').to.equal(0);
      expect(mgr.getResourceMetrics().channels['a']?.bytesInUse, 'charge kept in transit').to.equal(4096);
      const adopted = mgr.adoptHandle(id);
      expect([adopted.id, adopted.channelId, adopted.size, adopted.resourceType], 'same handle').to.deep.equal([
        h.id,
        'a',
        1000,
        'buffer',
      ]);
      expect(filledWith(bufferOf(adopted), 0x33), 'same bytes (zero-copy)').to.equal(true);
      expect(mgr.getResourceMetrics().channels['a']?.bytesInUse, 'charge unchanged').to.equal(4096);
      expect(mgr.deallocateResource(adopted), 'adopted handle frees').to.equal(true);
    });

    it('refuses to adopt twice, to adopt a forged or freed id, and to transfer twice', () => {
      const h = mgr.allocateResource('buffer', 10);
      const id = mgr.transferHandle(h);
      expectCode(() => mgr.transferHandle(id), 'ERR_INVALID_HANDLE', 'transfer while in transit');
      const adopted = mgr.adoptHandle(id);
      expectCode(() => mgr.adoptHandle(id), 'ERR_INVALID_HANDLE', 'adopt twice');
      expectCode(() => mgr.adoptHandle(99999999), 'ERR_INVALID_HANDLE', 'adopt forged');
      mgr.deallocateResource(adopted);
      expectCode(() => mgr.adoptHandle(id), 'ERR_STALE_HANDLE', 'adopt freed');
      expectCode(() => mgr.transferHandle(id), 'ERR_STALE_HANDLE', 'transfer freed');
    });
  });

  describe('ChannelScope', () => {
    it('allocate / deallocate / validate / track / limits / close work on its own handles', () => {
      const s = mgr.openChannel('s1');
      const h = s.allocate('buffer', 5000);
      expect(h.channelId, 'channelId').to.equal('s1');
      expect(bufferOf(h).length, 'buffer length').to.equal(5000);
      expect(s.validate(h), 'validate').to.deep.equal({ valid: true, handleId: h.id, channelId: 's1', violations: [] });
      expect(s.track(h).slotBytes, 'track').to.equal(65536);
      expect(s.limits('buffer'), 'limits').to.deep.equal(mgr.getResourceLimits('buffer', 's1'));
      expect(s.deallocate(h), 'deallocate').to.equal(true);
      expect(s.deallocate(h), 'deallocate twice').to.equal(false);
      s.allocate('buffer', 10);
      const report = s.close();
      expect([report.channelId, report.count, report.bytes], 'close report').to.deep.equal(['s1', 1, 4096]);
    });

    it('refuses bad input and foreign handles', () => {
      const s = mgr.openChannel('s1');
      const other = mgr.openChannel('s2').allocate('buffer', 10);
      expectCode(() => s.allocate('buffer', NaN), 'ERR_INVALID_SIZE', 'NaN');
      expectCode(() => s.allocate('nope', 1), 'ERR_UNKNOWN_RESOURCE_TYPE', 'unknown type');
      expect(s.deallocate(other), 'foreign deallocate').to.equal(false);
      expect(s.validate(other).valid, 'foreign validate').to.equal(false);
      expectCode(() => s.track(other), 'ERR_INVALID_HANDLE', 'foreign track: a forged id\'s error');
      expectCode(() => s.limits('nope'), 'ERR_UNKNOWN_RESOURCE_TYPE', 'limits of unknown type');
      s.close();
      expectCode(() => s.close(), 'ERR_CHANNEL_CLOSED', 'close twice');
      expectCode(() => s.allocate('buffer', 1), 'ERR_CHANNEL_CLOSED', 'allocate after close');
    });
  });

  describe('close', () => {
    it('closes the manager; later operations throw ERR_MANAGER_CLOSED', () => {
      const m2 = new ResourceManager();
      m2.allocateResource('buffer', 10);
      m2.close();
      expectCode(() => m2.allocateResource('buffer', 10), 'ERR_MANAGER_CLOSED', 'allocate after close');
      m2.close();
    });
  });
});
