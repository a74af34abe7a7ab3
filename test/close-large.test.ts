/**
 * Closing a large channel (README "Channels"): a close of more than 16,384 handles frees every
 * one of them to every caller before closeChannel returns, and hands their memory back in slices
 * of at most 16,384 handles over the following turns of the event loop, so one tenant's close
 * never stalls the others for long. The report is exact at once; its list is made when read.
 */
import { expect } from 'chai';
import { ResourceManager } from '../lib';
import type { ResourceHandle } from '../lib';
import { bufferOf, expectCode, gc, pendingRelease, poolMetrics, tick } from './helpers';

/** ArrayBuffer.prototype.transfer (Node 22+, or Node 20 with --harmony-rab-gsab-transfer). */
const CAN_TRANSFER = typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === 'function';
const AT_ONCE = 16384; // lib/engine/engine.ts CLOSE_AT_ONCE_MAX: also the most one slice frees
const N = 3 * AT_ONCE + 1000;

describe('closing a large channel', function () {
  this.timeout(120000);
  const open: ResourceManager[] = [];
  function manager(): ResourceManager {
    const m = new ResourceManager({ leakDetection: 'off' });
    m.defineResourceType('conn', { kind: 'counter' });
    open.push(m);
    return m;
  }
  afterEach(() => {
    for (const m of open.splice(0)) m.close();
  });

  /** Turns of the event loop until nothing waits for release (or `max` turns): how many it took. */
  async function turnsUntilReleased(m: ResourceManager, max = 1000): Promise<number> {
    for (let turn = 1; turn <= max; turn++) {
      await tick();
      if (pendingRelease(m) === 0) return turn;
    }
    return Infinity;
  }

  it('frees every handle to every caller at once, returns the memory over later turns, and reports exactly', async () => {
    const m = manager();
    const big = m.openChannel('big', { access: 'view', limits: { '*': { maxHandles: N } } });
    const handles: ResourceHandle[] = [];
    for (let i = 0; i < N; i++) handles.push(big.allocate('buffer', 100));
    const other = m.openChannel('other', { access: 'view' });
    const kept = other.allocate('buffer', 100);
    const liveBefore = poolMetrics(m, 'small').liveSlots;
    expect(liveBefore, 'every handle holds a small slot').to.equal(N + 1);

    const report = m.closeChannel('big');
    expect(report.count, 'count: every handle').to.equal(N);
    expect(report.bytes, 'bytes: every charged slot').to.equal(N * 4096);
    // At most one slice is freed before closeChannel returns: the rest waits for later turns.
    const waiting = pendingRelease(m);
    expect(waiting, 'handles whose memory is not back yet').to.be.at.least(N - AT_ONCE);
    expect(poolMetrics(m, 'small').liveSlots, 'their slots are not back yet').to.equal(1 + waiting);

    // To every caller each handle is freed already, the first and the last alike.
    for (const h of [handles[0], handles[N - 1]]) {
      expect(m.deallocateResource(h), 'a second free').to.equal(false);
      const v = m.validateSecurityBoundaries(h);
      expect(v.valid).to.equal(false);
      expect(v.violations.map((x) => x.code), 'closed by its channel').to.deep.equal(['CHANNEL_CLOSED']);
      expectCode(() => m.trackResourceUsage(h), 'ERR_STALE_HANDLE', 'track');
      expectCode(() => m.transferHandle(h), 'ERR_STALE_HANDLE', 'transfer');
    }
    expectCode(() => big.allocate('buffer', 1), 'ERR_CHANNEL_CLOSED', 'the old scope');
    expect(m.getResourceMetrics().channels.big, 'gone from the metrics').to.equal(undefined);
    expect(m.verifyCleanupCompletion(handles[N - 1]), 'the last is not released yet').to.equal(false);

    // The name reopens at once, as a new incarnation with a fresh ledger.
    const again = m.openChannel('big', { access: 'view' });
    const fresh = again.allocate('buffer', 100);
    expect(m.getResourceMetrics().channels.big.handles, 'only the new handle').to.equal(1);

    const turns = await turnsUntilReleased(m);
    expect(turns, 'turns until every slot is back').to.be.at.least(2).and.at.most(1000);
    expect(poolMetrics(m, 'small').liveSlots, 'the other channels only').to.equal(2);
    for (const h of handles) if (!m.verifyCleanupCompletion(h)) expect.fail(`handle ${h.id} not released`);
    expect(m.validateSecurityBoundaries(kept).valid, 'the other channel is untouched').to.equal(true);
    expect(m.validateSecurityBoundaries(fresh).valid, 'the new incarnation is untouched').to.equal(true);

    const listed = report.handles;
    expect(listed.length).to.equal(N);
    const ids = new Set(handles.map((h) => h.id));
    for (const entry of listed) {
      if (!ids.delete(entry.id) || entry.resourceType !== 'buffer' || entry.size !== 100) expect.fail(`unexpected entry ${JSON.stringify(entry)}`);
    }
    expect(ids.size, 'every handle listed once').to.equal(0);
    expect(JSON.parse(JSON.stringify(report)).handles.length, 'the report serialises whole').to.equal(N);
  });

  it('reading the report\'s list before the memory is back finishes the close then', () => {
    const m = manager();
    const big = m.openChannel('big', { limits: { '*': { maxHandles: N } } });
    for (let i = 0; i < N; i++) big.allocate('conn', 2);
    const report = m.closeChannel('big');
    expect(pendingRelease(m), 'not finished by closeChannel').to.be.greaterThan(0);
    expect(report.handles.length).to.equal(N);
    expect(pendingRelease(m), 'finished by reading the list').to.equal(0);
    expect(report.bytes, 'counted units').to.equal(2 * N);
    expect(m.getResourceMetrics().totals.handles, 'nothing live').to.equal(0);
  });

  it('close() finishes a close under way', () => {
    const m = manager();
    const big = m.openChannel('big', { access: 'view', limits: { '*': { maxHandles: N } } });
    for (let i = 0; i < N; i++) big.allocate('buffer', 10);
    m.closeChannel('big');
    expect(pendingRelease(m)).to.be.greaterThan(0);
    m.close();
    const final = m.getResourceMetrics();
    expect(final.revocation.pendingRelease, 'nothing waits').to.equal(0);
    expect(final.totals.handles).to.equal(0);
    expect(poolMetrics(m, 'small').liveSlots, 'every slot back').to.equal(0);
  });

  it('immediate reuse: every buffer is revoked as its slice is freed; one moved away by other code keeps its memory parked', async () => {
    const m = manager();
    const big = m.openChannel('big', { unsafeImmediateReuse: true, limits: { '*': { maxHandles: N } } });
    const handles: ResourceHandle[] = [];
    for (let i = 0; i < N; i++) handles.push(big.allocate('buffer', 64));
    // transfer() moves the last handle's memory to an ArrayBuffer isopool cannot revoke.
    let moved: ArrayBuffer | null = null;
    if (CAN_TRANSFER) moved = (bufferOf(handles[N - 1]).buffer as ArrayBuffer & { transfer(): ArrayBuffer }).transfer();
    m.closeChannel('big');
    expect(bufferOf(handles[0]).byteLength, 'the first slice is revoked at once').to.equal(0);
    expect(await turnsUntilReleased(m, 200) === Infinity, 'the moved memory waits').to.equal(moved !== null);
    for (let i = 0; i < N - 1; i++) if (bufferOf(handles[i]).byteLength !== 0) expect.fail(`buffer ${i} not revoked`);
    if (moved !== null) {
      expect(pendingRelease(m), 'only the moved memory waits').to.equal(1);
      expect(moved.byteLength, 'the moved buffer still works').to.equal(64);
      moved = null as ArrayBuffer | null;
      for (let i = 0; i < 20 && pendingRelease(m) > 0; i++) {
        gc();
        await tick();
      }
      expect(pendingRelease(m), 'released once collected').to.equal(0);
    }
  });
});
