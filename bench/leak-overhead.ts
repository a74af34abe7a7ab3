/**
 * Suite 3: what leak detection costs. A 4 KiB revocable round trip through a channel scope, in three
 * managers that differ only in `leakDetection`: 'off' (the baseline), 'sampled' (default rate,
 * 1 in 128 allocations watched) and 'paranoid' (every allocation watched, allocation site recorded).
 * `Buffer.allocUnsafe(4096)` runs in the same rounds for scale.
 * @packageDocumentation
 */
import { DEFAULT_LEAK_SAMPLE_RATE, ResourceManager } from '../lib';
import type { ChannelScope, LeakDetectionMode } from '../lib';
import { endJob, medianRatio, runInterleaved, sink } from './harness';
import type { BenchConfig, CandidateResult, Logger } from './harness';

export const LEAK_BYTES = 4 * 1024;

export interface LeakOverheadResult {
  readonly bytes: number;
  readonly leakSampleRate: number;
  readonly results: CandidateResult[];
  /** Each mode (and allocUnsafe) against 'off', median over rounds. */
  readonly vsOff: Array<{ readonly candidate: string; readonly ratio: number }>;
  /** Extra ns per round trip over 'off' (difference of the median ns/op). */
  readonly extraNs: Array<{ readonly candidate: string; readonly ns: number }>;
}

const MODES: readonly LeakDetectionMode[] = ['off', 'sampled', 'paranoid'];

export function modeName(mode: LeakDetectionMode): string {
  return `leakDetection '${mode}'`;
}

export async function runLeakOverhead(config: BenchConfig, log: Logger): Promise<LeakOverheadResult> {
  const managers = MODES.map((mode) => new ResourceManager({ leakDetection: mode }));
  try {
    const scopes: ChannelScope[] = managers.map((m) => m.openChannel('leak-bench'));
    const candidates = MODES.map((mode, i) => {
      const scope = scopes[i];
      return {
        name: modeName(mode),
        baseline: mode === 'off',
        fn: (): void => {
          const h = scope.allocate('buffer', LEAK_BYTES);
          const b = h.buffer;
          if (b === null) throw new Error('memory handle without a buffer');
          b[0] = 1;
          sink.value ^= b[0];
          scope.deallocate(h);
        },
      };
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
    log(`leak-detection overhead, 4 KiB revocable (${config.rounds} interleaved rounds)`);
    const results = await runInterleaved('leak detection', candidates, config, log);
    const off = results[0];
    const others = results.slice(1);
    // Let pending finalizers run before the managers close.
    await endJob();
    return {
      bytes: LEAK_BYTES,
      leakSampleRate: DEFAULT_LEAK_SAMPLE_RATE,
      results,
      vsOff: others.map((r) => ({ candidate: r.name, ratio: medianRatio(r, off) })),
      extraNs: others.map((r) => ({ candidate: r.name, ns: r.medianNs - off.medianNs })),
    };
  } finally {
    for (const m of managers) m.close();
  }
}
