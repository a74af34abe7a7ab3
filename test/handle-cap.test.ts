/**
 * Handle caps and the handle table (README "Limits"): every channel's total has a default
 * `maxHandles` (DEFAULT_CHANNEL_MAX_HANDLES), so no channel within its own quotas can fill the
 * manager's handle table and make allocations fail for the others; a table that does fill up
 * (channels that raised their caps) refuses with ERR_HANDLE_TABLE_FULL and changes nothing.
 */
import { expect } from 'chai';
import { DEFAULT_CHANNEL_MAX_HANDLES, HandleTableFullError, IsopoolError, ResourceManager } from '../lib';
import { HANDLE_TABLE_CAPACITY } from '../lib/native/binding';
import { expectCode, expectLimitError, expectUnchanged } from './helpers';

describe('handle caps and the handle table', function () {
  this.timeout(120000);
  const open: ResourceManager[] = [];
  function manager(options: ConstructorParameters<typeof ResourceManager>[0] = {}): ResourceManager {
    const m = new ResourceManager({ leakDetection: 'off', ...options });
    m.defineResourceType('conn', { kind: 'counter' });
    open.push(m);
    return m;
  }
  afterEach(() => {
    for (const m of open.splice(0)) m.close();
  });

  it('gives every channel maxHandles 16,384 on its total by default, and the unscoped domain none', () => {
    expect(DEFAULT_CHANNEL_MAX_HANDLES, 'the documented default').to.equal(16384);
    const m = manager();
    m.openChannel('a');
    m.allocateResource('buffer', 1, 'b'); // auto-opened
    for (const c of ['a', 'b']) {
      expect(m.getResourceLimits('buffer', c).maxHandles, `${c}: buffer in the channel`).to.equal(16384);
      expect(m.getResourceLimits('conn', c).maxHandles, `${c}: conn in the channel`).to.equal(16384);
    }
    expect(m.getResourceLimits('buffer').maxHandles, 'unscoped: governed by type totals only').to.equal(Infinity);
  });

  it('a channel at its default cap gets ERR_RESOURCE_LIMIT (channel, maxHandles), and another channel still allocates', () => {
    const m = manager();
    const hog = m.openChannel('hog');
    for (let i = 0; i < DEFAULT_CHANNEL_MAX_HANDLES; i++) hog.allocate('conn', 1);
    let err: IsopoolError | undefined;
    expectUnchanged(m, () => {
      err = expectLimitError(() => hog.allocate('conn', 1), 'the 65,537th handle of the channel');
    }, 'the refused 65,537th handle');
    expect(err, 'a ResourceLimitError').to.deep.include({
      scope: 'channel',
      limitKind: 'maxHandles',
      limit: 16384,
      inUse: 16384,
      requested: 1,
      channelId: 'hog',
      resourceType: 'conn',
    });
    const other = m.allocateResource('conn', 1, 'other');
    expect(other.channelId, 'another channel still allocates').to.equal('other');
    expect(m.getResourceMetrics().channels.hog.handles, 'the hog holds its cap').to.equal(16384);
  });

  it('the cap is overridable: channelDefaults, openChannel limits, setResourceLimits', () => {
    const m = manager({ channelDefaults: { limits: { '*': { maxHandles: 10 } } } });
    m.openChannel('d');
    expect(m.getResourceLimits('buffer', 'd').maxHandles, 'channelDefaults').to.equal(10);
    m.openChannel('o', { limits: { '*': { maxHandles: 20 } } });
    expect(m.getResourceLimits('buffer', 'o').maxHandles, 'openChannel limits over channelDefaults').to.equal(20);
    m.openChannel('inf', { limits: { '*': { maxHandles: Infinity } } });
    expect(m.getResourceLimits('buffer', 'inf').maxHandles, 'no cap at all').to.equal(Infinity);
    m.setResourceLimits('*', { maxHandles: 5 }, 'd');
    expect(m.getResourceLimits('buffer', 'd').maxHandles, 'setResourceLimits').to.equal(5);
    const n = manager({ channelDefaults: { limits: { '*': { maxBytes: 4096 } } } });
    n.openChannel('bytes');
    expect(n.getResourceLimits('buffer', 'bytes'), 'a default total without maxHandles keeps the default cap').to.deep.include({
      maxBytes: 4096,
      maxHandles: 16384,
    });
    n.openChannel('own', { limits: { '*': { softBytes: 100 } } });
    expect(n.getResourceLimits('buffer', 'own').maxHandles, 'merged with the default, not replacing it').to.equal(16384);
  });

  it('a full handle table refuses with ERR_HANDLE_TABLE_FULL, naming its capacity, and changes nothing', () => {
    const m = manager({ channelDefaults: { limits: { '*': { maxHandles: Infinity } } } });
    const victim = m.openChannel('victim');
    const hog = m.openChannel('hog');
    let filled = 0;
    let first: unknown;
    for (;;) {
      try {
        hog.allocate('conn', 1);
        filled++;
      } catch (err) {
        first = err;
        break;
      }
    }
    expect(first, 'the first refusal is the full table').to.be.instanceOf(HandleTableFullError);
    expect(filled, 'every index of the table was handed out').to.equal(HANDLE_TABLE_CAPACITY);
    let err: IsopoolError | undefined;
    expectUnchanged(m, () => {
      err = expectCode(() => victim.allocate('conn', 1), 'ERR_HANDLE_TABLE_FULL', 'another channel, table full');
    }, 'the refused allocation');
    expect(err, 'HandleTableFullError').to.be.instanceOf(HandleTableFullError);
    expect((err as HandleTableFullError).capacity, 'capacity').to.equal(2097151);
    expect(err?.message, 'the message names the capacity').to.equal(
      'the handle table is full: all 2097151 handles of the manager are live',
    );
    expect(m.closeChannel('hog').count, 'the hog frees everything').to.equal(HANDLE_TABLE_CAPACITY);
    expect(victim.allocate('conn', 1).channelId, 'then the victim allocates').to.equal('victim');
  });
});
