/**
 * Small statistics helpers for the benchmark suites: medians and percentiles of plain arrays, and
 * a log-linear latency histogram for the per-operation suite.
 *
 * Glossary:
 * - sample: one measured value in nanoseconds (ns/op of one benchmark.js cycle, or one timed call).
 * - round: one pass over every candidate of a suite; ratios are taken inside a round, then medianed.
 * @packageDocumentation
 */

/** Median of `values` (mean of the two middle values for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}

/**
 * The `q` quantile (0..1) of `values` by linear interpolation between closest ranks
 * (the "R-7" definition used by most spreadsheets); NaN when empty.
 */
export function quantile(values: readonly number[], q: number): number {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return Number.NaN;
  const sorted = Float64Array.from(finite).sort();
  const position = (sorted.length - 1) * Math.min(1, Math.max(0, q));
  const lower = Math.floor(position);
  const upper = Math.ceil(position);
  return sorted[lower] + (sorted[upper] - sorted[lower]) * (position - lower);
}

/** Relative spread of `values` around their median: (p75 − p25) / median, for "±" columns. */
export function relativeIqr(values: readonly number[]): number {
  const m = median(values);
  if (!(m > 0)) return Number.NaN;
  return (quantile(values, 0.75) - quantile(values, 0.25)) / m;
}

/** Sub-buckets per power of two: values ≥ 2^SUB_BITS are recorded within 1 / 2^SUB_BITS (1.6%). */
const SUB_BITS = 6;
const SUB_COUNT = 1 << SUB_BITS; // 64
/** Largest recordable value is 2^MAX_EXPONENT ns (~18 minutes); larger values clamp to it. */
const MAX_EXPONENT = 40;

/**
 * A log-linear histogram of non-negative integer nanoseconds (HDR-histogram style, fixed size).
 *
 * Values below 2^SUB_BITS (64 ns) have a bucket each. Above that, each power of two [2^e, 2^(e+1))
 * is split into SUB_COUNT equal buckets, so a bucket's width is at most 1/64 of its lower bound.
 * Percentiles report a bucket's upper bound: they never understate a latency by more than 1.6%.
 *
 * Invariant: count == Σ counts[i]; min ≤ every recorded value ≤ max.
 */
export class LatencyHistogram {
  /** counts[bucket]: how many values fell in it. Buckets 0..63 are exact values 0..63 ns. */
  readonly #counts = new Float64Array(SUB_COUNT * (MAX_EXPONENT - SUB_BITS + 2));
  #count = 0;
  #sum = 0; // ns, for the mean
  #min = Number.POSITIVE_INFINITY; // ns
  #max = 0; // ns

  get count(): number {
    return this.#count;
  }

  get min(): number {
    return this.#count === 0 ? Number.NaN : this.#min;
  }

  get max(): number {
    return this.#count === 0 ? Number.NaN : this.#max;
  }

  get mean(): number {
    return this.#count === 0 ? Number.NaN : this.#sum / this.#count;
  }

  /** Records one value in ns (rounded, clamped to [0, 2^MAX_EXPONENT]). */
  record(ns: number): void {
    const v = Math.min(2 ** MAX_EXPONENT, Math.max(0, Math.round(ns)));
    this.#counts[bucketOf(v)]++;
    this.#count++;
    this.#sum += v;
    if (v < this.#min) this.#min = v;
    if (v > this.#max) this.#max = v;
  }

  /** The smallest bucket upper bound below which at least `q` (0..1) of the values fall; NaN when empty. */
  percentile(q: number): number {
    if (this.#count === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil(Math.min(1, Math.max(0, q)) * this.#count));
    let seen = 0;
    for (let i = 0; i < this.#counts.length; i++) {
      seen += this.#counts[i];
      if (seen >= rank) return Math.min(this.#max, bucketUpperBound(i));
    }
    return this.#max;
  }
}

/** Bucket index of a non-negative integer value. */
function bucketOf(v: number): number {
  if (v < SUB_COUNT) return v;
  const exponent = Math.floor(Math.log2(v)); // v in [2^exponent, 2^(exponent+1))
  // Guard against log2 rounding at exact powers of two.
  const e = 2 ** exponent > v ? exponent - 1 : 2 ** (exponent + 1) <= v ? exponent + 1 : exponent;
  const sub = Math.floor(v / 2 ** (e - SUB_BITS)) - SUB_COUNT; // 0..63
  return SUB_COUNT * (e - SUB_BITS + 1) + sub;
}

/** The largest integer value that falls in bucket `i`. */
function bucketUpperBound(i: number): number {
  if (i < SUB_COUNT) return i;
  const e = Math.floor(i / SUB_COUNT) - 1 + SUB_BITS;
  const sub = i % SUB_COUNT;
  return (SUB_COUNT + sub + 1) * 2 ** (e - SUB_BITS) - 1;
}

/** Formats ns for tables: "812 ns", "12.3 µs", "4.56 ms". */
export function formatNs(ns: number): string {
  if (!Number.isFinite(ns)) return 'n/a';
  if (ns < 0) return `−${formatNs(-ns)}`;
  if (ns < 1_000) return `${ns.toFixed(ns < 10 ? 1 : 0)} ns`;
  if (ns < 1_000_000) return `${(ns / 1_000).toFixed(ns < 10_000 ? 2 : 1)} µs`;
  if (ns < 1_000_000_000) return `${(ns / 1_000_000).toFixed(ns < 10_000_000 ? 2 : 1)} ms`;
  return `${(ns / 1_000_000_000).toFixed(2)} s`;
}

/** Formats a ratio: "0.053×", "1.20×", "37.1×". */
export function formatRatio(ratio: number): string {
  if (!Number.isFinite(ratio)) return 'n/a';
  if (ratio < 0.01) return `${ratio.toPrecision(2)}×`;
  if (ratio < 0.1) return `${ratio.toFixed(3)}×`;
  if (ratio < 10) return `${ratio.toFixed(2)}×`;
  if (ratio < 1000) return `${ratio.toFixed(1)}×`;
  return `${ratio.toExponential(2)}×`;
}
