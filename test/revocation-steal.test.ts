/**
 * Revocation against stolen buffers. Code holding a revocable buffer can move its memory to a
 * new ArrayBuffer that isopool never saw: `ArrayBuffer.prototype.transfer()` (Node >= 21) or a
 * BYOB stream read (every Node). Detaching the handle's own buffer then revokes nothing, so the
 * memory must not serve anyone else until that new ArrayBuffer is gone.
 */
import { expect } from 'chai';
import { ResourceManager } from '../lib';
import type { ResourceHandle } from '../lib';
import { bufferOf, expectCode, gc, poolMetrics, tick } from './helpers';

/** Moves `ab`'s memory into a new ArrayBuffer (detaching `ab`) and returns a view over all of it. */
async function steal(ab: ArrayBuffer): Promise<Uint8Array> {
  const transfer = (ab as unknown as { transfer?: () => ArrayBuffer }).transfer;
  if (typeof transfer === 'function') return new Uint8Array(transfer.call(ab));
  const stream = new ReadableStream({
    type: 'bytes',
    pull(controller: ReadableByteStreamController): void {
      controller.byobRequest?.respond(1); // "fills" 1 byte without writing it
    },
  });
  const reader = stream.getReader({ mode: 'byob' });
  const { value } = await reader.read(new Uint8Array(ab));
  reader.releaseLock();
  await stream.cancel();
  if (value === undefined) throw new Error('the BYOB read returned no view');
  return new Uint8Array(value.buffer);
}

const POOLS = [{ name: 's', slotSize: 4096, queueSize: 4 }];

describe('revocation: a stolen buffer never sees another owner', () => {
  let mgr: ResourceManager;
  beforeEach(() => {
    mgr = new ResourceManager({ pools: POOLS, leakDetection: 'off' });
  });
  afterEach(() => mgr.close());

  /** Allocates in `victim` until the pool has handed out `slots` distinct slots, writing 0x42. */
  function fillVictim(slots: number): ResourceHandle[] {
    const v = mgr.openChannel('victim');
    const held: ResourceHandle[] = [];
    for (let i = 0; i < slots; i++) {
      const h = v.allocate('buffer', 4096);
      bufferOf(h).fill(0x42);
      held.push(h);
    }
    return held;
  }

  it('deallocateResource parks the memory while the stolen buffer lives', async () => {
    const a = mgr.openChannel('attacker');
    const h = a.allocate('buffer', 4096);
    bufferOf(h).fill(0x11);
    const stolen = await steal(bufferOf(h).buffer as ArrayBuffer);
    expect(a.validate(h).violations.map((v) => v.code), 'the detach is seen').to.deep.equal(['BUFFER_DETACHED']);
    expect(a.deallocate(h), 'the handle is freed').to.equal(true);
    expect(stolen.byteLength, 'the stolen copy still reaches the memory').to.equal(4096);
    fillVictim(64);
    expect(stolen.every((b) => b === 0x11), 'the stolen memory still holds only the attacker bytes').to.equal(true);
    expect(poolMetrics(mgr, 's').liveSlots, '64 victim slots + the parked one').to.equal(65);
  });

  it('closeChannel parks it too', async () => {
    const a = mgr.openChannel('attacker');
    const h = a.allocate('buffer', 4096);
    bufferOf(h).fill(0x22);
    const stolen = await steal(bufferOf(h).buffer as ArrayBuffer);
    const report = mgr.closeChannel('attacker');
    expect(report.count, 'freed by the close').to.equal(1);
    expect(report.handles[0]?.id, 'reported').to.equal(h.id);
    fillVictim(64);
    expect(stolen.every((b) => b === 0x22), 'no victim byte reaches the stolen copy').to.equal(true);
  });

  it('the memory returns to the pool once the stolen buffer is collected', async () => {
    const a = mgr.openChannel('attacker');
    let h: ResourceHandle | undefined = a.allocate('buffer', 4096);
    let stolen: Uint8Array | undefined = await steal(bufferOf(h).buffer as ArrayBuffer);
    expect(stolen.byteLength, 'stolen').to.equal(4096);
    expect(a.deallocate(h), 'freed').to.equal(true);
    h = undefined;
    stolen = undefined;
    expect(poolMetrics(mgr, 's').liveSlots, 'parked while it may be reachable').to.equal(1);
    for (let i = 0; i < 100 && poolMetrics(mgr, 's').liveSlots !== 0; i++) {
      gc();
      await tick();
    }
    expect(poolMetrics(mgr, 's').liveSlots, 'released after the backing store died').to.equal(0);
  });

  it('refuses to transfer a handle whose buffer was stolen', async () => {
    const a = mgr.openChannel('attacker');
    const h = a.allocate('buffer', 4096);
    await steal(bufferOf(h).buffer as ArrayBuffer);
    expectCode(() => mgr.transferHandle(h), 'ERR_INVALID_HANDLE', 'transfer of a stolen buffer');
    expect(mgr.getResourceMetrics().channels.attacker?.violations.BUFFER_DETACHED, 'counted').to.be.at.least(1);
    expect(a.deallocate(h), 'it can still be freed').to.equal(true);
  });
});
