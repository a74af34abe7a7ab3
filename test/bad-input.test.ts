/**
 * Bad inputs are refused with the SPEC §4 / DECISIONS codes, and leave the manager's state (see
 * `stateOf` in helpers.ts: metrics minus refusal/violation counters and latency quantiles)
 * deep-equal before and after.
 */
import { expect } from 'chai';
import { ChannelOptions, ResourceHandle, ResourceLimits, ResourceManager, ResourceManagerOptions } from '../lib';
import { ErrorCode, MiB, expectCode, expectUnchanged, stateOf, totalViolations } from './helpers';

describe('bad input', () => {
  let mgr: ResourceManager;
  let live: ResourceHandle;
  beforeEach(() => {
    mgr = new ResourceManager();
    mgr.openChannel('a');
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
      expectUnchanged(
        mgr,
        () => {
          expectCode(() => mgr.allocateResource('buffer', size as number), code, `unscoped size ${label}`);
          expectCode(() => mgr.allocateResource('buffer', size as number, 'a'), code, `channel size ${label}`);
          expectCode(() => mgr.channel('a').allocate('buffer', size as number), code, `scope size ${label}`);
        },
        label,
      );
    });
  }

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

  it('refuses a refused allocation without opening its channel', () => {
    expectCode(() => mgr.allocateResource('buffer', NaN, 'fresh'), 'ERR_INVALID_SIZE', 'NaN to a new channel');
    expectCode(() => mgr.allocateResource('nope', 10, 'fresh'), 'ERR_UNKNOWN_RESOURCE_TYPE', 'bad type to a new channel');
    expectCode(() => mgr.channel('fresh'), 'ERR_UNKNOWN_CHANNEL', 'the channel was not opened');
    expect(Object.keys(mgr.getResourceMetrics().channels), 'channels').to.deep.equal(['a']);
  });

  it('refuses unknown and malformed resource types', () => {
    expectUnchanged(
      mgr,
      () => {
        expectCode(() => mgr.allocateResource('nope', 10), 'ERR_UNKNOWN_RESOURCE_TYPE', 'unknown type');
        expectCode(() => mgr.allocateResource('Buffer', 10), 'ERR_UNKNOWN_RESOURCE_TYPE', 'case matters');
        expectCode(() => mgr.allocateResource(42 as unknown as string, 10), 'ERR_INVALID_ARGUMENT', 'number type');
        expectCode(() => mgr.allocateResource(undefined as unknown as string, 10), 'ERR_INVALID_ARGUMENT', 'undefined type');
        expectCode(() => mgr.getResourceLimits(null as unknown as string), 'ERR_INVALID_ARGUMENT', 'null type');
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
    expectUnchanged(
      mgr,
      () => {
        for (const [label, id] of ids) {
          expectCode(() => mgr.allocateResource('buffer', 10, id as string), 'ERR_INVALID_ARGUMENT', `allocate, id ${label}`);
          expectCode(() => mgr.openChannel(id as string), 'ERR_INVALID_ARGUMENT', `openChannel, id ${label}`);
          expectCode(() => mgr.channel(id as string), 'ERR_INVALID_ARGUMENT', `channel, id ${label}`);
        }
      },
      'channel ids',
    );
    const ok = mgr.allocateResource('buffer', 10, 'x'.repeat(256));
    expect(ok.channelId, '256 characters is accepted').to.equal('x'.repeat(256));
  });

  it('refuses an unknown channel when autoOpenChannels is false', () => {
    const strict = new ResourceManager({ autoOpenChannels: false });
    try {
      strict.allocateResource('buffer', 10);
      expectUnchanged(
        strict,
        () => {
          expectCode(() => strict.allocateResource('buffer', 10, 'nobody'), 'ERR_UNKNOWN_CHANNEL', 'unknown channel');
        },
        'unknown channel',
      );
      expect(Object.keys(strict.getResourceMetrics().channels), 'no channel opened').to.deep.equal([]);
      strict.openChannel('nobody');
      expect(strict.allocateResource('buffer', 10, 'nobody').channelId, 'after openChannel').to.equal('nobody');
    } finally {
      strict.close();
    }
  });

  it('refuses a closed channel', () => {
    mgr.openChannel('c');
    mgr.closeChannel('c');
    expectUnchanged(
      mgr,
      () => {
        expectCode(() => mgr.allocateResource('buffer', 10, 'c'), 'ERR_CHANNEL_CLOSED', 'allocate to closed');
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
    expectUnchanged(
      mgr,
      () => {
        for (const [label, g] of garbage) {
          const h = g as number;
          expectCode(() => mgr.deallocateResource(h), 'ERR_INVALID_ARGUMENT', `deallocateResource(${label})`);
          expectCode(() => mgr.validateSecurityBoundaries(h), 'ERR_INVALID_ARGUMENT', `validate(${label})`);
          expectCode(() => mgr.trackResourceUsage(h), 'ERR_INVALID_ARGUMENT', `track(${label})`);
          expectCode(() => mgr.verifyCleanupCompletion(h), 'ERR_INVALID_ARGUMENT', `cleanup(${label})`);
          expectCode(() => mgr.transferHandle(h), 'ERR_INVALID_ARGUMENT', `transfer(${label})`);
          expectCode(() => mgr.channel('a').deallocate(h), 'ERR_INVALID_ARGUMENT', `scope.deallocate(${label})`);
        }
      },
      'garbage handles',
    );
    expect(mgr.validateSecurityBoundaries(live).valid, 'the live handle is untouched').to.equal(true);
  });

  it('treats malformed and random numeric ids as forged', () => {
    const ids = [-1, 1.5, NaN, Infinity, -Infinity, 2 ** 53, 0, 1, 12345, 987654321, Number.MAX_SAFE_INTEGER];
    const before = stateOf(mgr);
    const forgedBefore = totalViolations(mgr, 'FORGED_HANDLE');
    for (const id of ids) {
      expect(mgr.deallocateResource(id), `deallocateResource(${id})`).to.equal(false);
      const v = mgr.validateSecurityBoundaries(id);
      expect(v.valid, `validate(${id}).valid`).to.equal(false);
      expect(v.violations.map((x) => x.code), `validate(${id}) codes`).to.deep.equal(['FORGED_HANDLE']);
      expectCode(() => mgr.trackResourceUsage(id), 'ERR_INVALID_HANDLE', `track(${id})`);
      expect(mgr.verifyCleanupCompletion(id), `cleanup(${id})`).to.equal(false);
      expectCode(() => mgr.adoptHandle(id), 'ERR_INVALID_HANDLE', `adopt(${id})`);
    }
    expect(stateOf(mgr), 'state unchanged').to.deep.equal(before);
    // deallocate + validate each count one FORGED_HANDLE (track/cleanup/adopt need not)
    expect(totalViolations(mgr, 'FORGED_HANDLE') - forgedBefore, 'forged counted').to.be.at.least(2 * ids.length);
  });

  describe('unknown option keys and bad option values', () => {
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
        expectUnchanged(
          mgr,
          () => {
            expectCode(() => mgr.openChannel('fresh', options as ChannelOptions), code, `openChannel(${JSON.stringify(options)})`);
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
        expectUnchanged(
          mgr,
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
      expectCode(() => mgr.setResourceLimits('*', { maxBytes: 10 }), 'ERR_INVALID_ARGUMENT', "setResourceLimits('*')");
      expectCode(() => mgr.getResourceLimits('*'), 'ERR_INVALID_ARGUMENT', "getResourceLimits('*')");
      mgr.setResourceLimits('*', { maxBytes: 10 * 4096 }, 'a');
      expect(mgr.getResourceLimits('*', 'a').maxBytes, "'*' with a channel is accepted").to.equal(10 * 4096);
    });

    it('refuses an unknown key in defineResourceType options', () => {
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
      expectCode(() => mgr.allocateResource('t1', 1), 'ERR_UNKNOWN_RESOURCE_TYPE', 't1 was not defined');
    });
  });
});
