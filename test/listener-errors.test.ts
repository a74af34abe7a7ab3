/**
 * Listeners and subscribers that throw (SPEC §2 "Listeners and subscribers that throw"): an
 * exception from a 'pressure', 'leak' or 'violation' listener, or from an isopool:pressure,
 * isopool:leak, isopool:violation or isopool:limit subscriber, never changes what the operation
 * did or returned, and never splits JS state from native state. It reaches 'uncaughtException'
 * from process.nextTick, as Node does for diagnostics_channel subscribers.
 *
 * Every emit site runs three times on fresh managers: with counting listeners (the baseline),
 * with a throwing EventEmitter listener (followed by a counting one), and with a throwing
 * diagnostics_channel subscriber. Return values (ids aside) and metrics must be identical to the
 * baseline, and every thrown error must arrive at 'uncaughtException', once per event.
 */
import { expect } from 'chai';
import * as diagnostics from 'node:diagnostics_channel';
import { ResourceHandle, ResourceManager, ResourceManagerOptions } from '../lib';
import type { IsopoolError } from '../lib';
import { Json, SMALL_POOLS, bufferOf, collectUntil, expectCode, metricsJson, tick } from './helpers';

type EventName = 'pressure' | 'leak' | 'violation' | 'limit';
const DIAGNOSTICS: Record<EventName, string> = {
  pressure: 'isopool:pressure',
  leak: 'isopool:leak',
  violation: 'isopool:violation',
  limit: 'isopool:limit',
};
const CANARY_BYTES = 16; // native/core/hardening.h kCanaryBytes
const FORGED_ID = 123456789;
/**
 * Handles a scenario freed in its setup stay reachable: under deferred reuse their memory returns
 * when the buffer is collected, which would change the metrics between the compared snapshots.
 */
const freedInSetup: ResourceHandle[] = [];

/**
 * Runs `fn` with mocha's 'uncaughtException' listeners set aside and a collector in their place,
 * lets two macrotask turns pass (process.nextTick callbacks run before them), then restores them.
 */
async function catchingUncaught<T>(fn: () => Promise<T>): Promise<{ value: T; uncaught: unknown[] }> {
  const saved = process.rawListeners('uncaughtException') as Array<(...args: unknown[]) => void>;
  process.removeAllListeners('uncaughtException');
  const uncaught: unknown[] = [];
  const collect = (error: unknown): void => {
    uncaught.push(error);
  };
  process.on('uncaughtException', collect);
  try {
    const value = await fn();
    await tick();
    await tick();
    return { value, uncaught };
  } finally {
    process.removeListener('uncaughtException', collect);
    for (const listener of saved) process.on('uncaughtException', listener);
  }
}

/** What an operation did, comparable across managers (handle ids differ between managers). */
function outcome(fn: () => Json): Json {
  try {
    return { returned: fn() };
  } catch (e) {
    return { threw: (e as IsopoolError).code ?? String(e) };
  }
}

function handleView(h: ResourceHandle): Json {
  return { resourceType: h.resourceType, size: h.size, channelId: h.channelId, pool: h.pool, slotBytes: h.slotBytes, bufferLength: h.buffer?.length ?? null };
}

/** Metrics through JSON, without the timings (quantiles, sum and buckets vary between runs). */
function state(mgr: ResourceManager): Json {
  const m = metricsJson(mgr);
  const latency = m['latencyNs'] as Record<string, Record<string, Json>>;
  for (const h of Object.values(latency)) {
    delete h['p50'];
    delete h['p99'];
    delete h['p999'];
    delete h['sumNs'];
    delete h['buckets'];
  }
  return m;
}

function damageCanary(h: ResourceHandle): void {
  const buf = bufferOf(h);
  new Uint8Array(buf.buffer, buf.byteOffset + h.size + CANARY_BYTES - 1, 1)[0] ^= 0x01; // last canary byte
}

interface Scenario {
  name: string;
  event: EventName;
  options: ResourceManagerOptions;
  /** Prepares the manager (no event may be emitted here); returns what `run` needs. */
  setup(mgr: ResourceManager): unknown;
  /** The operation(s) under test, with their outcome made comparable. */
  run(mgr: ResourceManager, ctx: unknown): Json | Promise<Json>;
}

const plain: ResourceManagerOptions = { pools: SMALL_POOLS, leakDetection: 'off' };
const hardened: ResourceManagerOptions = { pools: SMALL_POOLS, leakDetection: 'off', hardened: true };

const allocTwice = (alloc: () => ResourceHandle): Json => [outcome(() => handleView(alloc())), outcome(() => handleView(alloc()))];
const validation = (r: { valid: boolean; channelId: string | null; violations: Array<{ code: string }> }): Json => ({ valid: r.valid, channelId: r.channelId, codes: r.violations.map((v) => v.code) });

const SCENARIOS: Scenario[] = [
  {
    name: "pressure: a type's total (allocateResource in a channel and unscoped)",
    event: 'pressure',
    options: plain,
    setup: (mgr) => mgr.setResourceLimits('buffer', { softBytes: 4096 }),
    run: (mgr) => [allocTwice(() => mgr.allocateResource('buffer', 100, 'a')), allocTwice(() => mgr.allocateResource('buffer', 100))],
  },
  {
    name: "pressure: a channel's total (scope.allocate)",
    event: 'pressure',
    options: plain,
    setup: (mgr) => {
      mgr.openChannel('a', { limits: { '*': { softBytes: 4096 } } });
      return mgr.channel('a');
    },
    run: (mgr) => allocTwice(() => mgr.channel('a').allocate('buffer', 100)),
  },
  {
    name: 'pressure: a type within a channel (view channel, counters too)',
    event: 'pressure',
    options: plain,
    setup: (mgr) => {
      mgr.defineResourceType('conn', { kind: 'counter' });
      mgr.openChannel('a', { access: 'view', limits: { buffer: { softBytes: 4096 }, conn: { softBytes: 1 } } });
    },
    run: (mgr) => [allocTwice(() => mgr.allocateResource('buffer', 100, 'a')), allocTwice(() => mgr.allocateResource('conn', 1, 'a'))],
  },
  {
    name: 'violation: deallocate of a freed, a forged and a malformed id',
    event: 'violation',
    options: plain,
    setup: (mgr) => {
      const h = mgr.allocateResource('buffer', 100, 'a');
      mgr.deallocateResource(h);
      return h;
    },
    run: (mgr, h) => [
      outcome(() => mgr.deallocateResource(h as ResourceHandle)),
      outcome(() => mgr.deallocateResource(FORGED_ID)),
      outcome(() => mgr.deallocateResource(-1)),
      outcome(() => mgr.channel('a').deallocate(FORGED_ID)),
    ],
  },
  {
    name: "violation: scope.deallocate / validate / track of another channel's live id",
    event: 'violation',
    options: plain,
    setup: (mgr) => {
      mgr.openChannel('b');
      return mgr.allocateResource('buffer', 100, 'a');
    },
    run: (mgr, h) => {
      const b = mgr.channel('b');
      const id = (h as ResourceHandle).id;
      return [
        outcome(() => b.deallocate(id)),
        outcome(() => validation(b.validate(id))),
        outcome(() => b.track(id).requestedBytes),
        outcome(() => mgr.validateSecurityBoundaries(id).valid),
      ];
    },
  },
  {
    name: 'violation: validate and track of forged and freed ids',
    event: 'violation',
    options: plain,
    setup: (mgr) => {
      const h = mgr.allocateResource('buffer', 100, 'a');
      mgr.deallocateResource(h);
      freedInSetup.push(h);
      return h.id;
    },
    run: (mgr, id) => [
      outcome(() => validation(mgr.validateSecurityBoundaries(FORGED_ID))),
      outcome(() => validation(mgr.validateSecurityBoundaries(id as number))),
      outcome(() => validation(mgr.channel('a').validate(-5))),
      outcome(() => mgr.trackResourceUsage(FORGED_ID).requestedBytes),
      outcome(() => mgr.trackResourceUsage(id as number).requestedBytes),
      outcome(() => mgr.channel('a').track(FORGED_ID).requestedBytes),
    ],
  },
  {
    name: 'violation: hardened canary found by validate and by track (the handle stays live)',
    event: 'violation',
    options: hardened,
    setup: (mgr) => {
      const h = mgr.openChannel('v', { access: 'view' }).allocate('buffer', 100);
      damageCanary(h);
      return h;
    },
    run: (mgr, h) => {
      const handle = h as ResourceHandle;
      return [
        outcome(() => validation(mgr.validateSecurityBoundaries(handle))),
        outcome(() => validation(mgr.channel('v').validate(handle))),
        outcome(() => {
          const m = mgr.trackResourceUsage(handle);
          return [m.resourceType, m.channelId, m.pool, m.requestedBytes, m.slotBytes, m.channelBytesInUse];
        }),
      ];
    },
  },
  {
    name: 'violation: hardened canary found by deallocate (freed all the same)',
    event: 'violation',
    options: hardened,
    setup: (mgr) => {
      const h = mgr.openChannel('v', { access: 'view' }).allocate('buffer', 100);
      damageCanary(h);
      return h;
    },
    run: (mgr, h) => [outcome(() => mgr.deallocateResource(h as ResourceHandle)), outcome(() => mgr.verifyCleanupCompletion(h as ResourceHandle))],
  },
  {
    name: 'violation: hardened canary found by closeChannel (the channel closes all the same)',
    event: 'violation',
    options: hardened,
    setup: (mgr) => {
      const scope = mgr.openChannel('v', { access: 'view' });
      const h = scope.allocate('buffer', 100);
      scope.allocate('buffer', 200);
      damageCanary(h);
    },
    run: (mgr) => [
      outcome(() => {
        const r = mgr.closeChannel('v');
        return [r.channelId, r.count, r.bytes, r.handles.map((x) => [x.resourceType, x.size]).sort()];
      }),
      outcome(() => handleView(mgr.allocateResource('buffer', 10, 'v'))),
      outcome(() => mgr.channel('v').channelId),
    ],
  },
  {
    name: 'limit: a hard limit refuses (type total), and an auto-opened channel is undone',
    event: 'limit',
    options: { pools: SMALL_POOLS, leakDetection: 'off', channelDefaults: { limits: { '*': { maxHandles: 0 } } } },
    setup: (mgr) => {
      mgr.setResourceLimits('buffer', { maxBytes: 4096 });
      mgr.openChannel('a', { limits: { '*': { maxHandles: 5 } } });
    },
    run: (mgr) => [allocTwice(() => mgr.allocateResource('buffer', 100, 'a')), outcome(() => handleView(mgr.allocateResource('buffer', 100, 'fresh'))), outcome(() => Object.keys(mgr.getResourceMetrics().channels))],
  },
  {
    name: 'leak: handles dropped without deallocation, found after GC',
    event: 'leak',
    options: { pools: SMALL_POOLS, leakDetection: 'paranoid' },
    setup: (mgr) => {
      for (let i = 0; i < 3; i++) mgr.allocateResource('buffer', 1000, 'leaky').buffer?.fill(i);
    },
    run: async (mgr) => {
      const done = await collectUntil(() => mgr.getResourceMetrics().leaks.reclaimed >= 3 && mgr.getResourceMetrics().pools['s']?.liveSlots === 0);
      return [done, mgr.getResourceMetrics().leaks as unknown as Json];
    },
  },
];

type Mode = 'baseline' | 'listener' | 'subscriber';

interface RunResult {
  outcome: Json;
  state: Json;
  /** Events seen by the counting listener (baseline and 'listener') or subscriber ('subscriber'). */
  seen: number;
  uncaught: unknown[];
  thrown: Error[];
}

async function runScenario(s: Scenario, mode: Mode): Promise<RunResult> {
  const mgr = new ResourceManager(s.options);
  const thrown: Error[] = [];
  let seen = 0;
  const thrower = (): never => {
    const e = new Error(`${mode} ${s.event} boom ${thrown.length}`);
    thrown.push(e);
    throw e;
  };
  const counter = (): void => {
    seen++;
  };
  const channel = DIAGNOSTICS[s.event];
  const emitterEvent = s.event === 'limit' ? null : s.event;
  try {
    const ctx = s.setup(mgr);
    if (mode === 'baseline') {
      if (emitterEvent !== null) mgr.on(emitterEvent, counter);
      else diagnostics.subscribe(channel, counter);
    } else if (mode === 'listener' && emitterEvent !== null) {
      mgr.on(emitterEvent, thrower);
      mgr.on(emitterEvent, counter);
    } else {
      diagnostics.subscribe(channel, thrower);
      diagnostics.subscribe(channel, counter);
    }
    const { value, uncaught } = await catchingUncaught(async () => s.run(mgr, ctx));
    return { outcome: value, state: state(mgr), seen, uncaught, thrown };
  } finally {
    diagnostics.unsubscribe(channel, thrower);
    diagnostics.unsubscribe(channel, counter);
    mgr.close();
  }
}

describe('listeners and subscribers that throw', function () {
  this.timeout(60000);

  for (const s of SCENARIOS) {
    const modes: Mode[] = s.event === 'limit' ? ['subscriber'] : ['listener', 'subscriber'];
    for (const mode of modes) {
      it(`${s.name}: a throwing ${mode === 'listener' ? `'${s.event}' listener` : `${DIAGNOSTICS[s.event]} subscriber`} changes nothing`, async () => {
        const base = await runScenario(s, 'baseline');
        expect(base.seen, 'the baseline emits events').to.be.greaterThan(0);
        expect(base.uncaught, 'the baseline throws nothing').to.deep.equal([]);
        const run = await runScenario(s, mode);
        expect(run.outcome, 'the operations return exactly what they return without the throwing listener').to.deep.equal(base.outcome);
        expect(run.state, 'metrics, ledgers and channels are identical').to.deep.equal(base.state);
        expect(run.seen, 'the listener after the throwing one still sees every event').to.equal(base.seen);
        expect(run.thrown.length, 'the throwing listener ran once per event').to.equal(base.seen);
        expect(run.uncaught, "each listener error reached 'uncaughtException', once, in order").to.deep.equal(run.thrown);
      });
    }
  }

  describe('hardened closeChannel with a throwing (or re-entrant) violation listener', () => {
    it('the closed name is closed in JS and native; a new channel on the recycled index reports under its own name', async () => {
      const mgr = new ResourceManager(hardened);
      try {
        const h = mgr.openChannel('old', { access: 'view' }).allocate('buffer', 100);
        damageCanary(h);
        const boom = new Error('violation listener boom');
        mgr.on('violation', () => {
          throw boom;
        });
        const { value: report, uncaught } = await catchingUncaught(async () => mgr.closeChannel('old'));
        expect([report.channelId, report.count], 'closeChannel completed and reported the handle').to.deep.equal(['old', 1]);
        expect(uncaught, "the listener's error went to 'uncaughtException'").to.deep.equal([boom]);
        expectCode(() => mgr.channel('old'), 'ERR_CHANNEL_CLOSED', 'channel(old) in JS');
        expectCode(() => mgr.allocateResource('buffer', 10, 'old'), 'ERR_CHANNEL_CLOSED', 'allocating in old (native refuses too)');
        expectCode(() => mgr.verifyResourceIsolation('old'), 'ERR_CHANNEL_CLOSED', 'verifyResourceIsolation(old)');
        expect(Object.keys(mgr.getResourceMetrics().channels), 'old is not listed').to.deep.equal([]);

        const w = mgr.openChannel('new').allocate('buffer', 300);
        const m = mgr.getResourceMetrics();
        expect(Object.keys(m.channels), 'only the new channel is listed').to.deep.equal(['new']);
        expect([m.channels['new']?.handles, m.channels['new']?.bytesInUse], "new's usage under its own name").to.deep.equal([1, 4096]);
        expect(mgr.trackResourceUsage(w).channelId, 'the handle names its channel').to.equal('new');
        expectCode(() => mgr.closeChannel('old'), 'ERR_CHANNEL_CLOSED', 'closeChannel(old) again');
        expect(mgr.validateSecurityBoundaries(w).valid, 'the new channel was not touched').to.equal(true);
        expect(mgr.verifyResourceIsolation('new'), 'new is consistent').to.deep.include({ channelId: 'new', isolated: true, handleCount: 1, bytesInUse: 4096 });
      } finally {
        mgr.close();
      }
    });

    it('a listener that calls back into the manager sees the channel already closed', async () => {
      const mgr = new ResourceManager(hardened);
      try {
        const h = mgr.openChannel('old', { access: 'view' }).allocate('buffer', 100);
        damageCanary(h);
        const seen: string[] = [];
        mgr.on('violation', () => {
          for (const op of [() => mgr.closeChannel('old'), () => mgr.allocateResource('buffer', 10, 'old'), () => mgr.channel('old')]) {
            try {
              op();
              seen.push('ok');
            } catch (e) {
              seen.push((e as IsopoolError).code);
            }
          }
        });
        const report = mgr.closeChannel('old');
        expect(report.count, 'closed with its handle').to.equal(1);
        expect(seen, 'inside the listener, old is closed already').to.deep.equal(['ERR_CHANNEL_CLOSED', 'ERR_CHANNEL_CLOSED', 'ERR_CHANNEL_CLOSED']);
        expect(Object.keys(mgr.getResourceMetrics().channels), 'nothing open').to.deep.equal([]);
        expect(mgr.getResourceMetrics().totals.handles, 'no live handle').to.equal(0);
      } finally {
        mgr.close();
      }
    });
  });

  it('an isopool:limit subscriber runs after the refused allocation is undone (no auto-opened channel left to see)', () => {
    const mgr = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off', channelDefaults: { limits: { '*': { maxHandles: 0 } } } });
    const seen: string[][] = [];
    const onLimit = (): void => {
      seen.push(Object.keys(mgr.getResourceMetrics().channels));
    };
    diagnostics.subscribe('isopool:limit', onLimit);
    try {
      expectCode(() => mgr.allocateResource('buffer', 100, 'fresh'), 'ERR_RESOURCE_LIMIT', 'refused by the default limit');
      expect(seen, "the subscriber saw no 'fresh' channel").to.deep.equal([[]]);
    } finally {
      diagnostics.unsubscribe('isopool:limit', onLimit);
      mgr.close();
    }
  });

  it('a violation listener that reads handles during track does not change what track returns', () => {
    const mgr = new ResourceManager(hardened);
    try {
      const h = mgr.openChannel('v', { access: 'view' }).allocate('buffer', 100);
      const other = mgr.openChannel('o').allocate('buffer', 5000);
      damageCanary(h);
      mgr.on('violation', () => {
        mgr.trackResourceUsage(other); // overwrites the native out-array the caller was reading
      });
      const m = mgr.trackResourceUsage(h);
      expect([m.channelId, m.requestedBytes, m.slotBytes, m.pool], "track reports h, not the listener's handle").to.deep.equal(['v', 100, 4096, 's']);
    } finally {
      mgr.close();
    }
  });
});
