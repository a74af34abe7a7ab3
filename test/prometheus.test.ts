/**
 * isopool/prometheus: the collectors against a real prom-client Registry's text exposition.
 * Values the spec fixes (charges, handle counts, refusals, violations) are checked as exact
 * lines; values that depend on the native slab strategy (reserved bytes, latency) are checked
 * as exact lines built from the same getResourceMetrics() snapshot.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { Registry } from 'prom-client';
import { ResourceManager } from '../lib';
import type { ManagerMetrics } from '../lib';
import { ISOPOOL_METRIC_NAMES, registerIsopoolMetrics } from '../lib/prometheus';
import { SMALL_POOLS, nodeCommand } from './helpers';

function lines(text: string): string[] {
  return text.split('\n');
}

/** The sample lines (no comments) of one metric family. */
function samples(text: string, name: string): string[] {
  return lines(text).filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

describe('prometheus (isopool/prometheus)', () => {
  let mgr: ResourceManager;
  let registry: Registry;

  beforeEach(() => {
    mgr = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off' });
    registry = new Registry();
  });

  afterEach(() => {
    mgr.close();
  });

  /** a: 2 small handles (8192 charged) and one refusal; b: one medium handle; unscoped: one small handle. */
  function workload(): void {
    const a = mgr.openChannel('a', { limits: { '*': { maxBytes: 3 * 4096 } } });
    const b = mgr.openChannel('b');
    a.allocate('buffer', 100);
    a.allocate('buffer', 4096);
    expect(() => a.allocate('buffer', 8192), 'over the channel total').to.throw();
    const hb = b.allocate('buffer', 5000);
    expect(a.deallocate(hb), "a presents b's handle").to.equal(false);
    mgr.allocateResource('buffer', 1);
    expect(mgr.deallocateResource(123456789), 'forged id').to.equal(false);
  }

  it('exposes the documented families with HELP and TYPE lines', async () => {
    registerIsopoolMetrics(mgr, { registry });
    const text = await registry.metrics();
    for (const name of ISOPOOL_METRIC_NAMES) {
      const full = `isopool_${name}`;
      const type = name.endsWith('_total') ? 'counter' : name.endsWith('_latency_seconds') ? 'histogram' : 'gauge';
      expect(lines(text), `${full} TYPE`).to.include(`# TYPE ${full} ${type}`);
      expect(lines(text).some((l) => l.startsWith(`# HELP ${full} `)), `${full} HELP`).to.equal(true);
    }
    for (const required of [
      'pool_reserved_bytes',
      'pool_live_slots',
      'pool_retained_free_slots',
      'pool_hits_total',
      'pool_misses_total',
      'channel_bytes_in_use',
      'channel_handles',
      'channel_peak_bytes',
      'channel_limit_rejections_total',
      'violations_total',
      'leaks_detected_total',
      'leaks_reclaimed_total',
      'allocate_latency_seconds',
      'handles',
      'bytes_in_use',
      'fragmentation_ratio',
    ]) {
      expect(ISOPOOL_METRIC_NAMES, 'documented name').to.include(required);
    }
  });

  it('reports exact values for a known workload', async () => {
    workload();
    registerIsopoolMetrics(mgr, { registry });
    const text = await registry.metrics();
    const m = mgr.getResourceMetrics();

    expect(samples(text, 'isopool_channel_bytes_in_use'), 'largest first, then the unscoped domain').to.deep.equal([
      'isopool_channel_bytes_in_use{channel="b"} 65536',
      'isopool_channel_bytes_in_use{channel="a"} 8192',
      'isopool_channel_bytes_in_use{channel="_unscoped"} 4096',
    ]);
    expect(samples(text, 'isopool_channel_handles')).to.deep.equal([
      'isopool_channel_handles{channel="b"} 1',
      'isopool_channel_handles{channel="a"} 2',
      'isopool_channel_handles{channel="_unscoped"} 1',
    ]);
    expect(samples(text, 'isopool_channel_peak_bytes')).to.deep.equal([
      'isopool_channel_peak_bytes{channel="b"} 65536',
      'isopool_channel_peak_bytes{channel="a"} 8192',
      'isopool_channel_peak_bytes{channel="_unscoped"} 4096',
    ]);
    expect(samples(text, 'isopool_channel_limit_rejections_total')).to.deep.equal([
      'isopool_channel_limit_rejections_total{channel="b"} 0',
      'isopool_channel_limit_rejections_total{channel="a"} 1',
      'isopool_channel_limit_rejections_total{channel="_unscoped"} 0',
    ]);
    expect(samples(text, 'isopool_violations_total'), 'non-zero codes only').to.deep.equal([
      'isopool_violations_total{channel="a",code="CROSS_CHANNEL"} 1',
      'isopool_violations_total{channel="_unscoped",code="FORGED_HANDLE"} 1',
    ]);
    expect(samples(text, 'isopool_pool_live_slots')).to.deep.equal([
      'isopool_pool_live_slots{pool="s"} 3',
      'isopool_pool_live_slots{pool="m"} 1',
      'isopool_pool_live_slots{pool="l"} 0',
      'isopool_pool_live_slots{pool="direct"} 0',
    ]);
    expect(samples(text, 'isopool_pool_live_bytes')).to.deep.equal([
      'isopool_pool_live_bytes{pool="s"} 4197',
      'isopool_pool_live_bytes{pool="m"} 5000',
      'isopool_pool_live_bytes{pool="l"} 0',
      'isopool_pool_live_bytes{pool="direct"} 0',
    ]);
    expect(samples(text, 'isopool_pool_slot_bytes')).to.deep.equal([
      'isopool_pool_slot_bytes{pool="s"} 4096',
      'isopool_pool_slot_bytes{pool="m"} 65536',
      'isopool_pool_slot_bytes{pool="l"} 1048576',
      'isopool_pool_slot_bytes{pool="direct"} 0',
    ]);
    expect(samples(text, 'isopool_channels')).to.deep.equal(['isopool_channels 2']);
    expect(samples(text, 'isopool_handles')).to.deep.equal(['isopool_handles 4']);
    expect(samples(text, 'isopool_bytes_in_use')).to.deep.equal(['isopool_bytes_in_use 77824']);
    expect(samples(text, 'isopool_requested_bytes')).to.deep.equal(['isopool_requested_bytes 9197']);
    expect(samples(text, 'isopool_allocations_total')).to.deep.equal(['isopool_allocations_total 4']);
    expect(samples(text, 'isopool_deallocations_total')).to.deep.equal(['isopool_deallocations_total 0']);
    expect(samples(text, 'isopool_refusals_total')).to.deep.equal(['isopool_refusals_total 1']);
    expect(samples(text, 'isopool_leaks_detected_total')).to.deep.equal(['isopool_leaks_detected_total 0']);
    expect(samples(text, 'isopool_leaks_reclaimed_total')).to.deep.equal(['isopool_leaks_reclaimed_total 0']);

    // values that depend on the slab strategy: the same snapshot's numbers, as exact lines
    const perPool = (family: string, field: keyof ManagerMetrics['pools'][string]): string[] =>
      Object.entries(m.pools).map(([pool, p]) => `isopool_${family}{pool="${pool}"} ${p[field]}`);
    expect(samples(text, 'isopool_pool_reserved_bytes')).to.deep.equal(perPool('pool_reserved_bytes', 'reservedBytes'));
    expect(samples(text, 'isopool_pool_retained_free_slots')).to.deep.equal(perPool('pool_retained_free_slots', 'retainedFreeSlots'));
    expect(samples(text, 'isopool_pool_hits_total')).to.deep.equal(perPool('pool_hits_total', 'hits'));
    expect(samples(text, 'isopool_pool_misses_total')).to.deep.equal(perPool('pool_misses_total', 'misses'));
    expect(samples(text, 'isopool_reserved_bytes')).to.deep.equal([`isopool_reserved_bytes ${m.totals.reservedBytes}`]);
    expect(samples(text, 'isopool_fragmentation_ratio')).to.deep.equal([
      `isopool_fragmentation_ratio{kind="internal"} ${m.fragmentation.internal}`,
      `isopool_fragmentation_ratio{kind="pool"} ${m.fragmentation.pool}`,
    ]);
    const l = m.latencyNs.allocate;
    expect(l.count, 'latency recorded').to.equal(4);
    expect(lines(text), 'a histogram').to.include('# TYPE isopool_allocate_latency_seconds histogram');
    // bound 2^k ns counts the samples of log2 buckets 0..k-1 (bucket i covers [2^i, 2^(i+1)) ns)
    const expected = [8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30].map((k) => {
      const below = l.buckets.slice(0, k).reduce((x, y) => x + y, 0);
      return `isopool_allocate_latency_seconds_bucket{le="${2 ** k / 1e9}"} ${below}`;
    });
    expected.push(`isopool_allocate_latency_seconds_bucket{le="+Inf"} 4`);
    expect(samples(text, 'isopool_allocate_latency_seconds_bucket'), 'cumulative buckets in seconds').to.deep.equal(expected);
    expect(samples(text, 'isopool_allocate_latency_seconds_sum')).to.deep.equal([`isopool_allocate_latency_seconds_sum ${l.sumNs / 1e9}`]);
    expect(samples(text, 'isopool_allocate_latency_seconds_count')).to.deep.equal(['isopool_allocate_latency_seconds_count 4']);
    expect(samples(text, 'isopool_allocate_latency_seconds'), 'only _bucket, _sum and _count samples').to.deep.equal([]);
  });

  it('follows the manager between scrapes (channels closed, handles freed)', async () => {
    registerIsopoolMetrics(mgr, { registry });
    const s = mgr.openChannel('x');
    const h = s.allocate('buffer', 10);
    let text = await registry.metrics();
    expect(samples(text, 'isopool_channel_handles')).to.deep.equal([
      'isopool_channel_handles{channel="x"} 1',
      'isopool_channel_handles{channel="_unscoped"} 0',
    ]);
    await nextTurn();
    s.deallocate(h);
    mgr.closeChannel('x');
    text = await registry.metrics();
    expect(samples(text, 'isopool_channel_handles'), 'closed channel gone').to.deep.equal([
      'isopool_channel_handles{channel="_unscoped"} 0',
    ]);
    expect(samples(text, 'isopool_deallocations_total')).to.deep.equal(['isopool_deallocations_total 1']);
  });

  it('bounds channel cardinality: the largest maxChannels channels, the rest under _other', async () => {
    // c0..c4 hold 1..5 small slots; c2 presents a forged id, c0 is refused once by a limit
    for (let i = 0; i < 5; i++) {
      const s = mgr.openChannel(`c${i}`, i === 0 ? { limits: { '*': { maxBytes: 4096 } } } : undefined);
      for (let k = 0; k <= i; k++) s.allocate('buffer', 64);
    }
    expect(() => mgr.allocateResource('buffer', 64, 'c0')).to.throw();
    expect(mgr.channel('c2').deallocate(987654321)).to.equal(false);
    registerIsopoolMetrics(mgr, { registry, maxChannels: 2 });
    const text = await registry.metrics();
    expect(samples(text, 'isopool_channel_bytes_in_use')).to.deep.equal([
      'isopool_channel_bytes_in_use{channel="c4"} 20480',
      'isopool_channel_bytes_in_use{channel="c3"} 16384',
      `isopool_channel_bytes_in_use{channel="_other"} ${(3 + 2 + 1) * 4096}`,
      'isopool_channel_bytes_in_use{channel="_unscoped"} 0',
    ]);
    expect(samples(text, 'isopool_channel_handles')).to.deep.equal([
      'isopool_channel_handles{channel="c4"} 5',
      'isopool_channel_handles{channel="c3"} 4',
      'isopool_channel_handles{channel="_other"} 6',
      'isopool_channel_handles{channel="_unscoped"} 0',
    ]);
    expect(samples(text, 'isopool_channel_limit_rejections_total')).to.include(
      'isopool_channel_limit_rejections_total{channel="_other"} 1',
    );
    expect(samples(text, 'isopool_violations_total')).to.deep.equal([
      'isopool_violations_total{channel="_other",code="FORGED_HANDLE"} 1',
    ]);
    expect(samples(text, 'isopool_channels'), 'every open channel counted').to.deep.equal(['isopool_channels 5']);
  });

  it('maxChannels: 0 aggregates every channel', async () => {
    mgr.allocateResource('buffer', 64, 'only');
    registerIsopoolMetrics(mgr, { registry, maxChannels: 0 });
    const text = await registry.metrics();
    expect(samples(text, 'isopool_channel_bytes_in_use')).to.deep.equal([
      'isopool_channel_bytes_in_use{channel="_other"} 4096',
      'isopool_channel_bytes_in_use{channel="_unscoped"} 0',
    ]);
  });

  it('reads getResourceMetrics() once per scrape', async () => {
    let calls = 0;
    const source = {
      getResourceMetrics: (): ManagerMetrics => {
        calls++;
        return mgr.getResourceMetrics();
      },
    };
    registerIsopoolMetrics(source, { registry });
    await registry.metrics();
    expect(calls, 'one snapshot for every collector of a scrape').to.equal(1);
    await nextTurn();
    await registry.metrics();
    expect(calls, 'a new snapshot for the next scrape').to.equal(2);
  });

  it('supports a prefix, several managers per registry, and unregister()', async () => {
    const other = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off' });
    try {
      other.allocateResource('buffer', 1, 'z');
      const first = registerIsopoolMetrics(mgr, { registry });
      registerIsopoolMetrics(other, { registry, prefix: 'second_' });
      expect(() => registerIsopoolMetrics(other, { registry }), 'same names twice').to.throw(/already been registered/);
      expect(first.metrics.size, 'the first registration survived the failed one').to.equal(ISOPOOL_METRIC_NAMES.length);
      let text = await registry.metrics();
      expect(samples(text, 'second_channel_bytes_in_use')).to.deep.equal([
        'second_channel_bytes_in_use{channel="z"} 4096',
        'second_channel_bytes_in_use{channel="_unscoped"} 0',
      ]);
      expect(samples(text, 'isopool_handles')).to.deep.equal(['isopool_handles 0']);
      first.unregister();
      await nextTurn();
      text = await registry.metrics();
      expect(text.includes('isopool_'), 'unregistered').to.equal(false);
      expect(samples(text, 'second_handles')).to.deep.equal(['second_handles 1']);
    } finally {
      other.close();
    }
  });

  it('keeps serving the final snapshot after the manager is closed', async () => {
    mgr.allocateResource('buffer', 64, 'k');
    registerIsopoolMetrics(mgr, { registry });
    mgr.close();
    const text = await registry.metrics();
    const final = mgr.getResourceMetrics();
    expect(samples(text, 'isopool_handles'), 'the final snapshot (taken by close())').to.deep.equal([
      `isopool_handles ${final.totals.handles}`,
    ]);
    expect(samples(text, 'isopool_channel_handles')).to.include(`isopool_channel_handles{channel="k"} ${final.channels['k']?.handles ?? 0}`);
  });

  it('rejects bad options', () => {
    expect(() => registerIsopoolMetrics(mgr, { registry, prefix: '1bad' })).to.throw(TypeError, /prefix/);
    expect(() => registerIsopoolMetrics(mgr, { registry, maxChannels: -1 })).to.throw(TypeError, /maxChannels/);
    expect(() => registerIsopoolMetrics(mgr, { registry, maxChannels: 1.5 })).to.throw(TypeError, /maxChannels/);
    expect(() => registerIsopoolMetrics({} as ResourceManager, { registry })).to.throw(TypeError, /getResourceMetrics/);
    expect(registry.getMetricsAsArray().length, 'nothing registered').to.equal(0);
  });

  it("require('isopool') does not load prom-client", function () {
    this.timeout(20000);
    const index = path.join(__dirname, '..', 'lib', 'index.js');
    const out = execFileSync(
      ...nodeCommand([
        '-e',
        `require(${JSON.stringify(index)}); require(${JSON.stringify(path.join(__dirname, '..', 'lib', 'prometheus.js'))});` +
          "console.log(Object.keys(require.cache).filter((k) => k.includes('prom-client')).length)",
      ]),
      { encoding: 'utf8' },
    );
    expect(out.trim(), 'prom-client modules in require.cache').to.equal('0');
  });
});
