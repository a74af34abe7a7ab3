/**
 * Hard limits as readers see them (SPEC "Limits", §3): two worker_threads hammer one channel of
 * a shared manager past a hard limit of 8 x 4 KiB while the main thread reads
 * getResourceMetrics() and the Prometheus text in a loop. No reading of the channel's
 * bytesInUse or peakBytes, in either, may ever be above the limit: a refused allocation must
 * never be visible, not even for an instant.
 */
import { expect } from 'chai';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { Registry } from 'prom-client';
import { ResourceManager } from '../lib';
import type { ChannelOptions } from '../lib';
import { registerIsopoolMetrics } from '../lib/prometheus';
import { SMALL_POOLS } from './helpers';

const WORKER = path.join(__dirname, 'fixtures', 'thread-worker.js');
const SLOT = 4096;
const LIMIT = 8 * SLOT;

type Reply = { ok: true; [key: string]: unknown } | { ok: false; code: string; message: string };

/** A worker of test/fixtures/thread-worker.ts: the first message is its ready reply. */
function startWorker(shared: string): { worker: Worker; next: () => Promise<Reply> } {
  const worker = new Worker(WORKER, { workerData: { shared, pools: SMALL_POOLS } });
  const replies: Reply[] = [];
  const waiting: Array<(r: Reply) => void> = [];
  worker.on('message', (r: Reply) => {
    const w = waiting.shift();
    if (w) w(r);
    else replies.push(r);
  });
  const next = (): Promise<Reply> => {
    const r = replies.shift();
    if (r) return Promise.resolve(r);
    return new Promise((resolve, reject) => {
      waiting.push(resolve);
      worker.once('error', reject);
    });
  };
  return { worker, next };
}

/** The value of `name{channel="<channel>"}` in a Prometheus text exposition. */
function sample(text: string, name: string, channel: string): number {
  const prefix = `${name}{channel="${channel}"} `;
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  expect(line, `${prefix}line`).to.be.a('string');
  return Number((line as string).slice(prefix.length));
}

let seq = 0;

async function hammerWhileReading(limits: ChannelOptions['limits']): Promise<void> {
  const shared = `limits-threads-${process.pid}-${++seq}`;
  const m = new ResourceManager({ shared, pools: SMALL_POOLS });
  const registry = new Registry();
  registerIsopoolMetrics(m, { registry });
  m.openChannel('hot', { limits });
  const peers = [startWorker(shared), startWorker(shared)];
  try {
    for (const p of peers) expect(await p.next(), 'worker attached').to.deep.include({ ok: true, ready: true });
    // Each worker wants 6 of the 8 slots: both run into the limit, and make room on a refusal.
    const cmd = { op: 'churn', channel: 'hot', iterations: 200000, size: SLOT, hold: 6 };
    let running = peers.length;
    const done = peers.map(async (p) => {
      p.worker.postMessage(cmd);
      const r = await p.next();
      running--;
      return r;
    });
    let reads = 0;
    let texts = 0;
    const highest = { bytesInUse: 0, peakBytes: 0, promBytes: 0, promPeak: 0 };
    while (running > 0) {
      // Many metrics reads for each text exposition: the window a refused charge was visible
      // in lasted a few atomic operations.
      for (let i = 0; i < 50; i++) {
        const c = m.getResourceMetrics().channels.hot;
        highest.bytesInUse = Math.max(highest.bytesInUse, c.bytesInUse);
        highest.peakBytes = Math.max(highest.peakBytes, c.peakBytes);
        reads++;
      }
      const text = await registry.metrics();
      highest.promBytes = Math.max(highest.promBytes, sample(text, 'isopool_channel_bytes_in_use', 'hot'));
      highest.promPeak = Math.max(highest.promPeak, sample(text, 'isopool_channel_peak_bytes', 'hot'));
      texts++;
      // registry.metrics() settles in microtasks: let the workers' replies in.
      await new Promise((resolve) => setImmediate(resolve));
    }
    const replies = await Promise.all(done);
    let refused = 0;
    for (const r of replies) {
      if (!r.ok) throw new Error(`worker hammer failed: ${r.code} ${r.message}`);
      refused += r.refused as number;
    }
    expect(highest, `no read above ${LIMIT} bytes in ${reads} metrics reads and ${texts} texts`).to.deep.equal({
      bytesInUse: Math.min(highest.bytesInUse, LIMIT),
      peakBytes: Math.min(highest.peakBytes, LIMIT),
      promBytes: Math.min(highest.promBytes, LIMIT),
      promPeak: Math.min(highest.promPeak, LIMIT),
    });
    expect(refused, 'the workers ran into the limit').to.be.greaterThan(0);
    expect(texts, 'the main thread read while they did').to.be.greaterThan(10);
    const after = m.getResourceMetrics().channels.hot;
    expect(after.peakBytes, 'the peak is the limit, reached and never passed').to.equal(LIMIT);
    expect(after.bytesInUse, 'all freed').to.equal(0);
    expect(after.limitRejections, 'every refusal counted once').to.equal(refused);
  } finally {
    await Promise.all(peers.map((p) => p.worker.terminate()));
    m.close();
  }
}

describe('hard limits as readers see them (threads)', function () {
  this.timeout(120000);

  it('a channel-type limit of 8 x 4 KiB: no reading of bytesInUse or peakBytes above it', async () => {
    await hammerWhileReading({ buffer: { maxBytes: LIMIT } });
  });

  it('a channel-total limit of 8 x 4 KiB: no reading of bytesInUse or peakBytes above it', async () => {
    await hammerWhileReading({ '*': { maxBytes: LIMIT } });
  });
});
