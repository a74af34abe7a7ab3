/**
 * An HTTP service on isopool: every TCP connection is a channel with its own byte quota.
 *
 * - `POST /digest` (any path but `/metrics`): reads the request body into pooled buffers and
 *   answers `{ channel, bytes, sha256, buffers }`.
 *   - With `Content-Length`: one pooled buffer of exactly that size; the chunks are copied in.
 *   - Chunked (no length): one pooled buffer per chunk.
 *   - A body that does not fit the connection's quota is refused with `413` and a JSON body
 *     naming the limit; the other connections are served as usual. When the size was declared,
 *     nothing was read yet and the connection stays usable; for a chunked body the connection is
 *     closed after the 413 (the rest of an unbounded body is not read).
 * - `GET /metrics`: Prometheus text exposition (isopool/prometheus over a prom-client Registry).
 *
 * A connection opens channel `conn-<n>` with `limits: {'*': {maxBytes}}`; closing the socket
 * closes the channel, which frees (and revokes) whatever the connection still held.
 *
 *   npm run start:server -- --port 8080 [--quota-bytes 4194304]
 *   curl --data-binary @file http://127.0.0.1:8080/digest ; curl http://127.0.0.1:8080/metrics
 *
 * For tests: `startServer({ port: 0 })` resolves to `{ url, manager, registry, close() }`.
 */
import { createHash } from 'node:crypto';
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

const MiB = 1024 * 1024;

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function refusal(err: ResourceLimitError): Record<string, unknown> {
  return { error: err.code, message: err.message, limit: err.limit, requested: err.requested, inUse: err.inUse, scope: err.scope };
}

/**
 * Reads `req` to its end, handing each chunk to `onChunk`. Resolves on `end`; rejects if the
 * request is aborted or fails. Once `onChunk` throws, the rest is read and dropped and the
 * error is what the promise rejects with.
 */
function readBody(req: http.IncomingMessage, onChunk: (chunk: Buffer) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let failure: unknown;
    let failed = false;
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      try {
        onChunk(chunk);
      } catch (err) {
        failed = true;
        failure = err;
        reject(err);
      }
    });
    req.on('end', () => (failed ? reject(failure) : resolve()));
    req.on('error', reject);
    req.on('close', () => {
      if (!req.complete) reject(new Error('request aborted'));
    });
  });
}

async function digest(req: http.IncomingMessage, res: http.ServerResponse, conn: Connection): Promise<void> {
  const { scope } = conn;
  const handles: ResourceHandle[] = [];
  const hash = createHash('sha256');
  let bytes = 0;
  const lengthHeader = req.headers['content-length'];
  try {
    if (lengthHeader !== undefined) {
      const length = Number(lengthHeader);
      if (length > 0) {
        let h: ResourceHandle;
        try {
          h = scope.allocate('buffer', length);
        } catch (err) {
          // Nothing read yet: Node drains the declared body, and the connection stays usable.
          if (err instanceof ResourceLimitError) return sendJson(res, 413, refusal(err));
          if (err instanceof InvalidSizeError) {
            // larger than maxAllocationSize: not worth draining
            return sendJson(res, 413, { error: err.code, message: err.message }, { connection: 'close' });
          }
          throw err;
        }
        handles.push(h);
        const buf = h.buffer!;
        await readBody(req, (chunk) => {
          bytes += chunk.copy(buf, bytes);
        });
        hash.update(buf.subarray(0, bytes));
      } else {
        await readBody(req, () => undefined);
      }
    } else {
      try {
        await readBody(req, (chunk) => {
          const h = scope.allocate('buffer', chunk.length);
          handles.push(h);
          chunk.copy(h.buffer!);
          bytes += chunk.length;
        });
      } catch (err) {
        if (err instanceof ResourceLimitError) {
          // An unbounded body: answer now and close the connection after the answer.
          return sendJson(res, 413, refusal(err), { connection: 'close' });
        }
        throw err;
      }
      for (const h of handles) hash.update(h.buffer!);
    }
    sendJson(res, 200, { channel: scope.channelId, bytes, sha256: hash.digest('hex'), buffers: handles.length });
  } finally {
    // After the socket closed, closeChannel has freed (and revoked) these already.
    if (conn.open) for (const h of handles) scope.deallocate(h);
  }
}

/** Starts the service; see the file comment. */
export async function startServer(options: ServerOptions = {}): Promise<RunningServer> {
  const { port = 0, host = '127.0.0.1', quotaBytes = 4 * MiB, maxChannels = 100 } = options;
  const ownsManager = options.manager === undefined;
  const manager = options.manager ?? new ResourceManager({ autoOpenChannels: false });
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
    const path = (req.url ?? '/').split('?')[0];
    const route =
      path === '/metrics' && req.method === 'GET'
        ? registry.metrics().then((text) => {
            res.writeHead(200, { 'content-type': registry.contentType });
            res.end(text);
          })
        : req.method === 'POST' || req.method === 'PUT'
          ? digest(req, res, conn)
          : Promise.resolve(sendJson(res, 404, { error: 'POST a body to /digest, or GET /metrics' }));
    route.catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: String(err) }, { connection: 'close' });
      else res.destroy();
    });
  });

  server.on('connection', (socket: Socket) => {
    const channelId = `conn-${++connectionCount}`;
    const conn: Connection = { scope: manager.openChannel(channelId, { limits: { '*': { maxBytes: quotaBytes } } }), open: true };
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
  startServer({ port, quotaBytes }).then(
    (running) => {
      console.log(`isopool example server on ${running.url} (quota ${quotaBytes} bytes per connection)`);
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
