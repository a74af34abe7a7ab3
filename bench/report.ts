/**
 * Rendering of benchmark results: aligned Markdown tables (also what stdout shows), the
 * `bench/RESULTS.md` report, the `bench/ratios.svg` chart (hand-written SVG, no dependencies) and
 * the `bench/results.json` raw data.
 * @packageDocumentation
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { BenchConfig, CandidateResult } from './harness';
import { medianRatio } from './harness';
import type { AccessMode, LeakDetectionMode } from '../lib';
import type { LeakOverheadResult } from './leak-overhead';
import { BUSY_VIEW, modeName } from './leak-overhead';
import type { OperationResult, OperationsResult } from './operations';
import { GOAL_DIVISOR } from './operations';
import type { RoundTripResult, RoundTripSizeResult } from './roundtrip';
import { BASELINES, CANDIDATES } from './roundtrip';
import { formatNs, formatRatio } from './stats';

export interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly totalMemoryBytes: number;
  readonly os: string;
  readonly node: string;
  readonly v8: string;
  /** Node's command-line flags besides --expose-gc (absent from reports that predate the field). */
  readonly nodeFlags?: readonly string[];
  readonly date: string;
  /** os.loadavg() (1, 5, 15 min) when the run started and ended: how shared the machine was. */
  loadAverageStart: number[];
  loadAverageEnd: number[];
}

export interface BenchReport {
  readonly machine: MachineInfo;
  readonly config: BenchConfig;
  readonly durationSeconds: number;
  /** A full GC ran before every benchmark.js run (outside the timing). */
  readonly gcBetweenRuns: boolean;
  readonly roundTrip: RoundTripResult | null;
  readonly operations: OperationsResult | null;
  readonly leakOverhead: LeakOverheadResult | null;
  /** Suites or candidates that threw, checks that failed: what was called and what came back. */
  readonly problems: string[];
  /** Observations that are not failures. */
  readonly findings: string[];
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    totalMemoryBytes: os.totalmem(),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    v8: process.versions.v8,
    nodeFlags: process.execArgv.filter((flag) => flag !== '--expose-gc'),
    date: new Date().toISOString(),
    loadAverageStart: os.loadavg(),
    loadAverageEnd: [],
  };
}

// -------------------------------------------------------------------------------------------------
// tables

function fmtLoad(load: readonly number[]): string {
  return load.length === 0 ? 'n/a' : load.map((l) => l.toFixed(2)).join(' / ');
}

/** An aligned Markdown table: readable as plain text and renderable as Markdown. */
export function table(headers: readonly string[], rows: ReadonlyArray<readonly string[]>, rightAligned: readonly boolean[] = []): string {
  const widths = headers.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const pad = (text: string, c: number): string => (rightAligned[c] === true ? text.padStart(widths[c]) : text.padEnd(widths[c]));
  const line = (cells: readonly string[]): string => `| ${cells.map((cell, c) => pad(cell, c)).join(' | ')} |`;
  const rule = `|${widths.map((w, c) => (rightAligned[c] === true ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(headers), rule, ...rows.map((r) => line(headers.map((_, c) => r[c] ?? '')))].join('\n');
}

const BASELINE_ORDER = [BASELINES.allocUnsafe, BASELINES.alloc, BASELINES.arrayBuffer, BASELINES.jsPool, BASELINES.jsHandlePool];

export function roundTripTable(size: RoundTripSizeResult): string {
  const baselines = BASELINE_ORDER.map((name) => size.results.find((r) => r.name === name));
  const headers = ['candidate', 'median ns/op', 'sample median', '± rounds', ...BASELINE_ORDER.map((b) => `vs ${b}`)];
  const rows = size.results.map((r) => {
    if (r.error !== undefined) return [r.name, 'failed', r.error.slice(0, 60)];
    return [
      r.baseline ? r.name : `**${r.name}**`,
      formatNs(r.medianNs),
      formatNs(r.sampleMedianNs),
      Number.isFinite(r.spread) ? `${(r.spread * 100).toFixed(0)}%` : 'n/a',
      ...baselines.map((b) => (b === undefined ? 'n/a' : b === r ? '1' : formatRatio(medianRatio(r, b)))),
    ];
  });
  return table(headers, rows, [false, ...headers.slice(1).map(() => true)]);
}

export function operationsTable(ops: OperationsResult): string {
  const headers = ['operation', 'setup', 'n', 'p50', 'p99', 'p999', 'batched mean', '§6 budget', 'budget / p99', `goal (budget/${GOAL_DIVISOR})`, 'p99 ≤ goal'];
  const rows = ops.operations.map((o: OperationResult) =>
    o.error !== undefined
      ? [o.name, o.setup, '0', 'failed', o.error.slice(0, 70)]
      : [
          o.name,
          o.setup,
          String(o.samples),
          formatNs(o.p50Ns),
          formatNs(o.p99Ns),
          o.samples >= 1000 ? formatNs(o.p999Ns) : `${formatNs(o.p999Ns)} (max)`,
          formatNs(o.batchMeanNs),
          formatNs(o.budgetNs),
          formatRatio(o.headroom),
          formatNs(o.budgetNs / GOAL_DIVISOR),
          o.meetsGoal ? 'yes' : 'NO',
        ],
  );
  for (const o of ops.operations) {
    for (const part of o.parts ?? []) {
      rows.push([`  ↳ ${part.name}`, 'part of the row above', '', formatNs(part.p50Ns), formatNs(part.p99Ns), '', '', '', '', '', '']);
    }
  }
  rows.push(['(timer floor)', 'empty call, same timing', '', formatNs(ops.timerFloor.p50Ns), formatNs(ops.timerFloor.p99Ns), '', '', '', '', '', '']);
  return table(headers, rows, [false, false, true, true, true, true, true, true, true, true, false]);
}

export function leakTable(leak: LeakOverheadResult): string {
  // Older results.json files (before view rows) have no baselines: everything against the first row.
  const byName = new Map(leak.results.map((r) => [r.name, r]));
  const rows = leak.results.map((r: CandidateResult) => {
    if (r.error !== undefined) return [r.name, 'failed', r.error.slice(0, 60)];
    const off = byName.get(leak.baselines?.[r.name] ?? leak.results[0].name) ?? r;
    return [
      r.name,
      formatNs(r.medianNs),
      formatNs(r.sampleMedianNs),
      r === off ? '1' : formatRatio(medianRatio(r, off)),
      r === off ? '0' : formatNs(r.medianNs - off.medianNs),
    ];
  });
  return table(['4 KiB round trip', 'median ns/op', 'sample median', "vs 'off'", "extra over 'off'"], rows, [false, true, true, true, true]);
}

export function retentionTable(rt: RoundTripResult): string {
  const rows = (rt.syncRetention ?? []).map((r) => [
    r.candidate,
    `${r.retainedBytesPerRoundTrip.toFixed(1)} B`,
    `${r.afterJobEndBytesPerRoundTrip.toFixed(1)} B`,
  ]);
  return table(['candidate', 'retained per round trip, job still running', 'after the job ended'], rows, [false, true, true]);
}

export function heldTable(rt: RoundTripResult): string {
  const rows = (rt.held ?? []).map((h) => [
    h.candidate,
    `${h.bytes / 1024} KiB`,
    `${h.jobs} x ${h.perJob.toLocaleString('en-US')}`,
    h.medianPending.toLocaleString('en-US'),
    h.maxPending.toLocaleString('en-US'),
    `${(h.maxReservedBytes / (1024 * 1024)).toFixed(1)} MiB`,
  ]);
  return table(['candidate', 'size', 'jobs x round trips', 'pending at job end, median', 'max', 'pool memory reserved, max'], rows, [false, true, true, true, true, true]);
}

/**
 * What a new user gets: `new ResourceManager()` (default options) against `Buffer.allocUnsafe(4096)`,
 * beside the same channel with `leakDetection: 'off'`, from suite 3 (same rounds).
 */
export function defaultRatios(leak: LeakOverheadResult): Array<{ readonly label: string; readonly ratio: number }> {
  // 'sampled' is the default leakDetection, and suite 3's managers set nothing else.
  const byName = new Map(leak.results.map((r) => [r.name, r]));
  const unsafe = byName.get('Buffer.allocUnsafe');
  const vsUnsafe = (access: AccessMode, mode: LeakDetectionMode): number => {
    const r = byName.get(modeName(access, mode));
    return r === undefined || unsafe === undefined ? Number.NaN : medianRatio(r, unsafe);
  };
  const busy = byName.get(BUSY_VIEW);
  const alone = byName.get(modeName('view', 'sampled'));
  return [
    ...(['revocable', 'view'] as const).flatMap((access) => [
      { label: `${access} 4 KiB, default options / Buffer.allocUnsafe(4096)`, ratio: vsUnsafe(access, 'sampled') },
      { label: `${access} 4 KiB, leakDetection 'off' / Buffer.allocUnsafe(4096)`, ratio: vsUnsafe(access, 'off') },
    ]),
    ...(busy === undefined || alone === undefined
      ? []
      : [{ label: 'view 4 KiB, default options: manager busy with revocable and view channels / view alone', ratio: medianRatio(busy, alone) }]),
  ];
}

/** The four headline ratios of the brief (plus transfer vs detach where both were measured). */
export function keyRatios(rt: RoundTripResult): Array<{ readonly label: string; readonly ratio: number }> {
  const find = (label: string, name: string): CandidateResult | undefined =>
    rt.sizes.find((s) => s.label === label)?.results.find((r) => r.name === name);
  const ratio = (label: string, a: string, b: string): number => {
    const x = find(label, a);
    const y = find(label, b);
    return x === undefined || y === undefined ? Number.NaN : medianRatio(x, y);
  };
  return [
    { label: 'revocable (channel) 4 KiB / Buffer.allocUnsafe(4096)', ratio: ratio('4 KiB', CANDIDATES.revocableChannel, BASELINES.allocUnsafe) },
    { label: 'revocable (channel) 64 KiB / Buffer.alloc(65536)', ratio: ratio('64 KiB', CANDIDATES.revocableChannel, BASELINES.alloc) },
    ...['4 KiB', '64 KiB'].map((label) => ({
      label: `revocable (channel) ${label}: deferred reuse (default) / unsafeImmediateReuse`,
      ratio: ratio(label, CANDIDATES.revocableChannel, CANDIDATES.revocableImmediate),
    })),
    { label: 'view 4 KiB / Buffer.allocUnsafe(4096)', ratio: ratio('4 KiB', CANDIDATES.viewChannel, BASELINES.allocUnsafe) },
    { label: 'view 4 KiB / JS free-list pool', ratio: ratio('4 KiB', CANDIDATES.viewChannel, BASELINES.jsPool) },
    // A reference (bench/js-pool.ts JsHandlePool): how far the API's shape alone is from the free list.
    ...(find('4 KiB', BASELINES.jsHandlePool) === undefined
      ? []
      : [
          { label: 'JS pool with handles (API reference) 4 KiB / JS free-list pool', ratio: ratio('4 KiB', BASELINES.jsHandlePool, BASELINES.jsPool) },
          { label: 'view 4 KiB / JS pool with handles (API reference)', ratio: ratio('4 KiB', CANDIDATES.viewChannel, BASELINES.jsHandlePool) },
        ]),
    { label: 'view 4 KiB: fast lane / no fast lane', ratio: ratio('4 KiB', CANDIDATES.viewChannel, CANDIDATES.viewNoLane) },
    // Node >= 21 only, unsafeImmediateReuse channels: revocation by transfer() against the detach
    // method, and the fast lane against none, same run.
    ...(find('4 KiB', CANDIDATES.revocableDetach) === undefined
      ? []
      : ['4 KiB', '64 KiB'].map((label) => ({
          label: `revocable, unsafeImmediateReuse ${label}: transfer() method / detach method`,
          ratio: ratio(label, CANDIDATES.revocableImmediate, CANDIDATES.revocableDetach),
        }))),
    ...(find('4 KiB', CANDIDATES.revocableNoLane) === undefined
      ? []
      : [{ label: 'revocable, unsafeImmediateReuse 4 KiB: fast lane / no fast lane', ratio: ratio('4 KiB', CANDIDATES.revocableImmediate, CANDIDATES.revocableNoLane) }]),
  ];
}

// -------------------------------------------------------------------------------------------------
// console

export function consoleReport(report: BenchReport): string {
  const out: string[] = [];
  const m = report.machine;
  out.push(
    `isopool benchmarks (${report.config.mode}) — ${m.cpuModel}, ${m.cores} cores, ${(m.totalMemoryBytes / 2 ** 30).toFixed(1)} GiB, Node ${m.node}, ` +
      `load ${fmtLoad(m.loadAverageStart)} → ${fmtLoad(m.loadAverageEnd)}`,
  );
  if (report.roundTrip !== null) {
    out.push('', `## 1. Round trips (allocate + touch one byte + release), leakDetection 'off'; ratios = median over rounds of candidate / baseline`);
    for (const size of report.roundTrip.sizes) out.push('', `### ${size.label}`, roundTripTable(size));
    if (report.roundTrip.syncRetention !== null) out.push('', 'Heap kept by a synchronous loop (4 KiB):', retentionTable(report.roundTrip));
    if ((report.roundTrip.held ?? []).length > 0) out.push('', 'Pool memory held by deferred reuse:', heldTable(report.roundTrip));
    out.push('', 'Key ratios:');
    for (const k of keyRatios(report.roundTrip)) out.push(`  ${k.label}: ${formatRatio(k.ratio)}`);
  }
  if (report.leakOverhead !== null) {
    out.push('', 'Key ratios with default options:');
    for (const k of defaultRatios(report.leakOverhead)) out.push(`  ${k.label}: ${formatRatio(k.ratio)}`);
  }
  if (report.operations !== null) {
    out.push('', `## 2. Interface operations (per-call ns, p99 against SPEC.md §6 budgets)`, operationsTable(report.operations));
  }
  if (report.leakOverhead !== null) {
    out.push('', `## 3. Leak-detection overhead`, leakTable(report.leakOverhead));
  }
  if (report.problems.length > 0) out.push('', '## Problems', ...report.problems.map((p) => `- ${p}`));
  if (report.findings.length > 0) out.push('', '## Findings', ...report.findings.map((p) => `- ${p}`));
  out.push('', `total ${report.durationSeconds.toFixed(1)} s`);
  return out.join('\n');
}

// -------------------------------------------------------------------------------------------------
// markdown

/**
 * The report as Markdown. `optimisations` (bench/OPTIMISATIONS.md, kept by hand: each change
 * with its before and after) is appended as its own section when given.
 */
export function markdownReport(report: BenchReport, optimisations?: string): string {
  const m = report.machine;
  const c = report.config;
  const out: string[] = [];
  out.push(
    '# isopool benchmark results',
    '',
    '<!-- Generated by `npm run bench` (bench/run.ts → bench/report.ts). Do not edit by hand: rerun. -->',
    '',
    `One run of the full suite. Every candidate ran in the same process as its baselines, interleaved round by round;`,
    `read the ratios, not the absolute times: this is a shared, noisy ${m.cores}-core machine. No time is asserted anywhere.`,
    '',
    '## Machine',
    '',
    table(
      ['', ''],
      [
        ['CPU', `${m.cpuModel}`],
        ['cores', String(m.cores)],
        ['memory', `${(m.totalMemoryBytes / 2 ** 30).toFixed(1)} GiB`],
        ['OS', m.os],
        ['Node', `${m.node} (V8 ${m.v8})${(m.nodeFlags ?? []).length > 0 ? `, run with ${(m.nodeFlags ?? []).map((f) => `\`${f}\``).join(' ')}` : ''}`],
        ['date', m.date],
        ['load average (1/5/15 min)', `${fmtLoad(m.loadAverageStart)} at start, ${fmtLoad(m.loadAverageEnd)} at end`],
        ['run time', `${report.durationSeconds.toFixed(0)} s (full mode)`],
      ],
    ),
    '',
    '## Method',
    '',
    `- **ns/op** ("median ns/op"): benchmark.js measured each candidate for ${c.maxTime} s (≥ ${c.minSamples} samples of ≥ ${c.minTime} s) in each of`,
    `  ${c.rounds} rounds; a run's ns/op is \`1e9 / hz\` (= \`stats.mean\`), and the table shows the **median over rounds**.`,
    `  "sample median" is the median of every benchmark.js sample (ns/op of one timed cycle) pooled over the rounds.`,
    '- **Ratios** are taken inside each round, from the two candidates\' sample medians of that round (robust to a stray slow',
    '  cycle, which a benchmark.js mean is not), and then medianed over rounds. Below 1 means the candidate is faster.',
    '  "± rounds" is the interquartile range of the rounds\' sample medians divided by their median.',
    "- benchmark.js runs with `async: true`: each cycle is its own macrotask, so the job ends between cycles as in a server.",
    '  A `WeakRef` made per allocation would keep every revoked ArrayBuffer alive until the job ended; "Heap kept by a',
    '  synchronous loop" below checks that allocations in one synchronous loop leave no such heap behind.',
    '- Round r starts with candidate r mod k, so no candidate is always measured first or last.',
    report.gcBetweenRuns
      ? "- A full GC (`--expose-gc`) runs before each benchmark.js run, outside the timing, so one candidate's garbage is not\n  collected on the next one's clock; GC caused by a candidate during its own run stays in its time."
      : '- No GC between runs (the process had no `--expose-gc`): one candidate may pay for another one’s garbage.',
    '- Every round trip writes one byte of its buffer and reads it back into a sink that is printed at the end.',
    "- Section 1 uses `leakDetection: 'off'`, to compare the raw pool path; section 3 and the first table below give the",
    "  default options (`'sampled'`) beside it.",
    "- There is no \"view mode without a channel\": `access` is a channel option, and the unscoped domain (no channel id) is",
    '  always revocable.',
    '- `new ArrayBuffer(n)` includes the `Uint8Array` needed to touch a byte. The JS free-list pool is `bench/js-pool.ts`:',
    '  an array stack of `Buffer.allocUnsafeSlow(n)`, pop/push, with no isolation, revocation or zeroing.',
    '- "JS pool with handles (API reference)" (`JsHandlePool`, same file) is not an alternative a user would pick but a',
    '  measure of the API\'s shape: the least a pure-JS pool does per round trip to offer `scope.allocate(type, size)`',
    '  and `scope.deallocate(handle)` (argument checks, a per-channel free list, a byte quota, a new handle object with an',
    '  id per allocation, refusal of foreign, stale, double and other-channel releases), without native memory, exact',
    '  ledgers, zeroing, revocation, metrics, leak detection or ids that stay invalid after release. Its candidate stores each',
    '  handle, as a caller would: a handle that never escapes the loop is optimised away by V8 (escape analysis) and the',
    '  reference then costs as much as the free list.',
    '',
  );
  if (report.leakOverhead !== null) {
    out.push(
      '## Key ratios with default options',
      '',
      'A channel of `new ResourceManager()` (nothing set: deferred reuse, leak detection \'sampled\') beside the same',
      'channel with `leakDetection: \'off\'`, from section 3 (same rounds as `Buffer.allocUnsafe`).',
      '',
      table(['ratio (same run, median over rounds)', 'value'], defaultRatios(report.leakOverhead).map((k) => [k.label, formatRatio(k.ratio)]), [false, true]),
      '',
    );
  }
  if (report.roundTrip !== null) {
    out.push("## Key ratios, leakDetection 'off'", '', table(['ratio (same run, median over rounds)', 'value'], keyRatios(report.roundTrip).map((k) => [k.label, formatRatio(k.ratio)]), [false, true]), '');
    out.push('## 1. Round trips: allocate + touch + release', '');
    out.push('![Round-trip time relative to Buffer.allocUnsafe, log scale](ratios.svg)', '');
    for (const size of report.roundTrip.sizes) out.push(`### ${size.label}`, '', roundTripTable(size), '');
    if (report.roundTrip.syncRetention !== null) {
      out.push(
        '### Heap kept by a synchronous loop',
        '',
        `${report.roundTrip.syncRetention[0]?.roundTrips.toLocaleString('en-US')} back-to-back 4 KiB round trips in one job (no yield to the event loop), heap measured`,
        'after a full GC, then again after the job ended. A server that ends its jobs often never sees the first column grow',
        'without bound; a long synchronous batch does.',
        '',
        retentionTable(report.roundTrip),
        '',
      );
    }
    if ((report.roundTrip.held ?? []).length > 0) {
      out.push(
        '### Pool memory held by deferred reuse',
        '',
        'A revocable channel runs jobs of back-to-back round trips, yielding to the event loop between jobs as a server',
        'does, with no forced GC. By default (deferred reuse) a freed buffer\'s memory waits until the collector frees the',
        'buffer, so it can never meet Node I/O still running on it; `unsafeImmediateReuse` reuses it at once. Pending',
        'handles are counted at the end of each job (`revocation.pendingRelease`).',
        '',
        heldTable(report.roundTrip),
        '',
      );
    }
  }
  if (report.operations !== null) {
    const ops = report.operations;
    out.push(
      '## 2. Interface operations',
      '',
      `Default options (\`leakDetection: 'sampled'\`); channel 'iso' holds ${ops.liveHandles.toLocaleString('en-US')} live 4 KiB handles throughout.`,
      'Each sample is one call between two `process.hrtime.bigint()` reads, recorded in a log-linear histogram (64 buckets',
      'per power of two, percentiles rounded up, ≤ 1.6% high). Percentiles include the timer floor (last row); nothing is',
      'subtracted. "batched mean" times back-to-back calls in ~50 µs batches (the timer cost amortised). A p999 marked (max)',
      'comes from fewer than 1,000 samples. The project goal is p99 ≤ budget / 1000.',
      '"openChannel + closeChannel": one fresh channel id per cycle; the open and the close (which frees',
      `${ops.channelHandles.toLocaleString('en-US')} handles) are timed, the ${ops.channelHandles.toLocaleString('en-US')} allocations between them are not.`,
      '',
      operationsTable(ops),
      '',
    );
    if (ops.fragmentation !== null) {
      out.push(
        `Fragmentation after the suite (10k handles live): internal ${(ops.fragmentation.internal * 100).toFixed(2)}%, ` +
          `pool ${(ops.fragmentation.pool * 100).toFixed(2)}% (SPEC target < 5%).`,
        '',
      );
    }
  }
  if (report.leakOverhead !== null) {
    out.push(
      '## 3. Leak-detection overhead',
      '',
      `4 KiB round trip through a channel scope, revocable and view mode; 'sampled' watches 1 in ${report.leakOverhead.leakSampleRate} allocations,`,
      "'paranoid' every allocation and records its allocation site (a stack capture), with the fast lane off; a 'sampled' watch",
      'registers the handle with a FinalizationRegistry and records no site (view mode: it still takes the fast lane; revocable',
      "mode, where revocation is by transfer(): the watched allocation takes the native path, the others the lane).",
      "\"vs 'off'\" compares with 'off' in the same access mode (allocUnsafe: with revocable 'off'; the busy-manager row: with",
      "view 'sampled' alone, the same round trip in a default manager whose other channels hold 1,000 revocable and 1,000",
      'view handles).',
      '',
      leakTable(report.leakOverhead),
      '',
    );
  }
  out.push('## Problems seen during the run', '');
  if (report.problems.length > 0) out.push(...report.problems.map((p) => `- ${p}`), '');
  else out.push('None: every behaviour check held and no candidate threw.', '');
  if (report.findings.length > 0) out.push('## Findings', '', ...report.findings.map((p) => `- ${p}`), '');
  out.push('Raw numbers (every round, every sample): `bench/results.json`.', '');
  if (optimisations !== undefined && optimisations.trim().length > 0) {
    out.push('## Optimisations, before and after', '', '<!-- From bench/OPTIMISATIONS.md (kept by hand). -->', '', optimisations.trim(), '');
  }
  return out.join('\n');
}

// -------------------------------------------------------------------------------------------------
// svg

const COLORS: Record<string, string> = {
  [CANDIDATES.revocableChannel]: '#1f6feb',
  [CANDIDATES.revocableUnscoped]: '#6ea8fe',
  [CANDIDATES.revocableDetach]: '#8250df',
  [CANDIDATES.revocableNoLane]: '#a5c8ff',
  [CANDIDATES.viewChannel]: '#2da44e',
  [CANDIDATES.viewNoLane]: '#7ee2a8',
  [BASELINES.alloc]: '#8c959f',
  [BASELINES.arrayBuffer]: '#afb8c1',
  [BASELINES.jsPool]: '#bf8700',
  [BASELINES.jsHandlePool]: '#e3b341',
};

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/**
 * Horizontal bars of each candidate's round-trip time relative to Buffer.allocUnsafe (the 1× line),
 * one group per size, on a log scale: bars to the left are faster, to the right slower.
 */
export function ratiosSvg(rt: RoundTripResult): string {
  const groups = rt.sizes.map((s) => ({ label: s.label, bars: s.vsAllocUnsafe.filter((e) => Number.isFinite(e.ratio) && e.ratio > 0) }));
  const all = groups.flatMap((g) => g.bars.map((b) => b.ratio));
  const lo = Math.max(-4, Math.floor(Math.log10(Math.min(1, ...all))));
  const hi = Math.min(4, Math.max(1, Math.ceil(Math.log10(Math.max(1, ...all)))));
  const left = 230;
  const plotWidth = 430;
  const right = 70;
  const barHeight = 16;
  const gap = 4;
  const groupGap = 22;
  const top = 50;
  const x = (ratio: number): number => left + ((Math.log10(Math.min(10 ** hi, Math.max(10 ** lo, ratio))) - lo) / (hi - lo)) * plotWidth;
  let height = top;
  for (const g of groups) height += groupGap + g.bars.length * (barHeight + gap);
  height += 40;
  const width = left + plotWidth + right;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">Round trip time relative to Buffer.allocUnsafe (log scale, lower is faster)</text>`,
    `<text x="${width / 2}" y="36" text-anchor="middle" fill="#57606a">same-run ratios, median over rounds; leakDetection 'off'</text>`,
  );
  for (let e = lo; e <= hi; e++) {
    const gx = x(10 ** e).toFixed(1);
    const label = e >= 0 ? `${10 ** e}×` : `${(10 ** e).toFixed(-e)}×`;
    parts.push(
      `<line x1="${gx}" y1="${top - 4}" x2="${gx}" y2="${height - 30}" stroke="${e === 0 ? '#24292f' : '#d0d7de'}" stroke-width="${e === 0 ? 1.5 : 1}"/>`,
      `<text x="${gx}" y="${height - 14}" text-anchor="middle" fill="#57606a">${label}</text>`,
    );
  }
  let y = top;
  for (const g of groups) {
    y += groupGap;
    parts.push(`<text x="8" y="${y - 6}" font-weight="bold">${escapeXml(g.label)}</text>`);
    for (const b of g.bars) {
      const x0 = x(1);
      const x1 = x(b.ratio);
      const bx = Math.min(x0, x1);
      const bw = Math.max(1, Math.abs(x1 - x0));
      const color = COLORS[b.candidate] ?? '#8c959f';
      parts.push(
        `<text x="${left - 8}" y="${y + barHeight - 4}" text-anchor="end">${escapeXml(b.candidate)}</text>`,
        `<rect x="${bx.toFixed(1)}" y="${y}" width="${bw.toFixed(1)}" height="${barHeight}" fill="${color}"><title>${escapeXml(`${g.label} ${b.candidate}: ${formatRatio(b.ratio)}`)}</title></rect>`,
        `<text x="${(Math.max(x0, x1) + 4).toFixed(1)}" y="${y + barHeight - 4}" fill="#24292f">${escapeXml(formatRatio(b.ratio))}</text>`,
      );
      y += barHeight + gap;
    }
  }
  parts.push('</svg>', '');
  return parts.join('\n');
}

// -------------------------------------------------------------------------------------------------
// json

/**
 * Reads a `results.json` written by {@link resultsJson} back (non-finite numbers restored), to
 * re-render RESULTS.md and ratios.svg without measuring again (`run.js --render`).
 */
export function parseResultsJson(text: string): BenchReport {
  const parsed: unknown = JSON.parse(text, (_key, value: unknown) =>
    value === 'NaN' ? Number.NaN : value === 'Infinity' ? Infinity : value === '-Infinity' ? -Infinity : value,
  );
  if (typeof parsed !== 'object' || parsed === null || !('machine' in parsed) || !('config' in parsed) || !('roundTrip' in parsed)) {
    throw new Error('not a bench/results.json written by bench/report.ts');
  }
  // Written by resultsJson from a BenchReport; only the shape's top level is checked here.
  return parsed as BenchReport;
}

/** JSON with non-finite numbers as strings ("NaN", "Infinity"), which JSON itself cannot carry. */
export function resultsJson(report: BenchReport): string {
  return `${JSON.stringify(report, (_key, value: unknown) => (typeof value === 'number' && !Number.isFinite(value) ? String(value) : value), 2)}\n`;
}

/**
 * Writes `text` to bench/`name` of the source tree (this file runs from build/ts/bench), or to
 * ./bench/`name` when there is no such tree.
 */
export function writeBenchFile(name: string, text: string): void {
  const out = path.resolve(__dirname, '..', '..', '..', 'bench', name);
  fs.writeFileSync(fs.existsSync(path.dirname(out)) ? out : path.resolve('bench', name), text);
}
