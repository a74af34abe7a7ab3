/**
 * A paced HTTP load for `npm run bench:service -- --rate=R`: `connections` keep-alive sockets,
 * each sending `POST /digest` on a fixed schedule, so that R requests a second reach the server
 * evenly spread over time whatever it answers. Then two servers answer the same requests at the
 * same pace, and their CPU per request compares their work alone.
 *
 * autocannon's `overallRate` does not do this: each connection sends its share of a second as
 * fast as it is answered, then waits for the next second, so a server still meets bursts at
 * full speed (bench/METHOD.md).
 *
 * A connection sends at most one request at a time (no pipelining). A request whose turn comes
 * while the previous one is unanswered goes out as soon as that answer arrives: a server that
 * cannot keep up falls behind the schedule, which the achieved rate shows.
 * @packageDocumentation
 */
import * as net from 'node:net';

/** What one load did (a paced one, or service.ts's autocannon one). */
export interface LoadResult {
  /** Responses of any status. */
  responses: number;
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  wallS: number;
  /** Latencies of the 2xx responses, ms (paced: from the request's send to its last byte). */
  latencies: number[];
  /** The load generator's own CPU (this process), µs. */
  loaderCpuMicros: number;
}

/** One response in the making: headers, then `Content-Length` body bytes. */
class ResponseReader {
  #pending: Buffer = Buffer.alloc(0);
  #status = 0;
  #bodyLeft = -1;

  /** Feeds bytes; returns the statuses of the responses they completed. */
  feed(chunk: Buffer): number[] {
    const done: number[] = [];
    this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    for (;;) {
      if (this.#bodyLeft < 0) {
        const end = this.#pending.indexOf('\r\n\r\n');
        if (end < 0) return done;
        const head = this.#pending.subarray(0, end).toString('latin1');
        this.#status = Number(head.slice(9, 12));
        const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
        if (length === null) throw new Error(`a response without Content-Length: ${JSON.stringify(head.slice(0, 200))}`);
        this.#bodyLeft = Number(length[1]);
        this.#pending = this.#pending.subarray(end + 4);
      }
      if (this.#pending.length < this.#bodyLeft) return done;
      this.#pending = this.#pending.subarray(this.#bodyLeft);
      this.#bodyLeft = -1;
      done.push(this.#status);
    }
  }
}

/**
 * Sends `rate` requests a second in all over `connections` sockets to `url` for `seconds`,
 * then waits for the answers still due (up to `timeoutS`) and closes the sockets.
 */
export function pacedLoad(url: string, body: Buffer, connections: number, seconds: number, rate: number, timeoutS = 10): Promise<LoadResult> {
  const { hostname, port } = new URL(url);
  const request = Buffer.concat([
    Buffer.from(`POST /digest HTTP/1.1\r\nHost: ${hostname}:${port}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n`, 'latin1'),
    body,
  ]);
  const intervalMs = (1000 * connections) / rate;
  const result: LoadResult = { responses: 0, ok: 0, non2xx: 0, errors: 0, timeouts: 0, wallS: 0, latencies: [], loaderCpuMicros: 0 };
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const stopSendingAt = t0 + seconds * 1000;
  let lastAnswer = t0;

  return new Promise((resolve) => {
    let open = connections;
    const closed = (): void => {
      if (--open > 0) return;
      const cpu = process.cpuUsage(cpu0);
      result.loaderCpuMicros = cpu.user + cpu.system;
      result.wallS = (lastAnswer - t0) / 1000;
      resolve(result);
    };
    for (let i = 0; i < connections; i++) {
      const socket = net.connect(Number(port), hostname);
      socket.setNoDelay(true);
      const reader = new ResponseReader();
      let next = t0 + (i * intervalMs) / connections; // the connections' turns interleave
      let sentAt = -1; // in flight since; -1: idle
      let due = false; // its turn came while a request was in flight
      let timer: NodeJS.Timeout | null = null;
      let finished = false;
      const finish = (): void => {
        if (finished) return;
        finished = true;
        if (timer !== null) clearTimeout(timer);
        socket.destroy();
        closed();
      };
      const send = (): void => {
        sentAt = performance.now();
        socket.write(request);
      };
      const turn = (): void => {
        timer = null;
        if (performance.now() >= stopSendingAt) {
          if (sentAt < 0) finish();
          return;
        }
        if (sentAt < 0) send();
        else due = true;
        next += intervalMs;
        timer = setTimeout(turn, Math.max(0, next - performance.now()));
      };
      socket.on('connect', () => {
        timer = setTimeout(turn, Math.max(0, next - performance.now()));
      });
      socket.on('data', (chunk: Buffer) => {
        let statuses: number[];
        try {
          statuses = reader.feed(chunk);
        } catch {
          result.errors++;
          finish();
          return;
        }
        for (const status of statuses) {
          const now = performance.now();
          result.responses++;
          if (status >= 200 && status < 300) {
            result.ok++;
            result.latencies.push(now - sentAt);
          } else {
            result.non2xx++;
          }
          lastAnswer = Math.max(lastAnswer, now);
          sentAt = -1;
          if (now >= stopSendingAt) {
            finish();
            return;
          }
          if (due) {
            due = false;
            send();
          }
        }
      });
      socket.setTimeout(timeoutS * 1000, () => {
        result.timeouts++;
        finish();
      });
      socket.on('error', () => {
        result.errors++;
        finish();
      });
      socket.on('close', finish);
    }
  });
}
