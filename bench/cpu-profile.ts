/**
 * Reading a V8 `.cpuprofile` (`node --cpu-prof`) for `npm run bench:service`: where a server's
 * main-thread time went between two instants, by owner of the code (isopool's JS, the addon's
 * native calls, node:http, crypto, GC, ...) and by function.
 *
 * Time of a sample: the gap to the next one (DevTools' convention). A frame without a script URL
 * that is not one of V8's pseudo-frames (`(garbage collector)`, `(program)`, `(idle)`) is a native
 * function: it is charged to its caller's owner, except that native functions called from
 * isopool's lib/ form their own owner, the addon.
 * @packageDocumentation
 */

/** The parts of a `.cpuprofile` read here. */
export interface CpuProfile {
  nodes: Array<{
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }>;
  /** Microseconds, on the clock of `process.hrtime()`. */
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Time (µs) of one owner or function. */
export interface TimeShare {
  readonly name: string;
  readonly micros: number;
}

/** Where the time between two instants went. */
export interface ProfileBreakdown {
  /** Sampled time that was not idle, µs. */
  readonly busyMicros: number;
  readonly idleMicros: number;
  /** Samples in the window. */
  readonly samples: number;
  /** By owner of the code, largest first. */
  readonly owners: TimeShare[];
  /** Self time of functions, largest first (the first `top`). */
  readonly selfTop: TimeShare[];
  /**
   * Inclusive time of the project's functions (examples/, bench/, lib/) and of the addon's
   * native functions, a function counted once per stack however deep it recurses; largest first
   * (the first `top`).
   */
  readonly inclusiveTop: TimeShare[];
}

export const OWNER = {
  lib: 'isopool lib/ (JS)',
  addon: 'isopool addon (native calls from lib/)',
  prometheus: 'isopool/prometheus, prom-client',
  example: 'examples/server.ts',
  plain: 'bench/plain-server.ts',
  bench: 'bench/ (IPC, start-up)',
  http: 'node:http (incl. llhttp parser)',
  net: 'node:net, streams',
  crypto: 'node:crypto (sha256)',
  buffer: 'node:buffer',
  timers: 'node:timers, task queues',
  events: 'node:events',
  nodeOther: 'other Node internals',
  gc: 'GC (main thread)',
  program: '(program): V8/libuv outside JS',
  other: 'other',
} as const;

const IDLE = '(idle)';

/** The owner of a frame with a script URL, or of a pseudo-frame; undefined for a native function. */
function ownerOf(url: string, functionName: string): string | undefined {
  if (url === '') {
    if (functionName === '(garbage collector)') return OWNER.gc;
    if (functionName === '(program)') return OWNER.program;
    if (functionName === '(idle)') return IDLE;
    if (functionName === '(root)') return OWNER.other;
    return undefined;
  }
  if (url.includes('/build/ts/lib/prometheus') || url.includes('/node_modules/prom-client/')) return OWNER.prometheus;
  if (url.includes('/build/ts/lib/') || url.includes('/dist/')) return OWNER.lib;
  if (url.includes('/build/ts/examples/')) return OWNER.example;
  if (url.includes('/build/ts/bench/plain-server')) return OWNER.plain;
  if (url.includes('/build/ts/bench/')) return OWNER.bench;
  if (!url.startsWith('node:')) return OWNER.other;
  const m = url.slice('node:'.length).replace(/^internal\//, '');
  if (/^(_http_|http\b|http\/|http2)/.test(m)) return OWNER.http;
  if (/^(net\b|stream|streams\/|stream_base|_stream|dgram)/.test(m)) return OWNER.net;
  if (/^crypto/.test(m)) return OWNER.crypto;
  if (/^buffer\b/.test(m)) return OWNER.buffer;
  if (/^(timers|async_hooks|process\/task_queues)/.test(m)) return OWNER.timers;
  if (/^events/.test(m)) return OWNER.events;
  return OWNER.nodeOther;
}

/** `file:line` of a frame, relative to build/ts (so lib/..., examples/...) when it is there. */
function location(url: string, line: number): string {
  const at = url.indexOf('/build/ts/');
  const file = at >= 0 ? url.slice(at + '/build/ts/'.length).replace(/\.js$/, '.ts (js)') : url.replace(/^file:\/\/.*\/node_modules\//, '');
  return file === '' ? '' : `${file}:${line + 1}`;
}

function isProjectUrl(url: string): boolean {
  return url.includes('/build/ts/');
}

function sorted(map: Map<string, number>, top: number): TimeShare[] {
  return [...map.entries()]
    .map(([name, micros]) => ({ name, micros }))
    .sort((a, b) => b.micros - a.micros)
    .slice(0, top);
}

/**
 * Breaks down the samples of `profile` taken between `fromMicros` and `toMicros` (on the
 * profile's clock, `process.hrtime()` in µs); the whole profile when they are omitted.
 */
export function breakDown(profile: CpuProfile, fromMicros = -Infinity, toMicros = Infinity, top = 20): ProfileBreakdown {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  // Owner and function name of every node, top-down (a native function takes its caller's owner).
  const owner = new Map<number, string>();
  const label = new Map<number, string>();
  const ownerOfNode = (id: number): string => {
    const known = owner.get(id);
    if (known !== undefined) return known;
    const { url, functionName } = byId.get(id)!.callFrame;
    let own = ownerOf(url, functionName);
    if (own === undefined) {
      const p = parent.get(id);
      const callerOwner = p === undefined ? OWNER.other : ownerOfNode(p);
      own = callerOwner === OWNER.lib || callerOwner === OWNER.addon ? OWNER.addon : callerOwner;
    }
    owner.set(id, own);
    return own;
  };
  for (const n of profile.nodes) {
    const { url, functionName, lineNumber } = n.callFrame;
    const where = location(url, lineNumber);
    const own = ownerOfNode(n.id);
    const native = url === '' && !functionName.startsWith('(');
    label.set(n.id, `${functionName || '(anonymous)'} ${where === '' ? (native ? `[native, ${own}]` : '') : `(${where})`}`.trim());
  }

  // Self time per node inside the window.
  const self = new Map<number, number>();
  let t = profile.startTime;
  let samples = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    const dt = profile.timeDeltas[i + 1] ?? 0;
    if (t < fromMicros || t >= toMicros) continue;
    samples++;
    self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + dt);
  }

  const owners = new Map<string, number>();
  const selfByLabel = new Map<string, number>();
  let busy = 0;
  let idle = 0;
  for (const [id, micros] of self) {
    const own = ownerOfNode(id);
    if (own === IDLE) {
      idle += micros;
      continue;
    }
    busy += micros;
    owners.set(own, (owners.get(own) ?? 0) + micros);
    const name = label.get(id)!;
    selfByLabel.set(name, (selfByLabel.get(name) ?? 0) + micros);
  }

  // Inclusive time: each node's self time is charged to every distinct project or addon function
  // on its stack.
  const inclusive = new Map<string, number>();
  for (const [id, micros] of self) {
    if (ownerOfNode(id) === IDLE) continue;
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const node = byId.get(at)!;
      if (!isProjectUrl(node.callFrame.url) && ownerOfNode(at) !== OWNER.addon) continue;
      const name = label.get(at)!;
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + micros);
    }
  }

  return {
    busyMicros: busy,
    idleMicros: idle,
    samples,
    owners: sorted(owners, Infinity),
    selfTop: sorted(selfByLabel, top),
    inclusiveTop: sorted(inclusive, top),
  };
}
