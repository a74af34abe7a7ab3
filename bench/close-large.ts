/**
 * How long closing a large channel blocks the event loop: `npm run bench:close`.
 *
 * For each workload a channel (its handle cap raised) is filled, then closed while a
 * `setImmediate` ticker measures the longest gap between turns of the event loop until every
 * handle's memory is back (`revocation.pendingRelease` 0). Reported: the `closeChannel` call,
 * the longest gap after it, the number of turns the close took, and the time to read the
 * report's list afterwards. Medians over `--runs` (default 3) runs, each in a process of its
 * own, so no other run's garbage is collected in the window.
 *
 * The buffer workloads keep no reference to their handles, so a garbage collection may land in
 * a gap: the longest collection pause in the same window is reported beside it. Counted
 * handles have no buffers and show the close alone. `--write` also writes bench/CLOSE.md.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { ResourceManager } from '../lib';
import type { ChannelOptions } from '../lib';

interface Workload {
  name: string;
  handles: number;
  options: ChannelOptions;
  allocate: (scope: ReturnType<ResourceManager['openChannel']>) => void;
}

interface Sample {
  closeMs: number;
  maxGapMs: number;
  maxGcMs: number;
  turns: number;
  listMs: number;
}

const args = process.argv.slice(2);
const runsArg = args.indexOf('--runs');
const RUNS = runsArg >= 0 ? Number(args[runsArg + 1]) : 3;
const SCALE = args.includes('--quick') ? 0.1 : 1;

const workloads: Workload[] = [
  { name: 'counted handles', handles: 1_000_000, options: {}, allocate: (s) => s.allocate('conn', 1) },
  { name: 'view 64 B buffers', handles: 300_000, options: { access: 'view' }, allocate: (s) => s.allocate('buffer', 64) },
  { name: 'revocable 64 B buffers (unsafeImmediateReuse)', handles: 300_000, options: { unsafeImmediateReuse: true }, allocate: (s) => s.allocate('buffer', 64) },
];

function tickUntil(done: () => boolean): Promise<{ maxGapMs: number; turns: number }> {
  return new Promise((resolve) => {
    let last = performance.now();
    let maxGapMs = 0;
    let turns = 0;
    const tick = (): void => {
      const now = performance.now();
      maxGapMs = Math.max(maxGapMs, now - last);
      last = now;
      turns++;
      if (done()) resolve({ maxGapMs, turns });
      else setImmediate(tick);
    };
    setImmediate(tick);
  });
}

async function sample(w: Workload): Promise<Sample> {
  const n = Math.round(w.handles * SCALE);
  const rm = new ResourceManager({ leakDetection: 'off' });
  rm.defineResourceType('conn', { kind: 'counter' });
  const scope = rm.openChannel('big', { ...w.options, limits: { '*': { maxHandles: n } } });
  for (let i = 0; i < n; i++) w.allocate(scope);
  (globalThis as { gc?: () => void }).gc?.(); // the filling's garbage is not the close's
  let maxGcMs = 0;
  const gcs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) maxGcMs = Math.max(maxGcMs, e.duration);
  });
  gcs.observe({ entryTypes: ['gc'] });
  const t0 = performance.now();
  const report = rm.closeChannel('big');
  const closeMs = performance.now() - t0;
  const { maxGapMs, turns } = await tickUntil(() => rm.getResourceMetrics().revocation.pendingRelease === 0);
  await new Promise((resolve) => setImmediate(resolve)); // the observer's entries arrive on a later turn
  gcs.disconnect();
  const t1 = performance.now();
  const listed = report.handles.length;
  const listMs = performance.now() - t1;
  if (listed !== n || report.count !== n) throw new Error(`report lists ${listed} of ${n}`);
  rm.close();
  return { closeMs, maxGapMs, maxGcMs, turns, listMs };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function main(): Promise<void> {
  const only = args.indexOf('--only');
  if (only >= 0) {
    // A child: one sample of one workload, as JSON.
    process.stdout.write(JSON.stringify(await sample(workloads[Number(args[only + 1])])));
    return;
  }
  const lines: string[] = [];
  const out = (line: string): void => {
    console.log(line);
    lines.push(line);
  };
  out(`Node ${process.version}, ${os.cpus()[0]?.model.trim() ?? 'unknown CPU'} × ${os.cpus().length}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB; ${RUNS} runs each (a process each), medians.`);
  out('');
  out('| workload | handles | closeChannel (ms) | longest gap after it (ms) | longest GC pause then (ms) | turns | reading report.handles (ms) |');
  out('|---|---:|---:|---:|---:|---:|---:|');
  for (let i = 0; i < workloads.length; i++) {
    const w = workloads[i];
    const samples: Sample[] = [];
    for (let r = 0; r < RUNS; r++) {
      const childArgs = [...process.execArgv, __filename, '--only', String(i), ...(SCALE < 1 ? ['--quick'] : [])];
      samples.push(JSON.parse(execFileSync(process.execPath, childArgs, { encoding: 'utf8' })) as Sample);
    }
    const m = (f: (s: Sample) => number): string => median(samples.map(f)).toFixed(1);
    out(`| ${w.name} | ${Math.round(w.handles * SCALE).toLocaleString('en-US')} | ${m((s) => s.closeMs)} | ${m((s) => s.maxGapMs)} | ${m((s) => s.maxGcMs)} | ${median(samples.map((s) => s.turns))} | ${m((s) => s.listMs)} |`);
  }
  if (args.includes('--write')) {
    const header = [
      '# Closing a large channel',
      '',
      '<!-- Generated by `npm run bench:close -- --write` (bench/close-large.ts). Do not edit by hand: rerun. -->',
      '',
      'A channel whose handle cap was raised is filled, then closed, while a `setImmediate` ticker measures the',
      'longest gap between turns of the event loop until every handle\'s memory is back. "turns" is how many',
      'turns that took. Reading the report\'s list is the one step that builds a million objects, when the caller',
      'asks for it. Method and design: bench/close-large.ts, docs/DECISIONS.md "Closing a large channel".',
      '',
    ];
    writeFileSync(path.join(__dirname, '..', '..', '..', 'bench', 'CLOSE.md'), [...header, ...lines, ''].join('\n'));
  }
}

void main();
