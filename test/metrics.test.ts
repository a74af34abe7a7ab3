/**
 * ManagerMetrics (SPEC §5): every field exists with the right type, the snapshot is plain JSON,
 * latency counts follow successful operations, peaks and totals are exact.
 */
import { expect } from 'chai';
import { ResourceHandle, ResourceManager } from '../lib';
import { SMALL_POOLS, VIOLATION_CODES, channelMetrics, collect, expectCode, unscopedMetrics, violations } from './helpers';

const POOL_FIELDS = [
  'slotSize',
  'queueSize',
  'reservedBytes',
  'liveSlots',
  'liveBytes',
  'retainedFreeSlots',
  'hits',
  'misses',
  'releasedToSystem',
  'failures',
] as const;
const CHANNEL_FIELDS = ['bytesInUse', 'handles', 'peakBytes', 'limitRejections'] as const;
const TOTAL_FIELDS = ['handles', 'bytesInUse', 'requestedBytes', 'reservedBytes', 'allocations', 'deallocations', 'refusals'] as const;

/** A count: a safe integer (its value is checked exactly by the caller). */
function expectCount(v: unknown, what: string): void {
  expect(v, `${what} is a number`).to.be.a('number');
  expect(Number.isSafeInteger(v), `${what} is a safe integer`).to.equal(true);
}

function expectChannelShape(ch: unknown, what: string): void {
  expect(ch, what).to.be.an('object');
  const c = ch as Record<string, unknown>;
  for (const f of CHANNEL_FIELDS) expectCount(c[f], `${what}.${f}`);
  expect(c['violations'], `${what}.violations`).to.be.an('object');
  expect(Object.keys(c['violations'] as object).sort(), `${what}.violations lists all seven codes`).to.deep.equal(
    [...VIOLATION_CODES].sort(),
  );
  for (const code of VIOLATION_CODES) expectCount((c['violations'] as Record<string, unknown>)[code], `${what}.violations.${code}`);
}

describe('metrics', () => {
  let mgr: ResourceManager;
  beforeEach(() => {
    mgr = new ResourceManager({ pools: SMALL_POOLS });
  });
  afterEach(() => {
    mgr.close();
  });

  it('has every field of SPEC §5 with the right type', () => {
    mgr.allocateResource('buffer', 1000, 'a');
    mgr.allocateResource('buffer', 5000);
    const m = mgr.getResourceMetrics();
    expect(Object.keys(m.pools), 'configured pools are listed').to.include.members(['s', 'm', 'l']);
    for (const [name, p] of Object.entries(m.pools)) {
      for (const f of POOL_FIELDS) expectCount((p as unknown as Record<string, unknown>)[f], `pools.${name}.${f}`);
    }
    expect(m.pools['s']?.slotSize, 'pools.s.slotSize').to.equal(4096);
    expect(m.pools['s']?.queueSize, 'pools.s.queueSize').to.equal(8);
    expectChannelShape(m.channels['a'], 'channels.a');
    expectChannelShape(unscopedMetrics(mgr), 'unscoped');
    for (const f of TOTAL_FIELDS) expectCount(m.totals[f], `totals.${f}`);
    for (const op of ['allocate', 'deallocate'] as const) {
      const h = m.latencyNs[op];
      for (const f of ['p50', 'p99', 'p999', 'count'] as const) expect(h[f], `latencyNs.${op}.${f}`).to.be.a('number');
      expect(h.p50 <= h.p99 && h.p99 <= h.p999, `latencyNs.${op}: p50 <= p99 <= p999`).to.equal(true);
    }
    expectCount(m.leaks.detected, 'leaks.detected');
    expectCount(m.leaks.reclaimed, 'leaks.reclaimed');

    // the values: one 1000-byte allocation in 'a' (pool s, a slab of 8 slots), one 5000-byte unscoped one (pool m, a slab of 4)
    const pool = (slotSize: number, queueSize: number, reservedBytes: number, liveBytes: number, retained: number): Record<string, number> => ({
      slotSize,
      queueSize,
      reservedBytes,
      liveSlots: liveBytes > 0 ? 1 : 0,
      liveBytes,
      retainedFreeSlots: retained,
      hits: 0,
      misses: liveBytes > 0 ? 1 : 0,
      releasedToSystem: 0,
      failures: 0,
    });
    expect(m.pools['s'], 'pools.s').to.deep.equal(pool(4096, 8, 8 * 4096, 1000, 7));
    expect(m.pools['m'], 'pools.m').to.deep.equal(pool(65536, 4, 4 * 65536, 5000, 3));
    expect(m.pools['l'], 'pools.l: unused').to.deep.equal(pool(1048576, 2, 0, 0, 0));
    expect(m.channels['a'], 'channels.a').to.deep.equal({ bytesInUse: 4096, handles: 1, peakBytes: 4096, limitRejections: 0, violations: violations({}) });
    expect(unscopedMetrics(mgr), 'unscoped').to.deep.equal({ bytesInUse: 65536, handles: 1, peakBytes: 65536, limitRejections: 0, violations: violations({}) });
    expect(m.totals, 'totals').to.deep.equal({
      handles: 2,
      bytesInUse: 4096 + 65536,
      requestedBytes: 6000,
      reservedBytes: 8 * 4096 + 4 * 65536,
      allocations: 2,
      deallocations: 0,
      refusals: 0,
    });
    expect(m.latencyNs.allocate.count, 'two native allocations timed').to.equal(2);
    expect(m.latencyNs.allocate.p50, 'a native allocation takes time').to.be.above(0);
    expect(m.latencyNs.deallocate, 'no deallocation: no samples, quantiles 0').to.deep.equal({ p50: 0, p99: 0, p999: 0, count: 0, sumNs: 0, buckets: new Array<number>(48).fill(0) });
    const a = m.latencyNs.allocate;
    expect(a.buckets.reduce((x, y) => x + y, 0), 'the buckets sum to count').to.equal(2);
    expect(a.sumNs, 'two timed allocations took some time').to.be.above(0);
    // each sample lies in its bucket [2^i, 2^(i+1)) ns, so the sum lies between the bounds' sums
    const lowest = a.buckets.reduce((acc, n, i) => acc + n * (i === 0 ? 0 : 2 ** i), 0);
    const highest = a.buckets.reduce((acc, n, i) => acc + n * 2 ** (i + 1), 0);
    expect(a.sumNs, 'sumNs agrees with the buckets').to.be.within(lowest, highest);
    expect(m.fragmentation.internal, 'fragmentation.internal = 1 - requested / live slot bytes').to.equal(1 - 6000 / (4096 + 65536));
    expect(m.fragmentation.pool, 'fragmentation.pool: every reserved byte is live or a retained free slot').to.equal(0);
    expect(m.leaks, 'leaks').to.deep.equal({ detected: 0, reclaimed: 0 });
    expectCount(m.revocation.pendingRelease, 'revocation.pendingRelease');
  });

  it('is plain JSON: JSON.stringify round-trips it exactly', () => {
    const h = mgr.allocateResource('buffer', 1000, 'a');
    mgr.allocateResource('buffer', 2 * 1024 * 1024, 'b');
    mgr.deallocateResource(h);
    mgr.openChannel('c').validate(4242);
    const m = mgr.getResourceMetrics();
    expect(JSON.parse(JSON.stringify(m)), 'round trip').to.deep.equal(m);
    expect(Object.getPrototypeOf(m), 'a plain object').to.equal(Object.prototype);
  });

  it('returns a fresh snapshot each call (not a live view)', () => {
    const m1 = mgr.getResourceMetrics();
    mgr.allocateResource('buffer', 10);
    const m2 = mgr.getResourceMetrics();
    expect(m1.totals.allocations, 'old snapshot unchanged').to.equal(0);
    expect(m2.totals.allocations, 'new snapshot').to.equal(1);
  });

  it('latency counts equal successful allocations and deallocations only', () => {
    const hs: ResourceHandle[] = [];
    for (let i = 0; i < 7; i++) hs.push(mgr.allocateResource('buffer', 100 + i, i % 2 ? 'a' : undefined));
    for (let i = 0; i < 3; i++) mgr.deallocateResource(hs[i] as ResourceHandle);
    // refused operations add nothing
    expectCode(() => mgr.allocateResource('buffer', 0), 'ERR_INVALID_SIZE', 'size 0');
    mgr.setResourceLimits('buffer', { maxHandles: 4 });
    expectCode(() => mgr.allocateResource('buffer', 1), 'ERR_RESOURCE_LIMIT', 'maxHandles');
    expect(mgr.deallocateResource(hs[0] as ResourceHandle), 'double free').to.equal(false);
    expect(mgr.deallocateResource(31337), 'forged').to.equal(false);
    const m = mgr.getResourceMetrics();
    expect(m.latencyNs.allocate.count, 'allocate count').to.equal(7);
    expect(m.latencyNs.deallocate.count, 'deallocate count').to.equal(3);
    expect([m.totals.allocations, m.totals.deallocations, m.totals.handles], 'totals').to.deep.equal([7, 3, 4]);
    // refusals counts what natively refused: the limit refusal (the size-0 check is in JS)
    expect(m.totals.refusals, 'refusals: the limit refusal').to.equal(1);
  });

  it('tracks peakBytes per channel', () => {
    const hs: ResourceHandle[] = [];
    for (let i = 0; i < 3; i++) hs.push(mgr.allocateResource('buffer', 4096, 'a'));
    mgr.deallocateResource(hs[0] as ResourceHandle);
    mgr.deallocateResource(hs[1] as ResourceHandle);
    mgr.allocateResource('buffer', 10, 'a');
    expect(channelMetrics(mgr, 'a'), 'channel a').to.deep.equal({
      bytesInUse: 8192,
      handles: 2,
      peakBytes: 12288,
      limitRejections: 0,
      violations: violations({}),
    });
  });

  it('reports per-pool live slots, live (requested) bytes, hits and misses; a parked slot stays live until collected', async () => {
    let a: ResourceHandle | undefined = mgr.allocateResource('buffer', 1000);
    const kept = [mgr.allocateResource('buffer', 3000), mgr.allocateResource('buffer', 5000)];
    const m = mgr.getResourceMetrics();
    expect([m.pools['s']?.liveSlots, m.pools['s']?.liveBytes], 'pool s').to.deep.equal([2, 4000]);
    expect([m.pools['m']?.liveSlots, m.pools['m']?.liveBytes], 'pool m').to.deep.equal([1, 5000]);
    expect([m.pools['l']?.liveSlots, m.pools['l']?.liveBytes], 'pool l').to.deep.equal([0, 0]);
    expect([m.totals.handles, m.totals.bytesInUse, m.totals.requestedBytes], 'totals').to.deep.equal([3, 4096 * 2 + 65536, 9000]);
    const s = m.pools['s'];
    expect((s?.hits ?? 0) + (s?.misses ?? 0), 'every allocation is a hit or a miss').to.equal(2);
    mgr.deallocateResource(a);
    const parked = mgr.getResourceMetrics();
    expect([parked.totals.handles, parked.revocation.pendingRelease], 'after a free: two live handles, one parked').to.deep.equal([2, 1]);
    expect([parked.pools['s']?.liveSlots, parked.pools['s']?.liveBytes], 'after a free: the parked slot still counts').to.deep.equal([2, 4000]);
    a = undefined;
    await collect();
    const after = mgr.getResourceMetrics();
    expect(after.revocation.pendingRelease, 'nothing parked once collected').to.equal(0);
    expect([after.pools['s']?.liveSlots, after.pools['s']?.liveBytes], 'after a free, once collected').to.deep.equal([1, 3000]);
    expect(after.pools['s']?.failures, 'no failures').to.equal(0);
    expect(kept.map((h) => mgr.deallocateResource(h)), 'the other handles stayed live').to.deep.equal([true, true]);
  });

  it('reports the slot as free at once after a free with unsafeImmediateReuse', () => {
    mgr.close();
    mgr = new ResourceManager({ pools: SMALL_POOLS, channelDefaults: { unsafeImmediateReuse: true } });
    const a = mgr.allocateResource('buffer', 1000);
    mgr.allocateResource('buffer', 3000);
    mgr.deallocateResource(a);
    const after = mgr.getResourceMetrics();
    expect([after.pools['s']?.liveSlots, after.pools['s']?.liveBytes, after.revocation.pendingRelease], 'after a free').to.deep.equal([1, 3000, 0]);
  });

  it('counts refusals in totals.refusals and the channel limitRejections', () => {
    mgr.openChannel('a');
    mgr.setResourceLimits('buffer', { maxHandles: 1 }, 'a');
    mgr.allocateResource('buffer', 1, 'a');
    expectCode(() => mgr.allocateResource('buffer', 1, 'a'), 'ERR_RESOURCE_LIMIT', 'first refusal');
    expectCode(() => mgr.allocateResource('buffer', 1, 'a'), 'ERR_RESOURCE_LIMIT', 'second refusal');
    const m = mgr.getResourceMetrics();
    expect(m.channels['a']?.limitRejections, 'limitRejections').to.equal(2);
    expect(m.totals.refusals, 'refusals').to.equal(2);
  });

  it('keeps counters per channel apart', () => {
    mgr.allocateResource('buffer', 1000, 'x');
    mgr.allocateResource('buffer', 5000, 'y');
    mgr.allocateResource('buffer', 5000, 'y');
    expect([channelMetrics(mgr, 'x').bytesInUse, channelMetrics(mgr, 'x').handles], 'x').to.deep.equal([4096, 1]);
    expect([channelMetrics(mgr, 'y').bytesInUse, channelMetrics(mgr, 'y').handles], 'y').to.deep.equal([131072, 2]);
    expect(unscopedMetrics(mgr).handles, 'unscoped').to.equal(0);
  });
});
