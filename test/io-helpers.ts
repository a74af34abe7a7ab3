/**
 * Helpers for the in-flight I/O tests (inflight-io.test.ts, io-crash-safety.test.ts and its child
 * script fixtures/io-crash-child.ts). SPEC §2 "Node core I/O still running when a buffer is freed".
 *
 * Vocabulary:
 * - the *victim* channel starts Node I/O on a pooled buffer and frees it while the I/O is in flight;
 * - the *attacker* channel then allocates the same size again and again and writes {@link SECRET}
 *   into every buffer it gets ({@link Attacker}); if a freed slot served the attacker while the I/O
 *   still used it, SECRET bytes reach the I/O's sink, or the I/O's bytes land in the attacker's
 *   buffers ("foreign bytes");
 * - victim data never contains SECRET ({@link victimBytes}: bytes 0x01-0x7e only);
 * - {@link ThreadpoolBlock} holds every libuv threadpool thread in `open()` on a FIFO, so that
 *   `fs`, `crypto` and `zlib` work queued after it stays queued until {@link ThreadpoolBlock.release}.
 *
 * The ownership helpers (`ChannelScope.write`, `ChannelScope.writeFile`) and the channel option
 * `unsafeImmediateReuse` are typed here through {@link OwnershipScope} and {@link ReuseOptions}.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { ChannelOptions, ChannelScope, ResourceHandle } from '../lib';

// ---------------------------------------------------------------------------------------------
// API surface of the ownership-passing helpers and the immediate-reuse option

/** A ChannelScope with the ownership-passing I/O helpers. */
export interface OwnershipScope extends ChannelScope {
  /** Writes `handle.buffer` to `stream`, deallocating the handle once the write is over. */
  write(stream: NodeJS.WritableStream, handle: ResourceHandle): Promise<void>;
  /** Writes `handle.buffer` to a file, deallocating the handle once the write is over. */
  writeFile(file: number | FileHandle, handle: ResourceHandle, position?: number | null): Promise<number>;
}

/** `scope` seen with the ownership helpers. */
export function ownership(scope: ChannelScope): OwnershipScope {
  return scope as OwnershipScope;
}

/** ChannelOptions with the opt-out from deferred reuse. */
export interface ReuseOptions extends ChannelOptions {
  /** Free detaches the buffer and the slot is reused at once (unsafe with in-flight I/O). */
  unsafeImmediateReuse?: boolean;
}

// ---------------------------------------------------------------------------------------------
// bytes

export const KiB = 1024;
export const MiB = 1024 * 1024;

/** What the attacker writes into every buffer it gets. Never part of victim data. */
export const SECRET = 0xee;

/** Deterministic bytes in 0x01-0x7e (never SECRET, never 0), different for each `seed`. */
export function victimBytes(size: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  fillVictim(out, seed);
  return out;
}

/** Fills `buf` with {@link victimBytes}(buf.length, seed). */
export function fillVictim(buf: Buffer, seed: number): void {
  let x = (seed * 2654435761 + 12345) >>> 0;
  for (let i = 0; i < buf.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    buf[i] = 1 + ((x >>> 16) % 0x7e);
  }
}

/** How many bytes of `buf` equal `byte`. */
export function countByte(buf: Buffer, byte: number): number {
  let n = 0;
  let at = buf.indexOf(byte);
  while (at !== -1) {
    n++;
    at = buf.indexOf(byte, at + 1);
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// the attacker channel

/**
 * Another channel that allocates `size` bytes again and again, fills each buffer with SECRET at
 * once and keeps it, so that any slot freed too early is taken and overwritten.
 */
export class Attacker {
  readonly handles: ResourceHandle[] = [];

  constructor(
    private readonly scope: ChannelScope,
    private readonly size: number,
  ) {}

  /** Allocates `count` buffers and fills each with SECRET. */
  take(count: number): void {
    for (let i = 0; i < count; i++) {
      const h = this.scope.allocate('buffer', this.size);
      (h.buffer as Buffer).fill(SECRET);
      this.handles.push(h);
    }
  }

  /** `rounds` times: a full GC, a macrotask turn, then {@link take}(perRound). */
  async hammer(rounds: number, perRound: number): Promise<void> {
    for (let i = 0; i < rounds; i++) {
      collect();
      await turn();
      this.take(perRound);
    }
  }

  /** Bytes of the attacker's buffers that are not SECRET any more (a lost or shrunk buffer counts in full). */
  foreignBytes(): number {
    let n = 0;
    for (const h of this.handles) {
      const b = h.buffer as Buffer;
      n += this.size - b.length;
      n += b.length - countByte(b, SECRET);
    }
    return n;
  }

  /** Frees every buffer taken. */
  release(): void {
    for (const h of this.handles.splice(0)) this.scope.deallocate(h);
  }
}

// ---------------------------------------------------------------------------------------------
// GC, time, descriptors

/** `global.gc` (mocha and the crash child run with --expose-gc). */
export function collect(): void {
  const fn: unknown = (globalThis as { gc?: unknown }).gc;
  if (typeof fn !== 'function') throw new Error('run with --expose-gc (global.gc is missing)');
  (fn as () => void)();
}

/** One macrotask turn. */
export function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** `rounds` rounds of a full GC and two macrotask turns: memory whose last reference was dropped is released. */
export async function settle(rounds = 4): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    collect();
    await turn();
    await turn();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `promise`, or a rejection naming `what` after `ms` milliseconds. */
export function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A promise with its settled state visible, to check that an operation is still in flight. */
export interface Tracked<T> {
  readonly promise: Promise<T>;
  settled(): boolean;
}
export function track<T>(promise: Promise<T>): Tracked<T> {
  let done = false;
  const p = promise.finally(() => {
    done = true;
  });
  p.catch(() => undefined);
  return { promise: p, settled: () => done };
}

/** Open file descriptors of this process. */
export function fdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** Open file descriptors of this process as `fd -> target`, without the one that lists them. */
export function fdList(): string[] {
  const out: string[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      out.push(`${fd} -> ${fs.readlinkSync(`/proc/self/fd/${fd}`)}`);
    } catch {
      // the directory descriptor readdirSync used, closed by now
    }
  }
  return out;
}

/** A fresh temporary directory; remove it with `fs.rmSync(dir, { recursive: true, force: true })`. */
export function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'isopool-io-'));
}

// ---------------------------------------------------------------------------------------------
// holding the libuv threadpool

/** The libuv threadpool size of this process (UV_THREADPOOL_SIZE, default 4). */
export function threadpoolSize(): number {
  const n = Number(process.env['UV_THREADPOOL_SIZE']);
  return Number.isInteger(n) && n > 0 ? Math.min(n, 1024) : 4;
}

/**
 * Every threadpool thread blocked in `open(fifo, O_RDONLY)`, which waits for a writer: work queued
 * after {@link start} runs only after {@link release}, which opens each FIFO read-write (Linux
 * never blocks that open), so the blocked opens return, and closes everything.
 */
export class ThreadpoolBlock {
  private constructor(
    private readonly dir: string,
    private readonly fifos: string[],
    private readonly opened: Promise<number[]>,
  ) {}

  static start(): ThreadpoolBlock {
    const dir = tempDir();
    const fifos: string[] = [];
    const n = threadpoolSize() + 2;
    for (let i = 0; i < n; i++) {
      const f = path.join(dir, `block-${i}`);
      execFileSync('mkfifo', [f]);
      fifos.push(f);
    }
    const opened = Promise.all(
      fifos.map(
        (f) =>
          new Promise<number>((resolve, reject) => {
            fs.open(f, 'r', (err, fd) => (err ? reject(err) : resolve(fd)));
          }),
      ),
    );
    return new ThreadpoolBlock(dir, fifos, opened);
  }

  async release(): Promise<void> {
    const writers = this.fifos.map((f) => fs.openSync(f, 'r+'));
    try {
      const readers = await within(5000, this.opened, 'threadpool blockers');
      for (const fd of readers) fs.closeSync(fd);
    } finally {
      for (const fd of writers) fs.closeSync(fd);
      fs.rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// a slow peer

/**
 * A Unix-socket server that accepts one connection and reads nothing until {@link resume}, so a
 * large write to it stays pending in the writer's process. {@link received} resolves with every
 * byte it got once the writer ends.
 */
export class SlowPeer {
  readonly received: Promise<Buffer>;
  private socket: net.Socket | null = null;
  private readonly accepted: Promise<net.Socket>;

  private constructor(
    private readonly server: net.Server,
    readonly socketPath: string,
    private readonly dir: string,
  ) {
    this.accepted = new Promise((resolve) => server.once('connection', resolve));
    this.received = this.accepted.then(
      (s) =>
        new Promise<Buffer>((resolve, reject) => {
          this.socket = s;
          const chunks: Buffer[] = [];
          s.on('data', (d: Buffer) => chunks.push(d));
          s.on('end', () => resolve(Buffer.concat(chunks)));
          s.on('error', reject);
        }),
    );
    this.received.catch(() => undefined);
  }

  static async listen(): Promise<SlowPeer> {
    const dir = tempDir();
    const socketPath = path.join(dir, 'peer.sock');
    const server = net.createServer({ pauseOnConnect: true });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    return new SlowPeer(server, socketPath, dir);
  }

  /** A client socket connected to the peer. */
  async connect(): Promise<net.Socket> {
    const client = net.connect(this.socketPath);
    await new Promise<void>((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
    });
    await this.accepted;
    return client;
  }

  /** Starts reading. */
  resume(): void {
    void this.accepted.then((s) => s.resume());
  }

  async close(): Promise<void> {
    this.socket?.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
