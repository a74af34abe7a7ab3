import { expect } from 'chai';
import {
  ChannelClosedError,
  HandleTableFullError,
  InvalidArgumentError,
  InvalidHandleError,
  InvalidSizeError,
  IsolationViolationError,
  IsopoolError,
  ManagerClosedError,
  PoolExhaustedError,
  ResourceLimitError,
  ResourceManager,
  StaleHandleError,
  UnknownChannelError,
  UnknownResourceTypeError,
} from '../lib';
import { CLASS_BY_CODE, ErrorCode, expectCode, expectLimitError } from './helpers';

describe('errors (SPEC §4)', () => {
  it('exports one base class IsopoolError extending Error, and every subclass extends it', () => {
    expect(IsopoolError.prototype, 'IsopoolError extends Error').to.be.instanceOf(Error);
    const classes = [
      InvalidArgumentError,
      InvalidSizeError,
      UnknownResourceTypeError,
      UnknownChannelError,
      ChannelClosedError,
      ResourceLimitError,
      PoolExhaustedError,
      InvalidHandleError,
      StaleHandleError,
      IsolationViolationError,
      ManagerClosedError,
      HandleTableFullError,
    ];
    for (const cls of classes) {
      expect(cls.prototype, `${cls.name} extends IsopoolError`).to.be.instanceOf(IsopoolError);
    }
    expect(new Set(classes).size, 'twelve distinct classes').to.equal(12);
  });

  /** One way to reach each code through the public API. */
  const reach: Array<[ErrorCode, (mgr: ResourceManager) => unknown]> = [
    ['ERR_INVALID_ARGUMENT', (m) => m.allocateResource('buffer', '12' as unknown as number)],
    ['ERR_INVALID_SIZE', (m) => m.allocateResource('buffer', -7)],
    ['ERR_UNKNOWN_RESOURCE_TYPE', (m) => m.allocateResource('flux-capacitor', 16)],
    ['ERR_UNKNOWN_CHANNEL', (m) => m.channel('ghost-7')],
    [
      'ERR_CHANNEL_CLOSED',
      (m) => {
        m.openChannel('gone');
        m.closeChannel('gone');
        return m.allocateResource('buffer', 16, 'gone');
      },
    ],
    [
      'ERR_RESOURCE_LIMIT',
      (m) => {
        m.setResourceLimits('buffer', { maxBytes: 0 });
        return m.allocateResource('buffer', 16);
      },
    ],
    ['ERR_INVALID_HANDLE', (m) => m.trackResourceUsage(123456789)],
    [
      'ERR_STALE_HANDLE',
      (m) => {
        const h = m.allocateResource('buffer', 16);
        m.deallocateResource(h);
        return m.trackResourceUsage(h.id);
      },
    ],
    [
      'ERR_MANAGER_CLOSED',
      (m) => {
        m.close();
        return m.allocateResource('buffer', 16);
      },
    ],
  ];

  it('ERR_ISOLATION_VIOLATION is never what a scope throws for another channel\'s id (a forged id\'s error instead), and its class has a literal name and code', () => {
    const mgr = new ResourceManager();
    try {
      const h = mgr.openChannel('a').allocate('buffer', 16);
      expectCode(() => mgr.openChannel('b').track(h), 'ERR_INVALID_HANDLE', 'another channel\'s id through a scope');
    } finally {
      mgr.close();
    }
    const err = new IsolationViolationError(42, 'b');
    expect([err.code, err.name, err.handleId, err.channelId], 'fields').to.deep.equal(['ERR_ISOLATION_VIOLATION', 'IsolationViolationError', 42, 'b']);
  });

  for (const [code, trigger] of reach) {
    it(`${code} is thrown as ${CLASS_BY_CODE[code].name} with a literal name and code`, () => {
      const mgr = new ResourceManager();
      try {
        const err = expectCode(() => trigger(mgr), code, code);
        expect(err.name, `${code}: name is the class name`).to.equal(CLASS_BY_CODE[code].name);
        expect(err.stack, `${code}: has a stack`).to.be.a('string');
      } finally {
        mgr.close();
      }
    });
  }

  it('messages name the offending value', () => {
    const mgr = new ResourceManager({ autoOpenChannels: false });
    try {
      const t = expectCode(() => mgr.allocateResource('flux-capacitor', 16), 'ERR_UNKNOWN_RESOURCE_TYPE', 'unknown type');
      expect(t.message, 'names the unknown type').to.include('flux-capacitor');
      const s = expectCode(() => mgr.allocateResource('buffer', -7), 'ERR_INVALID_SIZE', 'negative size');
      expect(s.message, 'names the size').to.include('-7');
      const f = expectCode(() => mgr.allocateResource('buffer', 2.5), 'ERR_INVALID_SIZE', 'fractional size');
      expect(f.message, 'names the size').to.include('2.5');
      const c = expectCode(() => mgr.allocateResource('buffer', 16, 'ghost-7'), 'ERR_UNKNOWN_CHANNEL', 'unknown channel');
      expect(c.message, 'names the channel').to.include('ghost-7');
      const h = expectCode(() => mgr.trackResourceUsage(987654321), 'ERR_INVALID_HANDLE', 'forged id');
      expect(h.message, 'names the id').to.include('987654321');
    } finally {
      mgr.close();
    }
  });

  it('HandleTableFullError has the literal code and name, and carries and names the capacity', () => {
    const err = new HandleTableFullError(2097151);
    expect(err, 'an IsopoolError').to.be.instanceOf(IsopoolError);
    expect(err, 'an Error').to.be.instanceOf(Error);
    expect(err.code, 'code').to.equal('ERR_HANDLE_TABLE_FULL');
    expect(err.name, 'name').to.equal('HandleTableFullError');
    expect(err.capacity, 'capacity').to.equal(2097151);
    expect(err.message, 'message').to.equal('the handle table is full: all 2097151 handles of the manager are live');
    expect(CLASS_BY_CODE.ERR_HANDLE_TABLE_FULL, 'SPEC table row').to.equal(HandleTableFullError);
    // Reached through the public API in handle-cap.test.ts (filling the table takes seconds).
  });

  it('ResourceLimitError carries limit, requested, inUse and scope', () => {
    const mgr = new ResourceManager();
    try {
      mgr.setResourceLimits('buffer', { maxBytes: 8192 });
      mgr.allocateResource('buffer', 4096);
      mgr.allocateResource('buffer', 4096);
      const err = expectLimitError(() => mgr.allocateResource('buffer', 4096), 'type total full');
      expect(err.limit, 'limit').to.equal(8192);
      expect(err.requested, 'requested (charged) bytes').to.equal(4096);
      expect(err.inUse, 'inUse').to.equal(8192);
      expect(err.scope, 'scope').to.equal('type');
    } finally {
      mgr.close();
    }
  });
});
