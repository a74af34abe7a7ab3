/**
 * diagnostics_channel publication: what limits.test.ts, security.test.ts and leaks.test.ts do
 * not already cover. The exported channel names; subscribers alone (no EventEmitter listener)
 * receive violations; isopool:limit for every scope and limit kind (channel total, type total,
 * maxHandles, counter types); and isopool:limit stays off the EventEmitter.
 */
import { expect } from 'chai';
import * as diagnostics from 'node:diagnostics_channel';
import type { EventEmitter } from 'node:events';
import { DIAGNOSTICS_CHANNELS, ResourceManager } from '../lib';
import { SMALL_POOLS, expectLimitError } from './helpers';

/** Runs `fn` with a subscriber on `name` and returns what was published. */
function published(name: string, fn: () => void): unknown[] {
  const seen: unknown[] = [];
  const onMessage = (m: unknown): void => {
    seen.push(m);
  };
  diagnostics.subscribe(name, onMessage);
  try {
    fn();
  } finally {
    diagnostics.unsubscribe(name, onMessage);
  }
  return seen;
}

describe('diagnostics_channel', () => {
  let mgr: ResourceManager;

  beforeEach(() => {
    mgr = new ResourceManager({ pools: SMALL_POOLS, leakDetection: 'off' });
  });

  afterEach(() => {
    mgr.close();
  });

  it('exports the four channel names', () => {
    expect(DIAGNOSTICS_CHANNELS).to.deep.equal({
      pressure: 'isopool:pressure',
      leak: 'isopool:leak',
      violation: 'isopool:violation',
      limit: 'isopool:limit',
    });
  });

  it('publishes isopool:violation to a subscriber with no EventEmitter listener', () => {
    expect(mgr.listenerCount('violation'), 'no listener').to.equal(0);
    const seen = published('isopool:violation', () => {
      expect(mgr.deallocateResource(424242), 'forged').to.equal(false);
      const a = mgr.openChannel('a');
      const b = mgr.openChannel('b');
      const h = b.allocate('buffer', 8);
      expect(a.deallocate(h), 'foreign').to.equal(false);
    });
    expect(seen).to.deep.equal([
      { channelId: null, code: 'FORGED_HANDLE', handleId: 424242 },
      { channelId: 'a', code: 'CROSS_CHANNEL', handleId: (seen[1] as { handleId: number }).handleId },
    ]);
  });

  it('publishes isopool:limit for a channel total, a type total and maxHandles, with JSON payloads', () => {
    mgr.openChannel('a', { limits: { '*': { maxBytes: 4096 } } });
    mgr.setResourceLimits('buffer', { maxHandles: 2 });
    const seen = published('isopool:limit', () => {
      mgr.allocateResource('buffer', 10, 'a');
      expectLimitError(() => mgr.allocateResource('buffer', 10, 'a'), 'channel total');
      mgr.allocateResource('buffer', 10);
      expectLimitError(() => mgr.allocateResource('buffer', 10), 'type maxHandles');
    });
    expect(seen).to.deep.equal([
      { channelId: 'a', resourceType: 'buffer', scope: 'channel', limit: 4096, requested: 4096, inUse: 4096 },
      { channelId: null, resourceType: 'buffer', scope: 'type', limit: 2, requested: 1, inUse: 2 },
    ]);
    expect(JSON.parse(JSON.stringify(seen)), 'plain JSON').to.deep.equal(seen);
  });

  it('publishes isopool:limit and isopool:pressure for counter types (units)', () => {
    mgr.defineResourceType('slot', { kind: 'counter', limits: { maxBytes: 3, softBytes: 2 } });
    const pressure: unknown[] = [];
    const limit = published('isopool:limit', () => {
      pressure.push(
        ...published('isopool:pressure', () => {
          mgr.allocateResource('slot', 2, 'jobs');
          mgr.allocateResource('slot', 1, 'jobs');
          expectLimitError(() => mgr.allocateResource('slot', 1, 'jobs'), 'over 3 units');
        }),
      );
    });
    expect(pressure, 'softBytes crossed once').to.deep.equal([
      { channelId: 'jobs', resourceType: 'slot', scope: 'type', bytesInUse: 3, softBytes: 2 },
    ]);
    expect(limit).to.deep.equal([{ channelId: 'jobs', resourceType: 'slot', scope: 'type', limit: 3, requested: 1, inUse: 3 }]);
  });

  it("keeps isopool:limit off the EventEmitter, and publishes nothing once unsubscribed", () => {
    const emitted: unknown[] = [];
    (mgr as unknown as EventEmitter).on('limit', (e: unknown) => emitted.push(e));
    mgr.openChannel('a', { limits: { '*': { maxHandles: 0 } } });
    const seen = published('isopool:limit', () => expectLimitError(() => mgr.allocateResource('buffer', 1, 'a'), 'maxHandles 0'));
    expect(seen.length, 'published').to.equal(1);
    expect(emitted, "no 'limit' EventEmitter event").to.deep.equal([]);
    expectLimitError(() => mgr.allocateResource('buffer', 1, 'a'), 'no subscriber: still refused');
    expect(seen.length, 'nothing after unsubscribe').to.equal(1);
  });
});
