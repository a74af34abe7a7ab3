/**
 * The baseline of `npm run bench:service`: examples/server.ts's `POST /digest` in plain Node.
 * The body is read with `Buffer.concat`, hashed with sha256 and answered with the same JSON shape,
 * `{ channel, bytes, sha256, buffers }` (`channel` names the connection, `buffers` is 1). A
 * declared `Content-Length` over the connection quota is refused with `413` before anything is
 * read, as the example does (a chunked body over it is refused once it is, and the connection
 * closed). No pooling, per-connection accounting, body timeout or metrics.
 * @packageDocumentation
 */
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** Options of {@link startPlainServer}. */
export interface PlainServerOptions {
  /** TCP port; 0 (the default) picks a free one. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Largest body one request may send (default 4 MiB, examples/server.ts's quota). */
  quotaBytes?: number;
  /**
   * A control for `bench:service --plain-busy-us`: CPU time (µs) the server spends on purpose on
   * each answered body, in a busy loop. Default 0.
   */
  busyMicros?: number;
}

/** A running plain server. */
export interface RunningPlainServer {
  /** `http://host:port`. */
  url: string;
  server: http.Server;
  close(): Promise<void>;
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function tooLarge(res: http.ServerResponse, bytes: number, quotaBytes: number, headers: http.OutgoingHttpHeaders = {}): void {
  sendJson(
    res,
    413,
    { error: 'ERR_RESOURCE_LIMIT', message: `a body of ${bytes} bytes is over the connection quota of ${quotaBytes} bytes`, limit: quotaBytes, requested: bytes, scope: 'channel' },
    headers,
  );
}

/** Starts the plain service on `host:port`. */
export async function startPlainServer(options: PlainServerOptions = {}): Promise<RunningPlainServer> {
  const { port = 0, host = '127.0.0.1', quotaBytes = 4 * 1024 * 1024, busyMicros = 0 } = options;
  const busy = BigInt(Math.round(busyMicros * 1000));
  const names = new WeakMap<Socket, string>();
  let connectionCount = 0;

  const server = http.createServer((req, res) => {
    const channel = names.get(req.socket) ?? 'unknown';
    if (req.method !== 'POST' && req.method !== 'PUT') {
      sendJson(res, 404, { error: 'POST a body to /digest' });
      return;
    }
    const lengthHeader = req.headers['content-length'];
    if (lengthHeader !== undefined && Number(lengthHeader) > quotaBytes) {
      // Nothing read yet: Node drains the declared body, and the connection stays usable.
      tooLarge(res, Number(lengthHeader), quotaBytes);
      return;
    }
    const chunks: Buffer[] = [];
    let bytes = 0;
    let refused = false;
    req.on('data', (chunk: Buffer) => {
      if (refused) return;
      bytes += chunk.length;
      if (bytes > quotaBytes) {
        refused = true;
        chunks.length = 0;
        tooLarge(res, bytes, quotaBytes, { connection: 'close' });
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (refused) return;
      const body = Buffer.concat(chunks, bytes);
      const sha256 = createHash('sha256').update(body).digest('hex');
      if (busy > 0n) {
        const until = process.hrtime.bigint() + busy;
        while (process.hrtime.bigint() < until);
      }
      sendJson(res, 200, { channel, bytes, sha256, buffers: 1 });
    });
    req.on('error', () => res.destroy());
  });

  server.on('connection', (socket: Socket) => {
    names.set(socket, `conn-${++connectionCount}`);
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
    server,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
