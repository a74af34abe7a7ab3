/**
 * Prometheus metrics for a `ResourceManager`, through
 * [prom-client](https://github.com/siimon/prom-client) (an optional peer dependency).
 *
 * ```ts
 * import { Registry } from 'prom-client';
 * import { ResourceManager } from 'isopool';
 * import { registerIsopoolMetrics } from 'isopool/prometheus';
 *
 * const registry = new Registry();
 * const manager = new ResourceManager();
 * registerIsopoolMetrics(manager, { registry });
 * // serve `await registry.metrics()` with `registry.contentType` on /metrics
 * ```
 *
 * Every metric is a collector: nothing is counted on the allocation path. A scrape reads
 * `manager.getResourceMetrics()` once (all collectors of one scrape share the snapshot) and
 * sets the values from it. prom-client is loaded only when {@link registerIsopoolMetrics} is
 * called, so `require('isopool')` and `require('isopool/prometheus')` work without it.
 * @packageDocumentation
 */
import type * as PromClient from 'prom-client';
import type { ChannelMetrics, ManagerMetrics, ViolationCode } from './types';

/** What {@link registerIsopoolMetrics} reads: a `ResourceManager`, or anything with its metrics. */
export interface MetricsSource {
  /** A JSON snapshot; see {@link ManagerMetrics}. */
  getResourceMetrics(): ManagerMetrics;
}

/** Options of {@link registerIsopoolMetrics}. */
export interface IsopoolMetricsOptions {
  /** Where to register; default prom-client's global `register`. */
  registry?: PromClient.Registry;
  /** Prefix of every metric name; default `'isopool_'`. */
  prefix?: string;
  /**
   * At most this many channels get series of their own (the largest by `bytesInUse`, ties by
   * id); the others are summed under `channel="_other"`. Default 100. `0` puts every channel
   * under `_other`.
   */
  maxChannels?: number;
  /**
   * The prom-client module to build the metrics with; default `require('prom-client')`. Pass it
   * when isopool cannot resolve the same prom-client as your application (e.g. a bundler).
   */
  client?: typeof PromClient;
}

/** What {@link registerIsopoolMetrics} returns. */
export interface IsopoolMetrics {
  /** The registered metrics, by full name. */
  readonly metrics: ReadonlyMap<string, PromClient.Metric>;
  /** Removes every one of them from the registry. */
  unregister(): void;
}

/** The label value of channels aggregated past `maxChannels`. */
export const OTHER_CHANNELS_LABEL = '_other';
/** The label value of the unscoped domain (allocations without a channel id). */
export const UNSCOPED_CHANNEL_LABEL = '_unscoped';

/**
 * The latency histograms' bucket bounds, as powers of two of nanoseconds: 2^8 ns (256 ns) to 2^30
 * ns (1.07 s), every second power. The native histogram counts in log2 buckets, so each bound is
 * exact: the count at `le="2^k ns"` is every sample below 2^k ns.
 */
const LATENCY_BOUND_EXPONENTS = [8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30] as const;

const NS_PER_SECOND = 1e9;

type Labels = Record<string, string>;
/** A value setter: `set(labels, value)`; one per collected metric. */
type Emit = (labels: Labels | undefined, value: number) => void;

/** One sample of a histogram: the name suffix (`_bucket`, `_sum`, `_count`), labels and value. */
interface Sample {
  suffix: string;
  labels: Labels;
  value: number;
}

interface Definition {
  /** Name without the prefix. */
  name: string;
  help: string;
  type: 'gauge' | 'counter' | 'histogram';
  labelNames?: readonly string[];
  /** Gauges and counters: the values. */
  collect?(snapshot: Snapshot, emit: Emit): void;
  /** Histograms: every sample, buckets cumulative. */
  samples?(snapshot: Snapshot): Sample[];
}

/** A metrics snapshot plus the channel rows after the cardinality cap. */
interface Snapshot {
  metrics: ManagerMetrics;
  channels: Array<[label: string, metrics: ChannelMetrics]>;
}

/** Channel rows: the `maxChannels` largest by bytes in use, the rest summed as `_other`, then the unscoped domain. */
function channelRows(m: ManagerMetrics, maxChannels: number): Snapshot['channels'] {
  const all = Object.entries(m.channels);
  all.sort(([ia, a], [ib, b]) => b.bytesInUse - a.bytesInUse || (ia < ib ? -1 : ia > ib ? 1 : 0));
  const rows: Snapshot['channels'] = all.slice(0, maxChannels);
  const rest = all.slice(maxChannels);
  if (rest.length > 0) {
    const other: ChannelMetrics = {
      bytesInUse: 0,
      handles: 0,
      peakBytes: 0,
      limitRejections: 0,
      violations: {} as Record<ViolationCode, number>,
    };
    for (const [, c] of rest) {
      other.bytesInUse += c.bytesInUse;
      other.handles += c.handles;
      other.peakBytes += c.peakBytes;
      other.limitRejections += c.limitRejections;
      for (const [code, n] of Object.entries(c.violations) as Array<[ViolationCode, number]>) {
        other.violations[code] = (other.violations[code] ?? 0) + n;
      }
    }
    rows.push([OTHER_CHANNELS_LABEL, other]);
  }
  rows.push([UNSCOPED_CHANNEL_LABEL, m.unscoped]);
  return rows;
}

function perPool(field: keyof ManagerMetrics['pools'][string]): Definition['collect'] {
  return (s, emit) => {
    for (const [pool, p] of Object.entries(s.metrics.pools)) emit({ pool }, p[field]);
  };
}

function perChannel(field: 'bytesInUse' | 'handles' | 'peakBytes' | 'limitRejections'): Definition['collect'] {
  return (s, emit) => {
    for (const [channel, c] of s.channels) emit({ channel }, c[field]);
  };
}

function latency(op: 'allocate' | 'deallocate'): Definition['samples'] {
  return (s) => {
    const l = s.metrics.latencyNs[op];
    const out: Sample[] = [];
    let below = 0; // samples in log2 buckets wholly below the bound
    let next = 0;
    for (const k of LATENCY_BOUND_EXPONENTS) {
      // bucket i covers [2^i, 2^(i+1)) ns: it is below 2^k ns when i + 1 <= k.
      for (; next < k && next < l.buckets.length; next++) below += l.buckets[next];
      out.push({ suffix: '_bucket', labels: { le: String(2 ** k / NS_PER_SECOND) }, value: below });
    }
    out.push({ suffix: '_bucket', labels: { le: '+Inf' }, value: l.count });
    out.push({ suffix: '_sum', labels: {}, value: l.sumNs / NS_PER_SECOND });
    out.push({ suffix: '_count', labels: {}, value: l.count });
    return out;
  };
}

/** Every metric, in the order of the exposition. Names follow Prometheus conventions (base units, `_total` counters). */
const DEFINITIONS: readonly Definition[] = [
  { name: 'pool_slot_bytes', type: 'gauge', labelNames: ['pool'], help: 'Slot size of the pool in bytes (0 for direct).', collect: perPool('slotSize') },
  { name: 'pool_reserved_bytes', type: 'gauge', labelNames: ['pool'], help: 'Bytes the pool holds from the system.', collect: perPool('reservedBytes') },
  { name: 'pool_live_slots', type: 'gauge', labelNames: ['pool'], help: 'Slots in use.', collect: perPool('liveSlots') },
  { name: 'pool_live_bytes', type: 'gauge', labelNames: ['pool'], help: 'Requested bytes of the slots in use.', collect: perPool('liveBytes') },
  { name: 'pool_retained_free_slots', type: 'gauge', labelNames: ['pool'], help: 'Free slots kept for reuse.', collect: perPool('retainedFreeSlots') },
  { name: 'pool_hits_total', type: 'counter', labelNames: ['pool'], help: 'Allocations served from a retained free slot.', collect: perPool('hits') },
  { name: 'pool_misses_total', type: 'counter', labelNames: ['pool'], help: 'Allocations that needed new memory.', collect: perPool('misses') },
  { name: 'pool_released_to_system_total', type: 'counter', labelNames: ['pool'], help: 'Slabs given back to the system.', collect: perPool('releasedToSystem') },
  { name: 'pool_failures_total', type: 'counter', labelNames: ['pool'], help: 'Allocations the system refused memory for.', collect: perPool('failures') },
  { name: 'channels', type: 'gauge', help: 'Open channels (also those aggregated under channel="_other").', collect: (s, emit) => emit(undefined, Object.keys(s.metrics.channels).length) },
  { name: 'channel_bytes_in_use', type: 'gauge', labelNames: ['channel'], help: 'Charged bytes (units for counted types) in use by the channel.', collect: perChannel('bytesInUse') },
  { name: 'channel_handles', type: 'gauge', labelNames: ['channel'], help: 'Live handles of the channel.', collect: perChannel('handles') },
  { name: 'channel_peak_bytes', type: 'gauge', labelNames: ['channel'], help: 'Highest charged bytes of the channel (summed for channel="_other").', collect: perChannel('peakBytes') },
  { name: 'channel_limit_rejections_total', type: 'counter', labelNames: ['channel'], help: 'Allocations of the channel refused by a limit.', collect: perChannel('limitRejections') },
  {
    name: 'violations_total',
    type: 'counter',
    labelNames: ['channel', 'code'],
    help: 'Security-boundary violations counted against the channel, by code (non-zero codes only).',
    collect: (s, emit) => {
      for (const [channel, c] of s.channels) {
        for (const [code, n] of Object.entries(c.violations)) if (n > 0) emit({ channel, code }, n);
      }
    },
  },
  { name: 'leaks_detected_total', type: 'counter', help: 'Handles found unreachable without being deallocated.', collect: (s, emit) => emit(undefined, s.metrics.leaks.detected) },
  { name: 'leaks_reclaimed_total', type: 'counter', help: 'Leaked handles whose slot was reclaimed.', collect: (s, emit) => emit(undefined, s.metrics.leaks.reclaimed) },
  { name: 'allocate_latency_seconds', type: 'histogram', help: 'Native allocation latency since the manager started (fast-lane allocations are not timed).', samples: latency('allocate') },
  { name: 'deallocate_latency_seconds', type: 'histogram', help: 'Native deallocation latency since the manager started (fast-lane deallocations are not timed).', samples: latency('deallocate') },
  { name: 'allocations_total', type: 'counter', help: 'Successful allocations.', collect: (s, emit) => emit(undefined, s.metrics.totals.allocations) },
  { name: 'deallocations_total', type: 'counter', help: 'Deallocations (explicit, channel close, leak reclaim).', collect: (s, emit) => emit(undefined, s.metrics.totals.deallocations) },
  { name: 'refusals_total', type: 'counter', help: 'Allocations refused by a limit.', collect: (s, emit) => emit(undefined, s.metrics.totals.refusals) },
  { name: 'handles', type: 'gauge', help: 'Live handles.', collect: (s, emit) => emit(undefined, s.metrics.totals.handles) },
  { name: 'bytes_in_use', type: 'gauge', help: 'Charged bytes in use over every channel and the unscoped domain.', collect: (s, emit) => emit(undefined, s.metrics.totals.bytesInUse) },
  { name: 'requested_bytes', type: 'gauge', help: 'Requested bytes of the live handles and of freed ones whose memory waits for collection.', collect: (s, emit) => emit(undefined, s.metrics.totals.requestedBytes) },
  { name: 'reserved_bytes', type: 'gauge', help: 'Bytes held from the system by every pool.', collect: (s, emit) => emit(undefined, s.metrics.totals.reservedBytes) },
  {
    name: 'fragmentation_ratio',
    type: 'gauge',
    labelNames: ['kind'],
    help: 'internal: 1 - requested/slot bytes of live handles; pool: held memory neither in use nor retained, over reserved.',
    collect: (s, emit) => {
      emit({ kind: 'internal' }, s.metrics.fragmentation.internal);
      emit({ kind: 'pool' }, s.metrics.fragmentation.pool);
    },
  },
];

/** The metric names {@link registerIsopoolMetrics} registers, without the prefix. */
export const ISOPOOL_METRIC_NAMES: readonly string[] = DEFINITIONS.map((d) => d.name);

/**
 * A histogram whose buckets come from the snapshot. prom-client's own Histogram only counts
 * observations made through it, so this is a collector in the shape a registry reads: `get()`
 * returns the samples, with `metricName` naming `_bucket`, `_sum` and `_count`.
 */
function histogramCollector(name: string, def: Definition, read: () => Snapshot, registry: PromClient.Registry): PromClient.Metric {
  const collector = {
    name,
    help: def.help,
    type: 'histogram',
    aggregator: 'sum',
    labelNames: [] as string[],
    get: async () => ({
      name,
      help: def.help,
      type: 'histogram',
      aggregator: 'sum',
      values: (def.samples?.(read()) ?? []).map((s) => ({ metricName: `${name}${s.suffix}`, labels: s.labels, value: s.value })),
    }),
    reset(): void {},
  };
  const metric = collector as unknown as PromClient.Metric;
  registry.registerMetric(metric);
  return metric;
}

function loadPromClient(): typeof PromClient {
  try {
    return require('prom-client') as typeof PromClient;
  } catch (cause) {
    throw new Error('isopool/prometheus: the optional peer dependency "prom-client" is not installed (npm install prom-client)', { cause });
  }
}

/**
 * Registers isopool's metrics for `manager` in a prom-client registry.
 *
 * Names (with the default prefix): `isopool_pool_*{pool}`, `isopool_channel_*{channel}`,
 * `isopool_violations_total{channel,code}`, `isopool_leaks_*_total`,
 * `isopool_allocate_latency_seconds` (a histogram), `isopool_handles`, `isopool_bytes_in_use`,
 * `isopool_fragmentation_ratio{kind}` and more: see the README's "Monitoring".
 *
 * Channel label cardinality is bounded: see {@link IsopoolMetricsOptions.maxChannels}. The
 * unscoped domain is `channel="_unscoped"`. Closed channels disappear from the output, so a
 * channel's `_total` counters end with it; `_other` sums change as channels move in and out of
 * the top `maxChannels`.
 *
 * @throws Error when prom-client is not installed (and no `client` is given), or when a metric
 * of the same name is already registered (use another `prefix` for a second manager).
 */
export function registerIsopoolMetrics(manager: MetricsSource, options: IsopoolMetricsOptions = {}): IsopoolMetrics {
  const { prefix = 'isopool_', maxChannels = 100 } = options;
  if (typeof manager?.getResourceMetrics !== 'function') {
    throw new TypeError('registerIsopoolMetrics: manager must have getResourceMetrics()');
  }
  if (typeof prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix)) {
    throw new TypeError(`registerIsopoolMetrics: prefix ${JSON.stringify(prefix)} is not a valid metric name prefix`);
  }
  if (!Number.isSafeInteger(maxChannels) || maxChannels < 0) {
    throw new TypeError(`registerIsopoolMetrics: maxChannels must be a non-negative integer, got ${String(maxChannels)}`);
  }
  const client = options.client ?? loadPromClient();
  const registry = options.registry ?? client.register;

  // One snapshot per scrape: prom-client runs every collector of one metrics() call in the same
  // turn of the event loop, so the snapshot is kept until the next macrotask.
  let snapshot: Snapshot | undefined;
  const read = (): Snapshot => {
    if (snapshot === undefined) {
      const metrics = manager.getResourceMetrics();
      snapshot = { metrics, channels: channelRows(metrics, maxChannels) };
      setImmediate(() => {
        snapshot = undefined;
      });
    }
    return snapshot;
  };

  const metrics = new Map<string, PromClient.Metric>();
  try {
    for (const def of DEFINITIONS) {
      const name = `${prefix}${def.name}`;
      const labelNames = def.labelNames === undefined ? [] : [...def.labelNames];
      let metric: PromClient.Metric;
      if (def.type === 'histogram') {
        metric = histogramCollector(name, def, read, registry);
      } else if (def.type === 'gauge') {
        metric = new client.Gauge({
          name,
          help: def.help,
          labelNames,
          registers: [registry],
          collect(this: PromClient.Gauge) {
            this.reset();
            def.collect?.(read(), (labels, value) => (labels === undefined ? this.set(value) : this.set(labels, value)));
          },
        });
      } else {
        metric = new client.Counter({
          name,
          help: def.help,
          labelNames,
          registers: [registry],
          collect(this: PromClient.Counter) {
            // A counter mirrors a native monotonic count: reset, then add the current total.
            this.reset();
            def.collect?.(read(), (labels, value) => (labels === undefined ? this.inc(value) : this.inc(labels, value)));
          },
        });
      }
      metrics.set(name, metric);
    }
  } catch (err) {
    for (const name of metrics.keys()) registry.removeSingleMetric(name);
    throw err;
  }
  return {
    metrics,
    unregister() {
      for (const name of metrics.keys()) registry.removeSingleMetric(name);
    },
  };
}
