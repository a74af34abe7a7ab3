/**
 * Suite 3: what leak detection costs. A 4 KiB round trip through a channel scope, revocable and
 * view mode, in managers that differ only in `leakDetection`: 'off' (the baseline of its access
 * mode), 'sampled' (default rate, 1 in 128 allocations watched, no allocation site) and
 * 'paranoid' (every allocation watched, with its site). `Buffer.allocUnsafe(4096)` runs in the
 * same rounds for scale. A watched view allocation takes the fast lane with a `Buffer` of its own;
 * 'paranoid' turns the lane off (lib/lane/fast-lane.ts).
 * @packageDocumentation
 */
import { DEFAULT_LEAK_SAMPLE_RATE, ResourceManager } from '../lib';
import type { AccessMode, ChannelScope, LeakDetectionMode } from '../lib';
import { endJob, medianRatio, runInterleaved, sink } from './harness';
import type { BenchConfig, CandidateResult, Logger } from './harness';

export const LEAK_BYTES = 4 * 1024;

export interface LeakOverheadResult {
  readonly bytes: number;
  readonly leakSampleRate: number;
  readonly results: CandidateResult[];
  /** Each candidate's baseline: 'off' in the same access mode (revocable 'off' for allocUnsafe). */
  readonly baselines: Record<string, string>;
  /** Each mode (and allocUnsafe) against its baseline, median over rounds. */
  readonly vsOff: Array<{ readonly candidate: string; readonly ratio: number }>;
  /** Extra ns per round trip over its baseline (difference of the median ns/op). */
  readonly extraNs: Array<{ readonly candidate: string; readonly ns: number }>;
}

const MODES: readonly LeakDetectionMode[] = ['off', 'sampled', 'paranoid'];
const ACCESS: readonly AccessMode[] = ['revocable', 'view'];

/**
 * A view round trip in a default manager that is busy: two other channels of it, one revocable and
 * one view, hold {@link BUSY_HANDLES} live 4 KiB handles each. Its baseline is the same round trip
 * in a default manager that has nothing else (view, 'sampled').
 */
export const BUSY_VIEW = 'view, default options, busy manager';
const BUSY_HANDLES = 1000;

/** One 4 KiB round trip through `scope`: allocate, write and read a byte, deallocate. */
function roundTrip(scope: ChannelScope): void {
  const h = scope.allocate('buffer', LEAK_BYTES);
  const b = h.buffer;
  if (b === null) throw new Error('memory handle without a buffer');
  b[0] = 1;
  sink.value ^= b[0];
  scope.deallocate(h);
}

export function modeName(access: AccessMode, mode: LeakDetectionMode): string {
  return `${access}, leakDetection '${mode}'`;
}

export async function runLeakOverhead(config: BenchConfig, log: Logger): Promise<LeakOverheadResult> {
  const managers = MODES.map((mode) => new ResourceManager({ leakDetection: mode }));
  const busy = new ResourceManager();
  try {
    const kept = (['revocable', 'view'] as const).flatMap((access) => {
      const scope = busy.openChannel(`busy-${access}`, { access });
      return Array.from({ length: BUSY_HANDLES }, () => scope.allocate('buffer', LEAK_BYTES));
    });
    const busyView = busy.openChannel('leak-bench-view', { access: 'view' });
    const candidates = ACCESS.flatMap((access) =>
      MODES.map((mode, i) => {
        const scope: ChannelScope = managers[i].openChannel(`leak-bench-${access}`, { access });
        return {
          name: modeName(access, mode),
          baseline: mode === 'off',
          fn: (): void => roundTrip(scope),
        };
      }),
    );
    candidates.push({
      name: BUSY_VIEW,
      baseline: false,
      fn: (): void => roundTrip(busyView),
    });
    candidates.push({
      name: 'Buffer.allocUnsafe',
      baseline: true,
      fn: (): void => {
        const b = Buffer.allocUnsafe(LEAK_BYTES);
        b[0] = 1;
        sink.value ^= b[0];
      },
    });
    log(`leak-detection overhead, 4 KiB revocable and view (${config.rounds} interleaved rounds)`);
    const results = await runInterleaved('leak detection', candidates, config, log);
    const baselines: Record<string, string> = { 'Buffer.allocUnsafe': modeName('revocable', 'off') };
    for (const access of ACCESS) for (const mode of MODES) baselines[modeName(access, mode)] = modeName(access, 'off');
    baselines[BUSY_VIEW] = modeName('view', 'sampled');
    const byName = new Map(results.map((r) => [r.name, r]));
    const others = results.filter((r) => baselines[r.name] !== r.name);
    const baseOf = (r: CandidateResult): CandidateResult => byName.get(baselines[r.name]) ?? r;
    // Let pending finalizers run before the managers close.
    await endJob();
    return {
      bytes: LEAK_BYTES,
      leakSampleRate: DEFAULT_LEAK_SAMPLE_RATE,
      results,
      baselines,
      vsOff: others.map((r) => ({ candidate: r.name, ratio: medianRatio(r, baseOf(r)) })),
      extraNs: others.map((r) => ({ candidate: r.name, ns: r.medianNs - baseOf(r).medianNs })),
    };
    sink.value ^= kept.length & 1;
  } finally {
    for (const m of managers) m.close();
    busy.close();
  }
}
