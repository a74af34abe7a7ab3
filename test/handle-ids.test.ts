/**
 * Handle ids (SPEC §2 "Forged ids", "Stale ids"; layout and bound in native/core/handle_table.h):
 *   id = index * 2^32 + generation * 2^12 + check   (21 + 20 + 12 bits, a safe integer)
 *
 * 1. 10,000,000 uniformly random safe integers per table fill (empty, 1,000 live, 100,000 live)
 *    are all rejected as FORGED_HANDLE. validateSecurityBoundaries costs ~1 µs per call in JS
 *    objects alone, so the 30,000,000 probes go through the native `validate` of a fresh
 *    NativeManager (the very function validateSecurityBoundaries calls; it counts each forged
 *    id, which is checked exactly). 10,000 of them also go through the public API.
 *    Why "all" is an exact expectation: with L live handles each published once, a random id
 *    is accepted with P = (L / 2^21) * 2^-20 * 2^-12 (index live, generation 1, check bits),
 *    at most 1.1e-11 here, i.e. < 1.2e-4 over the 10^7 probes of the fullest table; and no
 *    random id can be classified stale, since generation 1 is each entry's only issued one.
 * 2. A freed id stays invalid while its pool slot is reused 1,000,000 times (the handle-table
 *    index is reused too, once per ~4096 frees because of the quarantine ring: the same index
 *    through 2^20 generations is covered natively by handle_table_test GenerationsLastAMillionReuses).
 * 3. A freed id whose table index is held by a new live handle (reached by churning past the
 *    quarantine) is still STALE_HANDLE everywhere, and nothing done with it touches the new handle.
 */
import { expect } from 'chai';
import { ResourceManager } from '../lib';
import type { AccessMode, ResourceHandle } from '../lib';
import { loadNative } from '../lib/native/loader';
import type { NativeManager } from '../lib/native/binding';
import { expectCode, unscopedMetrics } from './helpers';

const PROBES = 10_000_000;
const FORGED_BIT = 1; // 1 << Violation::kForgedHandle

/** xoshiro128** (two 32-bit outputs per id): deterministic, fast, uniform 53-bit ids. */
function randomIds(seed: number): () => number {
  let a = seed >>> 0 || 1;
  let b = (seed * 0x9e3779b1) >>> 0 || 2;
  let c = 0x6a09e667;
  let d = 0xbb67ae85;
  return () => {
    // one xoshiro128** step per 32-bit output: 21 high bits and 32 low bits
    const next = (): number => {
      const r = (Math.imul(Math.imul(b, 5) << 7 | Math.imul(b, 5) >>> 25, 9)) >>> 0;
      const t = b << 9;
      c ^= a;
      d ^= b;
      b ^= c;
      a ^= d;
      c ^= t;
      d = (d << 11) | (d >>> 21);
      return r;
    };
    const hi = next() >>> 11; // 21 bits
    const lo = next();
    return hi * 2 ** 32 + lo;
  };
}

function nativeManager(): NativeManager {
  const { NativeManager: Ctor } = loadNative();
  return new Ctor({ pools: [{ name: 's', slotSize: 64, queueSize: 16 }], maxAllocationSize: 1 << 20, hardened: false });
}

/** Allocates `n` live unscoped handles (no buffers: status results) and returns their ids. */
function fill(native: NativeManager, n: number): Set<number> {
  const ids = new Set<number>();
  for (let i = 0; i < n; i++) {
    const status = native.allocate(0, 16, 0, 0 /* BufferMode.None */);
    if (status !== 0) throw new Error(`allocation ${i} failed with status ${String(status)}`);
    ids.add(native.out[0]);
  }
  return ids;
}

describe('handle ids', function () {
  this.timeout(120000);

  for (const live of [0, 1000, 100_000]) {
    it(`rejects ${PROBES.toLocaleString('en')} random safe integers as forged with ${live.toLocaleString('en')} live handles`, () => {
      const native = nativeManager();
      try {
        const ids = fill(native, live);
        expect(ids.size, 'distinct live ids').to.equal(live);
        const next = randomIds(0x5eed0000 + live);
        let accepted = 0;
        let forged = 0;
        let other = 0;
        let own = 0;
        let firstBad = -1;
        for (let i = 0; i < PROBES; i++) {
          const id = next();
          if (ids.has(id)) {
            own++;
            continue;
          }
          const mask = native.validate(id, -1);
          if (mask === FORGED_BIT) forged++;
          else {
            if (mask === 0) accepted++;
            else other++;
            if (firstBad < 0) firstBad = id;
          }
        }
        expect([accepted, other, own], `no random id accepted or seen as anything but forged (first: ${firstBad})`).to.deep.equal([0, 0, 0]);
        expect(forged, 'every probe forged').to.equal(PROBES);
        native.channelUsage(0);
        expect(native.out[4], 'each one counted once against the unscoped domain (FORGED_HANDLE)').to.equal(PROBES);
        let valid = 0;
        for (const id of ids) if (native.validate(id, -1) === 0) valid++;
        expect(valid, 'every live id is still valid (paired)').to.equal(live);
      } finally {
        native.release();
      }
    });
  }

  it('the public API agrees: 10,000 random ids among 100,000 live handles are FORGED_HANDLE', () => {
    const mgr = new ResourceManager({ pools: [{ name: 's', slotSize: 64, queueSize: 16 }], leakDetection: 'off' });
    try {
      mgr.defineResourceType('unit', { kind: 'counter' });
      const live = new Set<number>();
      for (let i = 0; i < 100_000; i++) live.add(mgr.allocateResource('unit', 1).id);
      const next = randomIds(0xabc);
      let forged = 0;
      for (let i = 0; i < 10_000; i++) {
        const id = next();
        if (live.has(id)) continue;
        const r = mgr.validateSecurityBoundaries(id);
        if (!r.valid && r.violations.length === 1 && r.violations[0]?.code === 'FORGED_HANDLE') forged++;
      }
      expect(forged, 'all forged').to.equal(10_000);
      expect(unscopedMetrics(mgr).violations['FORGED_HANDLE'], 'all counted').to.equal(10_000);
    } finally {
      mgr.close();
    }
  });

  it('a freed id stays invalid through 1,000,000 reuses of its slot, and is never re-issued', () => {
    // One retained slot (queueSize 1, one slot per slab): every allocation reuses the same slot.
    const mgr = new ResourceManager({ pools: [{ name: 'one', slotSize: 64, queueSize: 1 }], leakDetection: 'off' });
    try {
      const scope = mgr.openChannel('c', { access: 'view' });
      const first = scope.allocate('buffer', 64);
      const firstBuf = first.buffer as Buffer;
      const slot = [firstBuf.buffer, firstBuf.byteOffset] as const;
      expect(scope.deallocate(first), 'freed').to.equal(true);
      const index = Math.floor(first.id / 2 ** 32);
      const generation = Math.floor(first.id / 2 ** 12) % 2 ** 20;
      let sameSlot = 0;
      let reissued = 0;
      let sameIndex = 0;
      let sameIndexSameGeneration = 0;
      let notStale = 0;
      for (let i = 1; i <= 1_000_000; i++) {
        const h = scope.allocate('buffer', 64);
        const b = h.buffer as Buffer;
        if (b.buffer === slot[0] && b.byteOffset === slot[1]) sameSlot++;
        if (h.id === first.id) reissued++;
        if (Math.floor(h.id / 2 ** 32) === index) {
          sameIndex++;
          if (Math.floor(h.id / 2 ** 12) % 2 ** 20 === generation) sameIndexSameGeneration++;
        }
        scope.deallocate(h);
        if (i % 10_000 === 0 && scope.validate(first).violations.map((v) => v.code).join() !== 'STALE_HANDLE') notStale++;
      }
      expect(sameSlot, 'the same memory slot served every allocation').to.equal(1_000_000);
      expect(reissued, 'the freed id was never issued again').to.equal(0);
      // About once per 4096 frees (the quarantine); a little less often with the view fast lane,
      // which holds up to 256 reserved indices out of rotation.
      expect(sameIndex, 'its table index was reused').to.be.within(150, 1_000_000 / 4096 + 1);
      expect(sameIndexSameGeneration, 'always with a new generation').to.equal(0);
      expect(notStale, 'stale at each of the 100 checks').to.equal(0);
      expect(scope.validate(first).violations.map((v) => v.code), 'still stale').to.deep.equal(['STALE_HANDLE']);
      expect(scope.deallocate(first), 'cannot be freed').to.equal(false);
      expect(mgr.verifyCleanupCompletion(first), 'fully released').to.equal(true);
    } finally {
      mgr.close();
    }
  });
});

describe('a stale id whose table index is live again', () => {
  /** More than the 4,096-deep quarantine (native/core/handle_table.h kQuarantine), with room for the fast lane's reserved ids. */
  const CHURN_MAX = 20_000;
  const tableIndex = (id: number): number => Math.floor(id / 2 ** 32);

  const MODES: Array<{ label: string; access: AccessMode; immediate: boolean }> = [
    { label: 'view', access: 'view', immediate: false },
    { label: 'revocable (deferred reuse)', access: 'revocable', immediate: false },
    { label: 'revocable (unsafeImmediateReuse)', access: 'revocable', immediate: true },
  ];
  for (const { label, access, immediate } of MODES) {
    for (const via of ['the manager', 'a scope'] as const) {
      it(`${label} channel, through ${via}: the old id is STALE_HANDLE, cannot be freed or tracked, and the new handle is untouched`, () => {
        const mgr = new ResourceManager({ leakDetection: 'off' });
        try {
          const scope = mgr.openChannel('c', immediate ? { access, unsafeImmediateReuse: true } : { access });
          const allocate = (): ResourceHandle => (via === 'a scope' ? scope.allocate('buffer', 100) : mgr.allocateResource('buffer', 100, 'c'));
          const free = (h: ResourceHandle | number): boolean => (via === 'a scope' ? scope.deallocate(h) : mgr.deallocateResource(h));
          const old = allocate();
          const oldId = old.id;
          expect(free(old), 'the first free').to.equal(true);
          // A fast-lane free parks the slot, still held natively under its last native id; any
          // observation applies the lane (lib/lane/fast-lane.ts), which frees the id's table entry.
          expect(mgr.getResourceMetrics().channels['c'].handles, 'nothing live').to.equal(0);
          let fresh: ResourceHandle | null = null;
          let churned = 0;
          while (fresh === null && churned < CHURN_MAX) {
            const h = allocate();
            churned++;
            if (tableIndex(h.id) === tableIndex(oldId)) fresh = h;
            else expect(free(h), 'a churn free').to.equal(true);
          }
          if (fresh === null) throw new Error(`table index ${tableIndex(oldId)} not reused within ${CHURN_MAX} allocations`);
          expect(churned, 'the index came back only after the quarantine').to.be.greaterThan(4096);
          expect(fresh.id, 'a new id for the index').to.not.equal(oldId);
          const buf = fresh.buffer as Buffer;
          buf.fill(0x5c);

          const validation = via === 'a scope' ? scope.validate(oldId) : mgr.validateSecurityBoundaries(oldId);
          expect(validation.valid, 'the old id is not valid').to.equal(false);
          expect(validation.violations.map((v) => v.code), 'the old id is stale').to.deep.equal(['STALE_HANDLE']);
          expect(free(oldId), 'deallocate(old id)').to.equal(false);
          expect(free(old), 'deallocate(old handle object)').to.equal(false);
          expectCode(() => (via === 'a scope' ? scope.track(oldId) : mgr.trackResourceUsage(oldId)), 'ERR_STALE_HANDLE', 'track(old id)');
          // Deferred reuse: `old` still holds its buffer, so its memory is parked, not released yet.
          const released = access === 'view' || immediate;
          expect(mgr.verifyCleanupCompletion(oldId), released ? 'the old id is fully released' : 'the old id is freed, its memory parked while `old` holds its buffer').to.equal(released);
          old[Symbol.dispose]();

          expect(mgr.validateSecurityBoundaries(fresh), 'the new handle is still valid').to.deep.equal({ valid: true, handleId: fresh.id, channelId: 'c', violations: [] });
          expect(buf.length, 'its buffer is not revoked').to.equal(100);
          expect(buf.every((b) => b === 0x5c), 'its bytes are intact').to.equal(true);
          expect(mgr.trackResourceUsage(fresh).handleId, 'it is tracked under its own id').to.equal(fresh.id);
          expect(mgr.getResourceMetrics().channels['c'], 'the channel holds the new handle only').to.include({ handles: 1, bytesInUse: 4096 });
          expect(free(fresh), 'the new handle frees').to.equal(true);
          expect(mgr.getResourceMetrics().totals.handles, 'nothing left').to.equal(0);
        } finally {
          mgr.close();
        }
      });
    }
  }
});
