/**
 * Interleaved benchmark.js runs: every candidate of a group is measured against its baselines in
 * the same process, round after round, so that machine noise (a shared 2-core VM) lands on all of
 * them alike and ratios can be taken inside one round.
 *
 * What is reported, per candidate:
 * - `medianNs`: the median, over rounds, of benchmark.js's per-run mean (`1e9 / hz`, which equals
 *   `stats.mean` in ns). This is the headline ns/op.
 * - `sampleMedianNs`: the median of every benchmark.js sample (one sample = ns/op of one timed cycle
 *   of many calls) pooled over all rounds: a second, outlier-resistant estimate.
 * - ratios (see {@link medianRatio}): candidate / baseline of the rounds' sample medians inside each
 *   round, then the median over rounds.
 * @packageDocumentation
 */
import Benchmark from 'benchmark';
import { ResourceManager } from '../lib';
import type { ResourceManagerOptions } from '../lib';
import { median, relativeIqr } from './stats';

/** Sample counts and time limits of one run mode (`--quick` or full). */
export interface BenchConfig {
  readonly mode: 'quick' | 'full';
  /** Interleaved rounds per group (benchmark.js suites). */
  readonly rounds: number;
  /** benchmark.js: seconds per run (per candidate per round) before it stops sampling. */
  readonly maxTime: number;
  /** benchmark.js: samples per run at least. */
  readonly minSamples: number;
  /** benchmark.js: seconds per sample (cycle) at least. */
  readonly minTime: number;
  /** Operations suite: single-call samples per operation at most. */
  readonly opSamples: number;
  /** Operations suite: seconds of sampling per operation at most. */
  readonly opSeconds: number;
  /** Operations suite: open+close cycles with 1,000 handles each, at most. */
  readonly channelCycles: number;
}

export const QUICK: BenchConfig = {
  mode: 'quick',
  rounds: 3,
  maxTime: 0.1,
  minSamples: 3,
  minTime: 0.02,
  opSamples: 2_000,
  opSeconds: 0.4,
  channelCycles: 25,
};

export const FULL: BenchConfig = {
  mode: 'full',
  rounds: 7,
  maxTime: 0.35,
  minSamples: 6,
  minTime: 0.04,
  opSamples: 50_000,
  opSeconds: 3,
  channelCycles: 300,
};

/** One measured function. It must do one whole operation per call and touch what it produced. */
export interface Candidate {
  readonly name: string;
  /** A baseline is what users would otherwise use; other candidates are compared with it. */
  readonly baseline: boolean;
  readonly fn: () => void;
}

export interface CandidateResult {
  readonly name: string;
  readonly baseline: boolean;
  /** benchmark.js mean of each round's run, ns/op (`1e9 / hz`); NaN for a failed round. */
  readonly roundMeansNs: number[];
  /** Median of each round's benchmark.js samples, ns/op; NaN for a failed round. Ratios use these. */
  readonly roundMediansNs: number[];
  /** Every benchmark.js sample of every round, ns/op. */
  readonly samplesNs: number[];
  /** Median of `roundMeansNs`. */
  medianNs: number;
  /** Median of `samplesNs`. */
  sampleMedianNs: number;
  /** (p75 − p25) / median of `roundMediansNs`: how much the rounds disagree. */
  spread: number;
  /** Relative margin of error (%) of benchmark.js for the median round. */
  rmePercent: number;
  /** Set when the candidate threw; it is then skipped. */
  error?: string;
}

export type Logger = (line: string) => void;

/**
 * A full GC when the process runs with --expose-gc (run.ts arranges it), so that one candidate's
 * garbage (external memory of revoked buffers, 1 MiB allocations) is not collected during the next
 * candidate's measurement. A candidate's own GC work stays in its own time.
 */
export function collectGarbage(): void {
  if (typeof globalThis.gc === 'function') globalThis.gc();
}

/** Runs `fn` repeatedly for about `seconds`, so that the JIT has settled before measuring. */
export function warmUp(fn: () => void, seconds: number): void {
  const end = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
  do {
    for (let i = 0; i < 256; i++) fn();
  } while (process.hrtime.bigint() < end);
}

/**
 * Measures every candidate `config.rounds` times. Round r starts with candidate r mod k and walks
 * the list cyclically, so no candidate is always first (cold) or always last.
 */
export async function runInterleaved(group: string, candidates: readonly Candidate[], config: BenchConfig, log: Logger): Promise<CandidateResult[]> {
  const results: CandidateResult[] = candidates.map((c) => ({
    name: c.name,
    baseline: c.baseline,
    roundMeansNs: [],
    roundMediansNs: [],
    samplesNs: [],
    medianNs: Number.NaN,
    sampleMedianNs: Number.NaN,
    spread: Number.NaN,
    rmePercent: Number.NaN,
  }));
  const rmes: number[][] = candidates.map(() => []);

  // Warm up (and detect candidates that fail outright) before any timing.
  candidates.forEach((c, i) => {
    try {
      warmUp(c.fn, config.mode === 'quick' ? 0.01 : 0.05);
    } catch (error) {
      results[i].error = describeError(error);
      log(`  ! ${group} / ${c.name}: ${results[i].error} (skipped)`);
    }
  });

  for (let round = 0; round < config.rounds; round++) {
    for (let k = 0; k < candidates.length; k++) {
      const i = (round + k) % candidates.length;
      const result = results[i];
      if (result.error !== undefined) {
        result.roundMeansNs.push(Number.NaN);
        result.roundMediansNs.push(Number.NaN);
        continue;
      }
      await endJob();
      collectGarbage();
      const bench = new Benchmark(`${group} / ${candidates[i].name}`, candidates[i].fn, {
        maxTime: config.maxTime,
        minSamples: config.minSamples,
        minTime: config.minTime,
        initCount: 1,
      });
      await runAsync(bench);
      // benchmark.js stores a thrown error on the benchmark instead of rethrowing it.
      const failure: unknown = bench.error;
      if (failure !== undefined && failure !== null) {
        result.error = describeError(failure);
        result.roundMeansNs.push(Number.NaN);
        result.roundMediansNs.push(Number.NaN);
        log(`  ! ${bench.name}: ${result.error} (skipped from now on)`);
        continue;
      }
      result.roundMeansNs.push(1e9 / bench.hz);
      const sample: unknown[] = bench.stats.sample;
      const roundSamples = sample.filter((s): s is number => typeof s === 'number').map((s) => s * 1e9);
      result.roundMediansNs.push(median(roundSamples));
      result.samplesNs.push(...roundSamples);
      rmes[i].push(bench.stats.rme);
    }
  }

  results.forEach((r, i) => {
    r.medianNs = median(r.roundMeansNs);
    r.sampleMedianNs = median(r.samplesNs);
    r.spread = relativeIqr(r.roundMediansNs);
    r.rmePercent = median(rmes[i]);
  });
  return results;
}

/**
 * Runs a benchmark with benchmark.js's `async` option: every cycle (≥ minTime of calls) is its own
 * macrotask, so the job ends between cycles, as in a server: external-buffer finalizers and
 * FinalizationRegistry callbacks run between jobs, so every candidate pays for them inside its
 * own measurement.
 */
function runAsync(bench: Benchmark): Promise<void> {
  return new Promise((resolve) => {
    bench.on('complete', () => resolve());
    bench.run({ async: true });
  });
}

/** Yields to the event loop, ending the current job (WeakRef kept objects are released, finalizers may run). */
export function endJob(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Same-run ratio of `candidate` to `baseline`: inside each round where both ran, the ratio of their
 * sample medians (robust to a stray slow cycle, which a benchmark.js mean is not); then the median
 * over rounds (a ratio of overall medians would mix rounds with different machine noise).
 */
export function medianRatio(candidate: CandidateResult, baseline: CandidateResult): number {
  const ratios: number[] = [];
  const n = Math.min(candidate.roundMediansNs.length, baseline.roundMediansNs.length);
  for (let r = 0; r < n; r++) {
    const a = candidate.roundMediansNs[r];
    const b = baseline.roundMediansNs[r];
    if (Number.isFinite(a) && Number.isFinite(b) && b > 0) ratios.push(a / b);
  }
  return median(ratios);
}

export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as Error & { code?: unknown }).code;
    return `${error.name}${typeof code === 'string' ? ` [${code}]` : ''}: ${error.message}`;
  }
  return String(error);
}

/**
 * A sink that the measured functions write into, so that the bytes they touch are observably used
 * (printed at the end of the run) and no engine can drop the work.
 */
export const sink = { value: 0 };

/**
 * A manager made with one of the diagnostic switches of README "Access modes" set
 * (`ISOPOOL_REVOCATION=detach` or `ISOPOOL_FASTLANE=off`), which a manager reads once, when it is
 * made; the environment is restored after.
 */
export function managerWith(variable: 'ISOPOOL_REVOCATION' | 'ISOPOOL_FASTLANE', value: string, options?: ResourceManagerOptions): ResourceManager {
  const saved = process.env[variable];
  process.env[variable] = value;
  try {
    return new ResourceManager(options);
  } finally {
    if (saved === undefined) delete process.env[variable];
    else process.env[variable] = saved;
  }
}
