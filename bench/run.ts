/**
 * Entry point of the benchmark suite: `npm run bench` (full, writes bench/RESULTS.md,
 * bench/results.json and bench/ratios.svg) or `npm run bench:quick` (tiny sample counts, prints only).
 *
 * Usage: node build/ts/bench/run.js [--quick] [--only=roundtrip,operations,leak] [--out=DIR]
 *        node build/ts/bench/run.js --render   (RESULTS.md + ratios.svg from results.json, no measuring)
 * Progress goes to stderr, the tables to stdout. `--only` is for development: a partial full run
 * prints but writes nothing.
 * @packageDocumentation
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FULL, QUICK, describeError, sink } from './harness';
import type { BenchConfig } from './harness';
import { runLeakOverhead } from './leak-overhead';
import type { LeakOverheadResult } from './leak-overhead';
import { runOperations } from './operations';
import type { OperationsResult } from './operations';
import { consoleReport, machineInfo, markdownReport, parseResultsJson, ratiosSvg, resultsJson } from './report';
import type { BenchReport } from './report';
import { runRoundTrips } from './roundtrip';
import type { RoundTripResult } from './roundtrip';

const SUITES = ['roundtrip', 'operations', 'leak'] as const;
type SuiteName = (typeof SUITES)[number];

interface Args {
  readonly config: BenchConfig;
  readonly suites: ReadonlySet<SuiteName>;
  /** Re-render RESULTS.md and ratios.svg from bench/results.json, measuring nothing. */
  readonly render: boolean;
  /** Where RESULTS.md, results.json and ratios.svg go (default bench/), e.g. bench/node24 for another Node. */
  readonly outDir: string | null;
}

function isSuiteName(name: string): name is SuiteName {
  return (SUITES as readonly string[]).includes(name);
}

function parseArgs(argv: readonly string[]): Args {
  let config = FULL;
  let suites = new Set<SuiteName>(SUITES);
  let render = false;
  let outDir: string | null = null;
  for (const arg of argv) {
    if (arg.startsWith('--out=')) {
      outDir = path.resolve(arg.slice('--out='.length));
    } else if (arg === '--render') {
      render = true;
    } else if (arg === '--quick') {
      config = QUICK;
    } else if (arg.startsWith('--only=')) {
      const names = arg.slice('--only='.length).split(',').filter((n) => n.length > 0);
      const unknown = names.filter((n) => !isSuiteName(n));
      if (unknown.length > 0) throw new Error(`unknown suite(s) ${unknown.join(', ')}; known: ${SUITES.join(', ')}`);
      suites = new Set(names.filter(isSuiteName));
    } else {
      throw new Error(`unknown argument ${JSON.stringify(arg)}; usage: run.js [--quick] [--only=${SUITES.join(',')}] [--out=DIR] | --render [--out=DIR]`);
    }
  }
  return { config, suites, render, outDir };
}

/** The source bench/ directory (build/ts/bench/run.js → <repo>/bench). */
function benchDirectory(): string {
  const fromBuild = path.resolve(__dirname, '..', '..', '..', 'bench');
  if (fs.existsSync(path.join(fromBuild, 'run.ts'))) return fromBuild;
  return path.resolve(process.cwd(), 'bench');
}

/** bench/OPTIMISATIONS.md (each optimisation with its before and after), if present. */
function optimisationLog(): string | undefined {
  const file = path.join(benchDirectory(), 'OPTIMISATIONS.md');
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : undefined;
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

/**
 * The harness collects garbage between measurements (see harness.collectGarbage), which needs
 * --expose-gc: without it, rerun this script in a child process that has it.
 */
function rerunWithGc(): boolean {
  if (typeof globalThis.gc === 'function' || process.env.ISOPOOL_BENCH_CHILD === '1') return false;
  const child = spawnSync(process.execPath, [...process.execArgv, '--expose-gc', __filename, ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, ISOPOOL_BENCH_CHILD: '1' },
  });
  if (child.error !== undefined) throw child.error;
  process.exitCode = child.status ?? 1;
  return true;
}

/** Rewrites RESULTS.md and ratios.svg from the last full run's results.json. */
function renderOnly(outDir: string | null): void {
  const dir = outDir ?? benchDirectory();
  const report = parseResultsJson(fs.readFileSync(path.join(dir, 'results.json'), 'utf8'));
  fs.writeFileSync(path.join(dir, 'RESULTS.md'), markdownReport(report, optimisationLog()));
  if (report.roundTrip !== null) fs.writeFileSync(path.join(dir, 'ratios.svg'), ratiosSvg(report.roundTrip));
  log(`re-rendered ${path.join(dir, 'RESULTS.md')} and ratios.svg from results.json`);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const { config, suites, render } = args;
  if (render) {
    renderOnly(args.outDir);
    return;
  }
  if (rerunWithGc()) return;
  const started = process.hrtime.bigint();
  const problems: string[] = [];
  const findings: string[] = [];
  const machine = machineInfo();
  log(`isopool bench: ${config.mode} mode, suites ${[...suites].join(', ')}`);

  let roundTrip: RoundTripResult | null = null;
  let operations: OperationsResult | null = null;
  let leakOverhead: LeakOverheadResult | null = null;
  if (suites.has('roundtrip')) {
    try {
      roundTrip = await runRoundTrips(config, log);
      problems.push(...roundTrip.checks);
      findings.push(...roundTrip.findings);
      for (const size of roundTrip.sizes) {
        for (const r of size.results) if (r.error !== undefined) problems.push(`round trip ${size.label}, ${r.name}: ${r.error}`);
      }
    } catch (error) {
      problems.push(`round-trip suite failed: ${describeError(error)}`);
    }
  }
  if (suites.has('operations')) {
    try {
      operations = await runOperations(config, log);
      problems.push(...operations.checks);
      for (const o of operations.operations) if (o.error !== undefined) problems.push(`${o.name}: ${o.error}`);
    } catch (error) {
      problems.push(`operations suite failed: ${describeError(error)}`);
    }
  }
  if (suites.has('leak')) {
    try {
      leakOverhead = await runLeakOverhead(config, log);
      for (const r of leakOverhead.results) if (r.error !== undefined) problems.push(`leak overhead, ${r.name}: ${r.error}`);
    } catch (error) {
      problems.push(`leak-overhead suite failed: ${describeError(error)}`);
    }
  }

  machine.loadAverageEnd = os.loadavg();
  const report: BenchReport = {
    machine,
    config,
    durationSeconds: Number(process.hrtime.bigint() - started) / 1e9,
    gcBetweenRuns: typeof globalThis.gc === 'function',
    roundTrip,
    operations,
    leakOverhead,
    problems,
    findings,
  };
  process.stdout.write(`${consoleReport(report)}\n`);
  log(`(sink ${sink.value})`);

  if (config.mode === 'full' && suites.size === SUITES.length) {
    const dir = args.outDir ?? benchDirectory();
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'results.json'), resultsJson(report));
    fs.writeFileSync(path.join(dir, 'RESULTS.md'), markdownReport(report, optimisationLog()));
    if (roundTrip !== null) fs.writeFileSync(path.join(dir, 'ratios.svg'), ratiosSvg(roundTrip));
    log(`wrote ${path.join(dir, 'RESULTS.md')}, results.json, ratios.svg`);
  }
  if (problems.length > 0) process.exitCode = 1;
}

main().catch((error: unknown) => {
  process.stderr.write(`${describeError(error)}\n`);
  process.exitCode = 1;
});
