/**
 * The native fast lane of single-owner managers: reserveIds() and applyJournal() on the raw
 * NativeManager (the JS side parks deallocated view-mode slots and reuses them under reserved
 * ids, then replays a journal). The ids they make must look right through the public API
 * (validateSecurityBoundaries, getResourceMetrics); bad input must change nothing.
 */
import { expect } from 'chai';
import { ResourceManager } from '../lib';
import { loadNative } from '../lib/native/loader';
import type { NativeAddon, NativeManager } from '../lib/native/binding';
import { stateOf } from './helpers';

const INVALID_ARGUMENT = 1;
const STALE_HANDLE = 9;
const MANAGER_CLOSED = 11;
const REISSUE = 1;
const FREE = 2;
const BURN = 3;

/** A ResourceManager and the raw native manager behind it (captured at construction). */
function managerWithNative(options: ConstructorParameters<typeof ResourceManager>[0] = {}): { mgr: ResourceManager; native: NativeManager } {
  const addon = loadNative() as { NativeManager: NativeAddon['NativeManager'] };
  const Original = addon.NativeManager;
  let captured: NativeManager | undefined;
  addon.NativeManager = class extends (Original as unknown as new (config: unknown) => object) {
    constructor(config: unknown) {
      super(config);
      captured = this as unknown as NativeManager;
    }
  } as unknown as NativeAddon['NativeManager'];
  try {
    const mgr = new ResourceManager(options);
    if (captured === undefined) throw new Error('the native manager was not captured');
    return { mgr, native: captured };
  } finally {
    addon.NativeManager = Original;
  }
}

function codes(mgr: ResourceManager, id: number): string[] {
  return mgr.validateSecurityBoundaries(id).violations.map((v) => v.code);
}

function journal(native: NativeManager, ops: number[][]): void {
  ops.forEach((op, i) => native.journal.set([op[0] ?? 0, op[1] ?? 0, op[2] ?? 0, op[3] ?? 0], i * 4));
}

describe('native fast lane (reserveIds / applyJournal)', () => {
  it('has fastIds (256) and journal (4 x 1024) arrays, and reserves at most 256 ids', () => {
    const { mgr, native } = managerWithNative();
    expect(native.fastIds, 'fastIds').to.be.instanceOf(Float64Array);
    expect(native.fastIds.length, 'fastIds length').to.equal(256);
    expect(native.journal.length, 'journal length').to.equal(4096);
    expect(native.reserveIds(1000), 'min(n, 256)').to.equal(256);
    expect(new Set(native.fastIds).size, '256 distinct ids').to.equal(256);
    for (const n of [NaN, -1, 1.5]) expect(native.reserveIds(n), `n = ${n}`).to.equal(0);
    expect(codes(mgr, native.fastIds[0]!), 'an unconsumed reserved id is not issued').to.deep.equal(['FORGED_HANDLE']);
    mgr.close();
  });

  it('reissues: the new id is live in the same channel, the old one stale; a FREE op frees it', () => {
    const { mgr, native } = managerWithNative();
    mgr.openChannel('v', { access: 'view' });
    const h = mgr.allocateResource('buffer', 100, 'v');
    const before = mgr.getResourceMetrics();
    expect(native.reserveIds(2), 'two ids').to.equal(2);
    const fresh = native.fastIds[0]!;
    journal(native, [[REISSUE, h.id, fresh, 3000]]);
    expect(native.applyJournal(1), 'every op applied').to.equal(-1);

    expect(codes(mgr, h.id), 'the old id').to.deep.equal(['STALE_HANDLE']);
    const v = mgr.validateSecurityBoundaries(fresh);
    expect(v.valid, 'the new id is live').to.equal(true);
    expect(v.channelId, 'in the old id\'s channel').to.equal('v');
    const after = mgr.getResourceMetrics();
    expect(after.totals.allocations, 'one allocation more').to.equal(before.totals.allocations + 1);
    expect(after.totals.deallocations, 'one deallocation more').to.equal(before.totals.deallocations + 1);
    expect(after.totals.handles, 'as many handles').to.equal(before.totals.handles);
    expect(after.totals.bytesInUse, 'the same charge').to.equal(before.totals.bytesInUse);
    expect(after.totals.requestedBytes, 'the new requested size').to.equal(before.totals.requestedBytes + 2900);
    expect(after.pools['small']!.hits, 'a pool hit').to.equal(before.pools['small']!.hits + 1);
    expect(after.channels['v']!.handles, 'the channel still holds one handle').to.equal(1);

    journal(native, [[FREE, fresh]]);
    expect(native.applyJournal(1), 'freed').to.equal(-1);
    expect(codes(mgr, fresh), 'the new id once freed').to.deep.equal(['STALE_HANDLE']);
    expect(mgr.getResourceMetrics().channels['v']!.handles, 'nothing left in the channel').to.equal(0);
    mgr.close();
  });

  it('burns: the id is stale (counted against its slot\'s channel), and the allocation and deallocation show in the totals', () => {
    const { mgr, native } = managerWithNative();
    mgr.openChannel('v', { access: 'view' });
    const source = mgr.allocateResource('buffer', 100, 'v');
    const before = mgr.getResourceMetrics();
    expect(native.reserveIds(1)).to.equal(1);
    const id = native.fastIds[0]!;
    journal(native, [[BURN, id, source.id, 200]]);
    expect(native.applyJournal(1), 'applied').to.equal(-1);
    const after = mgr.getResourceMetrics();
    expect(after.totals.allocations, 'allocations + 1').to.equal(before.totals.allocations + 1);
    expect(after.totals.deallocations, 'deallocations + 1').to.equal(before.totals.deallocations + 1);
    expect(after.totals.handles, 'no handle').to.equal(before.totals.handles);
    expect(after.totals.bytesInUse, 'no charge').to.equal(before.totals.bytesInUse);
    expect(after.totals.requestedBytes, 'no requested bytes').to.equal(before.totals.requestedBytes);
    expect(after.pools['small']!.hits, 'a small-pool hit').to.equal(before.pools['small']!.hits + 1);
    expect(codes(mgr, id), 'stale, not forged').to.deep.equal(['STALE_HANDLE']);
    expect(mgr.verifyCleanupCompletion(id), 'issued and released').to.equal(true);
    expect(mgr.deallocateResource(id), 'a second free').to.equal(false);
    expect(mgr.getResourceMetrics().channels['v']!.violations.STALE_HANDLE, "counted against the slot's channel").to.equal(2);
    expect(mgr.validateSecurityBoundaries(source).valid, 'the source is untouched').to.equal(true);
    mgr.close();
  });

  it('refuses a bad count with -2 and applies nothing', () => {
    const { mgr, native } = managerWithNative();
    mgr.openChannel('v', { access: 'view' });
    const source = mgr.allocateResource('buffer', 100, 'v');
    expect(native.reserveIds(1)).to.equal(1);
    journal(native, [[BURN, native.fastIds[0]!, source.id, 100]]);
    const before = stateOf(mgr);
    const allocations = mgr.getResourceMetrics().totals.allocations;
    for (const count of [NaN, -1, 1.5, 1025, Infinity, '1', undefined]) {
      expect(native.applyJournal(count as number), `count ${String(count)}`).to.equal(-2);
    }
    expect(stateOf(mgr), 'nothing applied').to.deep.equal(before);
    expect(native.applyJournal(0), 'count 0: nothing to do').to.equal(-1);
    expect(native.applyJournal(1), 'the op was still valid').to.equal(-1);
    expect(mgr.getResourceMetrics().totals.allocations, 'applied once').to.equal(allocations + 1);
    mgr.close();
  });

  it('reports the first failing op: those before it applied, it and later ones not', () => {
    const { mgr, native } = managerWithNative();
    mgr.openChannel('v', { access: 'view' });
    const h = mgr.allocateResource('buffer', 100, 'v');
    expect(native.reserveIds(3)).to.equal(3);
    const [a, b, c] = [native.fastIds[0]!, native.fastIds[1]!, native.fastIds[2]!];
    const allocations = mgr.getResourceMetrics().totals.allocations;
    journal(native, [
      [BURN, a, h.id, 100],
      [BURN, a, h.id, 100], // consumed already
      [BURN, b, h.id, 100],
    ]);
    expect(native.applyJournal(3), 'op 1 failed').to.equal(1);
    expect(native.out[0], 'with its status').to.equal(INVALID_ARGUMENT);
    expect(mgr.getResourceMetrics().totals.allocations, 'only op 0 applied').to.equal(allocations + 1);
    expect(codes(mgr, a), 'op 0 burned its id').to.deep.equal(['STALE_HANDLE']);
    expect(codes(mgr, b), 'op 2 did not run').to.deep.equal(['FORGED_HANDLE']);

    journal(native, [
      [REISSUE, h.id, b, 5000], // another pool
      [REISSUE, h.id, b, 100],
    ]);
    expect(native.applyJournal(2), 'a reissue into another pool fails').to.equal(0);
    expect(native.out[0]).to.equal(INVALID_ARGUMENT);
    expect(mgr.validateSecurityBoundaries(h.id).valid, 'the old id is still live').to.equal(true);

    journal(native, [
      [REISSUE, h.id, b, 100],
      [FREE, h.id], // stale now
      [BURN, c, b, 100],
    ]);
    expect(native.applyJournal(3), 'a FREE of a stale id fails').to.equal(1);
    expect(native.out[0], 'as freeIn would: ERR_STALE_HANDLE').to.equal(STALE_HANDLE);
    expect(mgr.validateSecurityBoundaries(b).valid, 'op 0 applied').to.equal(true);
    expect(codes(mgr, c), 'op 2 did not run').to.deep.equal(['FORGED_HANDLE']);

    journal(native, [[7, 0, 0, 0]]);
    expect(native.applyJournal(1), 'an unknown op').to.equal(0);
    expect(native.out[0]).to.equal(INVALID_ARGUMENT);
    mgr.close();
  });

  it('answers -3 (ManagerClosed) and reserves nothing after close; refuses shared and hardened managers', () => {
    const { mgr, native } = managerWithNative();
    mgr.close();
    expect(native.applyJournal(0), 'after close').to.equal(-3);
    expect(native.out[0], 'ManagerClosed').to.equal(MANAGER_CLOSED);
    expect(native.reserveIds(4), 'after close').to.equal(0);

    const config = { pools: [{ name: 's', slotSize: 4096, queueSize: 4 }], maxAllocationSize: 1 << 20, hardened: false };
    const { NativeManager: Ctor } = loadNative();
    for (const [what, c] of [
      ['shared', { ...config, shared: 'isopool-fast-lane-test' }],
      ['hardened', { ...config, hardened: true }],
    ] as const) {
      const m = new Ctor(c);
      expect(m.reserveIds(4), `${what}: refused`).to.equal(0);
      expect(m.hardened, `${what}: hardened says so`).to.equal(what === 'hardened');
      m.release();
    }
    const plain = new Ctor(config);
    expect(plain.hardened, 'a plain manager of this (not hardened) build').to.equal(false);
    plain.release();
  });
});
