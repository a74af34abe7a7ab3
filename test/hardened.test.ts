/**
 * Hardened mode (`{ hardened: true }`, native/core/hardening.h): canary bytes after the requested
 * extent (pool choice leaves room for them), CANARY_CORRUPTED on validate and free, guard pages
 * around every slab and direct mapping (a native overrun faults; checked in child processes
 * through the test-only `debugWriteBeyond` hook, installed only with ISOPOOL_TEST_HOOKS=1), and
 * poisoning of freed slots (zeroing rules still apply on reuse). Under deferred reuse (the default)
 * a freed revocable buffer keeps its bytes while it is reachable: its slot is poisoned when it
 * returns to the pool, once the buffer is collected.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as diagnostics from 'node:diagnostics_channel';
import * as path from 'node:path';
import { ResourceManager, ViolationEvent } from '../lib';
import { SMALL_POOLS, bufferOf, channelMetrics, collect, filledWith, nodeCommand, poolMetrics, unscopedMetrics, violations } from './helpers';

const CANARY_BYTES = 16; // native/core/hardening.h kCanaryBytes
const POISON = 0xdf; // native/core/hardening.h kPoisonByte

function hardened(extra: { leakDetection?: 'off'; channelDefaults?: { unsafeImmediateReuse: boolean } } = {}): ResourceManager {
  return new ResourceManager({ pools: SMALL_POOLS, hardened: true, leakDetection: 'off', ...extra });
}

/** The two reuse modes of revocable memory: when a freed slot returns to its pool. */
const REUSE_MODES = [
  ['unsafeImmediateReuse: the slot returns at free', true],
  ['deferred reuse, the default: the slot returns once the buffer is collected', false],
] as const;

/**
 * Allocates 100 bytes in `channel`, fills them with 0x11 and frees them. Under deferred reuse the
 * freed buffer must still hold its bytes (not poisoned while reachable); it is then dropped and
 * collected, so the slot is back in its pool either way.
 */
async function freeFilled(mgr: ResourceManager, channel: string, immediate: boolean): Promise<void> {
  (() => {
    const a = mgr.allocateResource('buffer', 100, channel);
    const buf = bufferOf(a);
    buf.fill(0x11);
    mgr.deallocateResource(a);
    if (!immediate) expect(filledWith(buf, 0x11), 'a freed buffer still reachable is not poisoned').to.equal(true);
  })();
  if (!immediate) {
    await collect();
    expect(poolMetrics(mgr, 's').liveSlots, 'the slot returned once collected').to.equal(0);
  }
}

describe('hardened mode', () => {
  describe('pool choice leaves room for the canary', () => {
    it('size + 16 must fit the slot, else the next class, else direct (charged accordingly)', () => {
      const mgr = hardened();
      const plain = new ResourceManager({ pools: SMALL_POOLS });
      try {
        const cases: Array<[number, string, number]> = [
          [4096 - CANARY_BYTES, 's', 4096],
          [4096 - CANARY_BYTES + 1, 'm', 65536],
          [4096, 'm', 65536],
          [65536 - CANARY_BYTES, 'm', 65536],
          [65536, 'l', 1048576],
          [1048576 - CANARY_BYTES, 'l', 1048576],
          [1048576 - CANARY_BYTES + 1, 'direct', 1048576 + 4096],
          [2 * 1048576, 'direct', 2 * 1048576 + 4096],
          [2 * 1048576 - CANARY_BYTES, 'direct', 2 * 1048576],
        ];
        for (const [size, pool, slotBytes] of cases) {
          const h = mgr.allocateResource('buffer', size, 'a');
          expect([h.pool, h.slotBytes, bufferOf(h).length], `hardened, size ${size}`).to.deep.equal([pool, slotBytes, size]);
          expect(mgr.trackResourceUsage(h).slotBytes, `charged slot bytes, size ${size}`).to.equal(slotBytes);
          expect(channelMetrics(mgr, 'a').bytesInUse, `channel charged, size ${size}`).to.equal(slotBytes);
          expect(mgr.deallocateResource(h), 'freed').to.equal(true);
        }
        const p = plain.allocateResource('buffer', 4096, 'a');
        expect([p.pool, p.slotBytes], 'default mode: 4096 fits the 4 KiB slot (paired)').to.deep.equal(['s', 4096]);
      } finally {
        mgr.close();
        plain.close();
      }
    });

    it('reservedBytes counts usable mappings only, not guard pages (same figures as default mode)', () => {
      const mgr = hardened();
      const plain = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off' });
      try {
        for (const m of [mgr, plain]) {
          m.allocateResource('buffer', 100, 'a');
          m.allocateResource('buffer', 3 * 1048576, 'a');
        }
        const figures = (m: ResourceManager): number[] => {
          const x = m.getResourceMetrics();
          return [x.pools['s']?.reservedBytes ?? -1, x.pools['direct']?.reservedBytes ?? -1, x.totals.reservedBytes];
        };
        // s: one slab of 8 × 4 KiB (queueSize 8); direct: RoundUp(3 MiB + 16) = 3 MiB + 4 KiB hardened, 3 MiB plain.
        expect(figures(mgr), 'hardened').to.deep.equal([32768, 3 * 1048576 + 4096, 32768 + 3 * 1048576 + 4096]);
        expect(figures(plain), 'default').to.deep.equal([32768, 3 * 1048576, 32768 + 3 * 1048576]);
      } finally {
        mgr.close();
        plain.close();
      }
    });
  });

  describe('CANARY_CORRUPTED', () => {
    it('a view-mode write past the requested size (through buf.buffer) is found by validate and by free', () => {
      const mgr = hardened();
      const events: ViolationEvent[] = [];
      const published: unknown[] = [];
      const onMessage = (m: unknown): void => {
        published.push(m);
      };
      mgr.on('violation', (e: ViolationEvent) => events.push(e));
      diagnostics.subscribe('isopool:violation', onMessage);
      try {
        const scope = mgr.openChannel('v', { access: 'view' });
        const h = scope.allocate('buffer', 100);
        const intact = scope.allocate('buffer', 100);
        const buf = bufferOf(h);
        expect(mgr.validateSecurityBoundaries(h).valid, 'intact before the overrun').to.equal(true);
        // buf.buffer is the whole slab: byte `size` of this slot is the first canary byte.
        new Uint8Array(buf.buffer, buf.byteOffset + buf.length, 1)[0] ^= 0xff;
        const r = mgr.validateSecurityBoundaries(h);
        expect([r.valid, r.handleId, r.channelId, r.violations.map((v) => v.code)], 'validate').to.deep.equal([
          false,
          h.id,
          'v',
          ['CANARY_CORRUPTED'],
        ]);
        expect(scope.validate(h).violations.map((v) => v.code), 'the owner scope sees it too').to.deep.equal(['CANARY_CORRUPTED']);
        expect(mgr.validateSecurityBoundaries(intact).valid, 'the neighbour slot is intact').to.equal(true);
        expect(channelMetrics(mgr, 'v').violations, 'counted against the owner').to.deep.equal(violations({ CANARY_CORRUPTED: 2 }));
        // Free still frees (documented choice), reports and counts it once more.
        expect(mgr.deallocateResource(h), 'a corrupted handle is still freed').to.equal(true);
        expect(mgr.verifyCleanupCompletion(h), 'fully released').to.equal(true);
        expect(channelMetrics(mgr, 'v').violations, 'free counted it').to.deep.equal(violations({ CANARY_CORRUPTED: 3 }));
        expect(channelMetrics(mgr, 'v').handles, 'one live handle left').to.equal(1);
        const iso = mgr.verifyResourceIsolation('v');
        expect([iso.isolated, iso.violations.map((v) => [v.code, v.count])], 'isolation check').to.deep.equal([false, [['CANARY_CORRUPTED', 3]]]);
        const want = [0, 1, 2].map(() => ({ channelId: 'v', code: 'CANARY_CORRUPTED', handleId: h.id }));
        expect(events, "one 'violation' event per violation, naming the owner").to.deep.equal(want);
        expect(published, 'isopool:violation likewise').to.deep.equal(want);
        expect(unscopedMetrics(mgr).violations, 'nothing on the unscoped domain').to.deep.equal(violations({}));
      } finally {
        diagnostics.unsubscribe('isopool:violation', onMessage);
        mgr.close();
      }
    });

    it('a damaged canary found by closeChannel is counted against the unscoped domain', () => {
      const mgr = hardened();
      try {
        const h = mgr.openChannel('v', { access: 'view' }).allocate('buffer', 10);
        const buf = bufferOf(h);
        new Uint8Array(buf.buffer, buf.byteOffset + 10 + CANARY_BYTES - 1, 1)[0] ^= 0x01; // last canary byte
        expect(mgr.closeChannel('v').count, 'closed and freed').to.equal(1);
        expect(unscopedMetrics(mgr).violations, 'the closing channel\'s counters end with it').to.deep.equal(violations({ CANARY_CORRUPTED: 1 }));
      } finally {
        mgr.close();
      }
    });

    it('a revocable buffer cannot reach its canary from JS: writes past its length land nowhere', () => {
      const mgr = hardened();
      try {
        const h = mgr.allocateResource('buffer', 100, 'a');
        const buf = bufferOf(h);
        for (let i = 100; i < 100 + CANARY_BYTES; i++) buf[i] = 0xff;
        expect(buf.buffer.byteLength, 'the ArrayBuffer is exactly the requested extent').to.equal(100);
        expect(mgr.validateSecurityBoundaries(h).valid, 'canary intact').to.equal(true);
        expect(mgr.deallocateResource(h), 'freed').to.equal(true);
        expect(channelMetrics(mgr, 'a').violations, 'nothing counted').to.deep.equal(violations({}));
      } finally {
        mgr.close();
      }
    });

    it('default mode has no canary: the same view-mode write is not a violation (paired)', () => {
      const mgr = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off' });
      try {
        const h = mgr.openChannel('v', { access: 'view' }).allocate('buffer', 100);
        const buf = bufferOf(h);
        new Uint8Array(buf.buffer, buf.byteOffset + 100, CANARY_BYTES).fill(0xff);
        expect(mgr.validateSecurityBoundaries(h).valid, 'valid').to.equal(true);
        expect(mgr.deallocateResource(h), 'freed').to.equal(true);
        expect(channelMetrics(mgr, 'v').violations, 'nothing counted').to.deep.equal(violations({}));
      } finally {
        mgr.close();
      }
    });
  });

  describe('poisoning of freed slots', () => {
    for (const [mode, immediate] of REUSE_MODES) {
      it(`same-channel reuse shows poison over the old extent (+ canary), not the old bytes (${mode})`, async () => {
        const mgr = hardened({ channelDefaults: { unsafeImmediateReuse: immediate } });
        try {
          await freeFilled(mgr, 'a', immediate);
          const b = bufferOf(mgr.allocateResource('buffer', 4000, 'a')); // the same slot (ring) and owner: not zeroed
          expect(poolMetrics(mgr, 's').hits, 'served from the retained slot').to.equal(1);
          expect(filledWith(b.subarray(0, 100 + CANARY_BYTES), POISON), 'old extent and canary poisoned').to.equal(true);
          expect(b.subarray(100 + CANARY_BYTES).every((x) => x === 0), 'the never-written rest is still zero').to.equal(true);
          expect(b.indexOf(0x11), 'no old byte survives').to.equal(-1);
        } finally {
          mgr.close();
        }
      });

      it(`another owner still gets zeros ("cross-channel" zeroing applies over the poison) (${mode})`, async () => {
        const mgr = hardened({ channelDefaults: { unsafeImmediateReuse: immediate } });
        try {
          await freeFilled(mgr, 'a', immediate);
          const b = bufferOf(mgr.allocateResource('buffer', 4000, 'b'));
          expect(poolMetrics(mgr, 's').hits, 'the same slot').to.equal(1);
          expect(b.every((x) => x === 0), 'zeros only').to.equal(true);
        } finally {
          mgr.close();
        }
      });

      it(`'always' zeroing applies over the poison in the same channel (${mode})`, async () => {
        const mgr = hardened({ channelDefaults: { unsafeImmediateReuse: immediate } });
        try {
          mgr.openChannel('z', { zero: 'always' });
          await freeFilled(mgr, 'z', immediate);
          const hits = poolMetrics(mgr, 's').hits;
          const b = bufferOf(mgr.allocateResource('buffer', 4000, 'z'));
          expect(poolMetrics(mgr, 's').hits - hits, 'served from a retained slot').to.equal(1);
          expect(b.every((x) => x === 0), 'zeros only').to.equal(true);
        } finally {
          mgr.close();
        }
      });
    }

    it('view mode: the whole freed slot is poisoned, visible to a stale view of the same channel', () => {
      const mgr = hardened();
      try {
        const scope = mgr.openChannel('v', { access: 'view' });
        const a = scope.allocate('buffer', 100);
        const stale = bufferOf(a);
        const slot = new Uint8Array(stale.buffer, stale.byteOffset, 4096);
        slot.fill(0x11);
        scope.deallocate(a);
        expect(filledWith(Buffer.from(slot.buffer, slot.byteOffset, 4096), POISON), 'all 4096 slot bytes poisoned at free').to.equal(true);
      } finally {
        mgr.close();
      }
    });
  });

  describe('guard pages (child processes)', function () {
    this.timeout(60000);

    /** Runs a child that allocates in a hardened native manager and writes `beyond` bytes past the requested size. */
    function overrun(slot: { slotSize: number } | null, size: number, beyond: number): ReturnType<typeof spawnSync> {
      const loader = path.resolve(__dirname, '..', 'lib', 'native', 'loader.js');
      const pools = slot === null ? [] : [{ name: 'p', slotSize: slot.slotSize, queueSize: 1 }];
      const script = `
        const { loadNative } = require(${JSON.stringify(loader)});
        const { NativeManager } = loadNative();
        const m = new NativeManager({ pools: ${JSON.stringify(pools)}, maxAllocationSize: 64 * 1024 * 1024, hardened: true });
        if (typeof m.debugWriteBeyond !== 'function') { console.log('NO_HOOK'); process.exit(3); }
        const ab = m.allocate(0, ${size}, 0, true);
        const id = m.out[0];
        const status = m.debugWriteBeyond(id, ${beyond});
        const mask = m.validate(id, -1);
        console.log(JSON.stringify({ status, mask, length: ab.byteLength }));
      `;
      return spawnSync(...nodeCommand(['-e', script]), {
        env: { ...process.env, ISOPOOL_TEST_HOOKS: '1' },
        encoding: 'utf8',
        timeout: 30000,
      });
    }

    it('the hook is absent without ISOPOOL_TEST_HOOKS=1', () => {
      const loader = path.resolve(__dirname, '..', 'lib', 'native', 'loader.js');
      const env = { ...process.env };
      delete env['ISOPOOL_TEST_HOOKS'];
      const r = spawnSync(
        ...nodeCommand(['-e', `const { NativeManager } = require(${JSON.stringify(loader)}).loadNative(); const m = new NativeManager({ pools: [], maxAllocationSize: 1024, hardened: true }); console.log(typeof m.debugWriteBeyond);`]),
        { env, encoding: 'utf8' },
      );
      expect([r.status, String(r.stdout).trim()], 'no hook').to.deep.equal([0, 'undefined']);
    });

    it('an overrun that stays in the slot does not fault, and the canary reports it', () => {
      const r = overrun({ slotSize: 1048576 }, 1000, 1048576 - 1000);
      expect([r.status, r.signal], `exit normally (stderr: ${String(r.stderr)})`).to.deep.equal([0, null]);
      // status 0 (ok), mask 1 << 5 (CANARY_CORRUPTED)
      expect(JSON.parse(String(r.stdout).trim()), 'canary damaged, detected').to.deep.equal({ status: 0, mask: 32, length: 1000 });
    });

    it('one byte past a slab faults (SIGSEGV) instead of reaching a neighbour mapping', () => {
      const r = overrun({ slotSize: 1048576 }, 1000, 1048576 - 1000 + 1);
      expect([r.status, r.signal, String(r.stdout)], `killed by the guard page (stderr: ${String(r.stderr).slice(0, 300)})`).to.deep.equal([
        null,
        'SIGSEGV',
        '',
      ]);
    });

    it('one byte past a direct mapping faults (SIGSEGV)', () => {
      const size = 2 * 1048576 + 1; // mapped RoundUp(size + 16) = 2 MiB + 4 KiB
      const r = overrun(null, size, 2 * 1048576 + 4096 - size + 1);
      expect([r.status, r.signal, String(r.stdout)], `killed by the guard page (stderr: ${String(r.stderr).slice(0, 300)})`).to.deep.equal([
        null,
        'SIGSEGV',
        '',
      ]);
    });

    it('the last byte of a direct mapping is still writable (paired: the fault is exactly at the guard)', () => {
      const size = 2 * 1048576 + 1;
      const r = overrun(null, size, 2 * 1048576 + 4096 - size);
      expect([r.status, r.signal], `exit normally (stderr: ${String(r.stderr)})`).to.deep.equal([0, null]);
      expect(JSON.parse(String(r.stdout).trim()), 'canary damaged, detected').to.deep.equal({ status: 0, mask: 32, length: size });
    });
  });
});
