/**
 * Isolation against Node core I/O still in flight when a buffer is freed (SPEC §2: "Sockets, fs,
 * zlib, crypto and streams keep raw pointers after the JS call returns. A freed slot must never
 * serve another channel while such I/O can still touch it.").
 *
 * Each case starts real I/O on a default (revocable) channel's pooled buffers, frees them while the
 * I/O is provably still pending (a paused peer, a held threadpool), and meanwhile another channel
 * ({@link Attacker}) allocates the same size again and again, with full GCs in between, writing
 * SECRET into every buffer it gets. Then:
 * - no SECRET byte reached the I/O's sink, and the sink got exactly the original bytes;
 * - none of the I/O's bytes landed in the other channel's buffers.
 *
 * The two access modes of freeing are documented by one case: a channel opened with
 * `unsafeImmediateReuse: true` has its buffer detached on free; a default channel's is not.
 * The ownership helpers `ChannelScope.write` / `writeFile` free a handle once its write is over.
 */
import { expect } from 'chai';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Worker } from 'node:worker_threads';
import zlib from 'node:zlib';
import { ChannelScope, ResourceHandle, ResourceManager } from '../lib';
import {
  Attacker,
  KiB,
  MiB,
  ReuseOptions,
  SECRET,
  SlowPeer,
  ThreadpoolBlock,
  countByte,
  fillVictim,
  ownership,
  settle,
  sleep,
  tempDir,
  track,
  victimBytes,
  within,
} from './io-helpers';

/**
 * What reached a sink (`where`: a peer, a file, a consumer...) is exactly the victim's original
 * bytes, with no SECRET byte, and the attacker channel's own buffers were left untouched.
 */
function expectOriginalOnly(got: Buffer, original: Buffer, attacker: Attacker, where: string): void {
  expect(countByte(got, SECRET), `SECRET bytes (written by the other channel) in ${where}`).to.equal(0);
  expect(got.length, `bytes in ${where}`).to.equal(original.length);
  expect(got.equals(original), `${where} holds exactly the original bytes`).to.equal(true);
  expect(attacker.foreignBytes(), "bytes changed in the other channel's buffers").to.equal(0);
}

/** The handle's buffer (memory handles always have one). */
function buf(h: ResourceHandle): Buffer {
  return h.buffer as Buffer;
}

describe('in-flight Node I/O on freed buffers (isolation)', function () {
  this.timeout(15000);

  let manager: ResourceManager;
  let victim: ChannelScope;
  let dir: string;

  beforeEach(() => {
    manager = new ResourceManager();
    victim = manager.openChannel('victim');
    dir = tempDir();
  });

  afterEach(async () => {
    manager.close();
    fs.rmSync(dir, { recursive: true, force: true });
    await settle(2);
  });

  /** `count` victim handles of `size` bytes, each filled with victim bytes; and a copy of all of them. */
  function victimHandles(count: number, size: number): { handles: ResourceHandle[]; original: Buffer } {
    const handles: ResourceHandle[] = [];
    for (let i = 0; i < count; i++) {
      const h = victim.allocate('buffer', size);
      fillVictim(buf(h), i + 1);
      handles.push(h);
    }
    return { handles, original: Buffer.concat(handles.map((h) => Buffer.from(buf(h)))) };
  }

  function freeAll(handles: ResourceHandle[]): void {
    const freed = handles.map((h) => victim.deallocate(h));
    expect(freed, 'each in-flight handle is freed once (deallocate -> true)').to.deep.equal(handles.map(() => true));
    handles.length = 0;
  }

  /**
   * 4 MiB of victim writes pending to a paused peer while `revoke` gives the handles up (and
   * empties the list): the peer still receives exactly the original bytes, and the attacker's
   * buffers are untouched.
   */
  async function netWriteSurvives(revoke: (handles: ResourceHandle[]) => void, at: string): Promise<void> {
    const attacker = new Attacker(manager.openChannel('attacker'), MiB);
    const peer = await SlowPeer.listen();
    try {
      const socket = await peer.connect();
      const { handles, original } = victimHandles(4, MiB);
      for (const h of handles) socket.write(buf(h));
      expect(socket.writableLength, `precondition: more than 3 MiB of the 4 MiB still pending at ${at}`).to.be.greaterThan(3 * MiB);
      revoke(handles);
      attacker.take(6);
      await attacker.hammer(3, 2);
      socket.end();
      peer.resume();
      const got = await within(5000, peer.received, 'peer data');
      expectOriginalOnly(got, original, attacker, 'what the peer received');
    } finally {
      await peer.close();
    }
  }

  it('net: a write pending to a paused peer sends exactly the original bytes after free, no other channel bytes', async () => {
    await netWriteSurvives(freeAll, 'free');
  });

  it('net: a write pending to a paused peer sends exactly the original bytes after transferHandle, adoption and free', async () => {
    // Moved away (as to another thread of a shared manager), adopted and freed there: the
    // sender's buffers, still in Node's write queue, keep their memory from everyone else.
    await netWriteSurvives((handles) => {
      const adopted = handles.map((h) => manager.adoptHandle(manager.transferHandle(h)));
      expect(adopted.map((h) => manager.deallocateResource(h)), 'each adopted handle is freed once').to.deep.equal([true, true, true, true]);
      handles.length = 0;
    }, 'the transfer');
  });

  it('fs.write queued behind a busy threadpool writes the original bytes after free, no other channel bytes', async () => {
    const attacker = new Attacker(manager.openChannel('attacker'), 64 * KiB);
    const file = path.join(dir, 'out');
    const fd = fs.openSync(file, 'w+');
    try {
      const { handles, original } = victimHandles(1, 64 * KiB);
      const block = ThreadpoolBlock.start();
      let write;
      try {
        write = track(
          new Promise<number>((resolve, reject) => {
            fs.write(fd, buf(handles[0]!), 0, 64 * KiB, 0, (err, n) => (err ? reject(err) : resolve(n)));
          }),
        );
        await sleep(20);
        expect(write.settled(), 'precondition: the write is still queued at free').to.equal(false);
        freeAll(handles);
        attacker.take(4);
        await attacker.hammer(3, 2);
      } finally {
        await block.release();
      }
      expect(await within(5000, write.promise, 'fs.write'), 'bytes written').to.equal(64 * KiB);
      const content = fs.readFileSync(file);
      expectOriginalOnly(content, original, attacker, 'the file');
    } finally {
      fs.closeSync(fd);
    }
  });

  it('FileHandle.write queued behind a busy threadpool writes the original bytes after free', async () => {
    const attacker = new Attacker(manager.openChannel('attacker'), 64 * KiB);
    const file = path.join(dir, 'out');
    const fh = await fs.promises.open(file, 'w+');
    try {
      const { handles, original } = victimHandles(1, 64 * KiB);
      const block = ThreadpoolBlock.start();
      let write;
      try {
        write = track(fh.write(buf(handles[0]!), 0, 64 * KiB, 0));
        await sleep(20);
        expect(write.settled(), 'precondition: the write is still queued at free').to.equal(false);
        freeAll(handles);
        attacker.take(4);
        await attacker.hammer(3, 2);
      } finally {
        await block.release();
      }
      const result = await within(5000, write.promise, 'FileHandle.write');
      expect(result.bytesWritten, 'bytes written').to.equal(64 * KiB);
      const content = await fs.promises.readFile(file);
      expectOriginalOnly(content, original, attacker, 'the file');
    } finally {
      await fh.close();
    }
  });

  it("fs.read queued behind a busy threadpool lands no file bytes in another channel's buffers after free", async () => {
    const attacker = new Attacker(manager.openChannel('attacker'), 64 * KiB);
    const file = path.join(dir, 'in');
    fs.writeFileSync(file, victimBytes(64 * KiB, 7));
    const fd = fs.openSync(file, 'r');
    try {
      const h = victim.allocate('buffer', 64 * KiB);
      const block = ThreadpoolBlock.start();
      let read;
      try {
        read = track(
          new Promise<number>((resolve, reject) => {
            fs.read(fd, buf(h), 0, 64 * KiB, 0, (err, n) => (err ? reject(err) : resolve(n)));
          }),
        );
        await sleep(20);
        expect(read.settled(), 'precondition: the read is still queued at free').to.equal(false);
        freeAll([h]);
        attacker.take(4);
        await attacker.hammer(3, 2);
      } finally {
        await block.release();
      }
      expect(await within(5000, read.promise, 'fs.read'), 'bytes read').to.equal(64 * KiB);
      expect(attacker.foreignBytes(), "file bytes written into the other channel's buffers").to.equal(0);
    } finally {
      fs.closeSync(fd);
    }
  });

  it("FileHandle.read queued behind a busy threadpool lands no file bytes in another channel's buffers after free", async () => {
    const attacker = new Attacker(manager.openChannel('attacker'), 64 * KiB);
    const file = path.join(dir, 'in');
    fs.writeFileSync(file, victimBytes(64 * KiB, 8));
    const fh = await fs.promises.open(file, 'r');
    try {
      const h = victim.allocate('buffer', 64 * KiB);
      const block = ThreadpoolBlock.start();
      let read;
      try {
        read = track(fh.read(buf(h), 0, 64 * KiB, 0));
        await sleep(20);
        expect(read.settled(), 'precondition: the read is still queued at free').to.equal(false);
        freeAll([h]);
        attacker.take(4);
        await attacker.hammer(3, 2);
      } finally {
        await block.release();
      }
      const result = await within(5000, read.promise, 'FileHandle.read');
      expect(result.bytesRead, 'bytes read').to.equal(64 * KiB);
      expect(attacker.foreignBytes(), "file bytes written into the other channel's buffers").to.equal(0);
    } finally {
      await fh.close();
    }
  });

  it("crypto.randomFill queued behind a busy threadpool changes no byte of another channel's buffers after free", async () => {
    const attacker = new Attacker(manager.openChannel('attacker'), 64 * KiB);
    const h = victim.allocate('buffer', 64 * KiB);
    const block = ThreadpoolBlock.start();
    let fill;
    try {
      fill = track(
        new Promise<void>((resolve, reject) => {
          crypto.randomFill(buf(h), (err) => (err ? reject(err) : resolve()));
        }),
      );
      await sleep(20);
      expect(fill.settled(), 'precondition: randomFill is still queued at free').to.equal(false);
      freeAll([h]);
      attacker.take(4);
      await attacker.hammer(3, 2);
    } finally {
      await block.release();
    }
    await within(5000, fill.promise, 'crypto.randomFill');
    expect(attacker.foreignBytes(), "random bytes written into the other channel's buffers").to.equal(0);
  });

  it('zlib.deflateRaw queued behind a busy threadpool compresses exactly the original bytes after free', async () => {
    const attacker = new Attacker(manager.openChannel('attacker'), MiB);
    const { handles, original } = victimHandles(1, MiB);
    const block = ThreadpoolBlock.start();
    let deflate;
    try {
      deflate = track(
        new Promise<Buffer>((resolve, reject) => {
          zlib.deflateRaw(buf(handles[0]!), (err, out) => (err ? reject(err) : resolve(out)));
        }),
      );
      await sleep(20);
      expect(deflate.settled(), 'precondition: deflateRaw is still queued at free').to.equal(false);
      freeAll(handles);
      attacker.take(3);
      await attacker.hammer(3, 1);
    } finally {
      await block.release();
    }
    const inflated = zlib.inflateRawSync(await within(5000, deflate.promise, 'zlib.deflateRaw'));
    expect(original.length, 'a 1 MiB input').to.equal(MiB);
    expectOriginalOnly(inflated, original, attacker, 'the inflated output');
  });

  it('stream.pipeline to a slow consumer delivers exactly the original bytes of handles freed as soon as they are pushed', async () => {
    const attacker = new Attacker(manager.openChannel('attacker'), 64 * KiB);
    const { handles, original } = victimHandles(8, 64 * KiB);
    let freedBeforeConsumed = 0;
    let consumed = 0;
    function* source(): Generator<Buffer> {
      for (let i = 0; i < handles.length; i++) {
        const h = handles[i]!;
        yield buf(h);
        // the chunk was pushed: free it and let the other channel take memory at once
        expect(victim.deallocate(h), `pushed handle ${i} is freed (deallocate -> true)`).to.equal(true);
        if (consumed <= i) freedBeforeConsumed++;
        attacker.take(1);
      }
      handles.length = 0;
    }
    const received: Buffer[] = [];
    const slow = new Writable({
      highWaterMark: 1,
      write(chunk: Buffer, _encoding, callback): void {
        setTimeout(() => {
          received.push(Buffer.from(chunk));
          consumed++;
          callback();
        }, 5);
      },
    });
    await within(5000, pipeline(Readable.from(source()), slow), 'pipeline');
    expect(freedBeforeConsumed, 'precondition: at least 4 of the 8 handles were freed before the consumer copied them').to.be.greaterThan(3);
    const got = Buffer.concat(received);
    expectOriginalOnly(got, original, attacker, 'what the consumer received');
  });

  it('worker postMessage of a pooled buffer freed right after: the worker sees the original bytes or the post is refused, never SECRET', async () => {
    const attacker = new Attacker(manager.openChannel('attacker'), 64 * KiB);
    const worker = new Worker(
      "const { parentPort } = require('node:worker_threads');" +
        'parentPort.on(\'message\', (b) => parentPort.postMessage(Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString(\'base64\')));',
      { eval: true },
    );
    try {
      const { handles, original } = victimHandles(1, 64 * KiB);
      const reply = new Promise<string>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
      let refused: string | null = null;
      try {
        worker.postMessage(buf(handles[0]!));
      } catch (e) {
        refused = (e as Error).name;
      }
      freeAll(handles);
      attacker.take(4);
      await attacker.hammer(2, 2);
      if (refused === null) {
        const got = Buffer.from(await within(5000, reply, 'worker reply'), 'base64');
        expect(countByte(got, SECRET), 'SECRET bytes seen by the worker').to.equal(0);
        expect(got.equals(original), 'the worker sees exactly the original bytes').to.equal(true);
      } else {
        expect(refused, 'a refused post throws DataCloneError').to.equal('DataCloneError');
      }
      expect(attacker.foreignBytes(), "bytes changed in the other channel's buffers").to.equal(0);
    } finally {
      await worker.terminate();
    }
  });

  it('free detaches the buffer of an unsafeImmediateReuse channel, and not that of a default channel', () => {
    const options: ReuseOptions = { unsafeImmediateReuse: true };
    const unsafe = manager.openChannel('unsafe', options);
    const hu = unsafe.allocate('buffer', 4 * KiB);
    const bu = buf(hu);
    expect(unsafe.deallocate(hu), 'unsafe channel: deallocate -> true').to.equal(true);
    expect(bu.length, 'unsafeImmediateReuse: the freed buffer is detached (length 0)').to.equal(0);

    const hd = victim.allocate('buffer', 4 * KiB);
    const bd = buf(hd);
    bd.fill(0x42);
    expect(victim.deallocate(hd), 'default channel: deallocate -> true').to.equal(true);
    expect(bd.length, 'default channel: the freed buffer keeps its length until its memory is collected').to.equal(4 * KiB);
  });

  describe('ownership helpers', () => {
    it('scope.write to a paused peer resolves only after the peer read the bytes, then the handle is freed', async () => {
      const peer = await SlowPeer.listen();
      try {
        const socket = await peer.connect();
        const { handles, original } = victimHandles(1, MiB);
        const h = handles[0]!;
        const write = track(ownership(victim).write(socket, h));
        await sleep(50);
        expect(write.settled(), 'scope.write is pending while the peer reads nothing').to.equal(false);
        peer.resume();
        await within(5000, write.promise, 'scope.write');
        const v = victim.validate(h);
        expect(v.valid, 'the written handle is freed').to.equal(false);
        expect(v.violations.map((x) => x.code), 'violations of the written handle').to.deep.equal(['STALE_HANDLE']);
        socket.end();
        const got = await within(5000, peer.received, 'peer data');
        expect(got.equals(original), 'the peer receives exactly the original bytes').to.equal(true);
      } finally {
        await peer.close();
      }
    });

    it('scope.write to a stream destroyed with an error in flight rejects with that error and frees the handle', async () => {
      const peer = await SlowPeer.listen();
      try {
        const socket = await peer.connect();
        socket.on('error', () => undefined);
        const { handles } = victimHandles(1, MiB);
        const h = handles[0]!;
        const write = track(ownership(victim).write(socket, h));
        await sleep(20);
        expect(write.settled(), 'precondition: scope.write is pending').to.equal(false);
        const boom = Object.assign(new Error('destroyed by the test'), { code: 'ETEST_DESTROYED' });
        socket.destroy(boom);
        const err = await within(5000, write.promise, 'scope.write').then(
          () => null,
          (e: unknown) => e,
        );
        const cause = err instanceof Error ? (err as Error & { cause?: unknown }).cause : undefined;
        expect(err === boom || cause === boom, 'scope.write rejects with the stream error (or an error caused by it)').to.equal(true);
        const v = victim.validate(h);
        expect(v.valid, 'the handle is freed after the failed write').to.equal(false);
        expect(v.violations.map((x) => x.code), 'violations of the handle').to.deep.equal(['STALE_HANDLE']);
      } finally {
        await peer.close();
      }
    });

    it('scope.write to an already destroyed stream rejects with ERR_STREAM_DESTROYED and frees the handle', async () => {
      const peer = await SlowPeer.listen();
      try {
        const socket = await peer.connect();
        socket.destroy();
        const { handles } = victimHandles(1, 4 * KiB);
        const h = handles[0]!;
        const err = await within(5000, ownership(victim).write(socket, h), 'scope.write').then(
          () => null,
          (e: unknown) => e,
        );
        expect((err as { code?: unknown } | null)?.code, 'rejection code').to.equal('ERR_STREAM_DESTROYED');
        const v = victim.validate(h);
        expect(v.valid, 'the handle is freed after the refused write').to.equal(false);
        expect(v.violations.map((x) => x.code), 'violations of the handle').to.deep.equal(['STALE_HANDLE']);
      } finally {
        await peer.close();
      }
    });

    it('scope.writeFile writes to a FileHandle and to an fd at a position, resolves the bytes written and frees each handle', async () => {
      const file = path.join(dir, 'out');
      const fh = await fs.promises.open(file, 'w+');
      try {
        const { handles, original } = victimHandles(2, 64 * KiB);
        const [h1, h2] = [handles[0]!, handles[1]!];
        expect(await ownership(victim).writeFile(fh, h1), 'writeFile(FileHandle) resolves the bytes written').to.equal(64 * KiB);
        expect(await ownership(victim).writeFile(fh.fd, h2, 64 * KiB), 'writeFile(fd, position) resolves the bytes written').to.equal(64 * KiB);
        for (const [name, h] of [['FileHandle', h1], ['fd', h2]] as const) {
          const v = victim.validate(h);
          expect(v.valid, `the handle written through ${name} is freed`).to.equal(false);
          expect(v.violations.map((x) => x.code), `violations of the handle written through ${name}`).to.deep.equal(['STALE_HANDLE']);
        }
        const content = await fs.promises.readFile(file);
        expect(content.equals(original), 'the file holds exactly both handles, in order').to.equal(true);
      } finally {
        await fh.close();
      }
    });
  });
});
