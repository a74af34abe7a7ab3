/**
 * One server of `npm run bench:service`, in its own process so that its CPU time is its own:
 * `node service-child.js isopool|plain QUOTA_BYTES [PLAIN_BUSY_US] [ACCESS]`, forked with an IPC channel.
 * ACCESS (`revocable`, the default, or `view`) is a control: the access mode of the isopool
 * server's channels, set as its manager's `channelDefaults.access`.
 *
 * Messages: the child sends `{ type: 'ready', url }` once listening. It answers
 * `{ type: 'usage' }` with `{ type: 'usage', cpuMicros, rssBytes, monoMicros }` (`process.cpuUsage()`
 * user + system since the process started, the resident set size, and `process.hrtime()` in µs,
 * the clock of a `--cpu-prof` profile), `{ type: 'stats' }` with what the isopool server's manager
 * did (null from the plain one), and `{ type: 'stop' }` by
 * closing the server and exiting (which writes a `--cpu-prof` profile).
 * @packageDocumentation
 */
import { DEFAULT_GLOBAL_BYTES, startServer } from '../examples/server';
import { ResourceManager } from '../lib';
import { startPlainServer } from './plain-server';

/** A message from the parent. */
export type ChildRequest = { type: 'usage' } | { type: 'stats' } | { type: 'stop' };

/** What the isopool server's manager did (`getResourceMetrics()`), for the report. */
export interface PoolStats {
  allocations: number;
  revocation: string;
  buffersCreated: number;
  buffersReused: number;
  pendingRelease: number;
  fastLaneAllocations: number;
  /** The pools that served allocations. */
  pools: Array<{ name: string; slotSize: number; queueSize: number; hits: number; misses: number; releasedToSystem: number; reservedBytes: number }>;
}
/** A message to the parent. */
export type ChildReply =
  | { type: 'ready'; url: string }
  | { type: 'usage'; cpuMicros: number; rssBytes: number; monoMicros: number }
  | { type: 'stats'; stats: PoolStats | null }
  | { type: 'failed'; error: string };

async function main(): Promise<void> {
  const [kind, quota, busy = '0', access = 'revocable'] = process.argv.slice(2);
  const quotaBytes = Number(quota);
  if (!(quotaBytes > 0)) throw new Error(`usage: service-child.js isopool|plain QUOTA_BYTES`);
  if (kind !== 'isopool' && kind !== 'plain') throw new Error(`unknown server ${JSON.stringify(kind)}: isopool or plain`);
  if (access !== 'revocable' && access !== 'view') throw new Error(`unknown access ${JSON.stringify(access)}: revocable or view`);
  // The example's own manager and budget, with view channels by default (the example sets no access).
  const viewManager = kind === 'isopool' && access === 'view' ? new ResourceManager({ autoOpenChannels: false, channelDefaults: { access: 'view' } }) : undefined;
  const isopool = kind === 'isopool' ? await startServer({ port: 0, host: '127.0.0.1', quotaBytes, ...(viewManager === undefined ? {} : { manager: viewManager, globalBytes: DEFAULT_GLOBAL_BYTES }) }) : null;
  const running = isopool ?? (await startPlainServer({ port: 0, host: '127.0.0.1', quotaBytes, busyMicros: Number(busy) }));
  const stats = (): PoolStats | null => {
    if (isopool === null) return null;
    const m = isopool.manager.getResourceMetrics();
    return {
      allocations: m.totals.allocations,
      revocation: m.revocation.method,
      buffersCreated: m.revocation.buffersCreated,
      buffersReused: m.revocation.buffersReused,
      pendingRelease: m.revocation.pendingRelease,
      fastLaneAllocations: m.fastLane.allocations,
      pools: Object.entries(m.pools)
        .filter(([, pool]) => pool.hits + pool.misses > 0)
        .map(([name, pool]) => ({ name, slotSize: pool.slotSize, queueSize: pool.queueSize, hits: pool.hits, misses: pool.misses, releasedToSystem: pool.releasedToSystem, reservedBytes: pool.reservedBytes })),
    };
  };
  const send = (reply: ChildReply): void => {
    process.send?.(reply);
  };
  const stop = (): void => {
    void running.close().then(() => {
      viewManager?.close();
      process.exit(0);
    });
  };
  process.on('message', (message: ChildRequest) => {
    if (message.type === 'usage') {
      const cpu = process.cpuUsage();
      send({ type: 'usage', cpuMicros: cpu.user + cpu.system, rssBytes: process.memoryUsage.rss(), monoMicros: Number(process.hrtime.bigint() / 1000n) });
    } else if (message.type === 'stats') {
      send({ type: 'stats', stats: stats() });
    } else if (message.type === 'stop') {
      stop();
    }
  });
  // The parent went away: stop too.
  process.on('disconnect', stop);
  send({ type: 'ready', url: running.url });
}

main().catch((err: unknown) => {
  process.send?.({ type: 'failed', error: String(err) } satisfies ChildReply);
  process.exitCode = 1;
  process.disconnect?.();
});
