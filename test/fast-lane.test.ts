/**
 * The view-mode fast lane (lib/lane/fast-lane.ts): view allocations and deallocations served in JS
 * from slots the same channel freed, applied natively before anything observes them.
 *
 * The main test is an equivalence test: one random workload runs on two managers, one with the
 * lane and one without (`ISOPOOL_FASTLANE=off`). Every answer (handles or error codes, booleans,
 * validation results, usage, isolation results, close reports) and, at random observation points,
 * every ledger figure of getResourceMetrics() must be equal. Observations are sparse, so most
 * allocations between them are served by the lane; the test checks that they were.
 *
 * Not compared: ids (random per manager), latency (the lane is not timed), and pool statistics
 * that depend on which slot the native ring hands out (hits, misses, reserved and retained
 * memory): parked slots are held back from the native pools until the next sync.
 */
import { expect } from 'chai';
import { IsopoolError, ResourceHandle, ResourceLimitError, ResourceManager } from '../lib';
import type { ChannelScope, ResourceManagerOptions } from '../lib';
import { loadNative } from '../lib/native/loader';
import type { NativeAddon } from '../lib/native/binding';
import { KiB, MiB, SMALL_POOLS, allZero, bufferOf, collect, collectUntil, expectCode, filledWith, gc, poolMetrics, stateOf, tick } from './helpers';
import { mulberry32 } from './random';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function withoutLane(options: ResourceManagerOptions): ResourceManager {
  const saved = process.env.ISOPOOL_FASTLANE;
  process.env.ISOPOOL_FASTLANE = 'off';
  try {
    return new ResourceManager(options);
  } finally {
    if (saved === undefined) delete process.env.ISOPOOL_FASTLANE;
    else process.env.ISOPOOL_FASTLANE = saved;
  }
}

/** getResourceMetrics() minus what legitimately differs with the lane (see the file comment). */
function ledgers(mgr: ResourceManager): Json {
  const m = JSON.parse(JSON.stringify(mgr.getResourceMetrics())) as { [key: string]: { [key: string]: Json } };
  const pools: { [key: string]: Json } = {};
  for (const [name, p] of Object.entries(m.pools)) {
    const pool = p as { [key: string]: Json };
    pools[name] = { liveSlots: pool.liveSlots, liveBytes: pool.liveBytes };
  }
  const totals = { ...m.totals };
  delete totals.reservedBytes;
  return { pools, channels: m.channels, unscoped: m.unscoped, totals, internal: m.fragmentation.internal, leaks: m.leaks };
}

/** A result with ids taken out, comparable across managers. */
function outcome(fn: () => unknown): Json {
  try {
    const r = fn();
    return r === undefined ? 'ok' : strip(r);
  } catch (e) {
    if (e instanceof IsopoolError) return { error: e.code };
    throw e;
  }
}

function strip(v: unknown): Json {
  if (v === null || typeof v !== 'object') return v as Json;
  if (Array.isArray(v)) return v.map(strip);
  const out: { [key: string]: Json } = {};
  for (const [k, x] of Object.entries(v)) {
    if (k === 'handleId' || k === 'id' || k === 'message' || k === 'ageMs' || k === 'allocationLatencyNs' || k === 'buffer') continue;
    out[k] = strip(x);
  }
  return out;
}

const CHANNELS = [
  { name: 'v1', options: { access: 'view' as const } },
  { name: 'v2', options: { access: 'view' as const } },
  { name: 'vz', options: { access: 'view' as const, zero: 'always' as const } },
  { name: 'r1', options: { access: 'revocable' as const } },
  { name: 'ri', options: { access: 'revocable' as const, unsafeImmediateReuse: true } },
];
const SIZES = [1, 100, 4000, 4096, 4096, 4096, 3000, 5000, 65536, 70000, 2 * MiB];

interface Pair {
  readonly a: ResourceHandle; // with the lane
  readonly b: ResourceHandle; // without
  readonly channel: number; // index in CHANNELS, -1 unscoped
  readonly tag: number;
}

/** Runs `ops` random operations on both managers, comparing as it goes. Returns the lane manager's metrics. */
function runWorkload(seed: number, ops: number, options: ResourceManagerOptions): { metrics: ReturnType<ResourceManager['getResourceMetrics']>; pressureEvents: number } {
  const rand = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const A = new ResourceManager(options);
  const B = withoutLane(options);
  const pressure = { a: [] as string[], b: [] as string[] };
  A.on('pressure', (e) => pressure.a.push(`${e.channelId}:${e.scope}:${e.bytesInUse}`));
  B.on('pressure', (e) => pressure.b.push(`${e.channelId}:${e.scope}:${e.bytesInUse}`));
  const scopes: Array<[ChannelScope, ChannelScope]> = CHANNELS.map((c) => [A.openChannel(c.name, c.options), B.openChannel(c.name, c.options)]);
  const live: Pair[] = [];
  const freed: Pair[] = [];
  let nextTag = 1;
  const same = (what: string, fa: () => unknown, fb: () => unknown): Json => {
    const ra = outcome(fa);
    const rb = outcome(fb);
    expect(ra, `seed ${seed}: ${what}`).to.deep.equal(rb);
    return ra;
  };
  const tagOf = (channel: number, tag: number): number => ((channel + 2) << 24) | tag;
  const check = (step: number): void => {
    expect(ledgers(A), `seed ${seed}, step ${step}: metrics`).to.deep.equal(ledgers(B));
    expect(pressure.a, `seed ${seed}, step ${step}: pressure events`).to.deep.equal(pressure.b);
  };
  for (let step = 0; step < ops; step++) {
    const r = rand();
    if (r < 0.05) {
      // A burst of round trips in one channel (a connection's traffic): mostly the lane's work.
      const c = Math.floor(rand() * CHANNELS.length);
      const size = pick([100, 4096, 4096, 65536]);
      const n = 1 + Math.floor(rand() * 30);
      for (let k = 0; k < n; k++) {
        let ha: ResourceHandle | undefined;
        let hb: ResourceHandle | undefined;
        same(`burst allocate ${size} in ${CHANNELS[c].name}`, () => void (ha = scopes[c][0].allocate('buffer', size)), () => void (hb = scopes[c][1].allocate('buffer', size)));
        if (ha === undefined || hb === undefined) break;
        same('burst deallocate', () => scopes[c][0].deallocate(ha as ResourceHandle), () => scopes[c][1].deallocate(hb as ResourceHandle));
      }
    } else if (r < 0.45 || live.length === 0) {
      // allocate
      const channel = rand() < 0.1 ? -1 : Math.floor(rand() * CHANNELS.length);
      const size = pick(SIZES);
      const viaScope = channel >= 0 && rand() < 0.5;
      let ha: ResourceHandle | undefined;
      let hb: ResourceHandle | undefined;
      const name = channel >= 0 ? CHANNELS[channel].name : undefined;
      same(
        `allocate ${size} in ${name ?? 'unscoped'}`,
        () => {
          ha = viaScope ? scopes[channel][0].allocate('buffer', size) : A.allocateResource('buffer', size, name);
        },
        () => {
          hb = viaScope ? scopes[channel][1].allocate('buffer', size) : B.allocateResource('buffer', size, name);
        },
      );
      if (ha !== undefined && hb !== undefined) {
        expect(ha.buffer?.length, 'buffer length').to.equal(size);
        const buf = ha.buffer as Buffer;
        if (channel >= 0 && CHANNELS[channel].options.zero === 'always') expect(allZero(buf), `seed ${seed}: zero 'always'`).to.equal(true);
        if (size >= 4) {
          // No bytes of another channel: a slot changing owners is zeroed.
          const found = buf.readUInt32LE(0);
          expect(found === 0 || found >>> 24 === channel + 2, `seed ${seed}, step ${step}: bytes of another owner (${found.toString(16)})`).to.equal(true);
          buf.writeUInt32LE(tagOf(channel, nextTag), 0);
        }
        live.push({ a: ha, b: hb, channel, tag: nextTag++ });
      }
    } else if (r < 0.85) {
      // deallocate, through the manager, the owner's scope or dispose
      const i = Math.floor(rand() * live.length);
      const p = live[i];
      live.splice(i, 1);
      freed.push(p);
      if (p.a.size >= 4) expect(p.a.buffer?.length === 0 || p.a.buffer?.readUInt32LE(0) === tagOf(p.channel, p.tag), `seed ${seed}: handle's bytes intact until its free`).to.equal(true);
      const how = rand();
      if (how < 0.2) {
        p.a[Symbol.dispose]();
        p.b[Symbol.dispose]();
      } else if (how < 0.5 && p.channel >= 0) {
        same('scope deallocate', () => scopes[p.channel][0].deallocate(p.a), () => scopes[p.channel][1].deallocate(p.b));
      } else {
        same('deallocate', () => A.deallocateResource(rand() < 0.5 ? p.a : p.a.id), () => B.deallocateResource(p.b));
      }
    } else if (r < 0.88 && freed.length > 0) {
      const p = pick(freed);
      same('double deallocate', () => A.deallocateResource(p.a), () => B.deallocateResource(p.b));
    } else if (r < 0.9 && live.length > 0) {
      // another channel's scope presents a live handle
      const p = pick(live);
      const other = (p.channel + 1 + Math.floor(rand() * (CHANNELS.length - 1))) % CHANNELS.length;
      if (other !== p.channel) same('cross-channel deallocate', () => scopes[other][0].deallocate(p.a), () => scopes[other][1].deallocate(p.b));
    } else if (r < 0.93) {
      const p = rand() < 0.5 && freed.length > 0 ? pick(freed) : pick(live);
      same('validate', () => A.validateSecurityBoundaries(p.a), () => B.validateSecurityBoundaries(p.b));
      same('trackResourceUsage', () => A.trackResourceUsage(p.a), () => B.trackResourceUsage(p.b));
      same('verifyCleanupCompletion', () => A.verifyCleanupCompletion(p.a), () => B.verifyCleanupCompletion(p.b));
    } else if (r < 0.95) {
      const c = pick(CHANNELS).name;
      same('verifyResourceIsolation', () => A.verifyResourceIsolation(c), () => B.verifyResourceIsolation(c));
    } else if (r < 0.97) {
      // limits: a channel's total, a type's total (bytes or handles), or an allocation size (a channel's or the type's)
      const c = Math.floor(rand() * CHANNELS.length);
      const kind = rand();
      const unlimited = rand() < 0.3;
      const held = live.filter((p) => p.channel === c).length;
      const maxHandles = unlimited ? Infinity : Math.max(0, held + Math.floor(rand() * 4) - 1);
      const maxBytes = unlimited ? Infinity : (live.length + 8) * 64 * KiB;
      const typeHandles = unlimited ? Infinity : live.length + Math.floor(rand() * 3);
      const name = CHANNELS[c].name;
      const set = (m: ResourceManager): void => {
        if (kind < 0.35) m.setResourceLimits('*', { maxHandles }, name);
        else if (kind < 0.4) m.setResourceLimits('*', { softBytes: unlimited ? Infinity : 8 * 4096 }, name);
        else if (kind < 0.6) m.setResourceLimits('buffer', { maxBytes });
        else if (kind < 0.7) m.setResourceLimits('buffer', { maxHandles: typeHandles });
        else if (kind < 0.75) m.setResourceLimits('buffer', { maxAllocationSize: unlimited ? Infinity : 4000 });
        else m.setResourceLimits('buffer', { maxAllocationSize: unlimited ? Infinity : 4000 }, name);
      };
      same('setResourceLimits', () => set(A), () => set(B));
    } else if (r < 0.98) {
      // close a channel and reopen it
      const c = Math.floor(rand() * CHANNELS.length);
      const { name, options: opts } = CHANNELS[c];
      same(`closeChannel ${name}`, () => sortReport(A.closeChannel(name)), () => sortReport(B.closeChannel(name)));
      for (let i = live.length - 1; i >= 0; i--) {
        if (live[i].channel === c) {
          freed.push(live[i]);
          live.splice(i, 1);
        }
      }
      scopes[c] = [A.openChannel(name, opts), B.openChannel(name, opts)];
    } else {
      check(step);
    }
  }
  check(ops);
  for (const p of live) {
    A.deallocateResource(p.a);
    B.deallocateResource(p.b);
  }
  check(ops + 1);
  const metrics = A.getResourceMetrics();
  A.close();
  B.close();
  return { metrics, pressureEvents: pressure.a.length };
}

/** A close report with its handles in a stable order (ids differ per manager). */
function sortReport(report: ReturnType<ResourceManager['closeChannel']>): Json {
  const handles = report.handles.map((h) => `${h.resourceType}:${h.size}`).sort();
  return { channelId: report.channelId, count: report.count, bytes: report.bytes, handles };
}

describe('view-mode fast lane', () => {
  for (const [label, options] of [
    ['leak detection off', { pools: SMALL_POOLS, leakDetection: 'off' }],
    ['sampled leak detection (1 in 5)', { pools: SMALL_POOLS, leakDetection: 'sampled', leakSampleRate: 5 }],
    ['default pools', { leakDetection: 'off' }],
  ] as const) {
    it(`answers and ledgers equal a manager without the lane (${label})`, function () {
      this.timeout(60_000);
      let laneAllocations = 0;
      let allocations = 0;
      let pressureEvents = 0;
      for (const seed of [1, 2, 3, 4, 5]) {
        const { metrics: m, pressureEvents: events } = runWorkload(seed, 3000, options);
        laneAllocations += m.fastLane.allocations;
        allocations += m.totals.allocations;
        pressureEvents += events;
      }
      expect(pressureEvents, 'soft limits were crossed (and compared)').to.be.greaterThan(0);
      // The lane must have served a real share of the allocations, or this proves nothing.
      expect(laneAllocations / allocations, 'share of allocations served by the lane').to.be.greaterThan(0.2);
    });
  }
});

describe('view-mode fast lane: targeted cases', () => {
  function viewManager(options: ResourceManagerOptions = {}): { mgr: ResourceManager; v: ChannelScope } {
    const mgr = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off', ...options });
    return { mgr, v: mgr.openChannel('v', { access: 'view' }) };
  }

  it('reuses the slot under a fresh id; the old id is stale (not forged) and its second free is refused', () => {
    const { mgr, v } = viewManager();
    const h1 = v.allocate('buffer', 4096);
    expect(v.deallocate(h1)).to.equal(true);
    const h2 = v.allocate('buffer', 4096);
    expect(h2.id, 'a fresh id').to.not.equal(h1.id);
    // The same slot (view mode's documented stale-reference risk shows it): zero-copy reuse.
    h2.buffer?.writeUInt32LE(0xfeedface, 0);
    expect(h1.buffer?.readUInt32LE(0)).to.equal(0xfeedface);
    const m = mgr.getResourceMetrics();
    expect(m.fastLane, 'served by the lane').to.deep.include({ enabled: true, allocations: 1, deallocations: 1 });
    expect(m.totals).to.deep.include({ handles: 1, allocations: 2, deallocations: 1, bytesInUse: 4096, requestedBytes: 4096 });
    expect(m.latencyNs.allocate.count, 'lane allocations are not timed').to.equal(1);
    expect([m.pools.s.misses, m.pools.s.hits], 'the first allocation a miss, the lane allocation a pool hit').to.deep.equal([1, 1]);
    const stale = mgr.validateSecurityBoundaries(h1);
    expect(stale.valid).to.equal(false);
    expect(stale.violations.map((x) => x.code)).to.deep.equal(['STALE_HANDLE']);
    expect(v.deallocate(h1), 'a second free of the old id').to.equal(false);
    expect(mgr.validateSecurityBoundaries(h2).valid, 'the new id is live').to.equal(true);
    expect(mgr.trackResourceUsage(h2)).to.deep.include({ channelId: 'v', requestedBytes: 4096, slotBytes: 4096, channelBytesInUse: 4096 });
    mgr.close();
  });

  it('a lane id freed and never observed is stale afterwards, counted against its channel', () => {
    const { mgr, v } = viewManager();
    v.deallocate(v.allocate('buffer', 100));
    const h = v.allocate('buffer', 100); // lane
    expect(v.deallocate(h)).to.equal(true); // lane again: the id is burned at the next sync
    expect(mgr.deallocateResource(h)).to.equal(false);
    expect(mgr.verifyCleanupCompletion(h)).to.equal(true);
    const m = mgr.getResourceMetrics();
    expect(m.channels.v.violations.STALE_HANDLE).to.equal(1);
    expect(m.totals).to.deep.include({ handles: 0, allocations: 2, deallocations: 2, bytesInUse: 0 });
    expect(m.fastLane.allocations).to.equal(1);
    mgr.close();
  });

  it("zeroes a reused slot in a zero: 'always' channel, and never hands a parked slot to another channel", () => {
    const mgr = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off' });
    const z = mgr.openChannel('z', { access: 'view', zero: 'always' });
    const other = mgr.openChannel('o', { access: 'view' });
    const h1 = z.allocate('buffer', 4096);
    h1.buffer?.fill(0xaa);
    z.deallocate(h1);
    const h2 = z.allocate('buffer', 4096);
    expect(mgr.getResourceMetrics().fastLane.allocations).to.equal(1);
    expect(allZero(h2.buffer as Buffer), 'zeroed on reuse').to.equal(true);
    h2.buffer?.fill(0xbb);
    z.deallocate(h2);
    const h3 = other.allocate('buffer', 4096);
    expect(allZero(h3.buffer as Buffer), "another channel never sees z's bytes").to.equal(true);
    expect(mgr.getResourceMetrics().fastLane.allocations, 'not from the lane').to.equal(1);
    mgr.close();
  });

  it('holds hard limits exactly, including a limit lowered below current usage', () => {
    const { mgr, v } = viewManager();
    mgr.setResourceLimits('*', { maxHandles: 1 }, 'v');
    const h1 = v.allocate('buffer', 4096);
    v.deallocate(h1);
    const h2 = v.allocate('buffer', 4096); // lane
    expectCode(() => v.allocate('buffer', 4096), 'ERR_RESOURCE_LIMIT', 'a second handle');
    v.deallocate(h2);
    mgr.setResourceLimits('*', { maxHandles: Infinity }, 'v');
    const held = [v.allocate('buffer', 4096), v.allocate('buffer', 4096), v.allocate('buffer', 4096)];
    mgr.setResourceLimits('*', { maxHandles: 1 }, 'v');
    v.deallocate(held[0]);
    // Two are still live against a limit of one: the freed slot must not come back.
    expectCode(() => v.allocate('buffer', 4096), 'ERR_RESOURCE_LIMIT', 'over a lowered limit');
    expect(mgr.getResourceMetrics().channels.v).to.deep.include({ handles: 2, bytesInUse: 2 * 4096 });
    mgr.close();
  });

  it("keeps other channels' parked slots under a type total's hard limit while it has room, and answers as if they were free", () => {
    // Three view channels under a type total of three slots, each step on a manager with the
    // lane and one without: the same answers, errors and ledgers.
    const run = (mgr: ResourceManager): Json[] => {
      const [a, b, c] = ['a', 'b', 'c'].map((name) => mgr.openChannel(name, { access: 'view' }));
      mgr.setResourceLimits('buffer', { maxBytes: 3 * 4096 });
      const seen: Json[] = [];
      const limitOf = (fn: () => unknown): Json => {
        try {
          fn();
          return 'ok';
        } catch (e) {
          if (!(e instanceof ResourceLimitError)) throw e;
          return { code: e.code, scope: e.scope, limit: e.limit, inUse: e.inUse };
        }
      };
      a.deallocate(a.allocate('buffer', 4096)); // parked in a
      const b1 = b.allocate('buffer', 4096); // native: a's slot stays parked
      b.allocate('buffer', 4096);
      const a2 = a.allocate('buffer', 4096); // a's parked slot: the total is full now
      seen.push(limitOf(() => c.allocate('buffer', 4096)));
      a.deallocate(a2); // parked: the total refuses c with it, not without it
      seen.push(limitOf(() => c.allocate('buffer', 4096)));
      b.deallocate(b1);
      let c2: ResourceHandle | undefined;
      seen.push(limitOf(() => (c2 = c.allocate('buffer', 4096))));
      seen.push(limitOf(() => a.allocate('buffer', 4096)));
      // A handle limit on the total instead, with a parked slot of c in it.
      mgr.setResourceLimits('buffer', { maxBytes: Infinity, maxHandles: 3 });
      c.deallocate(c2 as ResourceHandle);
      seen.push(limitOf(() => a.allocate('buffer', 4096)));
      seen.push(limitOf(() => a.allocate('buffer', 4096)));
      seen.push(ledgers(mgr));
      return seen;
    };
    const A = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off' });
    const B = withoutLane({ pools: SMALL_POOLS, leakDetection: 'off' });
    const withLane = run(A);
    expect(withLane, 'with the lane, as without it').to.deep.equal(run(B));
    const full = { code: 'ERR_RESOURCE_LIMIT', scope: 'type', limit: 3 * 4096, inUse: 3 * 4096 };
    expect(withLane.slice(0, 6)).to.deep.equal([full, 'ok', 'ok', full, 'ok', { code: 'ERR_RESOURCE_LIMIT', scope: 'type', limit: 3, inUse: 3 }]);
    const m = A.getResourceMetrics();
    expect(m.fastLane.allocations, "a's parked slot outlived b's native allocations").to.equal(1);
    expect(m.channels.c.limitRejections, 'only real refusals counted').to.equal(1);
    expect(m.channels.a.limitRejections).to.equal(2);
    A.close();
    B.close();
  });

  it('serves larger sizes of the same pool only as far as a maxAllocationSize limit allows', () => {
    const { mgr, v } = viewManager();
    mgr.setResourceLimits('buffer', { maxAllocationSize: 2000 }, 'v');
    v.deallocate(v.allocate('buffer', 1000));
    expectCode(() => v.allocate('buffer', 3000), 'ERR_RESOURCE_LIMIT', 'above the size limit');
    v.deallocate(v.allocate('buffer', 1000));
    v.deallocate(v.allocate('buffer', 900)); // at most the admitted size: the lane
    expect(mgr.getResourceMetrics().fastLane.allocations).to.equal(1);
    v.deallocate(v.allocate('buffer', 1000));
    v.deallocate(v.allocate('buffer', 1500)); // more than admitted (still within the limit): native
    expect(mgr.getResourceMetrics().fastLane.allocations).to.equal(1);
    expect(mgr.getResourceMetrics().totals.allocations).to.equal(5);
    mgr.close();
  });

  it('leaves a channel with a soft limit to the native path (each crossing raises its event); a type total with one turns the lane off', () => {
    const { mgr, v } = viewManager();
    const w = mgr.openChannel('w', { access: 'view' });
    let events = 0;
    mgr.on('pressure', () => events++);
    mgr.setResourceLimits('*', { softBytes: 4096 }, 'v');
    for (let i = 0; i < 3; i++) {
      const a = v.allocate('buffer', 4096);
      const b = v.allocate('buffer', 4096);
      v.deallocate(b);
      v.deallocate(a);
    }
    expect(events, 'one crossing per round').to.equal(3);
    expect(mgr.getResourceMetrics().fastLane, 'not in v').to.deep.include({ enabled: true, allocations: 0 });
    for (let i = 0; i < 3; i++) w.deallocate(w.allocate('buffer', 4096));
    expect(mgr.getResourceMetrics().fastLane, 'still in w').to.deep.include({ enabled: true, allocations: 2 });
    mgr.setResourceLimits('buffer', { softBytes: 1 << 30 });
    for (let i = 0; i < 3; i++) w.deallocate(w.allocate('buffer', 4096));
    expect(mgr.getResourceMetrics().fastLane, 'off').to.deep.include({ enabled: false, allocations: 2 });
    mgr.close();
  });

  it('closeChannel reports and revokes lane-issued handles', () => {
    const { mgr, v } = viewManager();
    v.deallocate(v.allocate('buffer', 4096));
    const h = v.allocate('buffer', 4096); // lane
    const kept = v.allocate('buffer', 100);
    const report = mgr.closeChannel('v');
    expect(report.count).to.equal(2);
    expect(report.handles.map((x) => x.id).sort()).to.deep.equal([h.id, kept.id].sort());
    expect(mgr.validateSecurityBoundaries(h).violations.map((x) => x.code)).to.deep.equal(['CHANNEL_CLOSED']);
    expect(mgr.deallocateResource(h)).to.equal(false);
    expect(mgr.getResourceMetrics().totals).to.deep.include({ handles: 0, bytesInUse: 0 });
    mgr.close();
  });

  describe("watched handles ('sampled' leak detection) go through the lane too", () => {
    // leakSampleRate 1: every allocation is watched, so every lane allocation here is a watched one.
    function watchedManager(zero: 'cross-channel' | 'always' = 'cross-channel'): { mgr: ResourceManager; v: ChannelScope; w: ChannelScope } {
      const mgr = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'sampled', leakSampleRate: 1 });
      return { mgr, v: mgr.openChannel('v', { access: 'view', zero }), w: mgr.openChannel('w', { access: 'view' }) };
    }

    it('a dropped watched lane handle is found and reclaimed (the native side learns its id first)', async () => {
      const { mgr, v } = watchedManager();
      const leaks: number[] = [];
      mgr.on('leak', (e: { handleId: number }) => leaks.push(e.handleId));
      try {
        v.deallocate(v.allocate('buffer', 100)); // native, adopted; parked by its deallocation
        const dropped = ((): number => {
          const h = v.allocate('buffer', 100); // lane, watched
          (h.buffer as Buffer).fill(7);
          return h.id;
        })();
        expect(await collectUntil(() => leaks.length > 0), 'leak found').to.equal(true);
        expect(leaks, 'the lane handle').to.deep.equal([dropped]);
        const m = mgr.getResourceMetrics();
        expect(m.fastLane, 'it was a lane allocation').to.deep.include({ allocations: 1, deallocations: 1 });
        expect(m.leaks, 'reclaimed').to.deep.equal({ detected: 1, reclaimed: 1 });
        expect(m.channels.v, 'refunded').to.deep.include({ handles: 0, bytesInUse: 0 });
        expect(m.totals).to.deep.include({ handles: 0, allocations: 2, deallocations: 2 });
        expect(mgr.validateSecurityBoundaries(dropped).valid, 'its id is dead').to.equal(false);
      } finally {
        mgr.close();
      }
    });

    it('a watched lane handle freed normally is unwatched: never a leak, its id stale, its view zeroed with zero: always', async () => {
      const { mgr, v } = watchedManager('always');
      const leaks: number[] = [];
      mgr.on('leak', (e: { handleId: number }) => leaks.push(e.handleId));
      try {
        const first = v.allocate('buffer', 100);
        (first.buffer as Buffer).fill(9);
        v.deallocate(first);
        const h = v.allocate('buffer', 100); // lane, watched: a view of its own, zeroed
        expect(h.buffer, 'a new view (the lane keeps none of a watched handle)').to.not.equal(first.buffer);
        expect(allZero(h.buffer as Buffer), 'zero: always').to.equal(true);
        expect(v.deallocate(h), 'parked').to.equal(true);
        expect(mgr.deallocateResource(h), 'second free').to.equal(false);
        const m = mgr.getResourceMetrics();
        expect(m.channels.v.violations, 'stale, not forged: the record went with the watch').to.deep.include({ STALE_HANDLE: 1, FORGED_HANDLE: 0 });
        expect(m.fastLane, 'both deallocations parked').to.deep.include({ allocations: 1, deallocations: 2 });
        for (let i = 0; i < 5; i++) {
          gc();
          await tick();
        }
        expect(leaks, 'no leak').to.deep.equal([]);
        expect(mgr.getResourceMetrics().leaks).to.deep.equal({ detected: 0, reclaimed: 0 });
      } finally {
        mgr.close();
      }
    });

    it("a watched lane handle presented by another channel's scope is a CROSS_CHANNEL violation (not forged)", () => {
      const { mgr, v, w } = watchedManager();
      try {
        v.deallocate(v.allocate('buffer', 100));
        const h = v.allocate('buffer', 100); // lane, watched
        expect(w.deallocate(h), 'refused').to.equal(false);
        const m = mgr.getResourceMetrics();
        expect(m.channels.w.violations, 'counted against the presenter').to.deep.include({ CROSS_CHANNEL: 1, FORGED_HANDLE: 0 });
        expect(v.deallocate(h), 'its own channel frees it').to.equal(true);
        expect(mgr.getResourceMetrics().channels.v).to.deep.include({ handles: 0, bytesInUse: 0 });
      } finally {
        mgr.close();
      }
    });
  });

  it('a handle moved by transferHandle leaves the lane', () => {
    const { mgr, v } = viewManager();
    v.deallocate(v.allocate('buffer', 4096));
    const h = v.allocate('buffer', 4096); // lane
    const id = mgr.transferHandle(h);
    expect(mgr.deallocateResource(h), 'in transit: freed through the native path').to.equal(true);
    expect(mgr.getResourceMetrics().fastLane.deallocations, 'not parked').to.equal(1);
    expect(mgr.validateSecurityBoundaries(id).valid).to.equal(false);
    mgr.close();
  });

  it('is off with ISOPOOL_FASTLANE=off, for shared and hardened managers and with paranoid leak detection', () => {
    const check = (mgr: ResourceManager, what: string): void => {
      const v = mgr.openChannel('v', { access: 'view' });
      for (let i = 0; i < 3; i++) v.deallocate(v.allocate('buffer', 4096));
      expect(mgr.getResourceMetrics().fastLane, what).to.deep.include({ enabled: false, allocations: 0 });
      mgr.close();
    };
    check(withoutLane({ leakDetection: 'off' }), 'ISOPOOL_FASTLANE=off');
    check(new ResourceManager({ hardened: true, leakDetection: 'off' }), 'hardened');
    check(new ResourceManager({ leakDetection: 'paranoid' }), 'paranoid');
    check(new ResourceManager({ shared: `fast-lane-test-${process.pid}`, leakDetection: 'off' }), 'shared');
  });

  it('is off when the native manager is hardened though the options do not say so (a -DISOPOOL_HARDENED=1 build)', () => {
    // Such a build hardens every manager; here its native side is simulated by a manager whose
    // `hardened` reads true. With the lane on, deallocations would park slots and the canary
    // checks of their frees would wait for a sync.
    const addon = loadNative() as { NativeManager: NativeAddon['NativeManager'] };
    const Original = addon.NativeManager;
    addon.NativeManager = class extends (Original as unknown as new (config: unknown) => object) {
      constructor(config: unknown) {
        super(config);
        // (A proxy over another object: `hardened` is a read-only own property of the real one.)
        const real = this as Record<string | symbol, unknown>;
        return new Proxy(
          {},
          {
            get: (_target, key) => {
              if (key === 'hardened') return true;
              const value = real[key];
              return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(real) : value;
            },
          },
        );
      }
    } as unknown as NativeAddon['NativeManager'];
    let mgr: ResourceManager;
    try {
      mgr = new ResourceManager({ leakDetection: 'off' });
    } finally {
      addon.NativeManager = Original;
    }
    const v = mgr.openChannel('v', { access: 'view' });
    for (let i = 0; i < 3; i++) v.deallocate(v.allocate('buffer', 4096));
    expect(mgr.getResourceMetrics().fastLane, 'lane off').to.deep.include({ enabled: false, allocations: 0, deallocations: 0 });
    expect(mgr.getResourceMetrics().totals.allocations, 'served natively').to.equal(3);
    mgr.close();
  });
});

/**
 * `unsafeImmediateReuse` revocable channels (here through channelDefaults) take the lane where
 * revocation is by `transfer()` (Node >= 21, or Node 20
 * started with --harmony-rab-gsab-transfer; CI runs both): a deallocation moves the backing store
 * out of the handle's buffer (the revocation) into an ArrayBuffer the lane parks, and the next
 * allocation of the same channel, type, pool and exact size gets that ArrayBuffer. Elsewhere
 * revocable channels stay on the native path; each test states what must hold on this Node.
 * Deferred reuse (the default) never takes the lane: a freed buffer stays attached until collected.
 */
const HAS_TRANSFER = typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === 'function';

describe(`revocable fast lane on unsafeImmediateReuse channels (transfer() ${HAS_TRANSFER ? 'available' : 'not available'} on ${process.version})`, () => {
  const POOLS = [{ name: 's', slotSize: 4096, queueSize: 8 }];
  let mgr: ResourceManager;
  beforeEach(() => {
    mgr = new ResourceManager({ pools: POOLS, leakDetection: 'off', channelDefaults: { unsafeImmediateReuse: true } });
  });
  afterEach(() => mgr.close());

  const lane = (): { allocations: number; deallocations: number } => mgr.getResourceMetrics().fastLane;

  it('serves round trips of the same size from the lane, each buffer revoked, with exact ledgers and counts', () => {
    const r = mgr.openChannel('r');
    const stale: Buffer[] = [];
    let previous: ArrayBuffer | null = null;
    for (let i = 0; i < 20; i++) {
      const h = r.allocate('buffer', 1000);
      const buf = bufferOf(h);
      expect(buf.length, `round ${i}: exactly the requested size`).to.equal(1000);
      expect(buf.buffer, `round ${i}: a new ArrayBuffer each time`).to.not.equal(previous);
      previous = buf.buffer as ArrayBuffer;
      buf.fill(i + 1);
      expect(r.deallocate(h), `round ${i}: freed`).to.equal(true);
      expect(buf.length, `round ${i}: revoked at once`).to.equal(0);
      stale.push(buf);
    }
    const m = mgr.getResourceMetrics();
    expect(m.fastLane.allocations, 'lane allocations').to.equal(HAS_TRANSFER ? 19 : 0);
    expect(m.fastLane.deallocations, 'lane deallocations').to.equal(HAS_TRANSFER ? 20 : 0);
    expect(m.revocation, 'one external ArrayBuffer; every later allocation reused its store').to.deep.include(
      HAS_TRANSFER ? { method: 'transfer', buffersCreated: 1, buffersReused: 19 } : { method: 'detach', buffersCreated: 20, buffersReused: 0 },
    );
    expect(m.totals, 'every round trip counted once').to.deep.include({ allocations: 20, deallocations: 20, handles: 0, bytesInUse: 0 });
    expect(poolMetrics(mgr, 's'), 'one slot, reused').to.deep.include({ liveSlots: 0, hits: 19, misses: 1 });
    const last = bufferOf(r.allocate('buffer', 1000));
    last.fill(0x77);
    for (const s of stale) {
      s[0] = 0x55;
      expect(s[0], 'a stale reference reads nothing').to.equal(undefined);
    }
    expect(filledWith(last, 0x77), 'and wrote nothing').to.equal(true);
  });

  it('serves a size parked below the top of the stack (a channel alternating sizes stays in the lane), up to nine deep', () => {
    const r = mgr.openChannel('r');
    // Sizes of one pool: 1..4096 bytes all come from the 4 KiB pool.
    const sizes = [4096, 1000, 200];
    const held = sizes.map((n, i) => {
      const h = r.allocate('buffer', n);
      bufferOf(h).fill(0x10 + i);
      return h;
    });
    // (Metrics sync the lane, which frees every parked slot: read them only around the work.)
    const before = lane().allocations;
    for (const h of held) r.deallocate(h); // parked: 4096 at the bottom, 200 on top
    for (const [i, n] of sizes.entries()) {
      const h = r.allocate('buffer', n);
      const buf = bufferOf(h);
      expect(buf.length, `${n} bytes`).to.equal(n);
      // Same channel: no zeroing, so the memory shows whose slot it was.
      expect(filledWith(buf, 0x10 + i), `${n} bytes: the slot parked with ${n} bytes`).to.equal(true);
      held[i] = h;
    }
    expect(lane().allocations - before, 'all three from the lane').to.equal(HAS_TRANSFER ? 3 : 0);
    for (const h of held) r.deallocate(h);
    const m = mgr.getResourceMetrics();
    expect(m.totals, 'every allocation and free counted once').to.deep.include({ allocations: 6, deallocations: 6, handles: 0, bytesInUse: 0 });
    if (HAS_TRANSFER) expect(m.revocation, 'three backing stores, each reused once').to.deep.include({ buffersCreated: 3, buffersReused: 3 });

    // The wanted size under 8 parked slots of other sizes is found; under 9 it is not.
    for (const above of [8, 9]) {
      const c = mgr.openChannel(`deep-${above}`);
      const deep = c.allocate('buffer', 3000);
      const others = Array.from({ length: above }, (_, i) => c.allocate('buffer', 100 + i));
      const beforeDeep = lane().allocations;
      c.deallocate(deep);
      for (const h of others) c.deallocate(h);
      c.deallocate(c.allocate('buffer', 3000));
      expect(lane().allocations - beforeDeep, `${above} parked slots above it`).to.equal(HAS_TRANSFER && above === 8 ? 1 : 0);
      mgr.closeChannel(`deep-${above}`);
    }
    expect(mgr.getResourceMetrics().totals).to.deep.include({ handles: 0, bytesInUse: 0 });
  });

  it('never hands a parked slot to another channel or another size: those get zeroed memory or a new buffer natively', () => {
    const r = mgr.openChannel('r');
    const other = mgr.openChannel('o');
    const h = r.allocate('buffer', 4096);
    bufferOf(h).fill(0x5a);
    r.deallocate(h);
    const before = lane().allocations;
    const o = other.allocate('buffer', 4096);
    expect(lane().allocations, 'another channel: native path').to.equal(before);
    expect(allZero(bufferOf(o)), 'cross-channel reuse is zeroed').to.equal(true);
    other.deallocate(o);
    r.deallocate(r.allocate('buffer', 4096)); // the slot is the channel's again
    const sized = r.allocate('buffer', 100);
    expect(bufferOf(sized).length, 'another length').to.equal(100);
    expect(lane().allocations, 'another length: native path (a buffer is exactly its size)').to.equal(before);
    r.deallocate(sized);
    expect(mgr.getResourceMetrics().totals).to.deep.include({ handles: 0, bytesInUse: 0 });
  });

  it("opening, looking up and closing one channel leave the other channels' parked slots in the lane, and the close is exact", () => {
    const a = mgr.openChannel('a');
    const b = mgr.openChannel('b');
    const v = mgr.openChannel('v', { access: 'view' });
    // No metrics are read until the end: reading them syncs the lane.
    a.deallocate(a.allocate('buffer', 700));
    const live = a.allocate('buffer', 700); // the lane's: an id the native side has not seen yet
    const liveBuf = bufferOf(live);
    a.deallocate(a.allocate('buffer', 300)); // parked in a's lane
    b.deallocate(b.allocate('buffer', 900)); // in b's
    v.deallocate(v.allocate('buffer', 200)); // in v's
    mgr.openChannel('c').allocate('buffer', 100);
    const report = mgr.closeChannel('a');
    expect(mgr.channel('b'), 'a lookup').to.not.equal(undefined);
    const hb = b.allocate('buffer', 900);
    const hv = v.allocate('buffer', 200);
    expect(lane().allocations, "live, then b's and v's parked slots after another channel's open and close and a lookup").to.equal(HAS_TRANSFER ? 3 : 1);
    // The close freed a's one live handle, under the id its holder has, and nothing parked.
    expect(report.count, 'a parked slot is not a handle').to.equal(1);
    expect(report.handles.map((x) => x.id)).to.deep.equal([live.id]);
    expect(report.bytes, "charged: a whole slot").to.equal(4096);
    expect(liveBuf.length, 'revoked').to.equal(0);
    expect(mgr.validateSecurityBoundaries(live).violations.map((x) => x.code)).to.deep.equal(['CHANNEL_CLOSED']);
    const m = mgr.getResourceMetrics();
    expect(Object.keys(m.channels).sort()).to.deep.equal(['b', 'c', 'v']);
    expect(m.channels.b).to.deep.include({ bytesInUse: 4096, handles: 1 });
    expect(m.channels.v).to.deep.include({ bytesInUse: 4096, handles: 1 });
    expect(m.totals).to.deep.include({ handles: 3, bytesInUse: 3 * 4096, requestedBytes: 1200 });
    expect(poolMetrics(mgr, 's').liveSlots, 'no slot lost or held twice').to.equal(3);
    expect(mgr.validateSecurityBoundaries(hb).valid && mgr.validateSecurityBoundaries(hv).valid).to.equal(true);
  });

  it('closeChannel and transferHandle revoke lane-served buffers, and report them', () => {
    const r = mgr.openChannel('r');
    r.deallocate(r.allocate('buffer', 512));
    const h = r.allocate('buffer', 512);
    const buf = bufferOf(h);
    r.deallocate(r.allocate('buffer', 64));
    const moved = r.allocate('buffer', 64);
    const movedBuf = bufferOf(moved);
    expect(lane().allocations, 'both served by the lane').to.equal(HAS_TRANSFER ? 2 : 0);
    const id = mgr.transferHandle(moved);
    expect(movedBuf.length, 'transferHandle revokes').to.equal(0);
    const adopted = mgr.adoptHandle(id);
    expect(bufferOf(adopted).length, 'the adopter reaches the memory').to.equal(64);
    const report = mgr.closeChannel('r');
    expect(report.count).to.equal(2);
    expect(report.handles.map((x) => x.id).sort()).to.deep.equal([h.id, adopted.id].sort());
    expect(buf.length, 'closeChannel revokes').to.equal(0);
    expect(mgr.deallocateResource(h), 'its id is dead').to.equal(false);
    expect(mgr.getResourceMetrics().totals).to.deep.include({ handles: 0, bytesInUse: 0 });
  });

  it('a lane-served buffer whose memory user code moved away keeps that memory from everyone until it is collected', async () => {
    const r = mgr.openChannel('r');
    r.deallocate(r.allocate('buffer', 4096));
    const h = r.allocate('buffer', 4096);
    expect(lane().allocations, 'served by the lane').to.equal(HAS_TRANSFER ? 1 : 0);
    bufferOf(h).fill(0x11);
    const ab = bufferOf(h).buffer as ArrayBuffer & { transfer?: () => ArrayBuffer };
    let stolen: Uint8Array | null = HAS_TRANSFER && ab.transfer !== undefined ? new Uint8Array(ab.transfer()) : null;
    if (stolen === null) return; // no transfer(): revocation-steal.test.ts covers BYOB reads natively
    expect(r.deallocate(h), 'freed').to.equal(true);
    expect(poolMetrics(mgr, 's').liveSlots, 'the memory is parked, not back in the pool').to.equal(1);
    const victim = mgr.openChannel('victim');
    const held = [];
    for (let i = 0; i < 8; i++) {
      const v = victim.allocate('buffer', 4096);
      bufferOf(v).fill(0x42);
      held.push(v);
    }
    expect(stolen.every((b) => b === 0x11), 'the moved memory was never handed to anyone').to.equal(true);
    for (const v of held) victim.deallocate(v);
    stolen = null;
    const released = await collectUntil(() => poolMetrics(mgr, 's').liveSlots === 0);
    expect(released, 'returned once the moved buffer was collected').to.equal(true);
    expect(mgr.getResourceMetrics().totals).to.deep.include({ handles: 0, bytesInUse: 0 });
  });

  it("watched handles ('sampled' leak detection) stay on the native path, and a dropped one is still found", async () => {
    mgr.close();
    mgr = new ResourceManager({ pools: POOLS, leakDetection: 'sampled', leakSampleRate: 1, channelDefaults: { unsafeImmediateReuse: true } });
    const leaks: number[] = [];
    mgr.on('leak', (e) => leaks.push(e.handleId));
    const r = mgr.openChannel('r');
    for (let i = 0; i < 4; i++) r.deallocate(r.allocate('buffer', 256));
    expect(lane().allocations, 'no watched handle takes the lane').to.equal(0);
    let dropped: ResourceHandle | null = r.allocate('buffer', 256);
    const id = dropped.id;
    dropped = null;
    expect(await collectUntil(() => leaks.length > 0), 'the leak is detected').to.equal(true);
    expect(leaks).to.deep.equal([id]);
    expect(mgr.getResourceMetrics().totals).to.deep.include({ handles: 0, bytesInUse: 0 });
  });
});

describe(`revocable fast lane: deferred reuse (the default) never takes it (transfer() ${HAS_TRANSFER ? 'available' : 'not available'} on ${process.version})`, () => {
  const POOLS = [{ name: 's', slotSize: 4096, queueSize: 8 }];
  let mgr: ResourceManager;
  beforeEach(() => {
    mgr = new ResourceManager({ pools: POOLS, leakDetection: 'off' });
  });
  afterEach(() => mgr.close());

  /** 20 round trips of 1000 bytes in channel 'r'; returns nothing that reaches the freed buffers. */
  function roundTrips(): void {
    const r = mgr.openChannel('r');
    let previous: ArrayBuffer | null = null;
    for (let i = 0; i < 20; i++) {
      const h = r.allocate('buffer', 1000);
      const buf = bufferOf(h);
      expect(buf.buffer, `round ${i}: a new ArrayBuffer each time`).to.not.equal(previous);
      previous = buf.buffer as ArrayBuffer;
      buf.fill(i + 1);
      expect(r.deallocate(h), `round ${i}: freed`).to.equal(true);
      expect([buf.length, filledWith(buf, i + 1)], `round ${i}: not revoked, same bytes`).to.deep.equal([1000, true]);
    }
  }

  it('round trips go to native, each freed buffer stays attached and parked, and every slot returns once collected', async () => {
    roundTrips();
    const m = mgr.getResourceMetrics();
    expect([m.fastLane.allocations, m.fastLane.deallocations], 'nothing through the lane').to.deep.equal([0, 0]);
    expect(m.revocation, 'one external ArrayBuffer per allocation, none reused, all parked').to.deep.include({
      method: HAS_TRANSFER ? 'transfer' : 'detach',
      buffersCreated: 20,
      buffersReused: 0,
      pendingRelease: 20,
    });
    expect(m.totals, 'every round trip counted once').to.deep.include({ allocations: 20, deallocations: 20, handles: 0, bytesInUse: 0 });
    expect(poolMetrics(mgr, 's').liveSlots, 'the parked slots are live').to.equal(20);
    await collectUntil(() => mgr.getResourceMetrics().revocation.pendingRelease === 0);
    expect(mgr.getResourceMetrics().revocation.pendingRelease, 'nothing parked once collected').to.equal(0);
    expect(poolMetrics(mgr, 's').liveSlots, 'every slot returned').to.equal(0);
  });
});

describe('fast lane when the system refuses memory', () => {
  /** A manager whose native side can be told to refuse the next `n` slabs (`injectAllocationFailures`). */
  function refusingManager(): { mgr: ResourceManager; refuseNext(n: number): void } {
    const addon = loadNative() as { NativeManager: NativeAddon['NativeManager'] };
    const Original = addon.NativeManager;
    let native: { injectAllocationFailures(n: number): void } | null = null;
    addon.NativeManager = class extends (Original as unknown as new (config: unknown) => object) {
      constructor(config: unknown) {
        super(config);
        native = this as unknown as { injectAllocationFailures(n: number): void };
      }
    } as unknown as NativeAddon['NativeManager'];
    let mgr: ResourceManager;
    try {
      // One 1 MiB slot per slab: a slot parked by the lane leaves no free slot in the pool.
      mgr = new ResourceManager({ pools: [{ name: 'big', slotSize: MiB, queueSize: 4 }], leakDetection: 'off' });
    } finally {
      addon.NativeManager = Original;
    }
    expect(native, 'the manager was made through the subclass').to.not.equal(null);
    return { mgr, refuseNext: (n) => native!.injectAllocationFailures(n) };
  }

  it("gives other channels' parked slots back to the pool and allocates again before it reports ERR_POOL_EXHAUSTED", () => {
    const { mgr, refuseNext } = refusingManager();
    const a = mgr.openChannel('a', { access: 'view' });
    const b = mgr.openChannel('b', { access: 'view' });
    const h = a.allocate('buffer', MiB);
    bufferOf(h).fill(0xab);
    a.deallocate(h); // parked by the lane: natively still allocated
    refuseNext(1); // the next slab the pool maps is refused
    const g = b.allocate('buffer', MiB);
    expect(allZero(bufferOf(g)), "channel b gets a's freed slot, zeroed").to.equal(true);
    const m = mgr.getResourceMetrics();
    expect(m.fastLane.deallocations, 'the free was parked').to.equal(1);
    expect(poolMetrics(mgr, 'big').misses, 'no second slab was mapped').to.equal(1);
    expect(m.totals.handles, 'one live handle').to.equal(1);
    b.deallocate(g);
    mgr.close();
  });

  it('reports ERR_POOL_EXHAUSTED, changing nothing, when nothing parked can serve', () => {
    const { mgr, refuseNext } = refusingManager();
    const a = mgr.openChannel('a', { access: 'view' });
    const held = a.allocate('buffer', MiB); // live, not parked
    const before = stateOf(mgr);
    refuseNext(1);
    expectCode(() => a.allocate('buffer', MiB), 'ERR_POOL_EXHAUSTED', 'a refused slab with no parked slot');
    const after = stateOf(mgr) as { pools: { big: { failures: number } } };
    expect(after.pools.big.failures, 'the refusal is counted').to.equal(1);
    after.pools.big.failures = 0;
    expect(after, 'pools, ledgers and handles otherwise as they were').to.deep.equal(before);
    a.deallocate(held);
    mgr.close();
  });
});
