/**
 * `npm run bench:churn`: round trips over many channels while channels open and close, as in a
 * service with a channel per connection and connections coming and going.
 *
 * Workload of every isopool candidate: 200 channels take turns (a fixed stride over them), each
 * turn one round trip (allocate 1 KiB, write a byte, read it, deallocate); every 100th turn the
 * channel whose turn it is is closed and a new one opened in its place (its limits set, as a
 * server sets a connection's quota). The open and close are part of the measured time.
 *
 * Candidates: revocable `unsafeImmediateReuse` channels and view channels, each with the fast lane
 * and with `ISOPOOL_FASTLANE=off` (every allocation and deallocation native). Baseline:
 * `Buffer.allocUnsafe(1024)` with the same write and read. Default options otherwise
 * (`leakDetection: 'sampled'`). benchmark.js, interleaved rounds; ratios are same-round medians.
 * Writes bench/CHURN.md.
 *
 *   node build/ts/bench/churn.js [--quick] [--no-write]
 * @packageDocumentation
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ResourceManager } from '../lib';
import type { ChannelOptions, ChannelScope } from '../lib';
import { FULL, QUICK, medianRatio, runInterleaved, sink } from './harness';
import type { Candidate, CandidateResult } from './harness';
import { machineInfo, table } from './report';

const CHANNELS = 200;
/** A channel is replaced every this many round trips. */
const CHURN_EVERY = 100;
const BYTES = 1024;
/** Coprime with CHANNELS: consecutive turns go to channels far apart, as connections take turns. */
const STRIDE = 67;

const BASELINE = 'Buffer.allocUnsafe(1024)';

/** A manager as a new user gets it, or with the lane off (a diagnostic switch, README "Access modes"). */
function manager(lane: boolean): ResourceManager {
  const saved = process.env.ISOPOOL_FASTLANE;
  if (!lane) process.env.ISOPOOL_FASTLANE = 'off';
  try {
    return new ResourceManager();
  } finally {
    if (saved === undefined) delete process.env.ISOPOOL_FASTLANE;
    else process.env.ISOPOOL_FASTLANE = saved;
  }
}

/** One candidate's channels, the turn and the name of the next channel it opens. */
function churning(label: string, lane: boolean, options: ChannelOptions): { candidate: Candidate; manager: ResourceManager } {
  const mgr = manager(lane);
  let opened = 0;
  const open = (): ChannelScope => mgr.openChannel(`c${opened++}`, { ...options, limits: { '*': { maxBytes: 1024 * 1024 } } });
  const scopes = Array.from({ length: CHANNELS }, open);
  let turn = 0;
  const fn = (): void => {
    const i = (turn * STRIDE) % CHANNELS;
    const scope = scopes[i];
    const h = scope.allocate('buffer', BYTES);
    const buf = h.buffer as Buffer;
    buf[turn & 1023] = turn & 255;
    sink.value += buf[turn & 1023];
    scope.deallocate(h);
    if (++turn % CHURN_EVERY === 0) {
      scope.close();
      scopes[i] = open();
    }
  };
  return { candidate: { name: label, baseline: false, fn }, manager: mgr };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const config = argv.includes('--quick') ? QUICK : FULL;
  const write = !argv.includes('--no-write');
  const started = Date.now();
  const info = machineInfo();
  const set = [
    churning('revocable, unsafeImmediateReuse', true, { unsafeImmediateReuse: true }),
    churning('revocable, unsafeImmediateReuse, no fast lane', false, { unsafeImmediateReuse: true }),
    churning('view', true, { access: 'view' }),
    churning('view, no fast lane', false, { access: 'view' }),
  ];
  let turn = 0;
  const baseline: Candidate = {
    name: BASELINE,
    baseline: true,
    fn: () => {
      const buf = Buffer.allocUnsafe(BYTES);
      buf[turn & 1023] = turn & 255;
      sink.value += buf[turn & 1023];
      turn++;
    },
  };
  const results = await runInterleaved('churn', [baseline, ...set.map((s) => s.candidate)], config, (line) => console.log(line));
  const lanes = set.map((s) => s.manager.getResourceMetrics());
  for (const s of set) s.manager.close();
  info.loadAverageEnd = os.loadavg();

  const base = results.find((r) => r.name === BASELINE) as CandidateResult;
  const rows = results.map((r, i) => {
    const m = i === 0 ? null : lanes[i - 1];
    const share = m === null || m.totals.allocations === 0 ? '' : `${((100 * m.fastLane.allocations) / m.totals.allocations).toFixed(0)} %`;
    return [r.name, r.error ?? fmtNs(r.medianNs), fmtNs(r.sampleMedianNs), `${(100 * r.spread).toFixed(1)} %`, r === base ? '1' : `${medianRatio(r, base).toFixed(2)}×`, share];
  });
  const pairs: Array<[string, string]> = [
    ['revocable, unsafeImmediateReuse', 'revocable, unsafeImmediateReuse, no fast lane'],
    ['view', 'view, no fast lane'],
  ];
  const byName = (name: string): CandidateResult => results.find((r) => r.name === name) as CandidateResult;
  const laneRows = pairs.map(([a, b]) => [a, `${medianRatio(byName(a), byName(b)).toFixed(2)}×`]);
  const md = [
    '<!-- Generated by `npm run bench:churn` (bench/churn.ts): do not edit by hand. -->',
    '',
    '# Round trips while channels open and close',
    '',
    `Generated with Node ${info.node} (V8 ${info.v8}) on ${info.date}, ${config.mode} mode (${config.rounds} interleaved rounds), in ${((Date.now() - started) / 1000).toFixed(0)} s.`,
    '',
    `${CHANNELS} channels take turns; each turn is one round trip of ${BYTES} bytes (allocate, write a byte, read it, deallocate), and every ${CHURN_EVERY}th turn the channel whose turn it is is closed and a new one opened with a byte quota. The open and close are in the measured time. Default options otherwise. The baseline does the same write and read on \`${BASELINE}\`.`,
    '',
    table(['candidate', 'median ns/op', 'sample median', '± rounds', `vs ${BASELINE}`, 'lane share of allocations'], rows, [false, true, true, true, true, true]),
    '',
    'With the fast lane / without it, same rounds:',
    '',
    table(['channels', 'lane / no lane'], laneRows, [false, true]),
    '',
    '## Machine',
    '',
    `- CPU: ${info.cpuModel}, ${info.cores} cores; memory ${(info.totalMemoryBytes / 1024 ** 3).toFixed(1)} GiB; ${info.os}`,
    `- load average (1 / 5 / 15 min): ${info.loadAverageStart.map((x) => x.toFixed(2)).join(' / ')} at the start, ${info.loadAverageEnd.map((x) => x.toFixed(2)).join(' / ')} at the end`,
    '',
  ].join('\n');
  console.log(md);
  if (write) {
    const out = path.resolve(__dirname, '..', '..', '..', 'bench', 'CHURN.md');
    fs.writeFileSync(fs.existsSync(path.dirname(out)) ? out : path.resolve('bench', 'CHURN.md'), md);
    console.log('wrote bench/CHURN.md');
  }
  console.log(`(sink ${sink.value})`);
}

function fmtNs(ns: number): string {
  return Number.isFinite(ns) ? `${ns >= 100 ? ns.toFixed(0) : ns.toFixed(1)} ns` : 'n/a';
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
