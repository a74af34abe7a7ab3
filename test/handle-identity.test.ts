/**
 * Handles are objects their holders can edit: a handle's identity is fixed at issue, dispose
 * goes through the checks of the scope that issued it, a moved or freed handle is inert, and a
 * scope cannot tell another channel's live id from a forged one.
 */
import { expect } from 'chai';
import { ResourceHandle, ResourceManager } from '../lib';
import { SMALL_POOLS, channelMetrics, expectCode, stateOf } from './helpers';

describe('handle identity', () => {
  let mgr: ResourceManager;
  beforeEach(() => {
    mgr = new ResourceManager({ pools: SMALL_POOLS });
  });
  afterEach(() => {
    mgr.close();
  });

  for (const access of ['revocable', 'view'] as const) {
    describe(`${access} channels`, () => {
      it('an edited id changes nothing: assigning throws, a redefined id is ignored, dispose frees only its own handle', () => {
        const victim = mgr.openChannel('victim', { access }).allocate('buffer', 64);
        const attacker = mgr.openChannel('attacker', { access });
        const h = attacker.allocate('buffer', 64);
        const other = attacker.allocate('buffer', 64);
        const ownId = h.id;
        for (const field of ['id', 'resourceType', 'size', 'channelId', 'buffer', 'pool', 'slotBytes', 'access']) {
          expect(() => {
            (h as unknown as Record<string, unknown>)[field] = victim.id;
          }, `assigning ${field} throws in strict mode`).to.throw(TypeError);
        }
        expect(h.id, 'id unchanged by assignment').to.equal(ownId);
        let reads = 0;
        Object.defineProperty(h, 'id', { get: () => (reads++ % 2 === 0 ? victim.id : other.id) });
        expect(attacker.validate(h).valid, 'validate uses the issued id').to.equal(true);
        expect(attacker.track(h).handleId, 'track uses the issued id').to.equal(ownId);
        h[Symbol.dispose]();
        expect(mgr.validateSecurityBoundaries(victim).valid, 'victim still live').to.equal(true);
        expect(mgr.validateSecurityBoundaries(ownId).violations.map((v) => v.code), 'own handle freed').to.deep.equal(['STALE_HANDLE']);
        expect(mgr.validateSecurityBoundaries(other).valid, 'the attacker\'s other handle is untouched').to.equal(true);
        expect(channelMetrics(mgr, 'attacker').violations.CROSS_CHANNEL, 'nothing was presented across channels').to.equal(0);
      });

      it('a look-alike object, a Proxy or an object with the Handle prototype is not a handle', () => {
        const victimScope = mgr.openChannel('victim', { access });
        const victim = victimScope.allocate('buffer', 64);
        const attacker = mgr.openChannel('attacker', { access });
        const own = attacker.allocate('buffer', 64);
        const lookAlike = { ...own, id: victim.id };
        const proxy = new Proxy(own, { get: (t, k) => (k === 'id' ? victim.id : Reflect.get(t, k)) });
        const prototyped = Object.create(Object.getPrototypeOf(own), { id: { value: victim.id } }) as ResourceHandle;
        for (const [what, fake] of [['look-alike', lookAlike], ['proxy', proxy], ['prototype', prototyped]] as const) {
          expectCode(() => attacker.deallocate(fake as ResourceHandle), 'ERR_INVALID_ARGUMENT', `${what}: deallocate`);
          expectCode(() => mgr.deallocateResource(fake as ResourceHandle), 'ERR_INVALID_ARGUMENT', `${what}: manager deallocate`);
          expectCode(() => attacker.validate(fake as ResourceHandle), 'ERR_INVALID_ARGUMENT', `${what}: validate`);
        }
        expect(mgr.validateSecurityBoundaries(victim).valid, 'victim still live').to.equal(true);
        expect(mgr.validateSecurityBoundaries(own).valid, 'own handle still live').to.equal(true);
      });
    });
  }

  it('dispose of a scope-issued handle goes through that scope: after its channel closed it does nothing', () => {
    const scope = mgr.openChannel('a');
    const h = scope.allocate('buffer', 64);
    mgr.closeChannel('a');
    const before = stateOf(mgr);
    h[Symbol.dispose]();
    expect(stateOf(mgr), 'nothing changed, nothing counted').to.deep.equal(before);
  });

  it('a freed handle is inert: dispose after deallocate changes and counts nothing', () => {
    const scope = mgr.openChannel('a');
    const h = scope.allocate('buffer', 64);
    expect(scope.deallocate(h), 'freed').to.equal(true);
    const next = scope.allocate('buffer', 64);
    const before = stateOf(mgr);
    h[Symbol.dispose]();
    expect(stateOf(mgr), 'nothing changed, nothing counted').to.deep.equal(before);
    expect(mgr.validateSecurityBoundaries(next).valid, 'the next handle is untouched').to.equal(true);
  });

  for (const by of ['object', 'id'] as const) {
    it(`a moved handle is inert: dispose after transferHandle (by ${by}) frees neither the transit nor the adopted copy`, () => {
      const scope = mgr.openChannel('a');
      const h = scope.allocate('buffer', 64);
      const id = mgr.transferHandle(by === 'object' ? h : h.id);
      h[Symbol.dispose]();
      expect(mgr.validateSecurityBoundaries(id).violations.map((v) => v.code), 'still in transit (valid, not freed)').to.deep.equal([]);
      const adopted = mgr.adoptHandle(id);
      h[Symbol.dispose]();
      expect(mgr.validateSecurityBoundaries(adopted).valid, 'the adopted copy is live').to.equal(true);
      expect(channelMetrics(mgr, 'a').handles, 'still held').to.equal(1);
      adopted[Symbol.dispose]();
      expect(channelMetrics(mgr, 'a').handles, 'the adopted copy disposes itself').to.equal(0);
    });
  }

  describe('a scope cannot tell another channel\'s live id from a forged one', () => {
    it('validate: same result as a forged id; counted as CROSS_CHANNEL against the presenter; the manager view tells them apart', () => {
      const victim = mgr.openChannel('victim').allocate('buffer', 64);
      const attacker = mgr.openChannel('attacker');
      const forged = victim.id + 1;
      const cross = attacker.validate(victim.id);
      const fake = attacker.validate(forged);
      expect({ ...cross, handleId: 0 }, 'same answer as a forged id').to.deep.equal({
        ...fake,
        handleId: 0,
        violations: fake.violations.map((v) => ({ ...v, message: v.message.replace(String(forged), String(victim.id)) })),
      });
      expect(cross.violations.map((v) => v.code), 'reported as forged').to.deep.equal(['FORGED_HANDLE']);
      expect(cross.channelId, 'no owner named').to.equal(null);
      expect(channelMetrics(mgr, 'attacker').violations.CROSS_CHANNEL, 'counted as CROSS_CHANNEL').to.equal(1);
      expect(channelMetrics(mgr, 'attacker').violations.FORGED_HANDLE, 'the forged one as forged').to.equal(1);
      expect(mgr.verifyResourceIsolation('attacker').isolated, 'visible in its isolation check').to.equal(false);
      expect(mgr.validateSecurityBoundaries(victim.id).valid, 'the manager still sees it live').to.equal(true);
    });

    it('track: the same error code as a forged id', () => {
      const victim = mgr.openChannel('victim').allocate('buffer', 64);
      const attacker = mgr.openChannel('attacker');
      const cross = expectCode(() => attacker.track(victim.id), 'ERR_INVALID_HANDLE', 'another channel\'s live id');
      const forged = expectCode(() => attacker.track(victim.id + 1), 'ERR_INVALID_HANDLE', 'a forged id');
      expect(cross.constructor, 'same class').to.equal(forged.constructor);
    });

    it('deallocate: false for both, and the victim keeps its handle', () => {
      const victim = mgr.openChannel('victim').allocate('buffer', 64);
      const attacker = mgr.openChannel('attacker');
      expect(attacker.deallocate(victim.id), 'another channel\'s id').to.equal(false);
      expect(attacker.deallocate(victim.id + 1), 'a forged id').to.equal(false);
      expect(mgr.validateSecurityBoundaries(victim).valid, 'victim still live').to.equal(true);
    });
  });
});
