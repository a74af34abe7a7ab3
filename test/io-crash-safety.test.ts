/**
 * Crash safety of Node core I/O on pooled buffers revoked in flight (SPEC §2: "Node core I/O
 * still running when a buffer is freed"). Each scenario of fixtures/io-crash-child.ts runs in its
 * own child process (mocha has its own uncaughtException handler, and a crash must not take the
 * suite down), once for each way of revoking a default channel's buffers while the I/O is in
 * flight: deallocating the handles, `closeChannel`, `close()`, and `transferHandle` followed by
 * adoption and a free of the adopted copy.
 *
 * Every run must show:
 * - the child exits normally (no signal, code 0) and records no uncaught exception or unhandled
 *   rejection;
 * - every stream it watched ends as a stream that was never disturbed does, 'close' included,
 *   within 5 s;
 * - the same open descriptors after the run as before it;
 * - no byte of the other channel (SECRET) in what the I/O delivered, the exact original bytes
 *   delivered (the I/O completed on intact memory), and no byte of the I/O in the other channel's
 *   buffers.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import path from 'node:path';
import type { Result, Revocation } from './fixtures/io-crash-child';
import { nodeCommand } from './helpers';

const CHILD = path.join(__dirname, 'fixtures', 'io-crash-child.js');

/**
 * Each scenario with the terminal events of each stream it watches, as an undisturbed run emits them
 * (an http2 server stream that responded and ended emits 'end' and 'close' but no 'finish', on
 * Node 20, 24 and 26 alike).
 */
const SCENARIOS: ReadonlyArray<{ name: string; what: string; streams: Record<string, string[]> }> = [
  {
    name: 'net-onread',
    what: 'a net socket reading into the pooled buffer (onread), revoked while the socket is open',
    streams: { client: ['close', 'end', 'finish'], peer: ['close', 'end', 'finish'] },
  },
  {
    name: 'fs-write-stream',
    what: 'fs.createWriteStream with a write queued in a held threadpool and two more buffered',
    streams: { writeStream: ['close', 'finish'] },
  },
  {
    name: 'tls-write',
    what: 'a TLS socket writing 4 MiB to a peer that reads nothing yet',
    streams: { client: ['close', 'end', 'finish'], peer: ['close', 'end', 'finish'] },
  },
  {
    name: 'http-request-body',
    what: 'an HTTP request body of 4 MiB to a server that reads nothing yet',
    streams: { request: ['close', 'finish'], response: ['close', 'end'] },
  },
  {
    name: 'http-response-body',
    what: 'an HTTP response body of 4 MiB to a client that reads nothing yet',
    streams: { serverResponse: ['close', 'finish'], request: ['close', 'finish'], response: ['close', 'end'] },
  },
  {
    name: 'http2-request-body',
    what: 'an http2 request body of 4 MiB (cleartext, loopback) to a server stream that reads nothing yet',
    streams: { request: ['close', 'end', 'finish'], serverStream: ['close', 'end'] },
  },
  {
    name: 'http2-response-body',
    what: 'an http2 response body of 4 MiB (cleartext, loopback) to a client stream that reads nothing yet',
    streams: { serverStream: ['close', 'end'], request: ['close', 'end', 'finish'] },
  },
  {
    name: 'dgram-send',
    what: 'eight dgram sends from a socket not bound yet, revoked before their callbacks',
    streams: { receiver: ['close'], sender: ['close'] },
  },
  {
    name: 'child-stdin',
    what: "4 MiB written to a child process's stdin that it reads only after 300 ms",
    streams: { child: ['close'], stdin: ['close', 'finish'] },
  },
  {
    name: 'zlib-async',
    what: 'zlib.deflateRaw queued behind a held threadpool',
    streams: {},
  },
  {
    name: 'crypto-async',
    what: 'crypto.randomFill queued behind a held threadpool',
    streams: {},
  },
];

const REVOCATIONS: ReadonlyArray<{ mode: Revocation; what: string }> = [
  { mode: 'free', what: 'deallocating the handles' },
  { mode: 'closeChannel', what: 'closeChannel of their channel' },
  { mode: 'close', what: 'close() of the manager' },
  { mode: 'transfer', what: 'transferHandle, adoption and free of the handles' },
];

/** How a child ended and what it printed. */
interface ChildRun {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

function runChild(scenario: string, mode: Revocation): Promise<ChildRun> {
  return new Promise((resolve) => {
    execFile(
      ...nodeCommand(['--expose-gc', CHILD, scenario, mode]),
      { encoding: 'utf8', timeout: 30000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: unknown; signal?: unknown }) | null;
        resolve({
          code: e === null ? 0 : typeof e.code === 'number' ? e.code : null,
          signal: e !== null && typeof e.signal === 'string' ? e.signal : null,
          stdout,
          stderr,
        });
      },
    );
  });
}

/** Runs `jobs` with at most `width` at a time; each promise settles with its own job. */
function limited<T>(jobs: Array<() => Promise<T>>, width: number): Array<Promise<T>> {
  let running = 0;
  const queue: Array<() => void> = [];
  const next = (): void => {
    if (running < width) queue.shift()?.();
  };
  return jobs.map(
    (job) =>
      new Promise<T>((resolve, reject) => {
        queue.push(() => {
          running++;
          job()
            .then(resolve, reject)
            .finally(() => {
              running--;
              next();
            });
        });
        next();
      }),
  );
}

function sorted(events: string[] | undefined): string[] {
  return [...(events ?? [])].sort();
}

describe('in-flight Node I/O on revoked buffers: crash safety (child processes)', function () {
  this.timeout(60000);

  const runs = new Map<string, Promise<ChildRun>>();

  before(() => {
    const keys: string[] = [];
    const jobs: Array<() => Promise<ChildRun>> = [];
    for (const s of SCENARIOS) {
      for (const r of REVOCATIONS) {
        keys.push(`${s.name}/${r.mode}`);
        jobs.push(() => runChild(s.name, r.mode));
      }
    }
    limited(jobs, 3).forEach((p, i) => runs.set(keys[i]!, p));
  });

  for (const s of SCENARIOS) {
    describe(s.what, () => {
      for (const r of REVOCATIONS) {
        it(`${r.what} in flight: no crash, streams end, descriptors closed, no other channel's bytes, original bytes delivered`, async () => {
          const run = await runs.get(`${s.name}/${r.mode}`)!;
          const tail = run.stderr.split('\n').slice(-12).join('\n');
          expect({ code: run.code, signal: run.signal }, `the child exits with code 0 and no signal; stderr:\n${tail}`).to.deep.equal({ code: 0, signal: null });
          const line = run.stdout.trim().split('\n').pop() ?? '';
          const result = JSON.parse(line) as Result;
          expect(result.uncaught, 'uncaught exceptions and unhandled rejections in the child').to.deep.equal([]);
          const events: Record<string, string[]> = {};
          for (const [name, seen] of Object.entries(result.events)) events[name] = sorted(seen);
          const expected: Record<string, string[]> = {};
          for (const [name, seen] of Object.entries(s.streams)) expected[name] = sorted(seen);
          expect(events, "each stream's terminal events within 5 s (sorted; 'timeout' when 'close' never came)").to.deep.equal(expected);
          expect(result.fdsLeft, 'descriptors opened by the run and still open').to.deep.equal([]);
          expect(result.fdAfter, 'open descriptors after the run (baseline before it)').to.equal(result.fdBaseline);
          expect(result.secretBytes, 'SECRET bytes (written by the other channel) delivered by the I/O').to.equal(0);
          expect(result.foreignBytes, "bytes changed in the other channel's buffers").to.equal(0);
          expect(result.intact, 'the I/O delivered exactly the original bytes').to.equal(true);
        });
      }
    });
  }
});
