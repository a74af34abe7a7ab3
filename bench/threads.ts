/**
 * `npm run bench:threads`: 4 KiB round trips (allocate, write a byte, read it, deallocate) in
 * `worker_threads` workers, with a private manager per worker and with one shared manager
 * (`{ shared: name }`), in view and revocable channels, 1 and 2 workers. Each worker has its
 * own channel. Default options otherwise: what a new user gets.
 *
 * A worker runs its round trips in jobs of 64 and yields to its event loop between jobs, as a
 * server does (deferred reuse returns memory from there).
 *
 * Every configuration runs once per round, in an order rotated round by round, in fresh
 * workers; a run counts round trips over a fixed time after all its workers are ready
 * (warmed up) and released together. A calibration row (workers doing plain JS arithmetic, no
 * isopool) shows what a second worker can add on this machine during the run. The report gives
 * medians over rounds and same-run ratios, and writes bench/THREADS.md.
 *
 *   node build/ts/bench/threads.js [--quick] [--no-write]
 * @packageDocumentation
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { ResourceManager } from '../lib';
import type { ChannelScope } from '../lib';
import { machineInfo, table, writeBenchFile } from './report';
import { median } from './stats';

type Kind = 'private' | 'private-nolane' | 'shared' | 'calibration';
type Access = 'view' | 'revocable';

interface Job {
  readonly kind: Kind;
  readonly access: Access;
  readonly shared: string;
  readonly channel: string;
  readonly warmupMs: number;
  readonly runMs: number;
  /** [0]: workers ready; [1]: 1 once released. */
  readonly gate: SharedArrayBuffer;
}

interface Done {
  readonly ops: number;
  readonly ms: number;
  readonly sink: number;
}

const SIZE = 4096;
/** Round trips per job: a worker yields to its event loop between jobs, as a server does. */
const BATCH = 64;

function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

// -------------------------------------------------------------------------------------------------
// worker side

async function workerMain(job: Job): Promise<void> {
  const gate = new Int32Array(job.gate);
  let sink = 0;
  let step: () => void;
  let manager: ResourceManager | null = null;
  let scope: ChannelScope | null = null;
  if (job.kind === 'calibration') {
    let x = 1;
    step = () => {
      for (let k = 0; k < 64; k++) x = (Math.imul(x, 1103515245) + 12345) | 0;
      sink += x & 1;
    };
  } else {
    // 'private-nolane': the worker starts with ISOPOOL_FASTLANE=off (run() sets its env).
    manager = job.kind === 'shared' ? new ResourceManager({ shared: job.shared }) : new ResourceManager();
    scope = manager.openChannel(job.channel, { access: job.access });
    const channel = scope;
    step = () => {
      const h = channel.allocate('buffer', SIZE);
      const b = h.buffer!;
      b[SIZE - 1] = sink & 0xff;
      sink += b[SIZE - 1]! + 1;
      channel.deallocate(h);
    };
  }
  const until = performance.now() + job.warmupMs;
  while (performance.now() < until) {
    for (let i = 0; i < BATCH; i++) step();
    await yieldToLoop();
  }
  Atomics.add(gate, 0, 1);
  Atomics.notify(gate, 0);
  Atomics.wait(gate, 1, 0);
  const start = performance.now();
  const end = start + job.runMs;
  let ops = 0;
  let now = start;
  while (now < end) {
    for (let i = 0; i < BATCH; i++) step();
    ops += BATCH;
    await yieldToLoop();
    now = performance.now();
  }
  scope?.close();
  manager?.close();
  parentPort!.postMessage({ ops, ms: now - start, sink } satisfies Done);
}

// -------------------------------------------------------------------------------------------------
// main side

interface Config {
  readonly mode: 'quick' | 'full';
  readonly rounds: number;
  readonly warmupMs: number;
  readonly runMs: number;
}

interface Setup {
  readonly kind: Kind;
  readonly access: Access;
  readonly workers: 1 | 2;
}

const SETUPS: readonly Setup[] = (['calibration', 'private', 'private-nolane', 'shared'] as const).flatMap((kind) =>
  (kind === 'calibration' || kind === 'private-nolane' ? (['view'] as const) : (['view', 'revocable'] as const)).flatMap((access) =>
    ([1, 2] as const).map((workers) => ({ kind, access, workers })),
  ),
);

const keyOf = (s: Setup): string => `${s.kind}/${s.access}/${s.workers}`;

let runs = 0;

async function run(setup: Setup, config: Config, shared: string): Promise<number> {
  const id = ++runs;
  const gate = new Int32Array(new SharedArrayBuffer(8));
  const workers = Array.from({ length: setup.workers }, (_, i) => {
    const job: Job = {
      kind: setup.kind,
      access: setup.access,
      shared,
      channel: `w${i}-run${id}`,
      warmupMs: config.warmupMs,
      runMs: config.runMs,
      gate: gate.buffer as SharedArrayBuffer,
    };
    const env = setup.kind === 'private-nolane' ? { ...process.env, ISOPOOL_FASTLANE: 'off' } : process.env;
    return new Worker(__filename, { workerData: job, env });
  });
  const done = workers.map(
    (w) =>
      new Promise<Done>((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
        w.once('exit', (code) => reject(new Error(`worker exited with ${code} before reporting`)));
      }),
  );
  while (Atomics.load(gate, 0) < setup.workers) {
    await new Promise((r) => setTimeout(r, 2));
  }
  Atomics.store(gate, 1, 1);
  Atomics.notify(gate, 1);
  const results = await Promise.all(done);
  await Promise.all(workers.map((w) => w.terminate()));
  const ops = results.reduce((a, r) => a + r.ops, 0);
  const ms = Math.max(...results.map((r) => r.ms));
  return (ops / ms) * 1000;
}

function fmtM(opsPerS: number): string {
  return (opsPerS / 1e6).toFixed(2);
}

function fmtR(r: number): string {
  return `${r.toFixed(2)}×`;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const quick = argv.includes('--quick');
  const config: Config = quick
    ? { mode: 'quick', rounds: 3, warmupMs: 150, runMs: 250 }
    : { mode: 'full', rounds: 7, warmupMs: 300, runMs: 600 };
  const machine = machineInfo();
  const shared = `bench-threads-${process.pid}`;
  // The main thread keeps the shared manager attached between runs (it makes no call).
  const keeper = new ResourceManager({ shared });
  const samples = new Map<string, number[]>(SETUPS.map((s) => [keyOf(s), []]));
  const started = performance.now();
  for (let round = 0; round < config.rounds; round++) {
    for (let i = 0; i < SETUPS.length; i++) {
      const setup = SETUPS[(i + round) % SETUPS.length]!;
      const opsPerS = await run(setup, config, shared);
      samples.get(keyOf(setup))!.push(opsPerS);
      process.stderr.write(`round ${round + 1}/${config.rounds} ${keyOf(setup).padEnd(24)} ${fmtM(opsPerS)} M/s\n`);
    }
  }
  const stats = keeper.getResourceMetrics().totals;
  keeper.close();
  machine.loadAverageEnd = (await import('node:os')).loadavg();
  const seconds = (performance.now() - started) / 1000;

  const med = (kind: Kind, access: Access, workers: 1 | 2): number => median(samples.get(`${kind}/${access}/${workers}`)!);
  /** Same-round ratio a/b, medianed over rounds. */
  const ratio = (a: string, b: string): number => {
    const x = samples.get(a)!;
    const y = samples.get(b)!;
    return median(x.map((v, i) => v / y[i]!));
  };
  const rows: string[][] = [];
  for (const kind of ['private', 'shared'] as const) {
    for (const access of ['view', 'revocable'] as const) {
      rows.push([
        `${kind} manager, ${access}`,
        fmtM(med(kind, access, 1)),
        fmtM(med(kind, access, 2)),
        fmtR(ratio(`${kind}/${access}/2`, `${kind}/${access}/1`)),
      ]);
    }
  }
  rows.push(['private manager, view, fast lane off', fmtM(med('private-nolane', 'view', 1)), fmtM(med('private-nolane', 'view', 2)), fmtR(ratio('private-nolane/view/2', 'private-nolane/view/1'))]);
  rows.push(['calibration (plain JS, no isopool)', fmtM(med('calibration', 'view', 1)), fmtM(med('calibration', 'view', 2)), fmtR(ratio('calibration/view/2', 'calibration/view/1'))]);
  const goals = [
    ['shared, view: 2 workers / 1 worker', '≥ 1.7×', fmtR(ratio('shared/view/2', 'shared/view/1'))],
    ['shared, revocable: 2 workers / 1 worker', '≥ 1.7×', fmtR(ratio('shared/revocable/2', 'shared/revocable/1'))],
    ['view, 1 worker: shared / private manager', '≥ 0.6×', fmtR(ratio('shared/view/1', 'private/view/1'))],
    ['revocable, 1 worker: shared / private manager', '≥ 0.8×', fmtR(ratio('shared/revocable/1', 'private/revocable/1'))],
    ['calibration: 2 workers / 1 worker (the machine\'s ceiling now)', '2.0× on two idle cores', fmtR(ratio('calibration/view/2', 'calibration/view/1'))],
  ];
  const raw = SETUPS.map((s) => [keyOf(s), samples.get(keyOf(s))!.map(fmtM).join(', ')]);
  const md = [
    '# isopool across worker threads',
    '',
    '<!-- Generated by `npm run bench:threads` (bench/threads.ts). Do not edit by hand: rerun. -->',
    '',
    `4 KiB round trips (allocate, write and read a byte, deallocate) in \`worker_threads\` workers, each on its own channel,`,
    `in jobs of ${BATCH} with a yield to the event loop between jobs (as a server runs them),`,
    'with default options. "private": each worker creates its own `new ResourceManager()`; "shared": every worker',
    'attaches to one `new ResourceManager({ shared })` (the main thread holds it and makes no call). A run starts fresh',
    `workers, warms each up for ${config.warmupMs} ms, releases them together and counts round trips for ${config.runMs} ms; throughput is`,
    'all workers\' round trips over the longest worker\'s time. Every configuration runs once per round, in an order',
    `rotated round by round (${config.rounds} rounds); the tables give medians, and ratios taken inside each round then medianed.`,
    '',
    '## Machine',
    '',
    table(['', ''], [
      ['CPU', `${machine.cpuModel}, ${machine.cores} cores`],
      ['OS', machine.os],
      ['Node', `${machine.node} (V8 ${machine.v8})`],
      ['date', machine.date],
      ['load average (1/5/15 min)', `${machine.loadAverageStart.map((l) => l.toFixed(2)).join(' / ')} at start, ${machine.loadAverageEnd.map((l) => l.toFixed(2)).join(' / ')} at end`],
      ['run time', `${seconds.toFixed(0)} s (${config.mode} mode)`],
    ]),
    '',
    '## Goals (same-run ratios)',
    '',
    table(['ratio', 'goal', 'measured'], goals, [false, true, true]),
    '',
    '## Round trips per second (millions, medians)',
    '',
    table(['manager, channel access', '1 worker', '2 workers', '2 / 1'], rows, [false, true, true, true]),
    '',
    `The shared manager served ${stats.allocations} allocations and ${stats.deallocations} deallocations in this run.`,
    '',
    '## Why a shared manager is slower in one worker (view)',
    '',
    'A shared manager has no fast lane: each allocate and deallocate is a native call, as in a private manager with',
    '`ISOPOOL_FASTLANE=off` (the row above). The lane keeps freed slots in JavaScript and brings the native side up to',
    'date before any other call of the same thread; with a shared manager any other thread may read metrics, free by id',
    'or close the channel at any moment, and it cannot run this thread\'s JavaScript to bring it up to date, so every',
    'observation would no longer be exact (docs/DECISIONS.md, "Threads (shared managers)"). What is left is the native',
    'path itself, which a shared manager runs with atomic read-modify-writes instead of the plain stores of a',
    'single-owner one:',
    '',
    table(['ratio, 1 worker, view (same round)', 'measured'], [
      ['shared / private, fast lane off: the cost of the multi-thread native path', fmtR(ratio('shared/view/1', 'private-nolane/view/1'))],
      ['private, fast lane off / private: what the lane buys', fmtR(ratio('private-nolane/view/1', 'private/view/1'))],
    ], [false, true]),
    '',
    '<details><summary>Every run (M round trips/s, in round order)</summary>',
    '',
    table(['configuration', 'runs'], raw),
    '',
    '</details>',
    '',
  ].join('\n');
  process.stdout.write(`${table(['ratio', 'goal', 'measured'], goals)}\n\n${table(['manager, channel access', '1 worker', '2 workers', '2 / 1'], rows)}\n`);
  if (!argv.includes('--no-write')) {
    writeBenchFile('THREADS.md', md);
  }
}

if (isMainThread) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench:threads failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  });
} else {
  workerMain(workerData as Job).catch((err: unknown) => {
    throw err;
  });
}
