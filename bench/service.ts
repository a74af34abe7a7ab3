/**
 * `npm run bench:service`: examples/server.ts (`POST /digest` into pooled isopool buffers, a
 * channel per connection) against the same endpoint in plain Node (bench/plain-server.ts), under
 * autocannon. Writes bench/SERVICE.md and bench/service.json.
 *
 * Each server runs in its own process (bench/service-child.ts), which reports its
 * `process.cpuUsage()` over IPC: CPU per request = the server's CPU over a timed window / the
 * responses in it. Per (body size, connections) cell the two servers take turns, round after
 * round (the first alternating), and the report gives medians and same-round ratios
 * (isopool / plain). A profile of both at the 1 KiB body (`--cpu-prof`) shows where the time goes.
 *
 * Usage: node build/ts/bench/service.js [--quick] [--duration=S] [--warmup=S] [--rounds=N]
 *          [--sizes=1,16,256 (KiB)] [--connections=10,50,200] [--profile=S (0: none)]
 *          [--profile-connections=50] [--profile-size=1 (KiB)] [--plain-busy-us=N]
 *          [--rate=R (requests/s, or R1,R2,... one per size)] [--server-flags="--flag ..."]
 *          [--isopool-access=revocable|view] [--out=DIR] [--no-write]
 * `--quick` (about a minute) only prints, unless `--out` is given. `--plain-busy-us=N` is a control:
 * the plain server spends N µs of CPU per answered body in a busy loop, to see what a fixed extra
 * cost per request turns into on this machine (write it with `--out` elsewhere than bench/).
 * `--rate` replaces autocannon with a paced load (bench/paced-load.ts) of that many requests a
 * second in all, so both servers answer the same requests at the same pace and CPU per request
 * compares their work alone; without it each connection sends its next request on the answer.
 * `--server-flags` is a control: both server processes start with those Node/V8 flags.
 * `--isopool-access=view` is a control: the isopool server's channels are view channels.
 * @packageDocumentation
 */
import autocannon from 'autocannon';
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { breakDown } from './cpu-profile';
import { pacedLoad } from './paced-load';
import type { LoadResult } from './paced-load';
import type { CpuProfile, ProfileBreakdown, TimeShare } from './cpu-profile';
import { table } from './report';
import type { ChildReply, ChildRequest, PoolStats } from './service-child';
import { median, quantile } from './stats';

const KiB = 1024;
const MiB = 1024 * KiB;
const SERVERS = ['plain', 'isopool'] as const;
type ServerKind = (typeof SERVERS)[number];

/** The goals, isopool / plain in the same round. */
const GOALS = { cpu: 1.05, rps: 0.95, p99: 1.1 } as const;

interface Config {
  readonly mode: 'full' | 'quick';
  /** Seconds of timed load per server per round. */
  readonly durationS: number;
  /** Seconds of load before each timed window (same connections count, not timed). */
  readonly warmupS: number;
  /** Seconds of load per body size and server before the first cell (not timed). */
  readonly firstWarmupS: number;
  readonly rounds: number;
  readonly sizesBytes: readonly number[];
  readonly connections: readonly number[];
  /** The connection quota of both servers. */
  readonly quotaBytes: number;
  /** Seconds of load under `--cpu-prof` per server (0: no profile). */
  readonly profileS: number;
  readonly profileConnections: number;
  readonly profileSizeBytes: number;
  /** Sampling interval of `--cpu-prof`, µs. */
  readonly profileIntervalUs: number;
  /** A control: CPU µs the plain server burns per answered body (0: none, the real comparison). */
  readonly plainBusyUs: number;
  /** Paced load: requests per second in all, per body size (`sizesBytes` order); empty: autocannon. */
  readonly rates: readonly number[];
  /** A control: Node/V8 flags both server processes start with (empty: none, the real comparison). */
  readonly serverFlags: readonly string[];
  /** A control: the access mode of the isopool server's channels ('revocable': the example as it is). */
  readonly isopoolAccess: 'revocable' | 'view';
}

const FULL: Config = {
  mode: 'full',
  durationS: 3,
  warmupS: 0.5,
  firstWarmupS: 1,
  rounds: 3,
  sizesBytes: [1 * KiB, 16 * KiB, 256 * KiB],
  connections: [10, 50, 200],
  quotaBytes: 4 * MiB,
  profileS: 5,
  profileConnections: 50,
  profileSizeBytes: 1 * KiB,
  profileIntervalUs: 250,
  plainBusyUs: 0,
  rates: [],
  serverFlags: [],
  isopoolAccess: 'revocable',
};

const QUICK: Config = { ...FULL, mode: 'quick', durationS: 0.6, warmupS: 0.2, firstWarmupS: 0.3, profileS: 0 };

interface Args {
  readonly config: Config;
  readonly outDir: string | null;
  readonly write: boolean;
}

function parseArgs(argv: readonly string[]): Args {
  let config: Config = FULL;
  const overrides: Partial<Record<keyof Config, unknown>> = {};
  let outDir: string | null = null;
  let write: boolean | undefined;
  const list = (text: string): number[] => text.split(',').filter((s) => s !== '').map(Number);
  for (const arg of argv) {
    const at = arg.indexOf('=');
    const flag = at < 0 ? arg : arg.slice(0, at);
    const value = at < 0 ? '' : arg.slice(at + 1);
    if (arg === '--quick') config = QUICK;
    else if (flag === '--duration') overrides.durationS = Number(value);
    else if (flag === '--warmup') overrides.warmupS = Number(value);
    else if (flag === '--rounds') overrides.rounds = Number(value);
    else if (flag === '--sizes') overrides.sizesBytes = list(value).map((k) => k * KiB);
    else if (flag === '--connections') overrides.connections = list(value);
    else if (flag === '--profile') overrides.profileS = Number(value);
    else if (flag === '--profile-connections') overrides.profileConnections = Number(value);
    else if (flag === '--profile-size') overrides.profileSizeBytes = Number(value) * KiB;
    else if (flag === '--plain-busy-us') overrides.plainBusyUs = Number(value);
    else if (flag === '--rate') overrides.rates = list(value);
    else if (flag === '--server-flags') overrides.serverFlags = value.split(' ').filter((s) => s !== '');
    else if (flag === '--isopool-access') overrides.isopoolAccess = value;
    else if (flag === '--out') outDir = path.resolve(value);
    else if (arg === '--no-write') write = false;
    else throw new Error(`unknown argument ${JSON.stringify(arg)}; see the usage in bench/service.ts`);
  }
  config = { ...config, ...overrides } as Config;
  const bad =
    !(config.durationS > 0) ||
    !(config.warmupS >= 0) ||
    !(Number.isInteger(config.rounds) && config.rounds >= 1) ||
    !(config.profileS >= 0) ||
    !(config.plainBusyUs >= 0) ||
    config.sizesBytes.length === 0 ||
    config.connections.length === 0 ||
    (config.rates.length > 1 && config.rates.length !== config.sizesBytes.length) ||
    config.rates.some((n) => !(Number.isInteger(n) && n > 0)) ||
    config.serverFlags.some((f) => !f.startsWith('--')) ||
    (config.isopoolAccess !== 'revocable' && config.isopoolAccess !== 'view') ||
    [...config.sizesBytes, ...config.connections, config.profileConnections, config.profileSizeBytes].some((n) => !(Number.isInteger(n) && n > 0));
  if (bad) throw new Error(`bad settings: ${JSON.stringify(config)}`);
  return { config, outDir, write: write ?? (outDir !== null || config.mode === 'full') };
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// -------------------------------------------------------------------------------------------------
// the servers' processes

interface Usage {
  cpuMicros: number;
  rssBytes: number;
  monoMicros: number;
}

/** A server in its own process. */
class ServerProcess {
  private readonly waiting: Array<(u: Usage) => void> = [];
  private readonly waitingStats: Array<(s: PoolStats | null) => void> = [];
  private readonly exited: Promise<void>;
  maxRssBytes = 0;

  private constructor(
    readonly kind: ServerKind,
    private readonly child: ChildProcess,
    readonly url: string,
  ) {
    child.on('message', (m: ChildReply) => {
      if (m.type === 'stats') this.waitingStats.shift()?.(m.stats);
      if (m.type !== 'usage') return;
      this.maxRssBytes = Math.max(this.maxRssBytes, m.rssBytes);
      this.waiting.shift()?.({ cpuMicros: m.cpuMicros, rssBytes: m.rssBytes, monoMicros: m.monoMicros });
    });
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  static start(kind: ServerKind, config: Config, execArgv: string[] = []): Promise<ServerProcess> {
    const args = [kind, String(config.quotaBytes), String(kind === 'plain' ? config.plainBusyUs : 0), config.isopoolAccess];
    const child = fork(path.join(__dirname, 'service-child.js'), args, {
      execArgv: [...config.serverFlags, ...execArgv],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null): void => reject(new Error(`${kind} server exited (${code}) before it was ready`));
      child.once('exit', onExit);
      child.once('message', (m: ChildReply) => {
        child.off('exit', onExit);
        if (m.type === 'ready') resolve(new ServerProcess(kind, child, m.url));
        else {
          child.kill();
          reject(new Error(`${kind} server: ${m.type === 'failed' ? m.error : JSON.stringify(m)}`));
        }
      });
    });
  }

  usage(): Promise<Usage> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.child.send({ type: 'usage' } satisfies ChildRequest);
    });
  }

  /** The isopool server's manager metrics (null for the plain server). */
  stats(): Promise<PoolStats | null> {
    return new Promise((resolve) => {
      this.waitingStats.push(resolve);
      this.child.send({ type: 'stats' } satisfies ChildRequest);
    });
  }

  /** Asks the server to close and exit, and waits for the exit. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.connected) this.child.send({ type: 'stop' } satisfies ChildRequest);
    const timer = setTimeout(() => this.child.kill(), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

// -------------------------------------------------------------------------------------------------
// correctness, before any timing

interface Reply {
  status: number;
  body: string;
}

function post(url: string, body: Buffer): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/digest`, { method: 'POST', headers: { 'content-type': 'application/octet-stream', 'content-length': body.length } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.end(body);
  });
}

/** POSTs each body and one over the quota; returns what was wrong (empty: all right). */
async function check(server: ServerProcess, bodies: readonly Buffer[], quotaBytes: number): Promise<string[]> {
  const problems: string[] = [];
  for (const body of bodies) {
    const r = await post(server.url, body);
    const want = createHash('sha256').update(body).digest('hex');
    let got: { bytes?: unknown; sha256?: unknown; channel?: unknown; buffers?: unknown } = {};
    try {
      got = JSON.parse(r.body) as typeof got;
    } catch {
      // reported below
    }
    if (r.status !== 200 || got.sha256 !== want || got.bytes !== body.length || typeof got.channel !== 'string' || typeof got.buffers !== 'number') {
      problems.push(`${server.kind}: POST of ${body.length} bytes answered ${r.status} ${r.body.slice(0, 200)}`);
    }
  }
  const over = await post(server.url, Buffer.alloc(quotaBytes + 1));
  if (over.status !== 413) problems.push(`${server.kind}: POST of quota + 1 bytes answered ${over.status}, not 413`);
  return problems;
}

// -------------------------------------------------------------------------------------------------
// load

/** The `--rate` of a body size: requests per second in all, or 0 (autocannon, as fast as answered). */
function rateFor(config: Config, sizeBytes: number): number {
  if (config.rates.length === 0) return 0;
  return config.rates.length === 1 ? config.rates[0] : config.rates[config.sizesBytes.indexOf(sizeBytes)];
}

/** `rate` > 0: a paced load of that many requests a second (bench/paced-load.ts); else autocannon. */
function load(url: string, body: Buffer, connections: number, seconds: number, rate = 0): Promise<LoadResult> {
  if (rate > 0) return pacedLoad(url, body, connections, seconds, rate);
  const latencies: number[] = [];
  let responses = 0;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: `${url}/digest`,
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body,
        connections,
        pipelining: 1,
        duration: seconds,
        // autocannon checks for the end of `duration` once per sample interval
        sampleInt: 100,
        timeout: 10,
      },
      (err, result) => {
        if (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
          return;
        }
        const cpu = process.cpuUsage(cpu0);
        resolve({
          responses,
          ok: result['2xx'],
          non2xx: result.non2xx,
          errors: result.errors,
          timeouts: result.timeouts,
          wallS: Number(process.hrtime.bigint() - t0) / 1e9,
          latencies,
          loaderCpuMicros: cpu.user + cpu.system,
        });
      },
    );
    instance.on('response', (_client, statusCode, _bytes, ms) => {
      responses++;
      if (statusCode >= 200 && statusCode < 300) latencies.push(ms);
    });
  });
}

/** One timed window of one server. */
interface Run {
  readonly server: ServerKind;
  readonly round: number;
  /** 0: went first in its round. */
  readonly turn: number;
  readonly rps: number;
  readonly cpuUsPerRequest: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly responses: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly loaderCpuUsPerRequest: number;
  readonly wallS: number;
}

async function measure(server: ServerProcess, body: Buffer, connections: number, config: Config, round: number, turn: number): Promise<Run> {
  const rate = rateFor(config, body.length);
  if (config.warmupS > 0) await load(server.url, body, connections, config.warmupS, rate);
  await sleep(50);
  const before = await server.usage();
  const r = await load(server.url, body, connections, config.durationS, rate);
  // the closes of the load's connections are part of the window
  await sleep(100);
  const after = await server.usage();
  const cpu = after.cpuMicros - before.cpuMicros;
  return {
    server: server.kind,
    round,
    turn,
    rps: r.ok / r.wallS,
    cpuUsPerRequest: cpu / Math.max(1, r.responses),
    p50Ms: quantile(r.latencies, 0.5),
    p99Ms: quantile(r.latencies, 0.99),
    responses: r.responses,
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    loaderCpuUsPerRequest: r.loaderCpuMicros / Math.max(1, r.responses),
    wallS: r.wallS,
  };
}

interface Medians {
  rps: number;
  cpuUsPerRequest: number;
  p50Ms: number;
  p99Ms: number;
  loaderCpuUsPerRequest: number;
}

interface Cell {
  readonly sizeBytes: number;
  readonly connections: number;
  readonly runs: Run[];
  readonly medians: Record<ServerKind, Medians>;
  /** Medians over rounds of isopool / plain inside each round. */
  readonly ratios: { cpu: number; rps: number; p99: number };
  readonly met: { cpu: boolean; rps: boolean; p99: boolean };
  /** Non-2xx responses, errors or timeouts during its load. */
  readonly flagged: boolean;
}

function summarise(sizeBytes: number, connections: number, runs: Run[]): Cell {
  const of = (kind: ServerKind): Run[] => runs.filter((r) => r.server === kind);
  const med = (kind: ServerKind): Medians => {
    const rs = of(kind);
    return {
      rps: median(rs.map((r) => r.rps)),
      cpuUsPerRequest: median(rs.map((r) => r.cpuUsPerRequest)),
      p50Ms: median(rs.map((r) => r.p50Ms)),
      p99Ms: median(rs.map((r) => r.p99Ms)),
      loaderCpuUsPerRequest: median(rs.map((r) => r.loaderCpuUsPerRequest)),
    };
  };
  const rounds = [...new Set(runs.map((r) => r.round))];
  const ratio = (key: 'cpuUsPerRequest' | 'rps' | 'p99Ms'): number =>
    median(
      rounds.map((round) => {
        const iso = runs.find((r) => r.round === round && r.server === 'isopool');
        const plain = runs.find((r) => r.round === round && r.server === 'plain');
        return iso === undefined || plain === undefined ? Number.NaN : iso[key] / plain[key];
      }),
    );
  const ratios = { cpu: ratio('cpuUsPerRequest'), rps: ratio('rps'), p99: ratio('p99Ms') };
  return {
    sizeBytes,
    connections,
    runs,
    medians: { plain: med('plain'), isopool: med('isopool') },
    ratios,
    met: { cpu: ratios.cpu <= GOALS.cpu, rps: ratios.rps >= GOALS.rps, p99: ratios.p99 <= GOALS.p99 },
    flagged: runs.some((r) => r.non2xx + r.errors + r.timeouts > 0),
  };
}

// -------------------------------------------------------------------------------------------------
// profile

interface ProfileResult {
  readonly server: ServerKind;
  readonly requests: number;
  /** The profiled process's CPU over the window (process.cpuUsage, all its threads), µs. */
  readonly cpuMicros: number;
  readonly breakdown: ProfileBreakdown;
}

async function profile(kind: ServerKind, body: Buffer, config: Config): Promise<ProfileResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `isopool-service-${kind}-`));
  try {
    const server = await ServerProcess.start(kind, config, ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-interval=${config.profileIntervalUs}`]);
    try {
      await load(server.url, body, config.profileConnections, Math.max(0.5, config.warmupS));
      await sleep(50);
      const before = await server.usage();
      const r = await load(server.url, body, config.profileConnections, config.profileS);
      await sleep(100);
      const after = await server.usage();
      await server.stop();
      const file = fs.readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
      if (file === undefined) throw new Error(`${kind}: no .cpuprofile written`);
      const prof = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as CpuProfile;
      return { server: kind, requests: r.responses, cpuMicros: after.cpuMicros - before.cpuMicros, breakdown: breakDown(prof, before.monoMicros, after.monoMicros, 15) };
    } finally {
      await server.stop();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// -------------------------------------------------------------------------------------------------
// report

interface Machine {
  cpuModel: string;
  cores: number;
  memoryBytes: number;
  kernel: string;
  node: string;
  v8: string;
  nodeFlags: string[];
  /** `GLIBC_TUNABLES` of this process, inherited by both servers (null: unset). */
  glibcTunables: string | null;
  date: string;
  loadAverageStart: number[];
  loadAverageEnd: number[];
}

function machine(): Machine {
  let cpuModel = os.cpus()[0]?.model.trim() ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpuModel = m[1].trim();
  } catch {
    // not Linux: os.cpus() it is
  }
  return {
    cpuModel,
    cores: os.cpus().length,
    memoryBytes: os.totalmem(),
    kernel: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    v8: process.versions.v8,
    nodeFlags: process.execArgv,
    glibcTunables: process.env.GLIBC_TUNABLES ?? null,
    date: new Date().toISOString(),
    loadAverageStart: os.loadavg(),
    loadAverageEnd: [],
  };
}

interface ServiceReport {
  machine: Machine;
  config: Config;
  autocannon: string;
  durationS: number;
  checks: string[];
  cells: Cell[];
  profiles: ProfileResult[];
  maxRssBytes: Record<ServerKind, number>;
  /** The isopool server's manager after every cell. */
  poolStats: PoolStats | null;
}

const fmt = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a');
const fmtSize = (bytes: number): string => (bytes >= MiB && bytes % MiB === 0 ? `${bytes / MiB} MiB` : bytes >= KiB && bytes % KiB === 0 ? `${bytes / KiB} KiB` : `${bytes} B`);
const verdict = (ok: boolean): string => (ok ? 'met' : '**not met**');
const load3 = (l: readonly number[]): string => (l.length === 0 ? 'n/a' : l.map((x) => x.toFixed(2)).join(' / '));

function goalsTable(cells: readonly Cell[]): string {
  const rows = cells.map((c) => [
    fmtSize(c.sizeBytes),
    String(c.connections),
    `${c.ratios.cpu.toFixed(3)} ${verdict(c.met.cpu)}`,
    `${c.ratios.rps.toFixed(3)} ${verdict(c.met.rps)}`,
    `${c.ratios.p99.toFixed(3)} ${verdict(c.met.p99)}`,
    c.flagged ? '**errors**' : 'none',
  ]);
  return table(['body', 'connections', `CPU/request (≤ ${GOALS.cpu})`, `requests/s (≥ ${GOALS.rps})`, `p99 latency (≤ ${GOALS.p99})`, 'non-2xx / errors'], rows, [false, true, false, false, false, false]);
}

function mediansTable(cells: readonly Cell[]): string {
  const rows: string[][] = [];
  for (const c of cells) {
    for (const kind of SERVERS) {
      const m = c.medians[kind];
      const rs = c.runs.filter((r) => r.server === kind);
      const bad = rs.reduce((n, r) => n + r.non2xx, 0);
      const errs = rs.reduce((n, r) => n + r.errors + r.timeouts, 0);
      rows.push([
        fmtSize(c.sizeBytes),
        String(c.connections),
        kind,
        fmt(m.rps),
        fmt(m.cpuUsPerRequest, 1),
        fmt(m.p50Ms, 2),
        fmt(m.p99Ms, 2),
        fmt(m.loaderCpuUsPerRequest, 1),
        fmt(rs.reduce((n, r) => n + r.responses, 0)),
        `${bad} / ${errs}`,
      ]);
    }
  }
  return table(
    ['body', 'conns', 'server', 'requests/s', 'server CPU µs/req', 'p50 ms', 'p99 ms', 'load generator CPU µs/req', 'responses (all rounds)', 'non-2xx / errors'],
    rows,
    [false, true, false, true, true, true, true, true, true, true],
  );
}

function runsTable(cells: readonly Cell[]): string {
  const rows = cells.flatMap((c) =>
    c.runs.map((r) => [fmtSize(c.sizeBytes), String(c.connections), String(r.round + 1), r.turn === 0 ? 'first' : 'second', r.server, fmt(r.rps), fmt(r.cpuUsPerRequest, 1), fmt(r.p99Ms, 2)]),
  );
  return table(['body', 'conns', 'round', 'turn', 'server', 'requests/s', 'CPU µs/req', 'p99 ms'], rows, [false, true, true, false, false, true, true, true]);
}

function shareRows(shares: readonly TimeShare[], requests: number, busy: number): string[][] {
  return shares.map((s) => [s.name.replace(/\|/g, '\\|'), fmt(s.micros / requests, 2), `${((100 * s.micros) / busy).toFixed(1)} %`]);
}

function profileSection(profiles: readonly ProfileResult[], config: Config): string {
  const plain = profiles.find((p) => p.server === 'plain');
  const iso = profiles.find((p) => p.server === 'isopool');
  if (plain === undefined || iso === undefined) return '';
  const per = (p: ProfileResult, micros: number): number => micros / Math.max(1, p.requests);
  const owners = [...new Set([...iso.breakdown.owners, ...plain.breakdown.owners].map((o) => o.name))];
  const micros = (p: ProfileResult, name: string): number => p.breakdown.owners.find((o) => o.name === name)?.micros ?? 0;
  const ownerRows = owners
    .map((name) => ({ name, plain: per(plain, micros(plain, name)), iso: per(iso, micros(iso, name)) }))
    .sort((a, b) => b.iso - b.plain - (a.iso - a.plain))
    .map((o) => [
      o.name,
      `${fmt(o.plain, 2)} (${((100 * micros(plain, o.name)) / plain.breakdown.busyMicros).toFixed(1)} %)`,
      `${fmt(o.iso, 2)} (${((100 * micros(iso, o.name)) / iso.breakdown.busyMicros).toFixed(1)} %)`,
      `${o.iso - o.plain >= 0 ? '+' : ''}${fmt(o.iso - o.plain, 2)}`,
    ]);
  const busyPlain = per(plain, plain.breakdown.busyMicros);
  const busyIso = per(iso, iso.breakdown.busyMicros);
  ownerRows.push(['**main thread, all**', fmt(busyPlain, 2), fmt(busyIso, 2), `${busyIso - busyPlain >= 0 ? '+' : ''}${fmt(busyIso - busyPlain, 2)}`]);
  const bgPlain = per(plain, plain.cpuMicros) - busyPlain;
  const bgIso = per(iso, iso.cpuMicros) - busyIso;
  ownerRows.push(['other threads (process CPU − main thread)', fmt(bgPlain, 2), fmt(bgIso, 2), `${bgIso - bgPlain >= 0 ? '+' : ''}${fmt(bgIso - bgPlain, 2)}`]);
  ownerRows.push(['process CPU (cpuUsage, all threads)', fmt(per(plain, plain.cpuMicros), 2), fmt(per(iso, iso.cpuMicros), 2), `${fmt(per(iso, iso.cpuMicros) - per(plain, plain.cpuMicros), 2)}`]);

  const gap = per(iso, iso.cpuMicros) - per(plain, plain.cpuMicros);
  const largest = owners
    .map((name) => ({ name, delta: per(iso, micros(iso, name)) - per(plain, micros(plain, name)) }))
    .concat([{ name: 'other threads', delta: bgIso - bgPlain }])
    .filter((o) => o.delta > 0)
    .sort((a, b) => b.delta - a.delta)
    .slice(0, 4)
    .map((o) => `${o.name} +${fmt(o.delta, 2)} µs${gap > 0 ? ` (${((100 * o.delta) / gap).toFixed(0)} % of the gap)` : ''}`);
  return [
    '## Where the time goes',
    '',
    `Each server alone, under \`node --cpu-prof --cpu-prof-interval=${config.profileIntervalUs}\`, at ${fmtSize(config.profileSizeBytes)} bodies and ${config.profileConnections} connections for ${config.profileS} s after ${Math.max(0.5, config.warmupS)} s of warm-up; only the samples of the timed window count.`,
    `plain: ${fmt(plain.requests)} requests, ${fmt(plain.breakdown.samples)} samples; isopool: ${fmt(iso.requests)} requests, ${fmt(iso.breakdown.samples)} samples.`,
    "Main-thread time by owner of the code, µs per request (share of that server's main-thread time), largest difference first.",
    "A native function is charged to its caller's owner; those called from isopool's lib/ are the addon's row.",
    'The profiler itself slows both servers, so these µs are larger than the table above; the difference between rows is what to read.',
    '',
    table(['owner', 'plain µs/req', 'isopool µs/req', 'isopool − plain'], ownerRows, [false, true, true, true]),
    '',
    `Process CPU, isopool − plain: ${gap >= 0 ? '+' : ''}${fmt(gap, 2)} µs per request; the largest parts: ${largest.join('; ')}.`,
    '',
    '- node:net, streams: mostly the socket write (`writeUtf8String` / `writev`), whose time includes the',
    "  kernel's loopback delivery to autocannon and waking it. It is not isopool's code; it costs more per",
    '  request when the load generator sleeps more, which a slower server causes.',
    '- The addon: calls V8 makes as fast API calls have no frame of their own, so native time spent in',
    "  `allocIn` / `freeIn` shows as the self time of lib/'s `#nativeAllocate` / `#freeHeld`.",
    "- node:buffer: mostly copying each body chunk into the request's buffer (`chunk.copy` into the pooled",
    '  buffer; plain: `Buffer.concat`).',
    '- node:timers: the timers list and microtask queue (Node\'s HTTP server uses both; the example\'s body',
    '  timeout is one interval timer per server, and its request path makes no promise).',
    "- Other threads: V8's background threads (concurrent marking and sweeping, the ArrayBuffer sweeper that",
    '  frees external ArrayBuffers), libuv\'s, and the profiler\'s own sampling thread, whose cost is per',
    '  second, not per request: a server that answers fewer requests in the window shows more of it per',
    '  request. The profile does not sample them.',
    '',
    "isopool: inclusive time of the project's functions and of the addon's native calls (a function counted once per stack).",
    '',
    table(['function', 'µs/req', 'of main thread'], shareRows(iso.breakdown.inclusiveTop, iso.requests, iso.breakdown.busyMicros), [false, true, true]),
    '',
    'isopool: self time, the top functions.',
    '',
    table(['function', 'µs/req', 'of main thread'], shareRows(iso.breakdown.selfTop, iso.requests, iso.breakdown.busyMicros), [false, true, true]),
    '',
    'plain: self time, the top functions.',
    '',
    table(['function', 'µs/req', 'of main thread'], shareRows(plain.breakdown.selfTop, plain.requests, plain.breakdown.busyMicros), [false, true, true]),
    '',
  ].join('\n');
}

/** What the isopool server's manager did over every cell (warm-up and checks included). */
function poolSummary(p: PoolStats | null): string {
  if (p === null) return '';
  const reused = p.allocations > 0 ? ((100 * p.buffersReused) / p.allocations).toFixed(1) : 'n/a';
  return [
    '## What the isopool server did',
    '',
    `Its manager's \`getResourceMetrics()\` after every cell: ${fmt(p.allocations)} allocations; revocation by \`${p.revocation}\`;`,
    `${fmt(p.buffersCreated)} external ArrayBuffers created over slots, ${fmt(p.buffersReused)} allocations served by a cached backing store (${reused} %),`,
    `${fmt(p.fastLaneAllocations)} by the fast lane; ${fmt(p.pendingRelease)} freed handles waiting for the garbage collector (\`pendingRelease\`) at that moment.`,
    ...p.pools.map(
      (pool) =>
        `- pool \`${pool.name}\` (${fmtSize(pool.slotSize)} slots, keeps ${fmt(pool.queueSize)} free): ${fmt(pool.hits)} allocations from a kept free slot, ${fmt(pool.misses)} that needed new memory, ${fmt(pool.releasedToSystem)} slabs returned to the system; ${fmt(pool.reservedBytes / MiB, 1)} MiB held at the end.`,
    ),
    '',
    p.buffersReused === 0 && p.fastLaneAllocations === 0
      ? "So every allocation made a new external ArrayBuffer: the example's channels use deferred reuse (revocable memory's default), where a freed slot returns to the pool only when the garbage collector frees its buffer."
      : '',
    '',
  ].join('\n');
}

function markdown(report: ServiceReport): string {
  const { machine: m, config: c, cells } = report;
  const metCount = cells.reduce((n, cell) => n + Number(cell.met.cpu) + Number(cell.met.rps) + Number(cell.met.p99), 0);
  const flagged = cells.filter((cell) => cell.flagged);
  return [
    '<!-- Generated by `npm run bench:service` (bench/service.ts): do not edit by hand. -->',
    '',
    '# examples/server.ts against plain Node, under load',
    '',
    `Generated with Node ${m.node} (V8 ${m.v8})${m.nodeFlags.length > 0 ? `, flags ${m.nodeFlags.join(' ')}` : ''}, on ${m.date}, in ${fmt(report.durationS)} s.`,
    '',
    ...(c.rates.length > 0
      ? [
          `**A paced run:** instead of autocannon, ${c.sizesBytes.map((size) => `${fmt(rateFor(c, size))} requests/s in all for ${fmtSize(size)} bodies`).join(', ')}, sent on a fixed schedule over keep-alive connections (\`--rate\`, bench/paced-load.ts). Both servers answer the same requests at the same pace, so CPU per request compares their work alone; requests/s shows whether a server kept up, and p99 is each request's time from its send.`,
          '',
        ]
      : []),
    ...(m.glibcTunables !== null
      ? [
          `**A control run:** both servers run with \`GLIBC_TUNABLES=${m.glibcTunables}\`, which changes how the C library's allocator keeps and returns memory (bench/METHOD.md, "Heap pages given back and faulted in again").`,
          '',
        ]
      : []),
    ...(c.serverFlags.length > 0
      ? [
          `**A control run:** both server processes start with \`${c.serverFlags.join(' ')}\` (\`--server-flags\`), which changes how V8 collects garbage (bench/METHOD.md, "Full collections set off by body buffers").`,
          '',
        ]
      : []),
    ...(c.isopoolAccess === 'view'
      ? [
          "**A control run:** the isopool server's channels are view channels (`--isopool-access=view`): no buffer is revoked at its free, and a view kept after it could read a later body of another connection (README, \"Access modes and their risks\"). Set beside a run of the example as it is, it shows what revoking each body costs.",
          '',
        ]
      : []),
    ...(c.plainBusyUs > 0
      ? [
          `**A control run:** the plain server spends ${c.plainBusyUs} µs of CPU per answered body in a busy loop (\`--plain-busy-us=${c.plainBusyUs}\`); "plain" below is that server.`,
          '',
        ]
      : []),
    `**Goals met: ${metCount} of ${cells.length * 3}** (isopool / plain, same round, median over ${c.rounds} rounds).` +
      (flagged.length > 0 ? ` **Cells with non-2xx responses or errors: ${flagged.map((x) => `${fmtSize(x.sizeBytes)} × ${x.connections}`).join(', ')}.**` : ' No non-2xx response or error in any cell.'),
    '',
    goalsTable(cells),
    '',
    'Below 1 is less CPU per request or lower latency for isopool; above 1, more requests per second.',
    '',
    '## Machine',
    '',
    `- CPU: ${m.cpuModel}, ${m.cores} cores; memory ${(m.memoryBytes / 1024 ** 3).toFixed(1)} GiB; ${m.kernel}`,
    `- Node ${m.node}, V8 ${m.v8}; autocannon ${report.autocannon}`,
    `- load average (1 / 5 / 15 min): ${load3(m.loadAverageStart)} at the start, ${load3(m.loadAverageEnd)} at the end`,
    `- resident set size, largest seen at a CPU reading: plain ${fmt(report.maxRssBytes.plain / MiB, 1)} MiB, isopool ${fmt(report.maxRssBytes.isopool / MiB, 1)} MiB`,
    '',
    poolSummary(report.poolStats),
    '## Method',
    '',
    '- Servers: examples/server.ts (`startServer({ port: 0 })`: each connection opens a channel with a',
    `  ${fmtSize(c.quotaBytes)} quota, a body with \`Content-Length\` is read into one pooled buffer, hashed, and freed)`,
    '  and bench/plain-server.ts (the body read with `Buffer.concat`, the same sha256, the same `413` for a',
    `  \`Content-Length\` over the same ${fmtSize(c.quotaBytes)} quota, the same JSON shape; no pooling, body timeout or metrics).`,
    '  Each runs in its own Node process (bench/service-child.ts, no flags), on 127.0.0.1.',
    '- Correctness first: before any timing, a POST of each body size gets `200` with the right sha256 and',
    '  byte count from both servers, and a POST of quota + 1 bytes gets `413`.',
    (c.rates.length > 0
      ? `- Load: bench/paced-load.ts (in the parent process; one request in flight per keep-alive connection, each sent on its connection's schedule), \`POST /digest\` with a random body,`
      : `- Load: autocannon ${report.autocannon} (programmatic, in the parent process), \`POST /digest\` with a random body,`),
    `  pipelining 1, keep-alive, timeout 10 s; for every body size (${c.sizesBytes.map(fmtSize).join(', ')}) and`,
    `  connection count (${c.connections.join(', ')}), ${c.rounds} rounds; in each round both servers in turn, the first`,
    `  alternating from round to round and from cell to cell. Before the first cell, ${c.firstWarmupS} s of load`,
    `  per body size on each server; each turn: ${c.warmupS} s of warm-up load (new connections), then`,
    `  ${c.durationS} s timed.`,
    '- CPU per request: the server process\'s `process.cpuUsage()` (user + system, all its threads) read over',
    '  IPC just before the timed load and 100 ms after it ends (so the closes of its connections count),',
    '  divided by the responses in the window.',
    '- Requests per second: 2xx responses / the wall time of the timed load (connection set-up included).',
    "- Latency: each 2xx response's time from autocannon's `response` event (µs resolution; autocannon's own",
    '  histogram has 1 ms steps), p50 and p99 over the window.',
    '- Ratios: isopool / plain inside each round, then the median over rounds; medians of the raw values below.',
    `- The machine has ${m.cores} cores, shared: both servers, the load generator (single-threaded, itself busy at high`,
    '  request rates: see its CPU per request below) and whatever else runs compete for them. The absolute',
    '  numbers move between runs far more than the same-round ratios; read the ratios.',
    '',
    report.checks.length > 0 ? `## Correctness check: FAILED\n\n${report.checks.map((p) => `- ${p}`).join('\n')}\n` : '',
    '## Medians',
    '',
    mediansTable(cells),
    '',
    profileSection(report.profiles, c),
    '## Every turn',
    '',
    runsTable(cells),
    '',
  ].join('\n');
}

function consoleSummary(report: ServiceReport): string {
  return [`Node ${report.machine.node}, ${report.config.mode} mode, ${fmt(report.durationS)} s`, goalsTable(report.cells), '', mediansTable(report.cells), ''].join('\n');
}

/** The source bench/ directory (build/ts/bench/service.js → <repo>/bench). */
function benchDirectory(): string {
  const fromBuild = path.resolve(__dirname, '..', '..', '..', 'bench');
  if (fs.existsSync(path.join(fromBuild, 'service.ts'))) return fromBuild;
  return path.resolve(process.cwd(), 'bench');
}

function autocannonVersion(): string {
  try {
    return (JSON.parse(fs.readFileSync(require.resolve('autocannon/package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

// -------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const { config, outDir, write } = parseArgs(process.argv.slice(2));
  const started = process.hrtime.bigint();
  const m = machine();
  log(`bench:service: Node ${m.node}, ${config.mode} mode, ${config.durationS} s + ${config.warmupS} s warm-up per turn, ${config.rounds} rounds`);
  const bodies = new Map(config.sizesBytes.map((size) => [size, randomBytes(size)]));
  if (!bodies.has(config.profileSizeBytes)) bodies.set(config.profileSizeBytes, randomBytes(config.profileSizeBytes));

  const servers = {
    plain: await ServerProcess.start('plain', config),
    isopool: await ServerProcess.start('isopool', config),
  };
  const cells: Cell[] = [];
  const checks: string[] = [];
  let poolStats: PoolStats | null = null;
  try {
    for (const kind of SERVERS) checks.push(...(await check(servers[kind], [...bodies.values()], config.quotaBytes)));
    if (checks.length > 0) {
      for (const p of checks) log(`CHECK FAILED: ${p}`);
      throw new Error('the servers do not answer correctly: no timing');
    }
    log('correctness check passed (200 and the right sha256 from both, 413 over the quota)');
    // Both servers see every body size once before the first timed turn (JIT, pool slabs).
    for (const size of config.sizesBytes) {
      for (const kind of SERVERS) await load(servers[kind].url, bodies.get(size)!, config.connections[0], config.firstWarmupS, rateFor(config, size));
    }

    const total = config.sizesBytes.length * config.connections.length;
    for (const size of config.sizesBytes) {
      for (const connections of config.connections) {
        const index = cells.length;
        const runs: Run[] = [];
        for (let round = 0; round < config.rounds; round++) {
          const order: ServerKind[] = (index + round) % 2 === 0 ? ['plain', 'isopool'] : ['isopool', 'plain'];
          for (const [turn, kind] of order.entries()) {
            const run = await measure(servers[kind], bodies.get(size)!, connections, config, round, turn);
            runs.push(run);
            const bad = run.non2xx + run.errors + run.timeouts;
            log(
              `[${index + 1}/${total}] ${fmtSize(size)} × ${connections}, round ${round + 1}, ${kind}: ${fmt(run.rps)} req/s, ${fmt(run.cpuUsPerRequest, 1)} µs CPU/req, p99 ${fmt(run.p99Ms, 2)} ms${bad > 0 ? `, ${run.non2xx} non-2xx, ${run.errors} errors, ${run.timeouts} timeouts` : ''}`,
            );
          }
        }
        const cell = summarise(size, connections, runs);
        cells.push(cell);
        log(`    ratios: CPU ${cell.ratios.cpu.toFixed(3)}, req/s ${cell.ratios.rps.toFixed(3)}, p99 ${cell.ratios.p99.toFixed(3)}${cell.flagged ? ' (errors)' : ''}`);
      }
    }
    poolStats = await servers.isopool.stats();
  } finally {
    await Promise.all([servers.plain.stop(), servers.isopool.stop()]);
  }

  const profiles: ProfileResult[] = [];
  if (config.profileS > 0) {
    for (const kind of SERVERS) {
      log(`profiling ${kind}: ${fmtSize(config.profileSizeBytes)} × ${config.profileConnections}, ${config.profileS} s`);
      profiles.push(await profile(kind, bodies.get(config.profileSizeBytes)!, config));
    }
  }

  m.loadAverageEnd = os.loadavg();
  const report: ServiceReport = {
    machine: m,
    config,
    autocannon: autocannonVersion(),
    durationS: Number(process.hrtime.bigint() - started) / 1e9,
    checks,
    cells,
    profiles,
    maxRssBytes: { plain: servers.plain.maxRssBytes, isopool: servers.isopool.maxRssBytes },
    poolStats,
  };
  process.stdout.write(`${consoleSummary(report)}\n`);
  if (write) {
    const dir = outDir ?? benchDirectory();
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'service.json'), `${JSON.stringify(report, null, 2)}\n`);
    fs.writeFileSync(path.join(dir, 'SERVICE.md'), markdown(report));
    log(`wrote ${path.join(dir, 'SERVICE.md')} and service.json`);
  }
  if (cells.some((c) => c.flagged)) process.exitCode = 1;
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
