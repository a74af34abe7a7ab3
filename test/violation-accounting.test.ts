/**
 * Violation accounting (SPEC §2 "Reported violations", "Counting", "Events"): every violation
 * code reachable through the public API, triggered every way the API offers, and for each single
 * attempt exactly:
 *   - one counter moves by one: metrics `channels[c].violations[code]` (or `unscoped`) of the
 *     channel it is counted against, and nothing else in any channel's violation record;
 *   - one 'violation' event and one `isopool:violation` message, equal, with that code and id;
 *   - `verifyResourceIsolation(c)` lists the code with the same count, and `isolated` is false.
 * Counted against: the presenting scope's channel; for manager-level calls the owner channel when
 * the id still describes a live channel's handle, else the unscoped domain (DECISIONS).
 *
 * OUT_OF_BOUNDS is not reachable through the public API: it is raised when a handle's recorded
 * extent lies outside its slot, and records are written only by the native core at allocation
 * (JS never writes them). It is checked to stay 0 through everything here.
 */
import { expect } from 'chai';
import * as diagnostics from 'node:diagnostics_channel';
import { ResourceManager, ViolationEvent } from '../lib';
import { SMALL_POOLS, VIOLATION_CODES, ViolationCode, bufferOf, detachExternally, expectCode } from './helpers';

type Counts = Record<string, Record<ViolationCode, number>>;

function counts(mgr: ResourceManager): Counts {
  const m = mgr.getResourceMetrics();
  const out: Counts = { '(unscoped)': { ...(m as unknown as { unscoped: { violations: Record<ViolationCode, number> } }).unscoped.violations } };
  for (const [name, ch] of Object.entries(m.channels)) out[name] = { ...(ch.violations as Record<ViolationCode, number>) };
  return out;
}

describe('violation accounting: one count and one event per violation, for every code', () => {
  let mgr: ResourceManager;
  let events: ViolationEvent[];
  let published: unknown[];
  const onMessage = (m: unknown): void => {
    published.push(m);
  };
  beforeEach(() => {
    mgr = new ResourceManager({ pools: SMALL_POOLS, hardened: true, leakDetection: 'off' });
    events = [];
    published = [];
    mgr.on('violation', (e: ViolationEvent) => events.push(e));
    diagnostics.subscribe('isopool:violation', onMessage);
  });
  afterEach(() => {
    diagnostics.unsubscribe('isopool:violation', onMessage);
    mgr.close();
  });

  /**
   * Runs one attempt and checks it produced exactly one violation `code` counted against
   * `against` ('(unscoped)' or a channel id), with one event naming `eventChannel`.
   */
  function expectOne(what: string, attempt: () => void, code: ViolationCode, against: string, handleId: number, eventChannel: string | null): void {
    const before = counts(mgr);
    const e0 = events.length;
    const p0 = published.length;
    attempt();
    const after = counts(mgr);
    const want = structuredClone(before);
    const row = want[against];
    expect(row, `${what}: '${against}' is listed in metrics`).to.be.an('object');
    (row as Record<ViolationCode, number>)[code] += 1;
    expect(after, `${what}: exactly one ${code} counted against ${against}, nothing else`).to.deep.equal(want);
    const event = { channelId: eventChannel, code, handleId };
    expect(events.slice(e0), `${what}: one 'violation' event`).to.deep.equal([event]);
    expect(published.slice(p0), `${what}: one isopool:violation message`).to.deep.equal([event]);
    if (against !== '(unscoped)') {
      const iso = mgr.verifyResourceIsolation(against);
      const listed = iso.violations.find((v) => v.code === code);
      expect([iso.isolated, listed?.count], `${what}: verifyResourceIsolation('${against}') lists it`).to.deep.equal([false, after[against]?.[code]]);
    }
  }

  it('FORGED_HANDLE: manager validate / deallocate / track, scope validate / deallocate / track, malformed ids', () => {
    const a = mgr.openChannel('a');
    expectOne('manager validate', () => mgr.validateSecurityBoundaries(4242), 'FORGED_HANDLE', '(unscoped)', 4242, null);
    expectOne('manager deallocate', () => expect(mgr.deallocateResource(4243)).to.equal(false), 'FORGED_HANDLE', '(unscoped)', 4243, null);
    expectOne('manager track', () => expectCode(() => mgr.trackResourceUsage(4244), 'ERR_INVALID_HANDLE', 'track'), 'FORGED_HANDLE', '(unscoped)', 4244, null);
    expectOne('scope validate', () => a.validate(4245), 'FORGED_HANDLE', 'a', 4245, 'a');
    expectOne('scope deallocate', () => expect(a.deallocate(4246)).to.equal(false), 'FORGED_HANDLE', 'a', 4246, 'a');
    expectOne('scope track', () => expectCode(() => a.track(4247), 'ERR_INVALID_HANDLE', 'track'), 'FORGED_HANDLE', 'a', 4247, 'a');
    expectOne('malformed -1', () => a.validate(-1), 'FORGED_HANDLE', 'a', -1, 'a');
    expectOne('malformed 1.5', () => expect(mgr.deallocateResource(1.5)).to.equal(false), 'FORGED_HANDLE', '(unscoped)', 1.5, null);
    expectOne('unsafe 2^60', () => mgr.validateSecurityBoundaries(2 ** 60), 'FORGED_HANDLE', '(unscoped)', 2 ** 60, null);
  });

  it('STALE_HANDLE: a freed id, by scope (its presenter) and by the manager (the owner channel)', () => {
    const a = mgr.openChannel('a');
    const b = mgr.openChannel('b');
    const h = a.allocate('buffer', 100);
    expect(a.deallocate(h), 'freed').to.equal(true);
    expectOne('owner scope validate', () => a.validate(h), 'STALE_HANDLE', 'a', h.id, 'a');
    expectOne('owner scope double free', () => expect(a.deallocate(h)).to.equal(false), 'STALE_HANDLE', 'a', h.id, 'a');
    expectOne('owner scope track', () => expectCode(() => a.track(h), 'ERR_STALE_HANDLE', 'track'), 'STALE_HANDLE', 'a', h.id, 'a');
    expectOne('other scope validate', () => b.validate(h.id), 'STALE_HANDLE', 'b', h.id, 'b');
    expectOne('manager validate', () => mgr.validateSecurityBoundaries(h), 'STALE_HANDLE', 'a', h.id, null);
    expectOne('manager double free', () => expect(mgr.deallocateResource(h)).to.equal(false), 'STALE_HANDLE', 'a', h.id, null);
    expectOne('manager track', () => expectCode(() => mgr.trackResourceUsage(h), 'ERR_STALE_HANDLE', 'track'), 'STALE_HANDLE', 'a', h.id, null);
    const u = mgr.allocateResource('buffer', 10);
    mgr.deallocateResource(u);
    expectOne('unscoped handle, manager validate', () => mgr.validateSecurityBoundaries(u), 'STALE_HANDLE', '(unscoped)', u.id, null);
  });

  it("CHANNEL_CLOSED: an id freed by its channel's close", () => {
    const b = mgr.openChannel('b');
    const h = mgr.allocateResource('buffer', 100, 'a');
    mgr.closeChannel('a');
    expectOne('manager validate', () => mgr.validateSecurityBoundaries(h), 'CHANNEL_CLOSED', '(unscoped)', h.id, null);
    expectOne('manager deallocate', () => expect(mgr.deallocateResource(h)).to.equal(false), 'CHANNEL_CLOSED', '(unscoped)', h.id, null);
    expectOne('manager track', () => expectCode(() => mgr.trackResourceUsage(h), 'ERR_STALE_HANDLE', 'track'), 'CHANNEL_CLOSED', '(unscoped)', h.id, null);
    expectOne('another scope validate', () => b.validate(h), 'CHANNEL_CLOSED', 'b', h.id, 'b');
    expectOne('another scope deallocate', () => expect(b.deallocate(h)).to.equal(false), 'CHANNEL_CLOSED', 'b', h.id, 'b');
    mgr.openChannel('a');
    expectOne('the reopened channel presents it', () => mgr.channel('a').validate(h), 'CHANNEL_CLOSED', 'a', h.id, 'a');
  });

  it('CROSS_CHANNEL: another channel scope presents a live handle (refused, counted on the presenter)', () => {
    const a = mgr.openChannel('a');
    const b = mgr.openChannel('b');
    const h = a.allocate('buffer', 100);
    expectOne('validate', () => expect(b.validate(h).valid).to.equal(false), 'CROSS_CHANNEL', 'b', h.id, 'b');
    expectOne('deallocate', () => expect(b.deallocate(h)).to.equal(false), 'CROSS_CHANNEL', 'b', h.id, 'b');
    expectOne('track', () => expectCode(() => b.track(h), 'ERR_INVALID_HANDLE', 'track'), 'CROSS_CHANNEL', 'b', h.id, 'b');
    expectOne('by id', () => b.validate(h.id), 'CROSS_CHANNEL', 'b', h.id, 'b');
    const u = mgr.allocateResource('buffer', 10);
    expectOne('an unscoped handle to a scope', () => b.validate(u), 'CROSS_CHANNEL', 'b', u.id, 'b');
    expect(a.validate(h).valid, 'still valid for its owner').to.equal(true);
    expect(mgr.verifyResourceIsolation('a').isolated, 'the victim stays isolated').to.equal(true);
  });

  it('BUFFER_DETACHED: a live revocable handle whose buffer other code detached', async () => {
    const h = mgr.allocateResource('buffer', 100, 'a');
    const method = await detachExternally(bufferOf(h).buffer as ArrayBuffer);
    expect(method, 'this Node can detach it').to.not.equal(null);
    expectOne('manager validate', () => mgr.validateSecurityBoundaries(h), 'BUFFER_DETACHED', 'a', h.id, null);
    expectOne('owner scope validate', () => mgr.channel('a').validate(h), 'BUFFER_DETACHED', 'a', h.id, 'a');
  });

  it('CANARY_CORRUPTED: hardened, a view-mode write past the requested size through buf.buffer', () => {
    const v = mgr.openChannel('v', { access: 'view' });
    const h = v.allocate('buffer', 100);
    const buf = bufferOf(h);
    new Uint8Array(buf.buffer, buf.byteOffset + 100, 1)[0] ^= 0x55;
    expectOne('manager validate', () => mgr.validateSecurityBoundaries(h), 'CANARY_CORRUPTED', 'v', h.id, 'v');
    expectOne('owner scope validate', () => v.validate(h), 'CANARY_CORRUPTED', 'v', h.id, 'v');
    expectOne('deallocate (still frees)', () => expect(v.deallocate(h)).to.equal(true), 'CANARY_CORRUPTED', 'v', h.id, 'v');
  });

  it('CANARY_CORRUPTED: closeChannel reports a damaged canary of a handle it frees (counted unscoped, the event names the channel)', () => {
    const v = mgr.openChannel('v', { access: 'view' });
    const h = v.allocate('buffer', 100);
    const buf = bufferOf(h);
    new Uint8Array(buf.buffer, buf.byteOffset + 100, 1)[0] ^= 0x55;
    const before = counts(mgr)['(unscoped)']?.CANARY_CORRUPTED ?? -1;
    const e0 = events.length;
    const p0 = published.length;
    const report = mgr.closeChannel('v');
    expect(report.count, 'the close freed it').to.equal(1);
    expect(counts(mgr)['(unscoped)']?.CANARY_CORRUPTED, 'counted once in the unscoped domain').to.equal(before + 1);
    const event = { channelId: 'v', code: 'CANARY_CORRUPTED', handleId: h.id };
    expect(events.slice(e0), "one 'violation' event").to.deep.equal([event]);
    expect(published.slice(p0), 'one isopool:violation message').to.deep.equal([event]);
  });

  it('OUT_OF_BOUNDS stays 0, and the sum of all counters equals the number of events', () => {
    const a = mgr.openChannel('a');
    const b = mgr.openChannel('b');
    const h = a.allocate('buffer', 100);
    b.validate(h);
    b.validate(999);
    mgr.validateSecurityBoundaries(h);
    a.deallocate(h);
    a.deallocate(h);
    const all = counts(mgr);
    let total = 0;
    for (const row of Object.values(all)) for (const code of VIOLATION_CODES) total += row[code];
    for (const row of Object.values(all)) expect(row['OUT_OF_BOUNDS'], 'never raised').to.equal(0);
    expect([total, events.length, published.length], 'one event per counted violation').to.deep.equal([3, 3, 3]);
  });
});
