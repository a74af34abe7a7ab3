/**
 * Channels (SPEC §1 "Channels", DECISIONS "Channels"): auto-open, openChannel semantics, scopes,
 * closeChannel reports, closed ids, reopening with a fresh ledger. A close revokes the channel's
 * buffers on `unsafeImmediateReuse` channels; under deferred reuse (the default) it leaves them
 * attached and their memory parked until they are collected.
 */
import { expect } from 'chai';
import { ResourceHandle, ResourceManager } from '../lib';
import { bufferOf, channelMetrics, collectUntil, expectCode, unscopedMetrics, violations } from './helpers';

const IMMEDIATE = { unsafeImmediateReuse: true };

describe('channels', () => {
  let mgr: ResourceManager;
  beforeEach(() => {
    mgr = new ResourceManager({ leakDetection: 'paranoid' });
  });
  afterEach(() => {
    mgr.close();
  });

  it('auto-opens an unknown channel on allocation by default', () => {
    const h = mgr.allocateResource('buffer', 10, 'auto');
    expect(h.channelId, 'channelId').to.equal('auto');
    expect(mgr.channel('auto').channelId, 'channel() finds it').to.equal('auto');
    expect(channelMetrics(mgr, 'auto'), 'metrics').to.deep.equal({
      bytesInUse: 4096,
      handles: 1,
      peakBytes: 4096,
      limitRejections: 0,
      violations: violations({}),
    });
  });

  it('undoes an auto-open when the allocation is refused: the channel never existed', () => {
    mgr.setResourceLimits('buffer', { maxBytes: 4096 });
    mgr.allocateResource('buffer', 10);
    const before = Object.keys(mgr.getResourceMetrics().channels);
    expectCode(() => mgr.allocateResource('buffer', 10, 'refused'), 'ERR_RESOURCE_LIMIT', 'type total refuses');
    expect(Object.keys(mgr.getResourceMetrics().channels), 'no channel left behind').to.deep.equal(before);
    expectCode(() => mgr.channel('refused'), 'ERR_UNKNOWN_CHANNEL', 'unknown, not closed');
    mgr.setResourceLimits('buffer', { maxBytes: Infinity });
    expect(mgr.allocateResource('buffer', 10, 'refused').channelId, 'auto-opens later').to.equal('refused');
  });

  it('refuses an unknown channel with autoOpenChannels: false, until openChannel', () => {
    const strict = new ResourceManager({ autoOpenChannels: false });
    try {
      expectCode(() => strict.allocateResource('buffer', 10, 'x'), 'ERR_UNKNOWN_CHANNEL', 'allocate');
      expectCode(() => strict.channel('x'), 'ERR_UNKNOWN_CHANNEL', 'channel()');
      const s = strict.openChannel('x');
      expect(s.allocate('buffer', 10).channelId, 'after open').to.equal('x');
      expect(strict.allocateResource('buffer', 10).channelId, 'unscoped still works').to.equal(null);
    } finally {
      strict.close();
    }
  });

  it('keeps the unscoped domain out of channels and reports it as unscoped', () => {
    mgr.allocateResource('buffer', 5000);
    const m = mgr.getResourceMetrics();
    expect(Object.keys(m.channels), 'no channel').to.deep.equal([]);
    expect(unscopedMetrics(mgr).bytesInUse, 'unscoped charged').to.equal(65536);
    expect(unscopedMetrics(mgr).handles, 'unscoped handles').to.equal(1);
  });

  describe('openChannel', () => {
    it('on an open channel without options returns its scope, same ledger', () => {
      const s1 = mgr.openChannel('a', { limits: { '*': { maxHandles: 1 } } });
      s1.allocate('buffer', 10);
      const s2 = mgr.openChannel('a');
      expect(s2.channelId, 'same channel').to.equal('a');
      expectCode(() => s2.allocate('buffer', 10), 'ERR_RESOURCE_LIMIT', 'same limits and ledger');
      expect(mgr.verifyResourceIsolation('a').handleCount, 'one handle').to.equal(1);
    });

    it('on an open channel with options throws ERR_INVALID_ARGUMENT and changes nothing', () => {
      mgr.openChannel('a', { limits: { '*': { maxHandles: 1 } } });
      expectCode(() => mgr.openChannel('a', { limits: { '*': { maxHandles: 5 } } }), 'ERR_INVALID_ARGUMENT', 'limits');
      expectCode(() => mgr.openChannel('a', { access: 'view' }), 'ERR_INVALID_ARGUMENT', 'access');
      expect(mgr.getResourceLimits('*', 'a').maxHandles, 'limits unchanged').to.equal(1);
      const h = mgr.allocateResource('buffer', 4096, 'a');
      expect(bufferOf(h).buffer.byteLength, 'still revocable: own ArrayBuffer').to.equal(4096);
    });

    it('opens a view channel whose buffers are views into a slab', () => {
      mgr.openChannel('v', { access: 'view' });
      const h = mgr.allocateResource('buffer', 1000, 'v');
      const buf = bufferOf(h);
      expect(buf.length, 'length').to.equal(1000);
      expect(buf.buffer.byteLength, 'a slab is larger than the handle').to.be.greaterThan(1000);
    });
  });

  describe('closeChannel', () => {
    /**
     * Closes channel 'c' (three live handles, one freed before) and checks the report, the closed
     * handles and the other channel. `afterClose` gets the closed handles' buffers and handles.
     * Returns the closed handles' ids only.
     */
    function closeAndReport(afterClose: (bufs: Buffer[], hs: ResourceHandle[]) => void): number[] {
      const hs: ResourceHandle[] = [
        mgr.allocateResource('buffer', 1000, 'c'),
        mgr.allocateResource('buffer', 5000, 'c'),
        mgr.allocateResource('buffer', 70000, 'c'),
      ];
      const freed = mgr.allocateResource('buffer', 10, 'c');
      mgr.deallocateResource(freed);
      const other = mgr.allocateResource('buffer', 10, 'other');
      const bufs = hs.map(bufferOf);
      bufs.forEach((b, i) => b.fill(i + 1));
      const report = mgr.closeChannel('c');
      expect(report.channelId, 'channelId').to.equal('c');
      expect(report.count, 'count').to.equal(3);
      expect(report.bytes, 'charged bytes').to.equal(4096 + 65536 + 1048576);
      const got = report.handles.map((x) => ({ id: x.id, resourceType: x.resourceType, size: x.size })).sort((x, y) => x.id - y.id);
      const want = hs.map((x) => ({ id: x.id, resourceType: 'buffer', size: x.size })).sort((x, y) => x.id - y.id);
      expect(got, 'handles').to.deep.equal(want);
      for (const x of report.handles) {
        expect(x.site, 'paranoid mode knows every allocation site').to.be.a('string');
        expect((x.site as string).length, 'site not empty').to.be.greaterThan(0);
      }
      afterClose(bufs, hs);
      for (const h of hs) {
        expect(mgr.validateSecurityBoundaries(h).violations.map((v) => v.code), 'closed handle').to.deep.equal(['CHANNEL_CLOSED']);
        expect(mgr.deallocateResource(h), 'cannot be freed again').to.equal(false);
      }
      expect(mgr.validateSecurityBoundaries(other).valid, 'other channel untouched').to.equal(true);
      const m = mgr.getResourceMetrics();
      expect([m.totals.handles, m.totals.bytesInUse], 'only the other handle remains').to.deep.equal([1, 4096]);
      return hs.map((h) => h.id);
    }

    it('frees every live handle, leaves buffers attached (deferred reuse, the default) and reports count, bytes, handles and sites', async () => {
      const ids = closeAndReport((bufs, hs) => {
        bufs.forEach((b, i) => {
          expect([b.length, b.buffer.byteLength], `buffer ${i}: not detached`).to.deep.equal([hs[i]!.size, hs[i]!.size]);
          expect(b.every((x) => x === i + 1), `buffer ${i}: same bytes`).to.equal(true);
        });
        for (const h of hs) expect(mgr.verifyCleanupCompletion(h), 'memory parked while the buffer lives').to.equal(false);
      });
      expect(mgr.getResourceMetrics().revocation.pendingRelease, 'the three closed and the one freed before are parked').to.equal(4);
      // The collector decides when each buffer dies: give it turns until all four are released.
      await collectUntil(() => mgr.getResourceMetrics().revocation.pendingRelease === 0);
      expect(mgr.getResourceMetrics().revocation.pendingRelease, 'nothing parked once collected').to.equal(0);
      for (const id of ids) expect(mgr.verifyCleanupCompletion(id), 'cleanup complete once collected').to.equal(true);
    });

    it('frees every live handle, revokes buffers (unsafeImmediateReuse) and reports count, bytes, handles and sites', () => {
      mgr.close();
      mgr = new ResourceManager({ leakDetection: 'paranoid', channelDefaults: IMMEDIATE });
      closeAndReport((bufs, hs) => {
        bufs.forEach((b, i) => expect(b.length, `buffer ${i} revoked`).to.equal(0));
        for (const h of hs) expect(mgr.verifyCleanupCompletion(h), 'cleanup complete').to.equal(true);
      });
      expect(mgr.getResourceMetrics().revocation.pendingRelease, 'nothing parked').to.equal(0);
    });

    it('reports an empty close', () => {
      mgr.openChannel('e');
      expect(mgr.closeChannel('e'), 'empty report').to.deep.equal({ channelId: 'e', count: 0, bytes: 0, handles: [] });
    });
  });

  describe('closed channel ids', () => {
    it('refuse work with ERR_CHANNEL_CLOSED, auto-open included', () => {
      const s = mgr.openChannel('c');
      mgr.closeChannel('c');
      expectCode(() => mgr.allocateResource('buffer', 10, 'c'), 'ERR_CHANNEL_CLOSED', 'auto-open refused');
      expectCode(() => s.allocate('buffer', 10), 'ERR_CHANNEL_CLOSED', 'old scope allocate');
      expectCode(() => s.limits('buffer'), 'ERR_CHANNEL_CLOSED', 'old scope limits');
      expectCode(() => s.close(), 'ERR_CHANNEL_CLOSED', 'old scope close');
      expectCode(() => mgr.channel('c'), 'ERR_CHANNEL_CLOSED', 'channel()');
      expectCode(() => mgr.closeChannel('c'), 'ERR_CHANNEL_CLOSED', 'closeChannel()');
      expectCode(() => mgr.verifyResourceIsolation('c'), 'ERR_CHANNEL_CLOSED', 'verifyResourceIsolation()');
    });

    it('reopen with openChannel with a fresh ledger and fresh limits', () => {
      const m2 = new ResourceManager({ channelDefaults: { limits: { '*': { maxHandles: 3 } } } });
      try {
        m2.openChannel('c');
        m2.setResourceLimits('*', { maxHandles: 1 }, 'c');
        const old = m2.allocateResource('buffer', 5000, 'c');
        m2.closeChannel('c');
        const s = m2.openChannel('c');
        expect(m2.getResourceLimits('*', 'c').maxHandles, 'limits from channelDefaults again').to.equal(3);
        expect(channelMetrics(m2, 'c'), 'fresh ledger').to.deep.equal({
          bytesInUse: 0,
          handles: 0,
          peakBytes: 0,
          limitRejections: 0,
          violations: violations({}),
        });
        s.allocate('buffer', 10);
        s.allocate('buffer', 10);
        expect(m2.verifyResourceIsolation('c').handleCount, 'two handles').to.equal(2);
        expect(m2.deallocateResource(old), 'the old incarnation handle stays dead').to.equal(false);
        expect(m2.verifyResourceIsolation('c').bytesInUse, 'ledger not disturbed by the old handle').to.equal(8192);
      } finally {
        m2.close();
      }
    });
  });

  for (const [mode, options, lengthAfter] of [
    ['deferred reuse (the default): buffer left attached', {}, 1000],
    ['unsafeImmediateReuse: buffer revoked', IMMEDIATE, 0],
  ] as const) {
    it(`scope.close() closes the channel like closeChannel (${mode})`, () => {
      const s = mgr.openChannel('c', options);
      const h = s.allocate('buffer', 1000);
      const buf = bufferOf(h);
      const report = s.close();
      expect([report.channelId, report.count, report.bytes], 'report').to.deep.equal(['c', 1, 4096]);
      expect(buf.length, 'the buffer after the close').to.equal(lengthAfter);
      expect(mgr.validateSecurityBoundaries(h).violations.map((v) => v.code), 'the handle is closed').to.deep.equal(['CHANNEL_CLOSED']);
      expectCode(() => mgr.channel('c'), 'ERR_CHANNEL_CLOSED', 'closed');
    });
  }
});
