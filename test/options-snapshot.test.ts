/**
 * Options are read exactly once (SPEC §2 "Option objects with getters or Proxies"): every option
 * object and argument is read once into a frozen plain snapshot, validated, and only the
 * snapshot is used. Getters that count their reads, flip their value, throw, or call back into
 * the manager; Proxies; and objects with `Symbol.toPrimitive` / `valueOf` / `toString` where a
 * number or string is expected (refused, never coerced).
 */
import { expect } from 'chai';
import { InvalidArgumentError, ResourceHandle, ResourceManager, ResourceManagerOptions } from '../lib';
import { ErrorCode, KiB, MiB, SMALL_POOLS, expectCode } from './helpers';

type Reads = Record<string, number>;

/**
 * An object whose every property is an enumerable getter returning `values[key]` and counting
 * its reads in `reads[prefix + key]`.
 */
function counted(values: Record<string, unknown>, reads: Reads, prefix: string): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(values)) {
    reads[prefix + key] = 0;
    Object.defineProperty(o, key, {
      enumerable: true,
      configurable: true,
      get() {
        reads[prefix + key]++;
        return value;
      },
    });
  }
  return o;
}

/** A Proxy over `target` counting `get` traps per string key in `reads[prefix + key]`. */
function proxied<T extends object>(target: T, reads: Reads, prefix: string): T {
  return new Proxy(target, {
    get(t, key, receiver) {
      if (typeof key === 'string') reads[prefix + key] = (reads[prefix + key] ?? 0) + 1;
      return Reflect.get(t, key, receiver) as unknown;
    },
  });
}

/** A getter-backed object whose property `key` yields `values[0]`, `values[1]`, ... on successive reads (the last one repeats). */
function flipping(key: string, values: unknown[], rest: Record<string, unknown> = {}): { obj: Record<string, unknown>; reads: () => number } {
  let n = 0;
  const obj: Record<string, unknown> = { ...rest };
  Object.defineProperty(obj, key, {
    enumerable: true,
    configurable: true,
    get() {
      const v = values[Math.min(n, values.length - 1)];
      n++;
      return v;
    },
  });
  return { obj, reads: () => n };
}

/** An object whose property `key` throws `error` when read. */
function throwing(key: string, error: Error, rest: Record<string, unknown> = {}): Record<string, unknown> {
  const obj: Record<string, unknown> = { ...rest };
  Object.defineProperty(obj, key, {
    enumerable: true,
    configurable: true,
    get() {
      throw error;
    },
  });
  return obj;
}

/** Access mode of a handle (the concrete handle carries it; not part of the public interface). */
function accessOf(h: ResourceHandle): unknown {
  return (h as unknown as { access?: unknown }).access;
}

/** An object that records any attempt to turn it into a primitive. */
function coercible(value: number | string, log: string[], label: string): object {
  return {
    [Symbol.toPrimitive]() {
      log.push(`${label}: Symbol.toPrimitive`);
      return value;
    },
    valueOf() {
      log.push(`${label}: valueOf`);
      return value;
    },
    toString() {
      log.push(`${label}: toString`);
      return String(value);
    },
  };
}

function allOnes(reads: Reads): Reads {
  const out: Reads = {};
  for (const key of Object.keys(reads)) out[key] = 1;
  return out;
}

describe('options are read exactly once', () => {
  describe('every property is read once (getters)', () => {
    it('new ResourceManager(options): every option, pool entry and channelDefaults field', () => {
      const reads: Reads = {};
      const pools = [
        counted({ name: 's', slotSize: 4096, queueSize: 8 }, reads, 'pools[0].'),
        counted({ name: 'm', slotSize: 65536, queueSize: 4 }, reads, 'pools[1].'),
      ];
      const limits = counted(
        {
          '*': counted({ maxBytes: MiB, maxHandles: 100, maxAllocationSize: MiB, softBytes: 512 * KiB }, reads, "limits['*']."),
          buffer: counted({ maxBytes: MiB }, reads, 'limits.buffer.'),
        },
        reads,
        'limits.',
      );
      const channelDefaults = counted({ limits, access: 'revocable', zero: 'always', unsafeImmediateReuse: false }, reads, 'channelDefaults.');
      const options = counted(
        {
          pools,
          maxAllocationSize: 2 * MiB,
          autoOpenChannels: true,
          channelDefaults,
          leakDetection: 'off',
          leakSampleRate: 64,
          hardened: false,
          shared: undefined,
        },
        reads,
        '',
      );
      const mgr = new ResourceManager(options as ResourceManagerOptions);
      try {
        expect(reads, 'each property read exactly once').to.deep.equal(allOnes(reads));
        const h = mgr.allocateResource('buffer', 100, 'a');
        expect([h.pool, accessOf(h), mgr.getResourceLimits('*', 'a').softBytes], 'the snapshot is in force').to.deep.equal(['s', 'revocable', 512 * KiB]);
        mgr.allocateResource('buffer', 100, 'b');
        expect(reads, 'auto-opened channels read nothing again').to.deep.equal(allOnes(reads));
      } finally {
        mgr.close();
      }
    });

    it('openChannel(id, options): access, zero, unsafeImmediateReuse, limits and each limit', () => {
      const mgr = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off' });
      try {
        const reads: Reads = {};
        const limits = counted(
          {
            '*': counted({ maxBytes: MiB, softBytes: 512 * KiB }, reads, "limits['*']."),
            buffer: counted({ maxHandles: 10 }, reads, 'limits.buffer.'),
          },
          reads,
          'limits.',
        );
        const scope = mgr.openChannel('c', counted({ access: 'view', zero: 'always', unsafeImmediateReuse: false, limits }, reads, '') as never);
        expect(reads, 'each property read exactly once').to.deep.equal(allOnes(reads));
        const h = scope.allocate('buffer', 100);
        expect([accessOf(h), mgr.getResourceLimits('buffer', 'c').maxHandles, mgr.getResourceLimits('*', 'c').maxBytes], 'in force').to.deep.equal(['view', 10, MiB]);
        scope.deallocate(h);
        expect(reads, 'nothing read again later').to.deep.equal(allOnes(reads));
      } finally {
        mgr.close();
      }
    });

    it('setResourceLimits(type, limits, channelId) and defineResourceType(name, options)', () => {
      const mgr = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off' });
      try {
        mgr.openChannel('c');
        const reads: Reads = {};
        mgr.setResourceLimits('buffer', counted({ maxBytes: MiB, maxHandles: 7, maxAllocationSize: 64 * KiB, softBytes: 100 * KiB }, reads, 'set.') as never, 'c');
        mgr.defineResourceType('conn', counted({ kind: 'counter', limits: counted({ maxBytes: 5, maxHandles: 3 }, reads, 'def.limits.') }, reads, 'def.') as never);
        expect(reads, 'each property read exactly once').to.deep.equal(allOnes(reads));
        const l = mgr.getResourceLimits('buffer', 'c');
        expect([l.maxBytes, l.maxHandles, l.maxAllocationSize, l.softBytes], 'limits in force').to.deep.equal([MiB, 7, 64 * KiB, 100 * KiB]);
        expect([mgr.getResourceLimits('conn').maxBytes, mgr.getResourceLimits('conn').maxHandles], 'type limits').to.deep.equal([5, 3]);
      } finally {
        mgr.close();
      }
    });
  });

  describe('Proxies are read once per property', () => {
    it('constructor options, pools (an array Proxy), channelDefaults and its limits', () => {
      const reads: Reads = {};
      const pools = proxied([proxied({ name: 's', slotSize: 4096, queueSize: 8 }, reads, 'pools[0].')], reads, 'pools.');
      const limits = proxied({ '*': proxied({ maxBytes: MiB }, reads, "limits['*'].") }, reads, 'limits.');
      const channelDefaults = proxied({ access: 'view', zero: 'always', limits }, reads, 'channelDefaults.');
      const options = proxied({ pools, channelDefaults, leakDetection: 'off', maxAllocationSize: 4 * MiB }, reads, '');
      const mgr = new ResourceManager(options as ResourceManagerOptions);
      try {
        const over = Object.entries(reads).filter(([, n]) => n > 1);
        expect(over, 'no property read more than once').to.deep.equal([]);
        for (const key of ['pools', 'channelDefaults', 'leakDetection', 'maxAllocationSize', 'pools.length', 'pools.0', 'pools[0].name', 'pools[0].slotSize', 'pools[0].queueSize', 'channelDefaults.access', 'channelDefaults.zero', 'channelDefaults.limits', "limits.*", "limits['*'].maxBytes"]) {
          expect(reads[key], `${key} read exactly once`).to.equal(1);
        }
        const h = mgr.allocateResource('buffer', 100, 'p');
        expect([h.pool, accessOf(h), mgr.getResourceLimits('*', 'p').maxBytes], 'in force').to.deep.equal(['s', 'view', MiB]);
      } finally {
        mgr.close();
      }
    });

    it('openChannel options and setResourceLimits limits', () => {
      const mgr = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off' });
      try {
        const reads: Reads = {};
        mgr.openChannel('c', proxied({ access: 'view', zero: 'always', limits: proxied({ buffer: proxied({ maxHandles: 3 }, reads, 'l.b.') }, reads, 'l.') }, reads, 'o.') as never);
        mgr.setResourceLimits('*', proxied({ maxBytes: MiB, softBytes: 1000 }, reads, 's.') as never, 'c');
        expect(reads, 'each read once').to.deep.equal({ 'o.access': 1, 'o.zero': 1, 'o.limits': 1, 'l.buffer': 1, 'l.b.maxHandles': 1, 's.maxBytes': 1, 's.softBytes': 1 });
      } finally {
        mgr.close();
      }
    });

    it('a Proxy whose traps throw (ownKeys, get) or that is revoked: ERR_INVALID_ARGUMENT, nothing changed', () => {
      const mgr = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off' });
      try {
        mgr.allocateResource('buffer', 100, 'x');
        const boom = new Error('trap');
        const ownKeysThrows = new Proxy({}, { ownKeys: () => { throw boom; } });
        const getThrows = new Proxy({ access: 'view' }, { get: () => { throw boom; } });
        const revocable = Proxy.revocable({}, {});
        revocable.revoke();
        const before = JSON.stringify(mgr.getResourceMetrics());
        for (const [label, value] of [['ownKeys', ownKeysThrows], ['get', getThrows], ['revoked', revocable.proxy]] as const) {
          expectCode(() => mgr.openChannel('p', value as never), 'ERR_INVALID_ARGUMENT', `openChannel with a ${label} Proxy`);
          expectCode(() => mgr.setResourceLimits('buffer', value as never), 'ERR_INVALID_ARGUMENT', `setResourceLimits with a ${label} Proxy`);
          expectCode(() => mgr.defineResourceType('t', value as never), 'ERR_INVALID_ARGUMENT', `defineResourceType with a ${label} Proxy`);
          expectCode(() => new ResourceManager(value as never), 'ERR_INVALID_ARGUMENT', `constructor with a ${label} Proxy`);
          expectCode(() => new ResourceManager({ pools: value as never }), 'ERR_INVALID_ARGUMENT', `constructor with a ${label} Proxy as pools`);
        }
        expect(JSON.stringify(mgr.getResourceMetrics()), 'metrics unchanged').to.equal(before);
      } finally {
        mgr.close();
      }
    });

    it('a Proxy around a handle is not a handle: refused without running any trap', () => {
      const mgr = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off' });
      try {
        const h = mgr.allocateResource('buffer', 100, 'x');
        const traps: string[] = [];
        const log = (name: string) => (...args: unknown[]): unknown => {
          traps.push(name);
          return (Reflect as unknown as Record<string, (...a: unknown[]) => unknown>)[name](...args);
        };
        const names = ['get', 'getPrototypeOf', 'has', 'ownKeys', 'getOwnPropertyDescriptor'] as const;
        const handler: ProxyHandler<ResourceHandle> = {};
        for (const name of names) (handler as Record<string, unknown>)[name] = log(name);
        const p = new Proxy(h, handler);
        const before = JSON.stringify(mgr.getResourceMetrics());
        expectCode(() => mgr.deallocateResource(p), 'ERR_INVALID_ARGUMENT', 'deallocateResource(Proxy)');
        expectCode(() => mgr.validateSecurityBoundaries(p), 'ERR_INVALID_ARGUMENT', 'validateSecurityBoundaries(Proxy)');
        expectCode(() => mgr.trackResourceUsage(p), 'ERR_INVALID_ARGUMENT', 'trackResourceUsage(Proxy)');
        expectCode(() => mgr.verifyCleanupCompletion(p), 'ERR_INVALID_ARGUMENT', 'verifyCleanupCompletion(Proxy)');
        expectCode(() => mgr.transferHandle(p), 'ERR_INVALID_ARGUMENT', 'transferHandle(Proxy)');
        expectCode(() => mgr.channel('x').deallocate(p), 'ERR_INVALID_ARGUMENT', 'scope.deallocate(Proxy)');
        expect(traps, 'no trap ran').to.deep.equal([]);
        expect(JSON.stringify(mgr.getResourceMetrics()), 'metrics unchanged: the handle is still live').to.equal(before);
        expect(mgr.deallocateResource(h), 'the real handle still frees').to.equal(true);
      } finally {
        mgr.close();
      }
    });
  });

  describe('a getter that flips is used with the value of its single read', () => {
    it("openChannel access 'revocable' then 'view': the channel is revocable, its buffers are their own", () => {
      const mgr = new ResourceManager({ leakDetection: 'off' });
      try {
        const { obj, reads } = flipping('access', ['revocable', 'revocable', 'view']);
        const scope = mgr.openChannel('victim', obj as never);
        expect(reads(), 'access read once').to.equal(1);
        const h = scope.allocate('buffer', MiB);
        const buf = h.buffer as Buffer;
        expect([accessOf(h), buf.length, buf.buffer.byteLength, buf.byteOffset], 'a revocable 1 MiB buffer over its own ArrayBuffer, not a slab').to.deep.equal([
          'revocable',
          MiB,
          MiB,
          0,
        ]);
        scope.deallocate(h);
        // Deferred reuse: the buffer stays attached and its slot waits for it (a view would not).
        expect([buf.length, mgr.getResourceMetrics().revocation.pendingRelease], 'freed, its own memory parked until collected').to.deep.equal([MiB, 1]);
      } finally {
        mgr.close();
      }
    });

    it("channelDefaults access 'revocable' then 'view': every auto-opened channel is revocable", () => {
      const { obj, reads } = flipping('access', ['revocable', 'revocable', 'view']);
      const mgr = new ResourceManager({ leakDetection: 'off', channelDefaults: obj as never });
      try {
        expect(reads(), 'access read once').to.equal(1);
        for (const id of ['t1', 't2', 't3']) {
          const h = mgr.allocateResource('buffer', MiB, id);
          const buf = h.buffer as Buffer;
          expect([accessOf(h), buf.buffer.byteLength], `${id}: revocable, its own 1 MiB ArrayBuffer`).to.deep.equal(['revocable', MiB]);
        }
        expect(reads(), 'never read again').to.equal(1);
      } finally {
        mgr.close();
      }
    });

    it('a limits getter that flips to null, and limit fields that flip to junk, keep their first value', () => {
      const mgr = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off' });
      try {
        const open = flipping('limits', [{ '*': { maxBytes: 8192 } }, null]);
        mgr.openChannel('c', open.obj as never);
        expect([open.reads(), mgr.getResourceLimits('*', 'c').maxBytes], 'openChannel limits: one read, in force').to.deep.equal([1, 8192]);
        const field = flipping('maxBytes', [4096, 'junk']);
        mgr.setResourceLimits('buffer', field.obj as never, 'c');
        expect([field.reads(), mgr.getResourceLimits('buffer', 'c').maxBytes], 'setResourceLimits field: one read, in force').to.deep.equal([1, 4096]);
        const kind = flipping('kind', ['counter', 'memory']);
        mgr.defineResourceType('conn', kind.obj as never);
        expect([kind.reads(), mgr.allocateResource('conn', 3).pool], 'defineResourceType kind: one read, a counter').to.deep.equal([1, 'counter']);
        const defLimits = flipping('limits', [{ maxHandles: 2 }, null], { kind: 'counter' });
        mgr.defineResourceType('stream', defLimits.obj as never);
        expect([defLimits.reads(), mgr.getResourceLimits('stream').maxHandles], 'defineResourceType limits: one read').to.deep.equal([1, 2]);
      } finally {
        mgr.close();
      }
      const slot = flipping('slotSize', [4096, 0], { name: 's', queueSize: 4 });
      const ctor = new ResourceManager({ pools: [slot.obj as never], leakDetection: 'off' });
      try {
        expect([slot.reads(), ctor.allocateResource('buffer', 10).slotBytes], 'pools[0].slotSize: one read, in force').to.deep.equal([1, 4096]);
      } finally {
        ctor.close();
      }
    });
  });

  describe('a getter that throws gives ERR_INVALID_ARGUMENT and changes nothing', () => {
    const boom = new Error('getter boom');

    function expectRefused(mgr: ResourceManager, fn: () => unknown, argument: string, what: string): void {
      const before = JSON.stringify(mgr.getResourceMetrics());
      const err = expectCode(fn, 'ERR_INVALID_ARGUMENT', what) as InvalidArgumentError;
      expect([err.argument, err.cause], `${what}: names the option, carries the getter's error as cause`).to.deep.equal([argument, boom]);
      expect(JSON.stringify(mgr.getResourceMetrics()), `${what}: metrics unchanged`).to.equal(before);
    }

    it('openChannel: each option, the limits map and a limit field', () => {
      const mgr = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off' });
      try {
        mgr.allocateResource('buffer', 100, 'live');
        for (const key of ['access', 'zero', 'limits', 'unsafeImmediateReuse']) {
          expectRefused(mgr, () => mgr.openChannel('c', throwing(key, boom, { access: 'view' }) as never), `options.${key}`, `openChannel options.${key}`);
        }
        expectRefused(mgr, () => mgr.openChannel('c', { limits: throwing('buffer', boom) } as never), 'options.limits["buffer"]', 'openChannel options.limits.buffer');
        expectRefused(mgr, () => mgr.openChannel('c', { limits: { '*': throwing('maxBytes', boom) } } as never), 'options.limits["*"].maxBytes', 'openChannel limits["*"].maxBytes');
        expectCode(() => mgr.channel('c'), 'ERR_UNKNOWN_CHANNEL', 'the channel was not opened');
      } finally {
        mgr.close();
      }
    });

    it('setResourceLimits and defineResourceType', () => {
      const mgr = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off' });
      try {
        mgr.openChannel('c');
        for (const key of ['maxBytes', 'maxHandles', 'maxAllocationSize', 'softBytes']) {
          const before = JSON.stringify(mgr.getResourceLimits('buffer', 'c'));
          expectRefused(mgr, () => mgr.setResourceLimits('buffer', throwing(key, boom, { maxBytes: 1 }) as never, 'c'), `limits.${key}`, `setResourceLimits limits.${key}`);
          expect(JSON.stringify(mgr.getResourceLimits('buffer', 'c')), `${key}: limits unchanged`).to.equal(before);
        }
        expectRefused(mgr, () => mgr.defineResourceType('conn', throwing('kind', boom) as never), 'options.kind', 'defineResourceType options.kind');
        expectRefused(mgr, () => mgr.defineResourceType('conn', throwing('limits', boom, { kind: 'counter' }) as never), 'options.limits', 'defineResourceType options.limits');
        expectRefused(mgr, () => mgr.defineResourceType('conn', { kind: 'counter', limits: throwing('maxHandles', boom) } as never), 'options.limits.maxHandles', 'defineResourceType options.limits.maxHandles');
        expectCode(() => mgr.allocateResource('conn', 1), 'ERR_UNKNOWN_RESOURCE_TYPE', 'the type was not defined');
      } finally {
        mgr.close();
      }
    });

    it('the constructor: each option, a pool entry and its fields, channelDefaults and its fields', () => {
      const cases: Array<[string, ResourceManagerOptions]> = [];
      for (const key of ['pools', 'maxAllocationSize', 'autoOpenChannels', 'channelDefaults', 'leakDetection', 'leakSampleRate', 'hardened', 'shared']) {
        cases.push([key, throwing(key, boom) as ResourceManagerOptions]);
      }
      const pools: unknown[] = [];
      Object.defineProperty(pools, 0, { enumerable: true, get: () => { throw boom; } });
      cases.push(['pools[0]', { pools } as never]);
      for (const key of ['name', 'slotSize', 'queueSize']) cases.push([`pools[0].${key}`, { pools: [throwing(key, boom, { name: 's', slotSize: 4096, queueSize: 1 })] } as never]);
      for (const key of ['access', 'zero', 'limits', 'unsafeImmediateReuse']) cases.push([`channelDefaults.${key}`, { channelDefaults: throwing(key, boom) } as never]);
      for (const [argument, options] of cases) {
        const err = expectCode(() => new ResourceManager(options).close(), 'ERR_INVALID_ARGUMENT', `constructor ${argument}`) as InvalidArgumentError;
        expect([err.argument, err.cause], `constructor ${argument}: named, with the getter's error as cause`).to.deep.equal([argument, boom]);
      }
    });
  });

  describe('getters that call back into the manager', () => {
    it('an openChannel getter that closes another channel: that close happens once, the open completes', () => {
      const mgr = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off' });
      try {
        const victim = mgr.allocateResource('buffer', 100, 'victim');
        let closes = 0;
        const options = {
          get access() {
            closes++;
            mgr.closeChannel('victim');
            return 'view';
          },
        };
        const scope = mgr.openChannel('r', options as never);
        expect(closes, 'the getter ran once').to.equal(1);
        expect(mgr.validateSecurityBoundaries(victim).violations.map((v) => v.code), "the victim's handle was freed by its close").to.deep.equal(['CHANNEL_CLOSED']);
        expect(Object.keys(mgr.getResourceMetrics().channels), 'only r is open').to.deep.equal(['r']);
        const h = scope.allocate('buffer', 100);
        expect([accessOf(h), mgr.verifyResourceIsolation('r').isolated], 'r is a consistent view channel').to.deep.equal(['view', true]);
      } finally {
        mgr.close();
      }
    });

    it('an openChannel getter that auto-opens the same channel: one allocation, then ERR_INVALID_ARGUMENT (already open)', () => {
      const mgr = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off' });
      try {
        const options = {
          get zero() {
            mgr.allocateResource('buffer', 100, 'r');
            return 'always';
          },
        };
        expectCode(() => mgr.openChannel('r', options as never), 'ERR_INVALID_ARGUMENT', 'opened by the getter meanwhile');
        const m = mgr.getResourceMetrics();
        expect([m.channels['r']?.handles, m.totals.allocations], 'the getter allocated exactly once').to.deep.equal([1, 1]);
        expect(mgr.verifyResourceIsolation('r').isolated, 'consistent').to.equal(true);
      } finally {
        mgr.close();
      }
    });

    it('a getter that closes the manager: ERR_MANAGER_CLOSED, the final snapshot without the channel', () => {
      const mgr = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off' });
      const options = {
        get access() {
          mgr.close();
          return 'view';
        },
      };
      expectCode(() => mgr.openChannel('r', options as never), 'ERR_MANAGER_CLOSED', 'closed by the getter');
      expect(Object.keys(mgr.getResourceMetrics().channels), 'no channel in the final snapshot').to.deep.equal([]);
      const limits = {
        get maxBytes() {
          return 1;
        },
      };
      expectCode(() => mgr.setResourceLimits('buffer', limits), 'ERR_MANAGER_CLOSED', 'setResourceLimits after close');
    });

    it('a setResourceLimits getter that closes the target channel: ERR_CHANNEL_CLOSED, no limit set anywhere', () => {
      const mgr = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off' });
      try {
        mgr.openChannel('t');
        let closes = 0;
        const limits = {
          get maxBytes() {
            closes++;
            mgr.closeChannel('t');
            return 4096;
          },
        };
        expectCode(() => mgr.setResourceLimits('buffer', limits, 't'), 'ERR_CHANNEL_CLOSED', 'the channel was closed by the getter');
        expect(closes, 'the getter ran once').to.equal(1);
        expect(mgr.getResourceLimits('buffer').maxBytes, 'the type total untouched').to.equal(Infinity);
      } finally {
        mgr.close();
      }
    });
  });

  describe('objects with Symbol.toPrimitive / valueOf / toString are refused, never coerced', () => {
    it('every number or string argument and option of every public method', () => {
      const mgr = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off' });
      const log: string[] = [];
      try {
        const scope = mgr.openChannel('c');
        const h = scope.allocate('buffer', 100);
        const n = (v: number, label: string): never => coercible(v, log, label) as never;
        const s = (v: string, label: string): never => coercible(v, log, label) as never;
        const cases: Array<[string, () => unknown, ErrorCode]> = [
          ['allocateResource type', () => mgr.allocateResource(s('buffer', 'type'), 100, 'c'), 'ERR_INVALID_ARGUMENT'],
          ['allocateResource size', () => mgr.allocateResource('buffer', n(100, 'size'), 'c'), 'ERR_INVALID_ARGUMENT'],
          ['allocateResource channelId', () => mgr.allocateResource('buffer', 100, s('c', 'channelId')), 'ERR_INVALID_ARGUMENT'],
          ['deallocateResource id', () => mgr.deallocateResource(n(h.id, 'id')), 'ERR_INVALID_ARGUMENT'],
          ['validateSecurityBoundaries id', () => mgr.validateSecurityBoundaries(n(h.id, 'id')), 'ERR_INVALID_ARGUMENT'],
          ['verifyResourceIsolation channelId', () => mgr.verifyResourceIsolation(s('c', 'channelId')), 'ERR_INVALID_ARGUMENT'],
          ['trackResourceUsage id', () => mgr.trackResourceUsage(n(h.id, 'id')), 'ERR_INVALID_ARGUMENT'],
          ['getResourceLimits type', () => mgr.getResourceLimits(s('buffer', 'type'), 'c'), 'ERR_INVALID_ARGUMENT'],
          ['getResourceLimits channelId', () => mgr.getResourceLimits('buffer', s('c', 'channelId')), 'ERR_INVALID_ARGUMENT'],
          ['verifyCleanupCompletion id', () => mgr.verifyCleanupCompletion(n(h.id, 'id')), 'ERR_INVALID_ARGUMENT'],
          ['openChannel channelId', () => mgr.openChannel(s('d', 'channelId')), 'ERR_INVALID_ARGUMENT'],
          ['openChannel access', () => mgr.openChannel('d', { access: s('view', 'access') }), 'ERR_INVALID_ARGUMENT'],
          ['openChannel zero', () => mgr.openChannel('d', { zero: s('always', 'zero') }), 'ERR_INVALID_ARGUMENT'],
          ['openChannel unsafeImmediateReuse', () => mgr.openChannel('d', { unsafeImmediateReuse: n(1, 'unsafeImmediateReuse') }), 'ERR_INVALID_ARGUMENT'],
          ['openChannel limits field', () => mgr.openChannel('d', { limits: { '*': { maxBytes: n(4096, 'maxBytes') } } }), 'ERR_INVALID_ARGUMENT'],
          ['channel channelId', () => mgr.channel(s('c', 'channelId')), 'ERR_INVALID_ARGUMENT'],
          ['closeChannel channelId', () => mgr.closeChannel(s('c', 'channelId')), 'ERR_INVALID_ARGUMENT'],
          ['setResourceLimits type', () => mgr.setResourceLimits(s('buffer', 'type'), { maxBytes: 1 }), 'ERR_INVALID_ARGUMENT'],
          ['setResourceLimits field', () => mgr.setResourceLimits('buffer', { maxHandles: n(1, 'maxHandles') }), 'ERR_INVALID_ARGUMENT'],
          ['setResourceLimits channelId', () => mgr.setResourceLimits('buffer', { maxBytes: 1 }, s('c', 'channelId')), 'ERR_INVALID_ARGUMENT'],
          ['defineResourceType name', () => mgr.defineResourceType(s('conn', 'name'), { kind: 'counter' }), 'ERR_INVALID_ARGUMENT'],
          ['defineResourceType kind', () => mgr.defineResourceType('conn', { kind: s('counter', 'kind') }), 'ERR_INVALID_ARGUMENT'],
          ['defineResourceType limit', () => mgr.defineResourceType('conn', { kind: 'counter', limits: { softBytes: n(1, 'softBytes') } }), 'ERR_INVALID_ARGUMENT'],
          ['transferHandle id', () => mgr.transferHandle(n(h.id, 'id')), 'ERR_INVALID_ARGUMENT'],
          ['adoptHandle id', () => mgr.adoptHandle(n(h.id, 'id')), 'ERR_INVALID_ARGUMENT'],
          ['scope.allocate type', () => scope.allocate(s('buffer', 'type'), 100), 'ERR_INVALID_ARGUMENT'],
          ['scope.allocate size', () => scope.allocate('buffer', n(100, 'size')), 'ERR_INVALID_ARGUMENT'],
          ['scope.deallocate id', () => scope.deallocate(n(h.id, 'id')), 'ERR_INVALID_ARGUMENT'],
          ['scope.validate id', () => scope.validate(n(h.id, 'id')), 'ERR_INVALID_ARGUMENT'],
          ['scope.track id', () => scope.track(n(h.id, 'id')), 'ERR_INVALID_ARGUMENT'],
          ['scope.limits type', () => scope.limits(s('buffer', 'type')), 'ERR_INVALID_ARGUMENT'],
        ];
        for (const [what, fn, code] of cases) {
          const before = JSON.stringify(mgr.getResourceMetrics());
          expectCode(fn, code, what);
          expect(JSON.stringify(mgr.getResourceMetrics()), `${what}: metrics unchanged`).to.equal(before);
        }
        expect(log, 'nothing was coerced').to.deep.equal([]);
        expect(mgr.deallocateResource(h), 'the handle is still live').to.equal(true);
      } finally {
        mgr.close();
      }
    });

    it('every number or string option of the constructor', () => {
      const log: string[] = [];
      const n = (v: number, label: string): never => coercible(v, log, label) as never;
      const s = (v: string, label: string): never => coercible(v, log, label) as never;
      const cases: Array<[string, ResourceManagerOptions]> = [
        ['maxAllocationSize', { maxAllocationSize: n(MiB, 'maxAllocationSize') }],
        ['leakSampleRate', { leakSampleRate: n(8, 'leakSampleRate') }],
        ['leakDetection', { leakDetection: s('off', 'leakDetection') }],
        ['shared', { shared: s('name', 'shared') }],
        ['autoOpenChannels', { autoOpenChannels: n(1, 'autoOpenChannels') }],
        ['hardened', { hardened: n(0, 'hardened') }],
        ['pools[0].name', { pools: [{ name: s('s', 'name'), slotSize: 4096, queueSize: 1 }] }],
        ['pools[0].slotSize', { pools: [{ name: 's', slotSize: n(4096, 'slotSize'), queueSize: 1 }] }],
        ['pools[0].queueSize', { pools: [{ name: 's', slotSize: 4096, queueSize: n(1, 'queueSize') }] }],
        ['channelDefaults.access', { channelDefaults: { access: s('view', 'access') } }],
        ['channelDefaults.zero', { channelDefaults: { zero: s('always', 'zero') } }],
        ['channelDefaults.unsafeImmediateReuse', { channelDefaults: { unsafeImmediateReuse: n(1, 'unsafeImmediateReuse') } }],
        ['channelDefaults.limits field', { channelDefaults: { limits: { buffer: { maxBytes: n(1, 'maxBytes') } } } }],
        ['pools.length (a Proxy)', { pools: new Proxy([], { get: (t, key) => (key === 'length' ? n(1, 'pools.length') : Reflect.get(t, key)) as unknown }) }],
      ];
      for (const [what, options] of cases) expectCode(() => new ResourceManager(options).close(), 'ERR_INVALID_ARGUMENT', `constructor ${what}`);
      expect(log, 'nothing was coerced').to.deep.equal([]);
    });
  });

  describe('unsafeImmediateReuse is an optional boolean', () => {
    it('true, false and undefined are accepted; anything else is ERR_INVALID_ARGUMENT', () => {
      const mgr = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off' });
      try {
        for (const [id, value] of [['t', true], ['f', false], ['u', undefined]] as const) {
          expect(mgr.openChannel(id, { unsafeImmediateReuse: value }).channelId, `${String(value)} accepted`).to.equal(id);
        }
        for (const value of [1, 0, 'true', null, {}]) {
          const err = expectCode(() => mgr.openChannel('x', { unsafeImmediateReuse: value as never }), 'ERR_INVALID_ARGUMENT', `${JSON.stringify(value)} refused`);
          expect((err as InvalidArgumentError).argument, 'names the option').to.equal('options.unsafeImmediateReuse');
        }
        expectCode(() => new ResourceManager({ channelDefaults: { unsafeImmediateReuse: 'yes' as never } }), 'ERR_INVALID_ARGUMENT', 'channelDefaults refuses a string');
        new ResourceManager({ channelDefaults: { unsafeImmediateReuse: true } }).close();
      } finally {
        mgr.close();
      }
    });
  });

  it('a snapshot holds no reference to the caller\'s objects: editing them afterwards changes nothing', () => {
    const limits = { maxBytes: 8192 };
    const channelDefaults = { access: 'revocable' as const, limits: { '*': limits } };
    const pools = [{ name: 's', slotSize: 4096, queueSize: 4 }];
    const mgr = new ResourceManager({ pools, channelDefaults, leakDetection: 'off' });
    try {
      (channelDefaults as { access: string }).access = 'view';
      limits.maxBytes = 1;
      pools[0].slotSize = 65536;
      const h = mgr.allocateResource('buffer', 100, 'a');
      expect([accessOf(h), h.slotBytes, mgr.getResourceLimits('*', 'a').maxBytes], 'the values given at construction').to.deep.equal(['revocable', 4096, 8192]);
    } finally {
      mgr.close();
    }
  });
});

