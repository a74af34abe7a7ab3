/**
 * Lifecycle (SPEC §1, §4): close(), Symbol.dispose on manager and handle, ERR_MANAGER_CLOSED for
 * every operation after close() except close() and getResourceMetrics().
 *
 * Buffers freed by a close or a dispose are detached on `unsafeImmediateReuse` managers; under
 * deferred reuse (the default) they stay attached, and their memory waits until they are collected.
 */
import { expect } from 'chai';
import { ChannelScope, ResourceHandle, ResourceManager } from '../lib';
import type { ResourceManagerOptions } from '../lib';
import { bufferOf, collect, collectUntil, expectCode } from './helpers';

/** The two reuse modes, with the length a buffer freed by the manager has afterwards. */
const MODES: Array<[string, ResourceManagerOptions, (size: number) => number]> = [
  ['deferred reuse (the default): left attached', {}, (size) => size],
  ['unsafeImmediateReuse: revoked', { channelDefaults: { unsafeImmediateReuse: true } }, () => 0],
];

describe('lifecycle', () => {
  describe('close()', () => {
    let mgr: ResourceManager;
    let h: ResourceHandle;
    let scope: ChannelScope;
    let kept: Buffer;
    beforeEach(() => {
      mgr = new ResourceManager();
      scope = mgr.openChannel('a');
      h = scope.allocate('buffer', 1000);
      kept = bufferOf(h);
      kept.fill(0x5a);
      mgr.allocateResource('buffer', 5000);
      mgr.close();
    });

    const operations: Array<[string, () => unknown]> = [
      ['allocateResource', () => mgr.allocateResource('buffer', 10)],
      ['allocateResource(channel)', () => mgr.allocateResource('buffer', 10, 'a')],
      ['deallocateResource', () => mgr.deallocateResource(h)],
      ['deallocateResource(id)', () => mgr.deallocateResource(h.id)],
      ['validateSecurityBoundaries', () => mgr.validateSecurityBoundaries(h)],
      ['verifyResourceIsolation', () => mgr.verifyResourceIsolation('a')],
      ['trackResourceUsage', () => mgr.trackResourceUsage(h)],
      ['getResourceLimits', () => mgr.getResourceLimits('buffer')],
      ['verifyCleanupCompletion', () => mgr.verifyCleanupCompletion(h)],
      ['openChannel', () => mgr.openChannel('b')],
      ['channel', () => mgr.channel('a')],
      ['closeChannel', () => mgr.closeChannel('a')],
      ['setResourceLimits', () => mgr.setResourceLimits('buffer', { maxBytes: 1 })],
      ['defineResourceType', () => mgr.defineResourceType('conn', { kind: 'counter' })],
      ['transferHandle', () => mgr.transferHandle(h)],
      ['adoptHandle', () => mgr.adoptHandle(h.id)],
      ['scope.allocate', () => scope.allocate('buffer', 10)],
      ['scope.deallocate', () => scope.deallocate(h)],
      ['scope.validate', () => scope.validate(h)],
      ['scope.track', () => scope.track(h)],
      ['scope.limits', () => scope.limits('buffer')],
      ['scope.close', () => scope.close()],
    ];
    for (const [name, op] of operations) {
      it(`${name} throws ERR_MANAGER_CLOSED`, () => {
        const err = expectCode(op, 'ERR_MANAGER_CLOSED', name);
        expect(err.message, 'the message says the manager is closed').to.match(/closed/);
      });
    }

    it('close() again is a no-op', () => {
      expect(() => mgr.close(), 'second close').to.not.throw();
      expect(() => mgr[Symbol.dispose](), 'dispose after close').to.not.throw();
    });

    it('getResourceMetrics() returns the final snapshot, stable across calls', () => {
      const m = mgr.getResourceMetrics();
      expect(m.totals.allocations, 'allocations made before close').to.equal(2);
      expect(m.totals.deallocations, 'close() freed what was live').to.equal(2);
      expect(m.totals.handles, 'nothing live in the final snapshot').to.equal(0);
      expect(m.totals.bytesInUse, 'no bytes in use in the final snapshot').to.equal(0);
      expect(mgr.getResourceMetrics(), 'stable').to.deep.equal(m);
      expect(JSON.parse(JSON.stringify(m)), 'plain JSON').to.deep.equal(m);
    });

    it('left every buffer attached with its bytes (deferred reuse, the default)', () => {
      expect([kept.length, kept.buffer.byteLength], 'kept reference: not detached').to.deep.equal([1000, 1000]);
      expect(kept.every((x) => x === 0x5a), 'kept reference: same bytes').to.equal(true);
    });

    it('revoked every buffer on an unsafeImmediateReuse manager', () => {
      const m = new ResourceManager({ channelDefaults: { unsafeImmediateReuse: true } });
      const buffers = [bufferOf(m.openChannel('a').allocate('buffer', 1000)), bufferOf(m.allocateResource('buffer', 5000))];
      m.close();
      buffers.forEach((b, i) => expect([b.length, b.buffer.byteLength], `buffer ${i}: detached`).to.deep.equal([0, 0]));
    });

    it('a handle dispose after close does not throw', () => {
      expect(() => h[Symbol.dispose](), 'dispose').to.not.throw();
    });
  });

  describe('Symbol.dispose', () => {
    for (const [mode, options, lengthAfter] of MODES) {
      it(`on the manager closes it (${mode})`, () => {
        const mgr = new ResourceManager(options);
        const kept = bufferOf(mgr.allocateResource('buffer', 10));
        mgr[Symbol.dispose]();
        expect(kept.length, 'the buffer after the close').to.equal(lengthAfter(10));
        const m = mgr.getResourceMetrics();
        expect([m.totals.handles, m.totals.deallocations], 'the close freed the live handle').to.deep.equal([0, 1]);
        expectCode(() => mgr.allocateResource('buffer', 10), 'ERR_MANAGER_CLOSED', 'after dispose');
      });

      it(`works with a using declaration (${mode})`, () => {
        let kept: Buffer;
        let id: number;
        let outer: ResourceManager;
        {
          using mgr = new ResourceManager(options);
          outer = mgr;
          {
            using h = mgr.allocateResource('buffer', 10, 'a');
            kept = bufferOf(h);
            id = h.id;
            expect(kept.length, 'live inside the block').to.equal(10);
          }
          expect(kept.length, 'the buffer after the block').to.equal(lengthAfter(10));
          expectCode(() => mgr.trackResourceUsage(id), 'ERR_STALE_HANDLE', 'handle disposed at block end');
          expect(mgr.getResourceMetrics().totals.handles, 'no live handles').to.equal(0);
        }
        expectCode(() => outer.allocateResource('buffer', 10), 'ERR_MANAGER_CLOSED', 'manager disposed at block end');
      });
    }

    it('on a handle deallocates it; a second dispose is a no-op (no violation counted); the memory returns once collected', async () => {
      const mgr = new ResourceManager();
      try {
        let h: ResourceHandle | undefined = mgr.allocateResource('buffer', 10, 'a');
        const id = h.id;
        h[Symbol.dispose]();
        const m1 = mgr.getResourceMetrics();
        expect([m1.totals.handles, m1.totals.deallocations, m1.revocation.pendingRelease], 'freed once, memory parked').to.deep.equal([0, 1, 1]);
        expect(mgr.verifyCleanupCompletion(h), 'not released while its buffer lives').to.equal(false);
        h[Symbol.dispose]();
        expect(mgr.getResourceMetrics(), 'nothing changed, no violation counted').to.deep.equal(m1);
        h = undefined;
        await collectUntil(() => mgr.getResourceMetrics().revocation.pendingRelease === 0);
        expect(mgr.verifyCleanupCompletion(id), 'released once collected').to.equal(true);
        expect(mgr.getResourceMetrics().revocation.pendingRelease, 'nothing parked').to.equal(0);
      } finally {
        mgr.close();
      }
    });

    it('on a handle of an unsafeImmediateReuse manager deallocates and releases it at once', () => {
      const mgr = new ResourceManager({ channelDefaults: { unsafeImmediateReuse: true } });
      try {
        const h = mgr.allocateResource('buffer', 10, 'a');
        const kept = bufferOf(h);
        h[Symbol.dispose]();
        expect(kept.length, 'revoked').to.equal(0);
        expect(mgr.getResourceMetrics().revocation.pendingRelease, 'nothing parked').to.equal(0);
        expect(mgr.verifyCleanupCompletion(h), 'released').to.equal(true);
      } finally {
        mgr.close();
      }
    });

    it('on a handle already deallocated is a no-op', () => {
      const mgr = new ResourceManager();
      try {
        const h = mgr.allocateResource('buffer', 10, 'a');
        mgr.deallocateResource(h);
        const m1 = mgr.getResourceMetrics();
        h[Symbol.dispose]();
        expect(mgr.getResourceMetrics(), 'nothing changed').to.deep.equal(m1);
      } finally {
        mgr.close();
      }
    });
  });

  describe('channels over a manager lifetime', () => {
    it('openChannel twice without options returns the scope; with options throws', () => {
      const mgr = new ResourceManager();
      try {
        const s1 = mgr.openChannel('a', { zero: 'always' });
        s1.allocate('buffer', 10);
        const s2 = mgr.openChannel('a');
        expect(s2.channelId, 'same channel').to.equal('a');
        expect(mgr.verifyResourceIsolation('a').handleCount, 'same ledger').to.equal(1);
        expectCode(() => mgr.openChannel('a', { zero: 'cross-channel' }), 'ERR_INVALID_ARGUMENT', 'with options');
      } finally {
        mgr.close();
      }
    });

    it('a closed channel refuses work until reopened with a fresh ledger', () => {
      const mgr = new ResourceManager();
      try {
        mgr.allocateResource('buffer', 5000, 'a');
        const r = mgr.closeChannel('a');
        expect([r.count, r.bytes], 'report').to.deep.equal([1, 65536]);
        expectCode(() => mgr.allocateResource('buffer', 10, 'a'), 'ERR_CHANNEL_CLOSED', 'auto-open refused');
        mgr.openChannel('a');
        const res = mgr.verifyResourceIsolation('a');
        expect([res.isolated, res.handleCount, res.bytesInUse], 'fresh ledger').to.deep.equal([true, 0, 0]);
        expect(mgr.allocateResource('buffer', 10, 'a').channelId, 'works again').to.equal('a');
      } finally {
        mgr.close();
      }
    });

    it('closing and reopening one id again and again never makes the manager forget another closed id', function () {
      this.timeout(60_000);
      const mgr = new ResourceManager();
      try {
        mgr.openChannel('kept');
        mgr.closeChannel('kept');
        // More closes than the 65,536 closed ids remembered, all of one reused id.
        for (let i = 0; i < 70_000; i++) {
          mgr.openChannel('churn');
          mgr.closeChannel('churn');
        }
        expectCode(() => mgr.allocateResource('buffer', 10, 'kept'), 'ERR_CHANNEL_CLOSED', 'still remembered as closed');
        expectCode(() => mgr.allocateResource('buffer', 10, 'churn'), 'ERR_CHANNEL_CLOSED', 'churn is closed too');
        expect(Object.keys(mgr.getResourceMetrics().channels), 'nothing was auto-opened').to.deep.equal([]);
      } finally {
        mgr.close();
      }
    });

    it('autoOpenChannels: false refuses unknown channels with ERR_UNKNOWN_CHANNEL', () => {
      const mgr = new ResourceManager({ autoOpenChannels: false });
      try {
        expectCode(() => mgr.allocateResource('buffer', 10, 'a'), 'ERR_UNKNOWN_CHANNEL', 'unknown');
        mgr.openChannel('a');
        expect(mgr.allocateResource('buffer', 10, 'a').channelId, 'after openChannel').to.equal('a');
        mgr.closeChannel('a');
        expectCode(() => mgr.allocateResource('buffer', 10, 'a'), 'ERR_CHANNEL_CLOSED', 'closed, not unknown');
      } finally {
        mgr.close();
      }
    });

    it('closeChannel reports {channelId, count, bytes, handles}', () => {
      const mgr = new ResourceManager();
      try {
        const a = mgr.allocateResource('buffer', 100, 'a');
        const b = mgr.allocateResource('buffer', 70000, 'a');
        const r = mgr.closeChannel('a');
        expect(
          {
            channelId: r.channelId,
            count: r.count,
            bytes: r.bytes,
            handles: r.handles.map((x) => ({ id: x.id, resourceType: x.resourceType, size: x.size })).sort((x, y) => x.id - y.id),
          },
          'report',
        ).to.deep.equal({
          channelId: 'a',
          count: 2,
          bytes: 4096 + 1048576,
          handles: [a, b].map((x) => ({ id: x.id, resourceType: 'buffer', size: x.size })).sort((x, y) => x.id - y.id),
        });
      } finally {
        mgr.close();
      }
    });

    for (const [mode, options, lengthAfter] of MODES) {
      it(`managers are independent: closing one leaves another working (${mode})`, () => {
        const m1 = new ResourceManager(options);
        const m2 = new ResourceManager(options);
        try {
          const k1 = bufferOf(m1.allocateResource('buffer', 10, 'a'));
          const h2 = m2.allocateResource('buffer', 10, 'a');
          m1.close();
          expect(k1.length, 'm1 buffer after the close').to.equal(lengthAfter(10));
          expect(m1.getResourceMetrics().totals.handles, 'm1 freed its handle').to.equal(0);
          expect(bufferOf(h2).length, 'm2 buffer live').to.equal(10);
          expect(m2.verifyResourceIsolation('a').handleCount, 'm2 handle live').to.equal(1);
          expect(m2.deallocateResource(h2), 'm2 works').to.equal(true);
        } finally {
          m1.close();
          m2.close();
        }
      });
    }
  });
});
