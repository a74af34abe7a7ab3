/**
 * Counted resource types (SPEC §1 "Resource types"): defineResourceType(name, {kind: 'counter'}),
 * size in units, a null buffer, quotas in units.
 */
import { expect } from 'chai';
import { ResourceManager } from '../lib';
import { expectCode, expectLimitError, expectUnchanged } from './helpers';

describe('counters', () => {
  let mgr: ResourceManager;
  beforeEach(() => {
    mgr = new ResourceManager();
    mgr.defineResourceType('conn', { kind: 'counter', limits: { maxBytes: 3 } });
  });
  afterEach(() => {
    mgr.close();
  });

  it('issues handles with a null buffer, charged their size in units', () => {
    const h = mgr.allocateResource('conn', 2, 'a');
    expect([h.resourceType, h.size, h.channelId, h.buffer, h.pool, h.slotBytes], 'handle').to.deep.equal([
      'conn',
      2,
      'a',
      null,
      'counter',
      2,
    ]);
    const u = mgr.trackResourceUsage(h);
    expect([u.pool, u.requestedBytes, u.slotBytes, u.internalFragmentation], 'usage').to.deep.equal(['counter', 2, 2, 0]);
    expect(mgr.validateSecurityBoundaries(h).valid, 'valid').to.equal(true);
    expect(mgr.verifyResourceIsolation('a').handleCount, 'one handle in a').to.equal(1);
  });

  it('enforces the type quota in units and leaves usage unchanged on refusal', () => {
    mgr.allocateResource('conn', 2, 'a');
    mgr.openChannel('b');
    expectUnchanged(
      mgr,
      () => {
        const err = expectLimitError(() => mgr.allocateResource('conn', 2, 'b'), '2 + 2 > 3');
        expect([err.limit, err.requested, err.inUse, err.scope], 'fields').to.deep.equal([3, 2, 2, 'type']);
      },
      'quota',
    );
    const one = mgr.allocateResource('conn', 1, 'b');
    expect(one.size, 'exactly at the quota').to.equal(1);
    expectLimitError(() => mgr.allocateResource('conn', 1), 'full');
    mgr.deallocateResource(one);
    expect(mgr.allocateResource('conn', 1).size, 'fits after a free').to.equal(1);
  });

  it('reports its limits', () => {
    expect(mgr.getResourceLimits('conn'), 'limits').to.deep.equal({
      resourceType: 'conn',
      channelId: null,
      maxBytes: 3,
      maxHandles: Infinity,
      maxAllocationSize: 64 * 1024 * 1024,
      softBytes: Infinity,
    });
  });

  it('supports channel-type limits and maxHandles', () => {
    mgr.openChannel('a');
    mgr.setResourceLimits('conn', { maxHandles: 1 }, 'a');
    mgr.allocateResource('conn', 1, 'a');
    const err = expectLimitError(() => mgr.allocateResource('conn', 1, 'a'), 'second handle');
    expect([err.limit, err.inUse, err.scope], 'fields').to.deep.equal([1, 1, 'channel-type']);
  });

  it('is freed by closeChannel and reported', () => {
    const h = mgr.allocateResource('conn', 3, 'a');
    const r = mgr.closeChannel('a');
    expect([r.count, r.handles.map((x) => [x.id, x.resourceType, x.size])], 'report').to.deep.equal([1, [[h.id, 'conn', 3]]]);
    expect(mgr.allocateResource('conn', 3).size, 'units returned').to.equal(3);
  });

  it('does not touch memory pools', () => {
    const before = mgr.getResourceMetrics();
    mgr.allocateResource('conn', 3);
    const after = mgr.getResourceMetrics();
    expect(after.pools, 'pools unchanged').to.deep.equal(before.pools);
    expect(after.totals.handles, 'counted as a live handle').to.equal(1);
  });

  it('refuses bad unit counts like sizes', () => {
    for (const units of [0, -1, 1.5, NaN, Infinity]) {
      expectCode(() => mgr.allocateResource('conn', units), 'ERR_INVALID_SIZE', `units ${units}`);
    }
    expectCode(() => mgr.allocateResource('conn', '1' as unknown as number), 'ERR_INVALID_ARGUMENT', 'string units');
  });

  it('refuses to redefine a type, built-in or not', () => {
    expectCode(() => mgr.defineResourceType('conn', { kind: 'counter' }), 'ERR_INVALID_ARGUMENT', 'redefine conn');
    expectCode(() => mgr.defineResourceType('buffer', { kind: 'counter' }), 'ERR_INVALID_ARGUMENT', 'redefine buffer');
    expect(mgr.getResourceLimits('conn').maxBytes, 'the original definition stands').to.equal(3);
  });

  it('refuses bad names', () => {
    expectCode(() => mgr.defineResourceType('', { kind: 'counter' }), 'ERR_INVALID_ARGUMENT', 'empty name');
    expectCode(() => mgr.defineResourceType('*', { kind: 'counter' }), 'ERR_INVALID_ARGUMENT', "'*'");
    expectCode(() => mgr.defineResourceType(5 as unknown as string, { kind: 'counter' }), 'ERR_INVALID_ARGUMENT', 'number');
    expectCode(() => mgr.defineResourceType('x', { kind: 'counter', limits: { maxBytes: -1 } }), 'ERR_INVALID_ARGUMENT', 'bad limit');
    expectCode(() => mgr.allocateResource('x', 1), 'ERR_UNKNOWN_RESOURCE_TYPE', 'x was not defined');
  });

  it('several counter types are independent', () => {
    mgr.defineResourceType('stream', { kind: 'counter', limits: { maxBytes: 1 } });
    mgr.allocateResource('conn', 3);
    expect(mgr.allocateResource('stream', 1).resourceType, 'stream has its own quota').to.equal('stream');
    expectLimitError(() => mgr.allocateResource('stream', 1), 'stream full');
  });
});
