/**
 * examples/server.ts end to end: real concurrent clients on 127.0.0.1, one keep-alive
 * connection per client (so one channel per client). Normal clients get their digests, an
 * over-quota client gets 413 while the others are served, and /metrics shows the channels and
 * the refusal. Bounded: 6 clients, 20 requests in all, a 2 MiB quota.
 */
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import { startServer } from '../examples/server';
import type { RunningServer } from '../examples/server';
import { ResourceManager } from '../lib';

const KiB = 1024;
const MiB = 1024 * KiB;

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request; `chunks` without `length` sends a chunked body. Resolves once the response ended. */
function request(
  url: string,
  agent: http.Agent,
  method: string,
  path: string,
  chunks: Buffer[] = [],
  chunked = false,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    let replied = false;
    const total = chunks.reduce((n, c) => n + c.length, 0);
    const headers: http.OutgoingHttpHeaders = chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': total };
    const req = http.request(`${url}${path}`, { method, agent, headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        replied = true;
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts).toString('utf8') });
      });
      res.on('error', reject);
    });
    // After a 413 with `connection: close`, the server may reset a body still being sent.
    req.on('error', (err) => {
      if (!replied) reject(err);
    });
    req.setTimeout(10000, () => req.destroy(new Error(`timeout: ${method} ${path}`)));
    for (const c of chunks) req.write(c);
    req.end();
  });
}

function sha256(chunks: Buffer[]): string {
  const h = createHash('sha256');
  for (const c of chunks) h.update(c);
  return h.digest('hex');
}

function splitInto(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

interface Digest {
  channel: string;
  bytes: number;
  sha256: string;
  buffers: number;
}

async function waitFor(done: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (!done()) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}

describe('examples/server.ts (HTTP service, a channel per connection)', function () {
  this.timeout(30000);
  let running: RunningServer;
  const agents: http.Agent[] = [];

  function newAgent(): http.Agent {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(agent);
    return agent;
  }

  beforeEach(async () => {
    running = await startServer({ port: 0, quotaBytes: 2 * MiB });
  });

  afterEach(async () => {
    for (const a of agents.splice(0)) a.destroy();
    await running.close();
  });

  it('serves normal clients concurrently, refuses the over-quota one with 413, and exports it all on /metrics', async () => {
    const { url, manager } = running;
    const sizes = [1, 3000, 100 * KiB, 900 * KiB];

    const normal = Array.from({ length: 4 }, async (_, client) => {
      const agent = newAgent();
      const seen: Digest[] = [];
      for (const size of sizes) {
        const body = randomBytes(size + client);
        const chunks = splitInto(body, 16 * KiB);
        const r = await request(url, agent, 'POST', '/digest', chunks);
        expect(r.status, `client ${client}, ${size} bytes`).to.equal(200);
        const d = JSON.parse(r.body) as Digest;
        expect(d.bytes, 'bytes').to.equal(body.length);
        expect(d.sha256, 'digest of what was sent').to.equal(sha256([body]));
        expect(d.buffers, 'one pooled buffer sized by content-length').to.equal(1);
        seen.push(d);
      }
      // a chunked body: packed into 64 KiB pooled buffers
      const body = randomBytes(200 * KiB);
      const r = await request(url, agent, 'POST', '/digest', splitInto(body, 32 * KiB), true);
      expect(r.status, `client ${client}, chunked`).to.equal(200);
      const d = JSON.parse(r.body) as Digest;
      expect([d.bytes, d.sha256], 'chunked digest').to.deep.equal([body.length, sha256([body])]);
      expect(d.buffers, 'ceil(200 KiB / 64 KiB) buffers').to.equal(4);
      seen.push(d);
      const channels = new Set(seen.map((s) => s.channel));
      expect(channels.size, 'one keep-alive connection, one channel').to.equal(1);
      return seen[0].channel;
    });

    const greedy = (async () => {
      const agent = newAgent();
      const big = await request(url, agent, 'POST', '/digest', splitInto(randomBytes(3 * MiB), 64 * KiB));
      expect(big.status, 'over the 2 MiB quota').to.equal(413);
      const refusal = JSON.parse(big.body) as { error: string; limit: number; requested: number };
      expect(refusal.error).to.equal('ERR_RESOURCE_LIMIT');
      expect(refusal.limit, 'the quota').to.equal(2 * MiB);
      // the same connection (channel) is still served within its quota
      const small = await request(url, agent, 'POST', '/digest', [Buffer.from('after the refusal')]);
      expect(small.status, 'served after the refusal').to.equal(200);
      return (JSON.parse(small.body) as Digest).channel;
    })();

    const greedyChunked = (async () => {
      const agent = newAgent();
      const r = await request(url, agent, 'POST', '/digest', splitInto(randomBytes(3 * MiB), 64 * KiB), true);
      expect(r.status, 'a chunked body over the quota').to.equal(413);
      expect(r.headers.connection, 'the connection is closed after it').to.equal('close');
    })();

    const [channels, greedyChannel] = await Promise.all([Promise.all(normal), greedy, greedyChunked]);
    expect(new Set([...channels, greedyChannel]).size, 'a channel per connection').to.equal(5);

    const scrape = await request(url, newAgent(), 'GET', '/metrics');
    expect(scrape.status, '/metrics').to.equal(200);
    expect(scrape.headers['content-type'], 'Prometheus text format').to.match(/^text\/plain/);
    const lines = scrape.body.split('\n');
    for (const ch of channels) {
      expect(lines, `${ch} listed, nothing held between requests`).to.include(`isopool_channel_bytes_in_use{channel="${ch}"} 0`);
      expect(lines, `${ch} never refused`).to.include(`isopool_channel_limit_rejections_total{channel="${ch}"} 0`);
    }
    expect(lines, 'the over-quota client').to.include(`isopool_channel_limit_rejections_total{channel="${greedyChannel}"} 1`);
    expect(lines.filter((l) => l.startsWith('isopool_violations_total{')), 'no violation anywhere').to.deep.equal([]);

    for (const ch of [...channels, greedyChannel]) {
      expect(manager.verifyResourceIsolation(ch).isolated, `${ch} isolated`).to.equal(true);
    }

    // closing the client connections closes their channels
    for (const a of agents) a.destroy();
    const closed = await waitFor(() => channels.every((ch) => !(ch in manager.getResourceMetrics().channels)), 5000);
    expect(closed, 'channels closed with their sockets').to.equal(true);
    expect(manager.getResourceMetrics().totals.handles, 'nothing left allocated').to.equal(0);
  });

  it('returns each body buffer to its pool when the answer is sent: none waits for the collector', async () => {
    // The connection's channel reuses freed slots at once (safe for digest's buffers, which never
    // reach Node I/O): after the requests, no slot is still counted live.
    const { url, manager } = running;
    const agent = newAgent();
    for (let i = 0; i < 20; i++) {
      const body = randomBytes(1000 + i);
      const r = await request(url, agent, 'POST', '/digest', [body]);
      expect(r.status).to.equal(200);
      expect((JSON.parse(r.body) as Digest).sha256).to.equal(sha256([body]));
    }
    const m = manager.getResourceMetrics();
    expect(m.totals.handles, 'every body freed').to.equal(0);
    expect(m.revocation.pendingRelease, 'no freed buffer waits for the collector').to.equal(0);
    expect(m.pools.small.liveSlots, 'every slot back in its pool').to.equal(0);
    expect(m.pools.small.hits + m.pools.small.misses, 'the bodies were pooled').to.be.at.least(20);
  });

  it('answers 404 for other routes and frees a body of a client that disconnects mid-request', async () => {
    const { url, manager } = running;
    const r = await request(url, newAgent(), 'GET', '/nope');
    expect(r.status).to.equal(404);

    // declare 1 MiB, send 64 KiB, then drop the connection
    const sent = new Promise<void>((resolve) => {
      const req = http.request(`${url}/digest`, { method: 'POST', headers: { 'content-length': MiB } });
      req.on('error', () => resolve());
      req.write(randomBytes(64 * KiB), () => setTimeout(() => req.destroy(), 50));
    });
    await sent;
    const freed = await waitFor(() => manager.getResourceMetrics().totals.handles === 0, 5000);
    expect(freed, 'the pooled body buffer was released').to.equal(true);
    const m = manager.getResourceMetrics();
    const violations = Object.values(m.channels)
      .concat(m.unscoped)
      .reduce((n, c) => n + Object.values(c.violations).reduce((a, b) => a + b, 0), 0);
    expect(violations, 'releasing after a disconnect counts no violation').to.equal(0);
  });
});

/** A request that sends its headers (and `first` body bytes) and then nothing: an idle client. */
function idleClient(url: string, headers: http.OutgoingHttpHeaders, first?: Buffer): { req: http.ClientRequest; reply: Promise<Reply> } {
  const req = http.request(`${url}/digest`, { method: 'POST', agent: false, headers });
  const reply = new Promise<Reply>((resolve, reject) => {
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
  // a client destroyed by the test rejects a reply nobody waits for
  reply.catch(() => undefined);
  if (first !== undefined) req.write(first);
  else req.flushHeaders();
  return { req, reply };
}

/** The manager's channels, each `[bytesInUse, handles]`. */
function channelUsage(running: RunningServer): Array<[number, number]> {
  return Object.values(running.manager.getResourceMetrics().channels).map((c) => [c.bytesInUse, c.handles]);
}

describe('examples/server.ts: chunk packing, the global budget, the body timeout, refusal sizes', function () {
  this.timeout(20000);
  let running: RunningServer;
  const clients: http.ClientRequest[] = [];
  const agents: http.Agent[] = [];

  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy();
    for (const a of agents.splice(0)) a.destroy();
    await running.close();
  });

  it('packs 1,025 one-byte chunks into one 64 KiB buffer: 200 with the right digest', async () => {
    running = await startServer({ port: 0, quotaBytes: 2 * MiB });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(agent);
    const body = randomBytes(1025);
    const r = await request(running.url, agent, 'POST', '/digest', splitInto(body, 1), true);
    expect(r.status, '1,025 chunks of one byte').to.equal(200);
    const d = JSON.parse(r.body) as Digest;
    expect([d.bytes, d.sha256, d.buffers], 'bytes, digest, one pooled buffer').to.deep.equal([1025, sha256([body]), 1]);
    expect(running.manager.getResourceMetrics().totals.handles, 'freed after the answer').to.equal(0);
  });

  it('keeps idle declared bodies under the global budget: later clients get 503 at once, not a hang', async () => {
    const globalBytes = 16 * MiB;
    running = await startServer({ port: 0, quotaBytes: 2 * MiB, globalBytes, bodyTimeoutMs: 15000 });
    const { manager } = running;
    const started = Date.now();
    // 40 clients each declare 1 MiB (one 1 MiB slot, within the 2 MiB quota) and send nothing
    const idle = Array.from({ length: 40 }, () => idleClient(running.url, { 'content-length': MiB }));
    for (const c of idle) clients.push(c.req);
    const settled: Reply[] = [];
    for (const c of idle) void c.reply.then((r) => settled.push(r));
    const done = await waitFor(() => settled.length === 24 && manager.getResourceMetrics().totals.bytesInUse === globalBytes, 10000);
    expect(done, '24 answered, 16 MiB held').to.equal(true);
    expect(Date.now() - started, 'answered well before the 15 s body timeout').to.be.below(10000);
    const m = manager.getResourceMetrics();
    expect([m.totals.bytesInUse, m.totals.handles], 'the 16 idle bodies fill the budget exactly').to.deep.equal([globalBytes, 16]);
    expect(Math.max(...Object.values(m.channels).map((c) => c.peakBytes)), 'no connection above one body').to.equal(MiB);
    for (const r of settled) {
      expect(r.status, 'the global budget is spent').to.equal(503);
      expect(r.headers['retry-after'], 'retry-after').to.equal('1');
      const refusal = JSON.parse(r.body) as { error: string; limit: number; requested: number; scope: string; inUse: number };
      expect(refusal, 'the type total refused the declared size').to.deep.include({ error: 'ERR_RESOURCE_LIMIT', limit: globalBytes, requested: MiB, scope: 'type', inUse: globalBytes });
    }
    // the idle clients leave: their channels close and free everything
    for (const c of clients.splice(0)) c.destroy();
    const freed = await waitFor(() => manager.getResourceMetrics().totals.handles === 0 && Object.keys(manager.getResourceMetrics().channels).length === 0, 5000);
    expect(freed, 'all freed once the clients left').to.equal(true);
    expect(manager.getResourceMetrics().totals.bytesInUse, 'nothing charged').to.equal(0);
  });

  for (const kind of ['declared', 'chunked'] as const) {
    it(`answers a ${kind} body that stops progressing with 408 and frees its memory`, async () => {
      running = await startServer({ port: 0, quotaBytes: 2 * MiB, bodyTimeoutMs: 200 });
      const headers: http.OutgoingHttpHeaders = kind === 'declared' ? { 'content-length': MiB } : { 'transfer-encoding': 'chunked' };
      const sent = randomBytes(1000);
      const c = idleClient(running.url, headers, sent);
      clients.push(c.req);
      const held = await waitFor(() => running.manager.getResourceMetrics().totals.handles === 1, 5000);
      expect(held, 'the body holds one pooled buffer while it waits').to.equal(true);
      const heldAt = Date.now();
      const r = await Promise.race([c.reply, new Promise<Reply>((_, reject) => setTimeout(() => reject(new Error('no answer within 5 s of a 200 ms body timeout')), 5000))]);
      expect(Date.now() - heldAt, 'answered after about the 200 ms timeout').to.be.within(100, 5000);
      expect(r.status, 'request timeout').to.equal(408);
      expect(r.headers.connection, 'the connection is closed').to.equal('close');
      expect(JSON.parse(r.body), '408 body').to.deep.include({ error: 'body timeout', received: 1000 });
      const m = running.manager.getResourceMetrics();
      expect([m.totals.handles, m.totals.bytesInUse], 'freed when answered').to.deep.equal([0, 0]);
      for (const [bytes, handles] of channelUsage(running)) expect([bytes, handles], 'the channel holds nothing').to.deep.equal([0, 0]);
    });
  }

  it('times out every stalled body while bodies around it finish and leave the clock', async () => {
    running = await startServer({ port: 0, quotaBytes: 2 * MiB, bodyTimeoutMs: 1000 });
    const first = randomBytes(1000);
    const rest = randomBytes(1000);
    const bodies = Array.from({ length: 6 }, () => idleClient(running.url, { 'content-length': 2000 }, first));
    for (const c of bodies) clients.push(c.req);
    const held = await waitFor(() => running.manager.getResourceMetrics().totals.handles === 6, 5000);
    expect(held, 'six bodies wait, each holding one pooled buffer').to.equal(true);
    // Three finish, one at a time: the first (the last one's place becomes its), then that
    // last one, now in the first place, then the third. The clock's list closes up each time.
    const finishing = [0, 5, 2];
    for (const i of finishing) {
      bodies[i].req.end(rest);
      await bodies[i].reply;
    }
    const replies = await Promise.race([
      Promise.all(bodies.map((c) => c.reply)),
      new Promise<Reply[]>((_, reject) => setTimeout(() => reject(new Error('a body was never answered (lost by the body clock?)')), 5000)),
    ]);
    expect(replies.map((r) => r.status)).to.deep.equal([200, 408, 200, 408, 408, 200]);
    for (const i of finishing) expect((JSON.parse(replies[i].body) as Digest).sha256, 'the whole body').to.equal(sha256([first, rest]));
    const freed = await waitFor(() => running.manager.getResourceMetrics().totals.handles === 0, 5000);
    expect(freed, 'every buffer freed').to.equal(true);
  });

  it('a free that throws when a body times out (its manager closed meanwhile) neither stops the server nor escapes the timer', async () => {
    // A manager the server does not own, closed by its owner while a body waits: the 408 path's
    // deallocate throws ERR_MANAGER_CLOSED inside the body clock's tick. Escaping, it would be an
    // uncaught exception (mocha fails the test on one).
    const manager = new ResourceManager({ autoOpenChannels: false });
    running = await startServer({ port: 0, manager, bodyTimeoutMs: 100 });
    const c = idleClient(running.url, { 'content-length': MiB }, randomBytes(1000));
    clients.push(c.req);
    expect(await waitFor(() => manager.getResourceMetrics().totals.handles === 1, 5000), 'the body holds its buffer').to.equal(true);
    manager.close();
    const outcome = await c.reply.then(
      (r) => r.status,
      () => 'reset',
    );
    expect([408, 'reset'], 'answered 408, or the connection dropped after it').to.include(outcome);
    await new Promise((r) => setTimeout(r, 300)); // more ticks of the clock
    expect(running.server.listening, 'the server still listens').to.equal(true);
  });

  it("413: `requested` is the body's size, declared or received, not the charge", async () => {
    running = await startServer({ port: 0, quotaBytes: 2 * MiB });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(agent);
    const declared = 3 * MiB + 1; // charged 3 MiB + 4 KiB (direct: rounded up to a page)
    const r = await request(running.url, agent, 'POST', '/digest', splitInto(randomBytes(declared), 64 * KiB));
    expect(r.status, 'over the 2 MiB quota').to.equal(413);
    const refusal = JSON.parse(r.body) as { requested: number; chargedBytes: number; limit: number; scope: string };
    expect(refusal, 'the declared size, and the charge apart').to.deep.include({ requested: declared, chargedBytes: 3 * MiB + 4096, limit: 2 * MiB, scope: 'channel' });

    const chunkedAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(chunkedAgent);
    const c = await request(running.url, chunkedAgent, 'POST', '/digest', splitInto(randomBytes(3 * MiB), 64 * KiB), true);
    expect(c.status, 'a chunked body over the quota').to.equal(413);
    const chunkedRefusal = JSON.parse(c.body) as { requested: number; chargedBytes: number; limit: number };
    expect([chunkedRefusal.chargedBytes, chunkedRefusal.limit], 'a 64 KiB slot refused by the 2 MiB quota').to.deep.equal([64 * KiB, 2 * MiB]);
    expect(chunkedRefusal.requested, 'the bytes received when refused: past the quota, at most what was sent').to.be.within(2 * MiB + 1, 3 * MiB);
  });
});
