/**
 * An adversarial tenant (SPEC §1 "Access modes", "Zeroing"; §2): the code serving channel
 * 'mallory' gets its own ChannelScope (and may close and reopen its own channel, in either access
 * mode) and tries everything it can through the public API to read the secret of the revocable
 * channel 'victim': a random 32-byte pattern repeated over every byte of many victim buffers.
 *
 * Attacks: its own freed buffers; the victim's live and freed handles and ids (leaked to it);
 * id arithmetic around its own and the victim's ids (±1, ±2, ±2^12 = generation ±1, ±2^32 = index
 * ±1, ±k·2^32, bit flips) through track / validate / deallocate; closing and reopening its own
 * channel; allocating thousands of buffers of every slot size to catch slots the victim freed; in
 * view mode, scanning every `buf.buffer` (whole slabs) and keeping stale views across the
 * victim's later activity.
 *
 * It must never find the pattern (not even a 32-byte window of it), every attempt on an id must be
 * refused and counted exactly once against mallory (the sum of its violation counters equals the
 * attempts, across its incarnations), and the victim must stay isolated with zero violations.
 *
 * The suite runs twice: with `unsafeImmediateReuse` (a freed buffer is revoked and its slot reused
 * at once) and with deferred reuse (the default: a freed buffer stays attached, and its slot goes
 * back to the pools only once collected; the suite then drops its references to freed victim
 * buffers, keeping their ids, and collects before each sweep so the attacker can be served them).
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { ChannelScope, IsopoolError, ResourceHandle, ResourceManager } from '../lib';
import { channelMetrics, collect, collectUntil, VIOLATION_CODES } from './helpers';

const SECRET = randomBytes(32);
const SIZES = [4096, 65536, 1 << 20]; // whole default slots: the attacker sees every slot byte

/** A buffer of `n` bytes holding SECRET repeated. */
function secretFill(buf: Buffer): void {
  for (let off = 0; off < buf.length; off += SECRET.length) SECRET.copy(buf, off, 0, Math.min(SECRET.length, buf.length - off));
}

/** Its id, whether it is a handle or already an id. */
function idOf(x: ResourceHandle | number): number {
  return typeof x === 'number' ? x : x.id;
}

for (const [mode, immediate] of [
  ['unsafeImmediateReuse', true],
  ['deferred reuse, the default', false],
] as const) {
  describe(`adversarial tenant: no channel reaches a revocable channel secret (${mode})`, function () {
    this.timeout(60000);

    let mgr: ResourceManager;
    let victim: ChannelScope;
    const victimLive: ResourceHandle[] = [];
    /** Handles under immediate reuse; ids only under deferred reuse (a handle keeps its buffer alive). */
    const victimFreed: Array<ResourceHandle | number> = [];
    let found: string[];
    let attempts: number;
    let malloryViolationsBefore: number; // counted in closed incarnations

    /** Scans memory the attacker can read; records where the pattern shows up. */
    function scan(what: string, bytes: Uint8Array): void {
      if (bytes.byteLength === 0) return;
      const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      if (b.indexOf(SECRET) !== -1) found.push(what);
    }

    function malloryViolations(): number {
      const ch = channelMetrics(mgr, 'mallory');
      return VIOLATION_CODES.reduce((s, c) => s + ch.violations[c], 0);
    }

    /** The victim writes its secret into fresh buffers of every size, frees half of them. */
    function victimWork(rounds: number): void {
      for (let r = 0; r < rounds; r++) {
        for (const size of SIZES) {
          const n = size === 1 << 20 ? 2 : size === 65536 ? 8 : 64;
          for (let i = 0; i < n; i++) {
            const h = victim.allocate('buffer', size);
            secretFill(h.buffer as Buffer);
            if (i % 2 === 0) {
              victim.deallocate(h);
              victimFreed.push(immediate ? h : h.id);
            } else {
              victimLive.push(h);
            }
          }
        }
      }
    }

    /** One refused attempt through mallory's scope, by each of track / validate / deallocate. */
    function attempt(scope: ChannelScope, id: number | ResourceHandle, own: Set<number>): void {
      const n = typeof id === 'number' ? id : id.id;
      if (own.has(n)) return; // its own live handle: not an attack
      const r = scope.validate(id);
      expect(r.valid, `validate(${n}) refused`).to.equal(false);
      expect(r.violations.length, `validate(${n}) reports one violation`).to.equal(1);
      expect(scope.deallocate(id), `deallocate(${n}) refused`).to.equal(false);
      let code = '';
      try {
        scope.track(id);
      } catch (e) {
        code = e instanceof IsopoolError ? e.code : String(e);
      }
      expect(['ERR_INVALID_HANDLE', 'ERR_STALE_HANDLE', 'ERR_ISOLATION_VIOLATION'], `track(${n}) refused`).to.include(code);
      attempts += 3;
    }

    /** ids around `id`: ±1, ±2, generation ±1 (±2^12), index ±1..±3 (±k·2^32), single bit flips. */
    function neighbours(id: number): number[] {
      const out: number[] = [];
      for (const d of [1, 2, 2 ** 12, 2 * 2 ** 12, 2 ** 32, 2 * 2 ** 32, 3 * 2 ** 32, 2 ** 32 + 2 ** 12]) out.push(id + d, id - d);
      for (let bit = 0; bit < 53; bit += 3) {
        const flipped = Number(BigInt(id) ^ (1n << BigInt(bit)));
        out.push(flipped);
      }
      return out.filter((x) => Number.isSafeInteger(x) && x >= 0);
    }

    before(() => {
      // default pools, default leak detection
      mgr = new ResourceManager(immediate ? { channelDefaults: { unsafeImmediateReuse: true } } : {});
      victim = mgr.openChannel('victim');
      found = [];
      attempts = 0;
      malloryViolationsBefore = 0;
      victimWork(2);
    });

    after(() => {
      mgr.close();
    });

    it('revocable attacker: own freed buffers, the victim ids and handles, id arithmetic', async () => {
      const mallory = mgr.openChannel('mallory');
      const own: ResourceHandle[] = [];
      for (let i = 0; i < 50; i++) own.push(mallory.allocate('buffer', SIZES[i % 3] as number));
      const ownIds = new Set(own.map((h) => h.id));
      // its own freed buffers: kept references read nothing
      const kept = own.slice(0, 10).map((h) => h.buffer as Buffer);
      for (const h of own.slice(0, 10)) mallory.deallocate(h);
      for (const h of own.slice(0, 10)) ownIds.delete(h.id);
      if (!immediate) await collect(); // the victim's freed slots (ids kept only) return to the pools
      victimWork(1); // the victim reuses what is free, writes its secret again
      kept.forEach((b, i) => {
        // Revoked under immediate reuse; otherwise still its own memory, which nobody else got.
        expect(b.length, `own freed buffer ${i}: ${immediate ? 'revoked' : 'attached, its memory parked'}`).to.equal(immediate ? 0 : SIZES[i % 3]);
        scan(`own freed buffer ${i}`, b);
      });
      // the victim's handles and ids, live and freed, leaked to the attacker
      for (const h of [...victimLive, ...victimFreed]) {
        attempt(mallory, h, ownIds);
        attempt(mallory, idOf(h), ownIds);
      }
      // id arithmetic around its own ids (live and freed) and the victim's
      for (const h of [...own, ...victimLive.slice(0, 20), ...victimFreed.slice(0, 20)]) {
        for (const id of neighbours(idOf(h))) attempt(mallory, id, ownIds);
      }
      expect(malloryViolations(), 'every attempt refused and counted against mallory').to.equal(attempts);
      expect(found, 'the secret was never visible').to.deep.equal([]);
    });

    it('revocable attacker: thousands of allocations of every size catch the victim freed slots, zeroed', async () => {
      const mallory = mgr.channel('mallory');
      const hitsBefore = mgr.getResourceMetrics().pools;
      victimWork(1);
      if (!immediate) {
        await collectUntil(() => mgr.getResourceMetrics().revocation.pendingRelease === 0); // the victim's freed slots return to the pools
        expect(mgr.getResourceMetrics().revocation.pendingRelease, 'no freed slot still parked').to.equal(0);
      }
      let scanned = 0;
      for (const size of SIZES) {
        const n = size === 1 << 20 ? 40 : size === 65536 ? 400 : 2000;
        const held: ResourceHandle[] = [];
        for (let i = 0; i < n; i++) {
          const h = mallory.allocate('buffer', size);
          scan(`mallory ${size}-byte buffer ${i}`, h.buffer as Buffer);
          scanned++;
          held.push(h);
        }
        for (const h of held) mallory.deallocate(h);
      }
      const pools = mgr.getResourceMetrics().pools;
      const reused = ['small', 'medium', 'large'].reduce((s, p) => s + ((pools[p]?.hits ?? 0) - (hitsBefore[p]?.hits ?? 0)), 0);
      expect(reused, 'the attacker was served retained (previously used) slots').to.be.greaterThan(100);
      expect(scanned, 'buffers scanned').to.equal(2440);
      expect(found, 'the secret was never visible').to.deep.equal([]);
    });

    it('closing and reopening its own channel in view mode: whole slabs through buf.buffer, stale views', () => {
      malloryViolationsBefore += malloryViolations();
      mgr.closeChannel('mallory');
      const mallory = mgr.openChannel('mallory', { access: 'view' });
      const stale: Buffer[] = [];
      const slabs = new Set<ArrayBufferLike>();
      for (let round = 0; round < 3; round++) {
        victimWork(1);
        const held: ResourceHandle[] = [];
        for (const size of SIZES) {
          const n = size === 1 << 20 ? 6 : size === 65536 ? 60 : 600;
          for (let i = 0; i < n; i++) {
            const h = mallory.allocate('buffer', size);
            const b = h.buffer as Buffer;
            slabs.add(b.buffer);
            scan(`view buffer ${size}/${i}`, b);
            held.push(h);
          }
        }
        // A slab given back to the system has its export detached (empty); nothing to read there.
        for (const ab of slabs) if (ab.byteLength > 0) scan('a whole view slab (buf.buffer)', new Uint8Array(ab));
        for (const h of held) {
          stale.push(h.buffer as Buffer);
          mallory.deallocate(h);
        }
        victimWork(1); // the victim allocates and frees while mallory keeps its stale views
        for (const b of stale) scan('a stale view after the victim worked', b);
        for (const ab of slabs) if (ab.byteLength > 0) scan('a whole view slab, later', new Uint8Array(ab));
      }
      // id attacks from the view incarnation too
      const ownIds = new Set<number>();
      for (const h of victimFreed.slice(-30)) attempt(mallory, idOf(h), ownIds);
      for (const h of victimLive.slice(-30)) attempt(mallory, h, ownIds);
      expect(slabs.size, 'view slabs scanned whole').to.be.greaterThan(3);
      expect(stale.every((b) => b.length > 0), 'view-mode stale references are not revoked (documented risk)').to.equal(true);
      expect(malloryViolationsBefore + malloryViolations(), 'every attempt counted, over both incarnations').to.equal(attempts);
      expect(found, 'the secret was never visible').to.deep.equal([]);
    });

    it('after the victim closes its channel: its slots go to the attacker zeroed; the victim stayed isolated', async () => {
      const iso = mgr.verifyResourceIsolation('victim');
      expect([iso.isolated, iso.violations], 'victim isolated, nothing counted against it').to.deep.equal([true, []]);
      let victimClosed: ResourceHandle[] = victimLive.splice(0);
      const report = mgr.closeChannel('victim');
      expect(report.count, 'the victim live handles were freed').to.equal(victimClosed.length);
      malloryViolationsBefore += malloryViolations();
      mgr.closeChannel('mallory');
      const mallory = mgr.openChannel('mallory'); // revocable again: may get the victim's slots
      // (in a function: a loop variable of this async function could keep the last buffer alive)
      ((closed: ResourceHandle[]) => {
        for (const h of closed.slice(0, 40)) attempt(mallory, h, new Set());
      })(victimClosed);
      if (!immediate) {
        victimClosed = []; // drop the closed buffers so their slots return to the pools
        await collectUntil(() => mgr.getResourceMetrics().revocation.pendingRelease === 0);
        expect(mgr.getResourceMetrics().revocation.pendingRelease, 'every freed victim slot returned').to.equal(0);
      }
      for (const size of SIZES) {
        const n = size === 1 << 20 ? 40 : size === 65536 ? 300 : 1500;
        const held: ResourceHandle[] = [];
        for (let i = 0; i < n; i++) {
          const h = mallory.allocate('buffer', size);
          scan(`after close ${size}/${i}`, h.buffer as Buffer);
          held.push(h);
        }
        for (const h of held) mallory.deallocate(h);
      }
      expect(malloryViolationsBefore + malloryViolations(), 'every attempt counted, over three incarnations').to.equal(attempts);
      expect(attempts, 'attempts made').to.be.greaterThan(3000);
      expect(found, 'the secret was never visible').to.deep.equal([]);
    });
  });
}
