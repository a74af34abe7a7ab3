/**
 * An HTTP service on isopool: every TCP connection is a channel with its own byte quota.
 *
 * - `POST /digest` (any path but `/metrics`): reads the request body into pooled buffers and
 *   answers `{ channel, bytes, sha256, buffers }`.
 *   - With `Content-Length`: one pooled buffer of exactly that size; the chunks are copied in.
 *   - Chunked (no length): the chunks are packed into pooled buffers of `chunkSlotBytes` each
 *     (the next one is taken when the current one is full), so a body is charged about
 *     ceil(bytes / chunkSlotBytes) slots however small its chunks are.
 *   - A body that does not fit the connection's quota is refused with `413`; one that does, but
 *     finds the server-wide budget (`globalBytes`) spent by other connections, with `503` and
 *     `retry-after`. Both have a JSON body naming the limit, with `requested` the body's size in
 *     bytes (declared, or received so far when chunked; `chargedBytes` is what the refused
 *     allocation would have been charged). When the size was declared, nothing was read yet and
 *     the connection stays usable; for a chunked body the connection is closed after the answer
 *     (the rest of an unbounded body is not read).
 *   - A body that makes no progress for `bodyTimeoutMs` (no byte arrives: an idle client holding
 *     a declared length's memory, or a stalled chunked upload) is answered `408`, its buffers are
 *     freed at once, and the connection is closed. One timer per server checks every body four
 *     times per timeout, so the answer comes 1 to 1.25 timeouts after the last byte.
 * - `GET /metrics`: Prometheus text exposition (isopool/prometheus over a prom-client Registry).
 *
 * A connection opens channel `conn-<n>` with `limits: {'*': {maxBytes}}` and
 * `unsafeImmediateReuse` (safe for digest's buffers: see where the channel opens); closing the socket
 * closes the channel, which frees (and revokes) whatever the connection still held. The server's
 * budget is the limit on the `buffer` type's total (`setResourceLimits('buffer', {maxBytes})`),
 * which covers every channel: declared lengths are charged before their bytes arrive, so without
 * it idle clients could hold `quotaBytes` each, with no bound on their number.
 * Every buffer is freed on every path: the response, a refusal, a timeout, an abort or an error.
 *
 *   npm run start:server -- --port 8080 [--quota-bytes 4194304] [--global-bytes 268435456] [--body-timeout-ms 10000]
 *   curl --data-binary @file http://127.0.0.1:8080/digest ; curl http://127.0.0.1:8080/metrics
 *
 * For tests: `startServer({ port: 0 })` resolves to `{ url, manager, registry, close() }`.
 */
import { createHash } from 'node:crypto';
import type { Hash } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Registry } from 'prom-client';
import { InvalidSizeError, ResourceLimitError, ResourceManager } from '../lib';
import type { ChannelScope, ResourceHandle } from '../lib';
import { registerIsopoolMetrics } from '../lib/prometheus';

/** Options of {@link startServer}. */
export interface ServerOptions {
  /** TCP port; 0 (the default) picks a free one. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Charged bytes one connection may hold at once (default 4 MiB). */
  quotaBytes?: number;
  /**
   * Charged bytes all connections together may hold: set as the `buffer` type's total limit
   * (default 256 MiB for a manager the server creates; a manager passed in keeps its own limits
   * unless this is given).
   */
  globalBytes?: number;
  /** A body that receives no byte for this long (up to 1.25x) is answered 408 and freed (default 10,000 ms). */
  bodyTimeoutMs?: number;
  /** Size of the pooled buffers a chunked body is packed into (default 64 KiB: one medium slot). */
  chunkSlotBytes?: number;
  /** The manager to serve from; default a new one, closed by `close()`. */
  manager?: ResourceManager;
  /** `maxChannels` of the Prometheus export (default 100). */
  maxChannels?: number;
}

/** A running server. */
export interface RunningServer {
  /** `http://host:port`. */
  url: string;
  manager: ResourceManager;
  registry: Registry;
  server: http.Server;
  /** Closes every connection (and so its channel), the server, and a manager it created. */
  close(): Promise<void>;
}

/** One connection's state. */
interface Connection {
  scope: ChannelScope;
  /** False once the socket closed: closeChannel already freed its handles. */
  open: boolean;
}

/** What {@link digest} needs of the server's options (the timeout is its {@link BodyClock}'s). */
interface BodyPolicy {
  quotaBytes: number;
  chunkSlotBytes: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;

/** The server's budget over all connections when it makes its own manager (`globalBytes`). */
export const DEFAULT_GLOBAL_BYTES = 256 * MiB;

/** A body that made no progress for `bodyTimeoutMs`. */
class BodyTimeoutError extends Error {
  constructor(readonly ms: number) {
    super(`no body bytes for ${ms} ms`);
  }
}

/** A chunked body's slot refused: the limit error and the body's size so far. */
class ChunkedRefusal extends Error {
  constructor(
    override readonly cause: ResourceLimitError,
    readonly bodyBytes: number,
  ) {
    super(cause.message);
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/**
 * The answer to a refused allocation: 503 when the server-wide budget (the type's total) refused
 * a body that fits the connection's quota, else 413. `bodyBytes` is the body's size: declared, or
 * received so far.
 */
function refusal(err: ResourceLimitError, bodyBytes: number, quotaBytes: number): { status: number; body: Record<string, unknown> } {
  const global = err.scope === 'type' && bodyBytes <= quotaBytes;
  const body = { error: err.code, message: err.message, limit: err.limit, requested: bodyBytes, chargedBytes: err.requested, inUse: err.inUse, scope: err.scope };
  if (err.scope === 'type' && !global) {
    // Over the connection's quota as well (the type's total is checked first): a retry cannot help.
    return { status: 413, body: { ...body, message: `a body of ${bodyBytes} bytes is over the connection quota of ${quotaBytes} bytes`, limit: quotaBytes, scope: 'channel' } };
  }
  return { status: global ? 503 : 413, body };
}

function sendRefusal(res: http.ServerResponse, err: ResourceLimitError, bodyBytes: number, quotaBytes: number, headers: http.OutgoingHttpHeaders = {}): void {
  const { status, body } = refusal(err, bodyBytes, quotaBytes);
  sendJson(res, status, body, status === 503 ? { 'retry-after': '1', ...headers } : headers);
}

/** A body being read, as its server's {@link BodyClock} sees it. */
interface BodyWatch {
  /** A byte arrived since the clock's last tick. */
  progressed: boolean;
  /** Ticks in a row without one. */
  idleTicks: number;
  /** Its place in the clock's list; -1 while not watched. */
  at: number;
  /** Called once the body made no progress for the timeout. */
  expire(): void;
}

/** Ticks of a {@link BodyClock} per timeout. */
const TICKS_PER_TIMEOUT = 4;

/**
 * One timer per server for every body's timeout: it ticks every timeout / 4 and expires a body
 * that received no byte over 4 ticks in a row, so between `timeoutMs` and 1.25x that after its
 * last byte. A timer per request (created, refreshed by every chunk, cleared) costs each request
 * more than the digest's pooled buffer does.
 *
 * The watched bodies are a dense list (each knows its place; a leaving one's place takes the
 * last), not a `Set`: a Set that a body enters and leaves on every request rebuilds its hash
 * table every few hundred changes, and V8 allocates a long-lived Set's new table in the old
 * generation. Under load that is megabytes a second of old-generation garbage, which sets off
 * a full collection every few hundred milliseconds (bench/METHOD.md, "The example's body clock").
 */
class BodyClock {
  /** Watched bodies in [0, #count); the places past it hold nothing, and the list never shrinks. */
  readonly #watched: Array<BodyWatch | undefined> = [];
  #count = 0;
  readonly #timer: NodeJS.Timeout;

  constructor(readonly timeoutMs: number) {
    this.#timer = setInterval(() => this.#tick(), Math.max(1, timeoutMs / TICKS_PER_TIMEOUT));
    this.#timer.unref();
  }

  watch(body: BodyWatch): void {
    if (body.at >= 0) return;
    body.at = this.#count;
    this.#watched[this.#count++] = body;
  }

  unwatch(body: BodyWatch): void {
    const at = body.at;
    if (at < 0) return;
    body.at = -1;
    const last = this.#watched[--this.#count] as BodyWatch;
    this.#watched[this.#count] = undefined;
    if (last !== body) {
      this.#watched[at] = last;
      last.at = at;
    }
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #tick(): void {
    let expired: BodyWatch[] | undefined;
    // From the end: a body that leaves takes the last one's place, which was already visited.
    for (let i = this.#count - 1; i >= 0; i--) {
      const body = this.#watched[i] as BodyWatch;
      if (body.progressed) {
        body.progressed = false;
        body.idleTicks = 0;
      } else if (++body.idleTicks >= TICKS_PER_TIMEOUT) {
        this.unwatch(body);
        (expired ??= []).push(body);
      }
    }
    // After the walk: an answer may close sockets, and so unwatch other bodies.
    if (expired !== undefined) for (const body of expired) body.expire();
  }
}

/**
 * Reads `req` to its end, handing each chunk to `onChunk`, then calls `onDone` exactly once:
 * with no argument at `end`; with the error as soon as the request is aborted or fails, `onChunk`
 * throws, or `clock` finds no chunk arrived for its timeout ({@link BodyTimeoutError}). After an
 * error the rest of the body is read and dropped.
 */
function readBody(req: http.IncomingMessage, clock: BodyClock, onChunk: (chunk: Buffer) => void, onDone: (err?: unknown) => void): void {
  let finished = false;
  const finish = (err?: unknown): void => {
    if (finished) return;
    finished = true;
    clock.unwatch(watch);
    onDone(err);
  };
  const watch: BodyWatch = { progressed: true, idleTicks: 0, at: -1, expire: () => finish(new BodyTimeoutError(clock.timeoutMs)) };
  clock.watch(watch);
  req.on('data', (chunk: Buffer) => {
    if (finished) return;
    watch.progressed = true;
    try {
      onChunk(chunk);
    } catch (err) {
      finish(err);
    }
  });
  req.on('end', () => finish());
  req.on('error', finish);
  req.on('close', () => {
    if (!req.complete) finish(new Error('request aborted'));
  });
}

/** The answer to an error that no branch of the request path expected. */
function answerUnexpected(res: http.ServerResponse, err: unknown): void {
  if (!res.headersSent) sendJson(res, 500, { error: String(err) }, { connection: 'close' });
  else res.destroy();
}

/** `POST /digest`: see the file comment. Every buffer it allocates is freed before it returns or in `onDone`. */
function digest(req: http.IncomingMessage, res: http.ServerResponse, conn: Connection, policy: BodyPolicy, clock: BodyClock): void {
  const { scope } = conn;
  const { quotaBytes, chunkSlotBytes } = policy;
  const handles: ResourceHandle[] = [];
  let bytes = 0;
  let onChunk: (chunk: Buffer) => void;
  let finishHash: (hash: Hash) => void;
  const lengthHeader = req.headers['content-length'];
  const length = lengthHeader === undefined ? -1 : Number(lengthHeader);
  if (length > 0) {
    let h: ResourceHandle;
    try {
      h = scope.allocate('buffer', length);
    } catch (err) {
      // Nothing read yet: Node drains the declared body, and the connection stays usable.
      if (err instanceof ResourceLimitError) return sendRefusal(res, err, length, quotaBytes);
      if (err instanceof InvalidSizeError) {
        // larger than maxAllocationSize: not worth draining
        return sendJson(res, 413, { error: err.code, message: err.message, requested: length }, { connection: 'close' });
      }
      throw err;
    }
    handles.push(h);
    const buf = h.buffer!;
    onChunk = (chunk) => {
      bytes += chunk.copy(buf, bytes);
    };
    finishHash = (hash) => void hash.update(bytes === buf.length ? buf : buf.subarray(0, bytes));
  } else if (length === 0) {
    onChunk = () => undefined;
    finishHash = () => undefined;
  } else {
    // Chunked: packed into slots of chunkSlotBytes; `filled` bytes of the last one are used.
    let filled = chunkSlotBytes;
    onChunk = (chunk) => {
      let at = 0;
      while (at < chunk.length) {
        if (filled === chunkSlotBytes) {
          try {
            handles.push(scope.allocate('buffer', chunkSlotBytes));
          } catch (err) {
            // the refused body's size: what was received, this chunk included
            if (err instanceof ResourceLimitError) throw new ChunkedRefusal(err, bytes + chunk.length - at);
            throw err;
          }
          filled = 0;
        }
        const copied = chunk.copy(handles[handles.length - 1].buffer!, filled, at);
        filled += copied;
        at += copied;
        bytes += copied;
      }
    };
    finishHash = (hash) => handles.forEach((h, i) => hash.update(i === handles.length - 1 ? h.buffer!.subarray(0, filled) : h.buffer!));
  }
  readBody(req, clock, onChunk, (err) => {
    try {
      if (err === undefined) {
        const hash = createHash('sha256');
        finishHash(hash);
        sendJson(res, 200, { channel: scope.channelId, bytes, sha256: hash.digest('hex'), buffers: handles.length });
      } else if (err instanceof BodyTimeoutError) {
        // Free the body now (below), answer, and close: the rest of the body is not read.
        sendJson(res, 408, { error: 'body timeout', message: err.message, received: bytes }, { connection: 'close' });
      } else if (err instanceof ChunkedRefusal) {
        // An unbounded body: answer now and close the connection after the answer.
        sendRefusal(res, err.cause, err.bodyBytes, quotaBytes, { connection: 'close' });
      } else {
        answerUnexpected(res, err);
      }
    } catch (answerErr) {
      answerUnexpected(res, answerErr);
    } finally {
      try {
        // After the socket closed, closeChannel has freed (and revoked) these already.
        if (conn.open) for (const h of handles) scope.deallocate(h);
      } catch (freeErr) {
        // Never from a listener or the clock's tick: it would stop the server or the sweep.
        answerUnexpected(res, freeErr);
      }
    }
  });
}

/** Starts the service; see the file comment. */
export async function startServer(options: ServerOptions = {}): Promise<RunningServer> {
  const { port = 0, host = '127.0.0.1', quotaBytes = 4 * MiB, maxChannels = 100, bodyTimeoutMs = 10_000, chunkSlotBytes = 64 * KiB } = options;
  const ownsManager = options.manager === undefined;
  const manager = options.manager ?? new ResourceManager({ autoOpenChannels: false });
  const globalBytes = options.globalBytes ?? (ownsManager ? DEFAULT_GLOBAL_BYTES : undefined);
  if (globalBytes !== undefined) manager.setResourceLimits('buffer', { maxBytes: globalBytes });
  const policy: BodyPolicy = { quotaBytes, chunkSlotBytes };
  const clock = new BodyClock(bodyTimeoutMs);
  const registry = new Registry();
  const exported = registerIsopoolMetrics(manager, { registry, maxChannels });
  const connections = new WeakMap<Socket, Connection>();
  let connectionCount = 0;

  const server = http.createServer((req, res) => {
    const conn = connections.get(req.socket);
    if (conn === undefined || !conn.open) {
      sendJson(res, 503, { error: 'connection not registered' }, { connection: 'close' });
      return;
    }
    try {
      if (req.method === 'POST' || req.method === 'PUT') {
        digest(req, res, conn, policy, clock);
      } else if (req.method === 'GET' && (req.url ?? '/').split('?')[0] === '/metrics') {
        registry.metrics().then(
          (text) => {
            res.writeHead(200, { 'content-type': registry.contentType });
            res.end(text);
          },
          (err: unknown) => answerUnexpected(res, err),
        );
      } else {
        sendJson(res, 404, { error: 'POST a body to /digest, or GET /metrics' });
      }
    } catch (err) {
      answerUnexpected(res, err);
    }
  });

  server.on('connection', (socket: Socket) => {
    const channelId = `conn-${++connectionCount}`;
    // Immediate reuse is safe here, and only because of how digest uses its buffers: Node only
    // reads *from* the request into them (`chunk.copy`), the hash reads them synchronously, and
    // no buffer is ever handed to a socket, stream, fs or crypto call that could still run when it
    // is freed. A handler that writes a pooled buffer out must keep the default (deferred reuse)
    // or free it through `scope.write`. With the default, every body would cost an external
    // ArrayBuffer and fresh pages until the collector frees it (bench/SERVICE.md).
    const channel = { limits: { '*': { maxBytes: quotaBytes } }, unsafeImmediateReuse: true };
    const conn: Connection = { scope: manager.openChannel(channelId, channel), open: true };
    connections.set(socket, conn);
    socket.once('close', () => {
      conn.open = false;
      try {
        manager.closeChannel(channelId);
      } catch {
        // the manager was closed first: its close() released everything
      }
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;

  let closing: Promise<void> | undefined;
  return {
    url,
    manager,
    registry,
    server,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }).then(() => {
        clock.stop();
        exported.unregister();
        if (ownsManager) manager.close();
      });
      return closing;
    },
  };
}

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (require.main === module) {
  const port = Number(argValue('--port') ?? process.env.PORT ?? 8080);
  const quotaBytes = Number(argValue('--quota-bytes') ?? 4 * MiB);
  const globalBytes = Number(argValue('--global-bytes') ?? DEFAULT_GLOBAL_BYTES);
  const bodyTimeoutMs = Number(argValue('--body-timeout-ms') ?? 10_000);
  startServer({ port, quotaBytes, globalBytes, bodyTimeoutMs }).then(
    (running) => {
      console.log(`isopool example server on ${running.url} (quota ${quotaBytes} bytes per connection, ${globalBytes} in all; body timeout ${bodyTimeoutMs} ms)`);
      console.log(`  curl --data-binary @somefile ${running.url}/digest`);
      console.log(`  curl ${running.url}/metrics`);
      const stop = (): void => {
        void running.close().then(() => process.exit(0));
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
