/**
 * Isolation (SPEC §1 "Access modes", §2 "Cross-channel use", §5 ResourceIsolationResult):
 * verifyResourceIsolation agrees with live handles; cross-channel use through a scope is refused,
 * counted against the presenting channel and visible in its isolation check; view-mode memory
 * never serves a revocable channel.
 */
import { expect } from 'chai';
import { ResourceHandle, ResourceManager, ViolationEvent } from '../lib';
import { bufferOf, channelMetrics, containsByte, expectCode, violations } from './helpers';

describe('isolation', () => {
  let mgr: ResourceManager;
  beforeEach(() => {
    mgr = new ResourceManager();
  });
  afterEach(() => {
    mgr.close();
  });

  it('verifyResourceIsolation agrees with live handles and charged bytes', () => {
    const a = mgr.openChannel('a', { limits: { '*': { maxBytes: 1 << 30 } } });
    const h1 = a.allocate('buffer', 1000);
    a.allocate('buffer', 5000);
    a.allocate('buffer', 2 * 1024 * 1024);
    mgr.allocateResource('buffer', 10, 'b');
    const r = mgr.verifyResourceIsolation('a');
    expect(r, 'three live handles').to.deep.equal({
      channelId: 'a',
      isolated: true,
      handleCount: 3,
      bytesInUse: 4096 + 65536 + 2 * 1024 * 1024, // 2 MiB direct is already 4 KiB-aligned
      limits: mgr.getResourceLimits('*', 'a'),
      violations: [],
    });
    expect(r.limits.maxBytes, "the channel's total limits").to.equal(1 << 30);
    a.deallocate(h1);
    const r2 = mgr.verifyResourceIsolation('a');
    expect([r2.isolated, r2.handleCount, r2.bytesInUse], 'after a free').to.deep.equal([true, 2, 65536 + 2 * 1024 * 1024]);
    expect(mgr.verifyResourceIsolation('b').handleCount, 'b counts only its own').to.equal(1);
  });

  it('an empty channel is isolated with nothing in use', () => {
    mgr.openChannel('e');
    const r = mgr.verifyResourceIsolation('e');
    expect([r.isolated, r.handleCount, r.bytesInUse, r.violations], 'empty').to.deep.equal([true, 0, 0, []]);
  });

  describe('cross-channel use through a scope', () => {
    let owner: ResourceHandle;
    beforeEach(() => {
      mgr.openChannel('a');
      mgr.openChannel('b');
      owner = mgr.channel('a').allocate('buffer', 1000);
      bufferOf(owner).fill(0x61);
    });

    it("scope.deallocate(another channel's handle) is false and leaves the handle live", () => {
      expect(mgr.channel('b').deallocate(owner), 'refused').to.equal(false);
      expect(mgr.channel('b').deallocate(owner.id), 'refused by id').to.equal(false);
      expect(bufferOf(owner).length, 'buffer intact').to.equal(1000);
      expect(bufferOf(owner)[999], 'bytes intact').to.equal(0x61);
      expect(mgr.validateSecurityBoundaries(owner).valid, 'still live').to.equal(true);
      expect(mgr.verifyResourceIsolation('a').handleCount, 'a still holds it').to.equal(1);
      expect(mgr.channel('a').deallocate(owner), 'the owner can free it').to.equal(true);
    });

    it('counts CROSS_CHANNEL against the presenting channel and shows it in its isolation check', () => {
      const events: ViolationEvent[] = [];
      mgr.on('violation', (e: ViolationEvent) => events.push(e));
      const b = mgr.channel('b');
      expect(b.deallocate(owner), 'deallocate').to.equal(false);
      let r = mgr.verifyResourceIsolation('b');
      expect(r.isolated, 'b is no longer isolated').to.equal(false);
      expect(r.violations.length, 'one entry').to.equal(1);
      expect(r.violations[0]?.code, 'code').to.equal('CROSS_CHANNEL');
      expect(r.violations[0]?.count, 'count').to.equal(1);
      expect(r.violations[0]?.message, 'message').to.be.a('string').and.not.equal('');

      const v = b.validate(owner);
      expect(v.valid, 'validate refuses').to.equal(false);
      expect(v.violations.map((x) => x.code), 'validate codes: a forged id\'s answer through a scope').to.deep.equal(['FORGED_HANDLE']);
      expect(mgr.verifyResourceIsolation('b').violations[0]?.count, 'count after validate').to.equal(2);

      expectCode(() => b.track(owner), 'ERR_INVALID_HANDLE', 'track: a forged id\'s error through a scope');
      r = mgr.verifyResourceIsolation('b');
      expect(r.violations.map((x) => [x.code, x.count]), 'count after track').to.deep.equal([['CROSS_CHANNEL', 3]]);

      const ra = mgr.verifyResourceIsolation('a');
      expect([ra.isolated, ra.violations], 'the owner channel is unaffected').to.deep.equal([true, []]);
      expect(channelMetrics(mgr, 'b').violations, 'b metrics').to.deep.equal(violations({ CROSS_CHANNEL: 3 }));
      expect(channelMetrics(mgr, 'a').violations, 'a metrics').to.deep.equal(violations({}));
      expect(events, 'violation events').to.deep.equal([
        { channelId: 'b', code: 'CROSS_CHANNEL', handleId: owner.id },
        { channelId: 'b', code: 'CROSS_CHANNEL', handleId: owner.id },
        { channelId: 'b', code: 'CROSS_CHANNEL', handleId: owner.id },
      ]);
    });

    it('an own handle through its own scope is not a violation (paired with the above)', () => {
      const a = mgr.channel('a');
      expect(a.validate(owner).valid, 'validate').to.equal(true);
      expect(a.track(owner).requestedBytes, 'track').to.equal(1000);
      expect(mgr.verifyResourceIsolation('a').isolated, 'isolated').to.equal(true);
    });

    it('an unscoped handle presented to a channel scope is cross-channel', () => {
      const u = mgr.allocateResource('buffer', 10);
      expect(mgr.channel('a').deallocate(u), 'refused').to.equal(false);
      expectCode(() => mgr.channel('a').track(u), 'ERR_INVALID_HANDLE', 'track: a forged id\'s error through a scope');
      expect(mgr.verifyResourceIsolation('a').violations.map((x) => [x.code, x.count]), 'counted on a').to.deep.equal([
        ['CROSS_CHANNEL', 2],
      ]);
      expect(mgr.deallocateResource(u), 'the manager frees it').to.equal(true);
    });
  });

  describe('view-mode memory never serves a revocable channel', () => {
    it('revocable buffers own their ArrayBuffer; view buffers are slab views', () => {
      mgr.openChannel('v', { access: 'view' });
      const views: ResourceHandle[] = [];
      for (let i = 0; i < 64; i++) views.push(mgr.allocateResource('buffer', 4096, 'v'));
      for (const h of views) {
        const b = bufferOf(h);
        expect(b.buffer.byteLength, 'a view is a window into a larger slab').to.be.greaterThan(h.size);
      }
      const stale = views.map(bufferOf);
      for (const h of views) mgr.deallocateResource(h);
      const revocable: ResourceHandle[] = [];
      for (let i = 0; i < 64; i++) revocable.push(mgr.allocateResource('buffer', 4096, 'r'));
      for (const h of revocable) {
        const b = bufferOf(h);
        expect([b.byteOffset, b.buffer.byteLength], 'own external ArrayBuffer of exactly size').to.deep.equal([0, h.size]);
      }
      // the stale view references still reach their slabs: scribbling through them must not reach
      // any revocable buffer
      for (const s of stale) s.fill(0xee);
      for (const h of revocable) expect(containsByte(bufferOf(h), 0xee), 'untouched by stale views').to.equal(false);
    });

    it('unscoped allocations (revocable) are not served from view slabs either', () => {
      mgr.openChannel('v', { access: 'view' });
      const stale: Buffer[] = [];
      for (let i = 0; i < 32; i++) {
        const h = mgr.allocateResource('buffer', 5000, 'v');
        stale.push(bufferOf(h));
        mgr.deallocateResource(h);
      }
      const u = bufferOf(mgr.allocateResource('buffer', 5000));
      for (const s of stale) s.fill(0xdd);
      expect(containsByte(u, 0xdd), 'untouched').to.equal(false);
      expect(u.buffer.byteLength, 'own ArrayBuffer').to.equal(5000);
    });

    it('view channels share view slabs only with each other (zeroed on reuse)', () => {
      mgr.openChannel('v1', { access: 'view' });
      mgr.openChannel('v2', { access: 'view' });
      const h = mgr.allocateResource('buffer', 4096, 'v1');
      bufferOf(h).fill(0x31);
      mgr.deallocateResource(h);
      const g = mgr.allocateResource('buffer', 4096, 'v2');
      expect(containsByte(bufferOf(g), 0x31), 'v2 never reads what v1 wrote').to.equal(false);
      expect(bufferOf(g).buffer.byteLength, 'a view').to.be.greaterThan(4096);
    });
  });
});
