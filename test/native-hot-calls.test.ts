/**
 * The addon's hot calls, allocIn() and freeIn(): per-instance functions that take their
 * arguments from the `in` scratch array (lib/native/binding.ts InArgs) instead of converting JS
 * arguments. They must refuse what the argument-taking methods refuse, change nothing when they
 * refuse, and stay safe when they outlive their wrapper.
 */
import { expect } from 'chai';
import { loadNative } from '../lib/native/loader';
import { readSnapshot } from '../lib/native/binding';
import type { NativeManager } from '../lib/native/binding';
import { collect, gc } from './helpers';

const OK = 0;
const INVALID_ARGUMENT = 1;
const INVALID_SIZE = 2;
const MANAGER_CLOSED = 11;
const CONFIG = { pools: [{ name: 's', slotSize: 4096, queueSize: 4 }], maxAllocationSize: 1 << 20, hardened: false };

function nativeManager(): NativeManager {
  return new (loadNative().NativeManager)(CONFIG);
}

function handles(m: NativeManager): number {
  return readSnapshot(m, ['s']).handles;
}

function allocIn(m: NativeManager, type: number, size: number, channel: number, mode = 0, owner = 0): ArrayBuffer | number {
  m.in.set([type, size, channel, mode, owner]);
  return m.allocIn();
}

function freeIn(m: NativeManager, id: number, presenter = -1, reason = 0, keep = 0, token = -1, ab?: ArrayBuffer): number {
  m.in.set([id, presenter, reason, keep, token]);
  return ab === undefined ? m.freeIn() : m.freeIn(ab);
}

describe('native hot calls (allocIn / freeIn)', () => {
  it('allocate and free like allocate() and free() (unscoped domain with immediate reuse: the buffer is detached at free)', () => {
    const m = nativeManager();
    expect(m.openChannel('', 0, 0, 1), 'the unscoped domain set to immediate reuse').to.equal(0);
    expect(allocIn(m, 0, 100, 0), 'a view-style allocation (no buffer)').to.equal(OK);
    const id = m.out[0];
    expect(handles(m), 'one live handle').to.equal(1);
    const ab = allocIn(m, 0, 100, 0, 1);
    expect(ab, 'mode 1: a fresh ArrayBuffer').to.be.instanceOf(ArrayBuffer);
    expect((ab as ArrayBuffer).byteLength, 'of exactly the size').to.equal(100);
    const id2 = m.out[0];
    expect(freeIn(m, id), 'freed').to.equal(OK);
    expect(freeIn(m, id), 'a double free is refused').to.not.equal(OK);
    expect(freeIn(m, id2, -1, 0, 0, -1, ab as ArrayBuffer), 'freed with its buffer').to.equal(OK);
    expect((ab as ArrayBuffer).byteLength, 'and the buffer detached').to.equal(0);
    expect(handles(m), 'nothing live').to.equal(0);
    m.release();
  });

  it('a free with its buffer under deferred reuse (the default) leaves it attached and parks the memory until the buffer dies', async () => {
    const m = nativeManager();
    const pool = (): [number, number] => {
      const snap = readSnapshot(m, ['s']);
      return [snap.pools[0]!.liveSlots, snap.parkedHandles];
    };
    (() => {
      const ab = allocIn(m, 0, 100, 0, 1);
      expect(ab, 'mode 1: a fresh ArrayBuffer').to.be.instanceOf(ArrayBuffer);
      const id = m.out[0];
      new Uint8Array(ab as ArrayBuffer).fill(7);
      expect(freeIn(m, id, -1, 0, 0, -1, ab as ArrayBuffer), 'freed with its buffer (keep 0: the channel decides)').to.equal(OK);
      expect((ab as ArrayBuffer).byteLength, 'the buffer is not detached').to.equal(100);
      expect(new Uint8Array(ab as ArrayBuffer).every((x) => x === 7), 'and keeps its bytes').to.equal(true);
      expect(freeIn(m, id), 'a double free is refused').to.not.equal(OK);
      expect(handles(m), 'nothing live').to.equal(0);
      expect(pool(), 'the slot parked: live in its pool, one parked handle').to.deep.equal([1, 1]);
    })();
    await collect();
    expect(pool(), 'the buffer died: the slot is back, nothing parked').to.deep.equal([0, 0]);
    m.release();
  });

  it('refuse NaN, fractions and out-of-range values in `in`, changing nothing', () => {
    const m = nativeManager();
    const before = JSON.stringify(readSnapshot(m, ['s']));
    for (const [type, channel] of [[NaN, 0], [0.5, 0], [2 ** 31, 0], [0, NaN], [0, 1.5], [0, -(2 ** 31) - 1]]) {
      expect(allocIn(m, type, 100, channel), `type ${type}, channel ${channel}`).to.equal(INVALID_ARGUMENT);
    }
    for (const size of [NaN, 0, -1, 1.5, Infinity, 2 ** 53]) {
      expect(allocIn(m, 0, size, 0), `size ${size}`).to.equal(INVALID_SIZE);
    }
    for (const [presenter, reason] of [[NaN, 0], [0.5, 0], [-1, NaN], [-1, 7], [-1, -1]]) {
      expect(freeIn(m, 1, presenter, reason), `presenter ${presenter}, reason ${reason}`).to.equal(INVALID_ARGUMENT);
    }
    expect(m.freeIn('not a buffer' as unknown as ArrayBuffer), 'a non-ArrayBuffer argument').to.equal(INVALID_ARGUMENT);
    for (const id of [NaN, -1, 1.5, 2 ** 53]) expect(freeIn(m, id), `malformed id ${id}`).to.not.equal(OK);
    const after = JSON.parse(JSON.stringify(readSnapshot(m, ['s']))) as Record<string, unknown>;
    const expected = JSON.parse(before) as Record<string, unknown>;
    // Refusals are the only counters a refused call may move.
    delete after.refusals;
    delete expected.refusals;
    expect(after, 'pools, handles and ledgers unchanged').to.deep.equal(expected);
    m.release();
  });

  it('answer ERR_MANAGER_CLOSED after release(), and are safe after their wrapper is collected', async () => {
    const m = nativeManager();
    m.release();
    expect(allocIn(m, 0, 100, 0), 'after release()').to.equal(MANAGER_CLOSED);
    expect(freeIn(m, 1), 'after release()').to.equal(MANAGER_CLOSED);

    // Keep only the functions and `in`; let the wrapper be collected.
    let collected = false;
    const registry = new FinalizationRegistry(() => {
      collected = true;
    });
    let wrapper: NativeManager | undefined = nativeManager();
    registry.register(wrapper, 0);
    const { allocIn: orphanAlloc, freeIn: orphanFree, in: input } = wrapper;
    wrapper = undefined;
    for (let i = 0; i < 100 && !collected; i++) {
      gc();
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(collected, 'the wrapper was collected').to.equal(true);
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve)); // its native finalizer
    input.set([0, 100, 0, 0, 0]);
    expect(orphanAlloc(), 'an orphaned allocIn').to.equal(MANAGER_CLOSED);
    expect(orphanFree(), 'an orphaned freeIn').to.equal(MANAGER_CLOSED);
  });
});
