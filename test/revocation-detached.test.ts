/**
 * A revoked (detached) buffer reads nothing and writes nothing (SPEC §1 "Access modes",
 * revocable, on `unsafeImmediateReuse` channels): for each of the four revocation paths
 * (deallocation, closeChannel, close(), transferHandle), every way user code can hold or reach the
 * memory is tried through references
 * taken *before* revocation: the Buffer itself (indexed access and Buffer methods), a `subarray`,
 * a `DataView`, a `Uint32Array` over `buf.buffer`, and new views taken after revocation.
 *
 * "Reads nothing": each read throws (TypeError / RangeError) or yields nothing (undefined, '', 0
 * bytes). The exact outcome for each operation on Node 20 is listed in EXPECTED; an engine may
 * only move an operation from "empty result" to "throws", never to "returns data".
 * "Writes nothing": the memory is observed afterwards from its new holder (the slot reused by the
 * same channel, which is not zeroed, or the adopted handle) and holds exactly the bytes it had
 * before the scribbling.
 *
 * Under deferred reuse (the default) only transferHandle detaches; a freed buffer and every view
 * of it keep reading and writing the buffer's own memory, which no other handle is given until the
 * buffer is collected, and which a new owner in another channel then gets zeroed.
 */
import { expect } from 'chai';
import { ResourceHandle, ResourceManager } from '../lib';
import { SMALL_POOLS, bufferOf, collect, containsByte, filledWith, poolMetrics } from './helpers';

/** References to one buffer's memory, all taken while it was live. */
interface Kept {
  buf: Buffer;
  sub: Buffer; // subarray(8, 24)
  view: DataView; // over the whole buffer
  words: Uint32Array; // over buf.buffer
}

function keep(h: ResourceHandle): Kept {
  const buf = bufferOf(h);
  return {
    buf,
    sub: buf.subarray(8, 24),
    view: new DataView(buf.buffer, buf.byteOffset, buf.length),
    words: new Uint32Array(buf.buffer, buf.byteOffset, Math.floor(buf.length / 4)),
  };
}

type Outcome = string;
/** 'throws TypeError', 'throws RangeError ERR_BUFFER_OUT_OF_BOUNDS', or 'value <json>'. */
function outcome(fn: () => unknown): Outcome {
  try {
    const v = fn();
    return `value ${JSON.stringify(typeof v === 'bigint' ? String(v) : v)}`;
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    return `throws ${(e as Error).constructor.name}${typeof code === 'string' ? ' ' + code : ''}`;
  }
}

const OOB = 'throws RangeError ERR_BUFFER_OUT_OF_BOUNDS';
const DETACHED = 'throws TypeError';

/** Every read through a kept reference, with its allowed outcomes (first: Node 20's). */
function reads(k: Kept): Array<[string, () => unknown, Outcome[]]> {
  return [
    ['buf.length / byteLength / byteOffset', () => [k.buf.length, k.buf.byteLength, k.buf.byteOffset], ['value [0,0,0]']],
    ['buf.buffer.byteLength', () => k.buf.buffer.byteLength, ['value 0']],
    ['buf[0], buf[10], buf[4095]', () => [k.buf[0], k.buf[10], k.buf[4095]].map((x) => x ?? 'undefined'), ['value ["undefined","undefined","undefined"]']],
    ['sub.length, sub[0]', () => [k.sub.length, k.sub[0] ?? 'undefined'], ['value [0,"undefined"]']],
    ['words.length, words[0]', () => [k.words.length, k.words[0] ?? 'undefined'], ['value [0,"undefined"]']],
    ['view.getUint8(0)', () => k.view.getUint8(0), [DETACHED]],
    ['view.getUint32(0)', () => k.view.getUint32(0, true), [DETACHED]],
    ['buf.readUInt32LE(0)', () => k.buf.readUInt32LE(0), [OOB]],
    ['buf.readUInt8(0)', () => k.buf.readUInt8(0), [OOB]],
    ['buf.readBigUInt64LE(0)', () => k.buf.readBigUInt64LE(0), [OOB]],
    ["buf.toString()", () => k.buf.toString(), ['value ""', DETACHED]],
    ["buf.toString('hex')", () => k.buf.toString('hex'), ['value ""', DETACHED]],
    ["buf.toString('base64')", () => k.buf.toString('base64'), ['value ""', DETACHED]],
    ['buf.toJSON().data', () => k.buf.toJSON().data, ['value []', DETACHED]],
    ['buf.indexOf(0x5a)', () => k.buf.indexOf(0x5a), ['value -1', DETACHED]],
    ['buf.equals(empty)', () => k.buf.equals(Buffer.alloc(0)), ['value true', DETACHED]],
    ['buf.equals(its old bytes)', () => k.buf.equals(Buffer.alloc(64, 0x5a)), ['value false', DETACHED]],
    ['buf.compare(empty)', () => k.buf.compare(Buffer.alloc(0)), ['value 0', DETACHED]],
    ['buf.copy(target) copies 0 bytes', () => {
      const target = Buffer.alloc(16, 1);
      const n = k.buf.copy(target);
      return [n, filledWith(target, 1)];
    }, ['value [0,true]', DETACHED]],
    ['Buffer.from(buf) (a copy)', () => Buffer.from(k.buf).length, ['value 0', DETACHED]],
    ['buf.subarray(0, 16) after revocation', () => k.buf.subarray(0, 16).length, [DETACHED, 'value 0']],
    ['sub.subarray(0, 4) after revocation', () => k.sub.subarray(0, 4).length, [DETACHED, 'value 0']],
    ['buf.slice(0, 16) after revocation', () => k.buf.slice(0, 16).length, [DETACHED, 'value 0']],
    ['new DataView(buf.buffer) after revocation', () => new DataView(k.buf.buffer).byteLength, [DETACHED]],
    ['new Uint8Array(buf.buffer) after revocation', () => new Uint8Array(k.buf.buffer).length, [DETACHED, 'value 0']],
    ['buf.buffer.slice(0) after revocation', () => k.buf.buffer.slice(0).byteLength, [DETACHED, 'value 0']],
  ];
}

/** Every write through a kept reference, with its allowed outcomes. Each writes `byte`. */
function writes(k: Kept, byte: number): Array<[string, () => unknown, Outcome[]]> {
  const text = String.fromCharCode(byte).repeat(64);
  return [
    ['buf[i] = byte (4096 indices)', () => {
      for (let i = 0; i < 4096; i++) k.buf[i] = byte;
      return k.buf[0] ?? 'undefined';
    }, ['value "undefined"']],
    ['sub[i] = byte', () => {
      for (let i = 0; i < 16; i++) k.sub[i] = byte;
      return k.sub[0] ?? 'undefined';
    }, ['value "undefined"']],
    ['words[i] = byte×4', () => {
      for (let i = 0; i < 1024; i++) k.words[i] = byte * 0x01010101;
      return k.words[0] ?? 'undefined';
    }, ['value "undefined"']],
    ['view.setUint8(0, byte)', () => k.view.setUint8(0, byte), [DETACHED]],
    ['view.setUint32(4, byte×4)', () => k.view.setUint32(4, byte * 0x01010101), [DETACHED]],
    ['buf.write(text)', () => k.buf.write(text), ['value 0', DETACHED, OOB]],
    ['buf.writeUInt32LE(byte×4, 0)', () => k.buf.writeUInt32LE(byte * 0x01010101, 0), [OOB]],
    ['buf.writeUInt8(byte, 0)', () => k.buf.writeUInt8(byte, 0), [OOB]],
    ['buf.fill(byte)', () => k.buf.fill(byte).length, [DETACHED, 'value 0']],
    ['sub.fill(byte)', () => k.sub.fill(byte).length, [DETACHED, 'value 0']],
    ['buf.set([byte, ...])', () => k.buf.set([byte, byte, byte, byte]), [DETACHED, 'throws RangeError']],
    ['source.copy(buf) copies 0 bytes', () => Buffer.alloc(4096, byte).copy(k.buf), ['value 0', DETACHED]],
  ];
}

/** Runs every read and write; each outcome must be one of its allowed ones. */
function expectInert(k: Kept, byte: number, what: string): void {
  for (const [name, fn, allowed] of [...reads(k), ...writes(k, byte)]) {
    const got = outcome(fn);
    expect(allowed, `${what}: ${name} must read/write nothing, got "${got}"`).to.include(got);
  }
}

describe('revocation (unsafeImmediateReuse): a detached buffer reads nothing and writes nothing', () => {
  let mgr: ResourceManager;
  beforeEach(() => {
    mgr = new ResourceManager({ pools: SMALL_POOLS, channelDefaults: { unsafeImmediateReuse: true } });
  });
  afterEach(() => {
    mgr.close();
  });

  it('live references all see the memory (paired with the revoked cases)', () => {
    const k = keep(mgr.allocateResource('buffer', 4096, 'a'));
    k.buf.fill(0x5a);
    expect([k.buf.length, k.sub.length, k.view.byteLength, k.words.length], 'extents').to.deep.equal([4096, 16, 4096, 1024]);
    expect([k.buf[0], k.sub[0], k.view.getUint8(100), k.words[0], k.buf.readUInt32LE(0)], 'reads').to.deep.equal([
      0x5a, 0x5a, 0x5a, 0x5a5a5a5a, 0x5a5a5a5a,
    ]);
  });

  it('after deallocateResource: every reference is inert, and the scribbles land nowhere', () => {
    const h = mgr.allocateResource('buffer', 4096, 'a');
    const k = keep(h);
    k.buf.fill(0x5a);
    expect(mgr.deallocateResource(h), 'freed').to.equal(true);
    expectInert(k, 0x99, 'deallocated');
    // Reuse by the same channel is not zeroed ('cross-channel' mode): the slot shows exactly the
    // bytes it had at free time, so any scribble that had landed would be visible here.
    const again: Buffer[] = [];
    for (let i = 0; i < SMALL_POOLS[0].queueSize + 1; i++) again.push(bufferOf(mgr.allocateResource('buffer', 4096, 'a')));
    expect(again.filter((b) => filledWith(b, 0x5a)).length, 'the freed slot came back once, with its old bytes').to.equal(1);
    for (const b of again) expect(containsByte(b, 0x99), 'no scribble visible').to.equal(false);
    expectInert(k, 0x98, 'deallocated, with the slot reused');
    for (const b of again) expect(containsByte(b, 0x98), 'no scribble visible after reuse either').to.equal(false);
  });

  it('after closeChannel: every reference of the channel is inert; the next owner sees zeros', () => {
    const kept = [0, 1, 2].map(() => keep(mgr.allocateResource('buffer', 4096, 'a')));
    kept.forEach((k) => k.buf.fill(0x5a));
    expect(mgr.closeChannel('a').count, 'three handles freed').to.equal(3);
    kept.forEach((k, i) => expectInert(k, 0x99, `closed channel, handle ${i}`));
    const next = [0, 1, 2, 3].map(() => bufferOf(mgr.allocateResource('buffer', 4096, 'b')));
    kept.forEach((k, i) => expectInert(k, 0x97, `closed channel, handle ${i}, slot reused`));
    for (const b of next) expect(b.every((x) => x === 0), 'a new owner gets zeros: no old bytes, no scribbles').to.equal(true);
  });

  it('after close(): every reference is inert', () => {
    const kept = [keep(mgr.allocateResource('buffer', 4096, 'a')), keep(mgr.allocateResource('buffer', 100)), keep(mgr.allocateResource('buffer', 70000, 'b'))];
    kept.forEach((k) => k.buf.fill(0x5a));
    mgr.close();
    kept.forEach((k, i) => expectInert(k, 0x99, `manager closed, handle ${i}`));
  });

  it('after transferHandle: the sender is inert; the adopter sees the old bytes and none of the scribbles', () => {
    const h = mgr.allocateResource('buffer', 4096, 'a');
    const k = keep(h);
    k.buf.fill(0x5a);
    const id = mgr.transferHandle(h);
    expectInert(k, 0x99, 'in transit');
    const adopted = mgr.adoptHandle(id);
    expectInert(k, 0x98, 'adopted elsewhere');
    expect(filledWith(bufferOf(adopted), 0x5a), 'the adopter sees exactly the bytes before the transfer').to.equal(true);
    expect(mgr.deallocateResource(adopted), 'freed').to.equal(true);
  });

  it('a direct (oversize) buffer is inert after deallocation too', () => {
    const h = mgr.allocateResource('buffer', 2 * 1024 * 1024, 'a');
    const k = keep(h);
    k.buf.fill(0x5a);
    expect(mgr.deallocateResource(h), 'freed').to.equal(true);
    expectInert(k, 0x99, 'direct');
  });
});

/** Every kept reference reads `byte` over the whole buffer (deferred reuse: nothing was revoked). */
function expectLive(k: Kept, byte: number, what: string): void {
  const w = byte * 0x01010101;
  expect([k.buf.length, k.sub.length, k.view.byteLength, k.words.length, k.buf.buffer.byteLength], `${what}: extents unchanged`).to.deep.equal([
    4096, 16, 4096, 1024, 4096,
  ]);
  expect([k.buf[0], k.buf[4095], k.sub[15], k.view.getUint8(100), k.words[1023], k.buf.readUInt32LE(0)], `${what}: every reference reads the bytes`).to.deep.equal([
    byte,
    byte,
    byte,
    byte,
    w >>> 0,
    w >>> 0,
  ]);
  expect(filledWith(k.buf, byte), `${what}: the whole buffer`).to.equal(true);
}

/** Writes `byte` through every kept reference. */
function scribbleAll(k: Kept, byte: number): void {
  k.buf.fill(byte);
  k.sub.fill(byte);
  for (let i = 0; i < 1024; i++) k.words[i] = byte * 0x01010101;
  k.view.setUint8(0, byte);
}

describe('revocation: under deferred reuse (the default) a freed buffer keeps only its own memory until it is collected', () => {
  let mgr: ResourceManager;
  beforeEach(() => {
    mgr = new ResourceManager({ pools: SMALL_POOLS });
  });
  afterEach(() => {
    mgr.close();
  });

  /**
   * Frees with `free` the 4096-byte handles of channel 'a' that `alloc` made, then, while the kept
   * references live: every reference reads the old bytes and writes its own memory, and no slot
   * served to channel `servedTo` shows them, neither at allocation (channel 'a' itself: reuse
   * would not be zeroed) nor after the freed references write again. Returns nothing that reaches
   * the freed buffers.
   */
  function checkParked(count: number, free: (hs: ResourceHandle[]) => void, servedTo: string, what: string): void {
    const hs: ResourceHandle[] = [];
    for (let i = 0; i < count; i++) hs.push(mgr.allocateResource('buffer', 4096, 'a'));
    const kept = hs.map(keep);
    kept.forEach((k) => k.buf.fill(0x5a));
    free(hs);
    kept.forEach((k, i) => expectLive(k, 0x5a, `${what}, handle ${i}`));
    kept.forEach((k) => scribbleAll(k, 0x99));
    kept.forEach((k, i) => expectLive(k, 0x99, `${what}, handle ${i}, after writing`));
    const served: ResourceHandle[] = [];
    for (let i = 0; i < SMALL_POOLS[0].queueSize + 1; i++) served.push(mgr.allocateResource('buffer', 4096, servedTo));
    kept.forEach((k) => scribbleAll(k, 0x98));
    served.map(bufferOf).forEach((b, i) => {
      expect([containsByte(b, 0x5a), containsByte(b, 0x99), containsByte(b, 0x98)], `${what}: served buffer ${i} holds none of the freed bytes`).to.deep.equal([
        false,
        false,
        false,
      ]);
    });
    kept.forEach((k, i) => expectLive(k, 0x98, `${what}, handle ${i}, after the pool served others`));
    expect(mgr.getResourceMetrics().revocation.pendingRelease, `${what}: the freed handles are parked`).to.equal(count);
    expect(poolMetrics(mgr, 's').liveSlots, `${what}: parked and served slots are live`).to.equal(count + served.length);
    for (const h of served) expect(mgr.deallocateResource(h), `${what}: served handle freed`).to.equal(true);
  }

  /** After a collection every slot is back; every retained one, and a fresh one, goes zeroed to channel 'b'. */
  async function expectReturnedZeroed(what: string): Promise<void> {
    await collect();
    expect(mgr.getResourceMetrics().revocation.pendingRelease, `${what}: nothing parked once collected`).to.equal(0);
    expect(poolMetrics(mgr, 's').liveSlots, `${what}: every slot returned`).to.equal(0);
    const next = Array.from({ length: poolMetrics(mgr, 's').retainedFreeSlots + 1 }, () => bufferOf(mgr.allocateResource('buffer', 4096, 'b')));
    next.forEach((b, i) => expect(b.every((x) => x === 0), `${what}: channel b buffer ${i} is zeroed (no old bytes, no scribbles)`).to.equal(true));
  }

  it('after deallocateResource: every reference still reads and writes its own memory, which nobody else gets until collected', async () => {
    checkParked(1, (hs) => expect(mgr.deallocateResource(hs[0]!), 'freed').to.equal(true), 'a', 'deallocated');
    await expectReturnedZeroed('deallocated');
  });

  it('after closeChannel: the same, for every buffer of the channel', async () => {
    checkParked(3, () => expect(mgr.closeChannel('a').count, 'three handles freed').to.equal(3), 'c', 'closed channel');
    await expectReturnedZeroed('closed channel');
  });

  it('after transferHandle and the adopter\'s free: the sender\'s buffer still reaches only its own memory, which nobody else gets until both are collected', async () => {
    checkParked(
      1,
      (hs) => {
        const adopted = mgr.adoptHandle(mgr.transferHandle(hs[0]!));
        expect(filledWith(bufferOf(adopted), 0x5a), 'the adopter sees exactly the bytes before the transfer').to.equal(true);
        expect(mgr.deallocateResource(adopted), 'freed by the adopter').to.equal(true);
      },
      'b',
      'transferred',
    );
    await expectReturnedZeroed('transferred');
  });
});
