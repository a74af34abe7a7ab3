/**
 * Bad inputs are refused with the SPEC §4 / DECISIONS codes, and leave the manager's state (see
 * `stateOf` in helpers.ts: metrics minus refusal/violation counters and latency quantiles)
 * deep-equal before and after.
 *
 * Every refusal runs four times: on a manager with no parked slot, with slots parked in the fast
 * lane (lib/lane/fast-lane.ts) of the channel the call names, a view channel and an
 * `unsafeImmediateReuse` revocable one (a parked slot is what a deallocation leaves there, and an
 * allocation of its channel takes it without a native call, so argument checks must come before
 * the lane is consulted), and with freed memory waiting for collection in a default (deferred
 * reuse) revocable channel.
 */
import { expect } from 'chai';
import { ChannelOptions, ResourceHandle, ResourceLimits, ResourceManager, ResourceManagerOptions } from '../lib';
import type { AccessMode } from '../lib';
import { ErrorCode, Json, MiB, expectCode, expectUnchanged, stateOf, totalViolations } from './helpers';

/** Sizes allocated and freed in the channel to park slots: small and medium pools, and exact revocable sizes around 1.5. */
const PARK_SIZES = [1, 2, 100, 4096, 5000, 65536];

/** Numeric leaves: `b - a`; other leaves: `b`. */
function delta(a: Json | undefined, b: Json): Json {
  if (typeof b === 'number') return typeof a === 'number' ? b - a : b;
  if (Array.isArray(b)) return b.map((x, i) => delta(Array.isArray(a) ? a[i] : undefined, x));
  if (b !== null && typeof b === 'object') {
    const out: { [key: string]: Json } = {};
    const from = a !== null && typeof a === 'object' && !Array.isArray(a) ? a : {};
    for (const key of Object.keys(b)) out[key] = delta(from[key], b[key]);
    return out;
  }
  return b;
}

function fastLaneDeallocations(state: { [key: string]: Json }): number {
  const lane = state['fastLane'];
  const n = lane !== null && typeof lane === 'object' && !Array.isArray(lane) ? lane['deallocations'] : undefined;
  if (typeof n !== 'number') throw new Error('metrics without fastLane.deallocations');
  return n;
}

interface Setup {
  label: string;
  /** The access mode of the channels the refusals name; null: no slot is parked. */
  access: AccessMode | null;
  /** Revocable channels reuse at once (their frees park in the fast lane where revocation is by transfer()). */
  immediate: boolean;
}

const SETUPS: Setup[] = [
  { label: 'no parked slot', access: null, immediate: false },
  { label: 'slots parked in a view channel', access: 'view', immediate: false },
  { label: 'slots parked in an unsafeImmediateReuse revocable channel', access: 'revocable', immediate: true },
  { label: 'freed memory pending release in a deferred-reuse revocable channel', access: 'revocable', immediate: false },
];

for (const setup of SETUPS) describe(`bad input (${setup.label})`, () => {
  let mgr: ResourceManager;
  let live: ResourceHandle;
  /** Channel options of the channels the refusals name. */
  const channelOptions: ChannelOptions | undefined =
    setup.access === null ? undefined : setup.immediate ? { access: setup.access, unsafeImmediateReuse: true } : { access: setup.access };
  /**
   * Manager options: leak watching off where slots are parked, so every free parks (a watched
   * revocable handle goes native); immediate reuse for auto-opened channels too where the setup says so.
   */
  const managerOptions: ResourceManagerOptions =
    setup.access === null ? {} : { leakDetection: 'off', ...(setup.immediate ? { channelDefaults: { unsafeImmediateReuse: true } } : {}) };

  /** Allocates and frees PARK_SIZES in `channelId`: each free parks its slot in the channel's fast lane. */
  function park(m: ResourceManager, channelId: string): void {
    const handles = PARK_SIZES.map((size) => m.allocateResource('buffer', size, channelId));
    for (const h of handles) expect(m.deallocateResource(h), `free of ${h.size} bytes`).to.equal(true);
  }

  /** How many of park()'s frees the lane takes: every one in view channels, and in revocable ones where revocation is by transfer(). */
  function parkedPerRound(m: ResourceManager): number {
    if (setup.access === 'view') return PARK_SIZES.length;
    return setup.immediate && m.getResourceMetrics().revocation.method === 'transfer' ? PARK_SIZES.length : 0;
  }

  /**
   * `fn` refuses without changing state. With parked slots: `fn` runs while park() has left
   * slots parked in `channelId`, and the state changes by exactly what park() alone changes
   * (measured on a round before it, after a warm-up round that creates what later rounds reuse).
   */
  function unchanged(m: ResourceManager, channelId: string, fn: () => void, what: string): void {
    if (setup.access === null) {
      expectUnchanged(m, fn, what);
      return;
    }
    const perRound = parkedPerRound(m);
    park(m, channelId);
    const s0 = stateOf(m);
    park(m, channelId);
    const s1 = stateOf(m);
    park(m, channelId);
    fn();
    const s2 = stateOf(m);
    expect(fastLaneDeallocations(s2) - fastLaneDeallocations(s1), `${what}: slots parked while it ran`).to.equal(perRound);
    // Fragmentation is a ratio: with memory pending release it moves by a different amount each
    // round, so it is compared through the byte counts it is made of (pools, totals) only.
    const additive = (st: { [key: string]: Json }): { [key: string]: Json } => {
      const { fragmentation: _ratio, ...rest } = st;
      return rest;
    };
    expect(delta(additive(s1), additive(s2)), `${what}: the state changed by one park round only`).to.deep.equal(delta(additive(s0), additive(s1)));
  }

  beforeEach(() => {
    mgr = new ResourceManager(managerOptions);
    mgr.openChannel('a', channelOptions);
    // some state that a refusal must not disturb
    live = mgr.allocateResource('buffer', 1000, 'a');
    mgr.allocateResource('buffer', 5000);
    mgr.deallocateResource(mgr.allocateResource('buffer', 100, 'a'));
  });
  afterEach(() => {
    mgr.close();
  });

  const sizes: Array<[string, unknown, ErrorCode]> = [
    ['a string', '4096', 'ERR_INVALID_ARGUMENT'],
    ['undefined', undefined, 'ERR_INVALID_ARGUMENT'],
    ['null', null, 'ERR_INVALID_ARGUMENT'],
    ['an object', { size: 10 }, 'ERR_INVALID_ARGUMENT'],
    ['a bigint', 10n, 'ERR_INVALID_ARGUMENT'],
    ['a boxed number', new Number(10), 'ERR_INVALID_ARGUMENT'],
    ['NaN', NaN, 'ERR_INVALID_SIZE'],
    ['Infinity', Infinity, 'ERR_INVALID_SIZE'],
    ['-Infinity', -Infinity, 'ERR_INVALID_SIZE'],
    ['0', 0, 'ERR_INVALID_SIZE'],
    ['-0', -0, 'ERR_INVALID_SIZE'],
    ['-1', -1, 'ERR_INVALID_SIZE'],
    ['-4096', -4096, 'ERR_INVALID_SIZE'],
    ['1.5', 1.5, 'ERR_INVALID_SIZE'],
    ['4096.0001', 4096.0001, 'ERR_INVALID_SIZE'],
    ['2^53 (not safe)', 2 ** 53, 'ERR_INVALID_SIZE'],
    ['maxAllocationSize + 1', 64 * MiB + 1, 'ERR_INVALID_SIZE'],
  ];

  for (const [label, size, code] of sizes) {
    it(`allocateResource refuses size ${label} with ${code}, changing nothing`, () => {
      unchanged(
        mgr,
        'a',
        () => {
          expectCode(() => mgr.allocateResource('buffer', size as number), code, `unscoped size ${label}`);
          expectCode(() => mgr.allocateResource('buffer', size as number, 'a'), code, `channel size ${label}`);
          expectCode(() => mgr.channel('a').allocate('buffer', size as number), code, `scope size ${label}`);
        },
        label,
      );
    });
  }

  it('refuses a refused allocation without opening its channel', () => {
    unchanged(
      mgr,
      'a',
      () => {
        expectCode(() => mgr.allocateResource('buffer', NaN, 'fresh'), 'ERR_INVALID_SIZE', 'NaN to a new channel');
        expectCode(() => mgr.allocateResource('buffer', 1.5, 'fresh'), 'ERR_INVALID_SIZE', '1.5 to a new channel');
        expectCode(() => mgr.allocateResource('nope', 10, 'fresh'), 'ERR_UNKNOWN_RESOURCE_TYPE', 'bad type to a new channel');
      },
      'a new channel',
    );
    expectCode(() => mgr.channel('fresh'), 'ERR_UNKNOWN_CHANNEL', 'the channel was not opened');
    expect(Object.keys(mgr.getResourceMetrics().channels), 'channels').to.deep.equal(['a']);
  });

  it('refuses unknown and malformed resource types', () => {
    unchanged(
      mgr,
      'a',
      () => {
        expectCode(() => mgr.allocateResource('nope', 10), 'ERR_UNKNOWN_RESOURCE_TYPE', 'unknown type');
        expectCode(() => mgr.allocateResource('Buffer', 10), 'ERR_UNKNOWN_RESOURCE_TYPE', 'case matters');
        expectCode(() => mgr.allocateResource(42 as unknown as string, 10), 'ERR_INVALID_ARGUMENT', 'number type');
        expectCode(() => mgr.allocateResource(undefined as unknown as string, 10), 'ERR_INVALID_ARGUMENT', 'undefined type');
        expectCode(() => mgr.allocateResource('nope', 100, 'a'), 'ERR_UNKNOWN_RESOURCE_TYPE', 'unknown type, channel a');
        expectCode(() => mgr.allocateResource(42 as unknown as string, 100, 'a'), 'ERR_INVALID_ARGUMENT', 'number type, channel a');
        expectCode(() => mgr.channel('a').allocate('Buffer', 100), 'ERR_UNKNOWN_RESOURCE_TYPE', 'scope, case matters');
        expectCode(() => mgr.channel('a').allocate(null as unknown as string, 100), 'ERR_INVALID_ARGUMENT', 'scope, null type');
        expectCode(() => mgr.getResourceLimits(null as unknown as string), 'ERR_INVALID_ARGUMENT', 'null type');
        expectCode(() => mgr.getResourceLimits('nope', 'a'), 'ERR_UNKNOWN_RESOURCE_TYPE', 'limits of an unknown type, channel a');
        expectCode(() => mgr.channel('a').limits('nope'), 'ERR_UNKNOWN_RESOURCE_TYPE', 'scope limits of an unknown type');
        expectCode(() => mgr.setResourceLimits({} as unknown as string, { maxBytes: 1 }), 'ERR_INVALID_ARGUMENT', 'object type');
      },
      'types',
    );
  });

  it('refuses malformed channel ids', () => {
    const ids: Array<[string, unknown]> = [
      ['empty', ''],
      ['257 characters', 'x'.repeat(257)],
      ['a number', 7],
      ['an object', { id: 'a' }],
    ];
    unchanged(
      mgr,
      'a',
      () => {
        for (const [label, id] of ids) {
          expectCode(() => mgr.allocateResource('buffer', 10, id as string), 'ERR_INVALID_ARGUMENT', `allocate, id ${label}`);
          expectCode(() => mgr.openChannel(id as string), 'ERR_INVALID_ARGUMENT', `openChannel, id ${label}`);
          expectCode(() => mgr.channel(id as string), 'ERR_INVALID_ARGUMENT', `channel, id ${label}`);
          expectCode(() => mgr.getResourceLimits('buffer', id as string), 'ERR_INVALID_ARGUMENT', `getResourceLimits, id ${label}`);
          expectCode(() => mgr.verifyResourceIsolation(id as string), 'ERR_INVALID_ARGUMENT', `verifyResourceIsolation, id ${label}`);
        }
      },
      'channel ids',
    );
    const ok = mgr.allocateResource('buffer', 10, 'x'.repeat(256));
    expect(ok.channelId, '256 characters is accepted').to.equal('x'.repeat(256));
  });

  it('refuses an unknown channel when autoOpenChannels is false', () => {
    const strict = new ResourceManager({ ...managerOptions, autoOpenChannels: false });
    try {
      strict.allocateResource('buffer', 10);
      strict.openChannel('open', channelOptions);
      unchanged(
        strict,
        'open',
        () => {
          expectCode(() => strict.allocateResource('buffer', 10, 'nobody'), 'ERR_UNKNOWN_CHANNEL', 'unknown channel');
        },
        'unknown channel',
      );
      expect(Object.keys(strict.getResourceMetrics().channels), 'no channel opened').to.deep.equal(['open']);
      strict.openChannel('nobody');
      expect(strict.allocateResource('buffer', 10, 'nobody').channelId, 'after openChannel').to.equal('nobody');
    } finally {
      strict.close();
    }
  });

  it('refuses a closed channel', () => {
    const c = mgr.openChannel('c', channelOptions);
    mgr.closeChannel('c');
    unchanged(
      mgr,
      'a',
      () => {
        expectCode(() => mgr.allocateResource('buffer', 10, 'c'), 'ERR_CHANNEL_CLOSED', 'allocate to closed');
        expectCode(() => c.allocate('buffer', 10), 'ERR_CHANNEL_CLOSED', 'allocate through the closed scope');
        expectCode(() => mgr.channel('c'), 'ERR_CHANNEL_CLOSED', 'channel() of closed');
        expectCode(() => mgr.verifyResourceIsolation('c'), 'ERR_CHANNEL_CLOSED', 'isolation of closed');
      },
      'closed channel',
    );
  });

  it('throws ERR_INVALID_ARGUMENT for a handle argument that is neither a handle nor a number', () => {
    const garbage: Array<[string, unknown]> = [
      ['a string', 'abc'],
      ['a numeric string', String(live.id)],
      ['an empty object', {}],
      ['a copy of a live handle', { ...live }],
      ['null', null],
      ['undefined', undefined],
      ['a bigint', BigInt(live.id)],
      ['an array', [live.id]],
    ];
    unchanged(
      mgr,
      'a',
      () => {
        for (const [label, g] of garbage) {
          const h = g as number;
          expectCode(() => mgr.deallocateResource(h), 'ERR_INVALID_ARGUMENT', `deallocateResource(${label})`);
          expectCode(() => mgr.validateSecurityBoundaries(h), 'ERR_INVALID_ARGUMENT', `validate(${label})`);
          expectCode(() => mgr.trackResourceUsage(h), 'ERR_INVALID_ARGUMENT', `track(${label})`);
          expectCode(() => mgr.verifyCleanupCompletion(h), 'ERR_INVALID_ARGUMENT', `cleanup(${label})`);
          expectCode(() => mgr.transferHandle(h), 'ERR_INVALID_ARGUMENT', `transfer(${label})`);
          expectCode(() => mgr.channel('a').deallocate(h), 'ERR_INVALID_ARGUMENT', `scope.deallocate(${label})`);
          expectCode(() => mgr.channel('a').validate(h), 'ERR_INVALID_ARGUMENT', `scope.validate(${label})`);
          expectCode(() => mgr.channel('a').track(h), 'ERR_INVALID_ARGUMENT', `scope.track(${label})`);
        }
      },
      'garbage handles',
    );
    expect(mgr.validateSecurityBoundaries(live).valid, 'the live handle is untouched').to.equal(true);
  });

  it('treats malformed and random numeric ids as forged', () => {
    // a fraction off a live id, and the live id's table index one generation on: forged too
    const ids = [-1, 1.5, NaN, Infinity, -Infinity, 2 ** 53, 0, 1, 12345, 987654321, Number.MAX_SAFE_INTEGER, live.id + 0.5, live.id - 0.5, live.id + 1];
    const forgedBefore = totalViolations(mgr, 'FORGED_HANDLE');
    unchanged(
      mgr,
      'a',
      () => {
        for (const id of ids) {
          expect(mgr.deallocateResource(id), `deallocateResource(${id})`).to.equal(false);
          expect(mgr.channel('a').deallocate(id), `scope.deallocate(${id})`).to.equal(false);
          const v = mgr.validateSecurityBoundaries(id);
          expect(v.valid, `validate(${id}).valid`).to.equal(false);
          expect(v.violations.map((x) => x.code), `validate(${id}) codes`).to.deep.equal(['FORGED_HANDLE']);
          expectCode(() => mgr.trackResourceUsage(id), 'ERR_INVALID_HANDLE', `track(${id})`);
          expectCode(() => mgr.channel('a').track(id), 'ERR_INVALID_HANDLE', `scope.track(${id})`);
          expect(mgr.verifyCleanupCompletion(id), `cleanup(${id})`).to.equal(false);
          expectCode(() => mgr.transferHandle(id), 'ERR_INVALID_HANDLE', `transferHandle(${id})`);
          expectCode(() => mgr.adoptHandle(id), 'ERR_INVALID_HANDLE', `adopt(${id})`);
        }
      },
      'forged ids',
    );
    expect(mgr.validateSecurityBoundaries(live).valid, 'the live handle is untouched').to.equal(true);
    // one FORGED_HANDLE each from deallocate, scope.deallocate, validate, track and scope.track;
    // none from verifyCleanupCompletion, transferHandle and adoptHandle
    expect(totalViolations(mgr, 'FORGED_HANDLE') - forgedBefore, 'FORGED_HANDLE counted five times per id').to.equal(5 * ids.length);
  });

  describe('unknown option keys and bad option values', () => {
    const channelOptions: Array<[string, unknown]> = [
      ['an unknown key', { bogus: 1 }],
      ['a bad access', { access: 'readonly' }],
      ['a bad zero', { zero: 'never' }],
      ['an unknown limit field', { limits: { '*': { maxbytes: 1 } } }],
      ['a negative limit', { limits: { '*': { maxBytes: -1 } } }],
      ['an unknown type in limits', { limits: { nope: { maxBytes: 1 } } }],
    ];
    for (const [label, options] of channelOptions) {
      it(`openChannel refuses ${label}`, () => {
        const code: ErrorCode = label === 'an unknown type in limits' ? 'ERR_UNKNOWN_RESOURCE_TYPE' : 'ERR_INVALID_ARGUMENT';
        unchanged(
          mgr,
          'a',
          () => {
            expectCode(() => mgr.openChannel('fresh', options as ChannelOptions), code, `openChannel(${JSON.stringify(options)})`);
            expectCode(() => mgr.openChannel('a', options as ChannelOptions), 'ERR_INVALID_ARGUMENT', `openChannel('a' (open), ${JSON.stringify(options)})`);
          },
          label,
        );
        expectCode(() => mgr.channel('fresh'), 'ERR_UNKNOWN_CHANNEL', 'the channel was not opened');
      });
    }

    const limitValues: Array<[string, unknown]> = [
      ['an unknown key', { maxbytes: 10 }],
      ['a negative maxBytes', { maxBytes: -1 }],
      ['a NaN maxBytes', { maxBytes: NaN }],
      ['a fractional maxBytes', { maxBytes: 10.5 }],
      ['a -Infinity maxBytes', { maxBytes: -Infinity }],
      ['a string maxBytes', { maxBytes: '10' }],
      ['a negative maxHandles', { maxHandles: -2 }],
      ['a fractional maxHandles', { maxHandles: 0.5 }],
      ['a NaN softBytes', { softBytes: NaN }],
      ['a negative maxAllocationSize', { maxAllocationSize: -4096 }],
      ['a non-object', 5],
      ['null', null],
    ];
    for (const [label, limits] of limitValues) {
      it(`setResourceLimits refuses ${label} at every scope, leaving limits unchanged`, () => {
        const l = limits as Partial<ResourceLimits>;
        const before = [mgr.getResourceLimits('buffer'), mgr.getResourceLimits('buffer', 'a'), mgr.getResourceLimits('*', 'a')];
        unchanged(
          mgr,
          'a',
          () => {
            expectCode(() => mgr.setResourceLimits('buffer', l), 'ERR_INVALID_ARGUMENT', `type total ${label}`);
            expectCode(() => mgr.setResourceLimits('buffer', l, 'a'), 'ERR_INVALID_ARGUMENT', `channel-type ${label}`);
            expectCode(() => mgr.setResourceLimits('*', l, 'a'), 'ERR_INVALID_ARGUMENT', `channel total ${label}`);
          },
          label,
        );
        const after = [mgr.getResourceLimits('buffer'), mgr.getResourceLimits('buffer', 'a'), mgr.getResourceLimits('*', 'a')];
        expect(after, 'limits unchanged').to.deep.equal(before);
      });
    }

    it("refuses '*' without a channel id", () => {
      unchanged(
        mgr,
        'a',
        () => {
          expectCode(() => mgr.setResourceLimits('*', { maxBytes: 10 }), 'ERR_INVALID_ARGUMENT', "setResourceLimits('*')");
          expectCode(() => mgr.getResourceLimits('*'), 'ERR_INVALID_ARGUMENT', "getResourceLimits('*')");
        },
        "'*' without a channel",
      );
      mgr.setResourceLimits('*', { maxBytes: 10 * 4096 }, 'a');
      expect(mgr.getResourceLimits('*', 'a').maxBytes, "'*' with a channel is accepted").to.equal(10 * 4096);
    });

    it('refuses an unknown key in defineResourceType options', () => {
      unchanged(
        mgr,
        'a',
        () => {
          expectCode(
            () => mgr.defineResourceType('t1', { kind: 'counter', bogus: 1 } as unknown as { kind: 'counter' }),
            'ERR_INVALID_ARGUMENT',
            'unknown key',
          );
          expectCode(
            () => mgr.defineResourceType('t2', { kind: 'socket' } as unknown as { kind: 'counter' }),
            'ERR_INVALID_ARGUMENT',
            'unknown kind',
          );
        },
        'defineResourceType options',
      );
      expectCode(() => mgr.allocateResource('t1', 1), 'ERR_UNKNOWN_RESOURCE_TYPE', 't1 was not defined');
    });
  });
});

describe('bad input (manager options and size bounds)', () => {
  it('accepts the boundary sizes 1 and maxAllocationSize (paired with the refusals above)', () => {
    const small = new ResourceManager({ maxAllocationSize: 8192 });
    try {
      expect(small.allocateResource('buffer', 1).size, 'size 1').to.equal(1);
      expect(small.allocateResource('buffer', 8192).size, 'size = maxAllocationSize').to.equal(8192);
      expectCode(() => small.allocateResource('buffer', 8193), 'ERR_INVALID_SIZE', 'maxAllocationSize + 1');
      expect(small.getResourceLimits('buffer').maxAllocationSize, 'reported').to.equal(8192);
    } finally {
      small.close();
    }
  });

  const ctorOptions: Array<[string, unknown]> = [
    ['an unknown key', { bogus: 1 }],
    ['a misspelled key', { autoOpenChannel: false }],
    ['an unknown pool key', { pools: [{ name: 's', slotSize: 4096, queueSize: 8, extra: 1 }] }],
    ['a pool without slotSize', { pools: [{ name: 's', queueSize: 8 }] }],
    ['a zero slotSize', { pools: [{ name: 's', slotSize: 0, queueSize: 8 }] }],
    ['a negative queueSize', { pools: [{ name: 's', slotSize: 4096, queueSize: -1 }] }],
    ['a non-array pools', { pools: { name: 's', slotSize: 4096, queueSize: 8 } }],
    ['a bad leakDetection', { leakDetection: 'sometimes' }],
    ['a zero leakSampleRate', { leakSampleRate: 0 }],
    ['a string autoOpenChannels', { autoOpenChannels: 'yes' }],
    ['a string hardened', { hardened: 'true' }],
    ['a negative maxAllocationSize', { maxAllocationSize: -1 }],
    ['a fractional maxAllocationSize', { maxAllocationSize: 10.5 }],
    ['an unknown channelDefaults key', { channelDefaults: { acess: 'view' } }],
    ['a bad channelDefaults.access', { channelDefaults: { access: 'readonly' } }],
    ['a bad channelDefaults.zero', { channelDefaults: { zero: 'never' } }],
    ['an unknown limit key in channelDefaults', { channelDefaults: { limits: { '*': { maxbytes: 1 } } } }],
    ['a negative limit in channelDefaults', { channelDefaults: { limits: { buffer: { maxBytes: -5 } } } }],
    ['an empty shared name', { shared: '' }],
  ];
  for (const [label, options] of ctorOptions) {
    it(`constructor refuses ${label} with ERR_INVALID_ARGUMENT`, () => {
      expectCode(
        () => new ResourceManager(options as ResourceManagerOptions).close(),
        'ERR_INVALID_ARGUMENT',
        `new ResourceManager(${JSON.stringify(options)})`,
      );
    });
  }

  it('constructor accepts every documented option (paired with the refusals above)', () => {
    const ok = new ResourceManager({
      pools: [
        { name: 's', slotSize: 4096, queueSize: 8 },
        { name: 'm', slotSize: 65536, queueSize: 4 },
      ],
      maxAllocationSize: MiB,
      autoOpenChannels: true,
      channelDefaults: { limits: { '*': { maxBytes: 1 * MiB } }, access: 'revocable', zero: 'cross-channel' },
      leakDetection: 'sampled',
      leakSampleRate: 64,
      hardened: false,
    });
    try {
      expect(ok.allocateResource('buffer', 100, 'x').slotBytes, 'custom pool slot').to.equal(4096);
      expect(ok.getResourceLimits('*', 'x').maxBytes, 'channelDefaults applied').to.equal(MiB);
    } finally {
      ok.close();
    }
  });
});
