/**
 * The examples run as a user would run them: the README's usage example, and the `npm start`
 * demo (shortened), each in a child process.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { nodeCommand } from './helpers';

const EXAMPLES = path.join(__dirname, '..', 'examples');

function run(script: string, args: string[] = [], nodeOptions: string[] = []): string {
  try {
    return execFileSync(...nodeCommand([...nodeOptions, path.join(EXAMPLES, script), ...args]), {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60000,
    });
  } catch (error) {
    // Show what the child printed: a bare "Command failed" cannot be diagnosed afterwards.
    const e = error as { message?: string; stdout?: string; stderr?: string; signal?: string };
    throw new Error(`${script} ${args.join(' ')} failed (${e.signal ?? e.message ?? 'unknown'})\n--- stdout\n${e.stdout ?? ''}\n--- stderr\n${e.stderr ?? ''}`);
  }
}

describe('examples', function () {
  this.timeout(90000);

  it("the README's usage example prints what its comments say", () => {
    const out = run('readme-usage.js').split('\n');
    expect(out[0], 'track().slotBytes of a 5000-byte request').to.equal('65536');
    expect(out[1], 'the quota refusal').to.equal('ERR_RESOURCE_LIMIT 8388608 8388608');
    expect(out[2], 'verifyResourceIsolation().isolated').to.equal('true');
    expect(out.join('\n'), 'the channel metrics').to.match(/bytesInUse: 8388608,\s+handles: 8,/);
  });

  it('the npm start demo runs several channels and prints the summary', () => {
    // as `npm start` runs it: with --expose-gc
    const out = run('demo.js', ['--seconds', '1'], ['--expose-gc']);
    expect(out, 'a per-channel table').to.match(/channel\s+handles\s+bytes in use/);
    for (const channel of ['tenant-a', 'tenant-b', 'stream-c', 'tenant-d', 'tenant-e', 'jobs']) {
      expect(out, `the table lists ${channel}`).to.include(channel);
    }
    expect(out, 'the noisy tenant hit its quota').to.match(/tenant-b \(noisy\): [1-9][0-9]* allocations refused/);
    expect(out, 'the misbehaving tenant was refused').to.match(/tenant-d \(misbehaving\): [1-9][0-9]* stale, [1-9][0-9]* forged/);
    expect(out, 'its violations were counted').to.match(/isolation tenant-d\s+isolated=false/);
    expect(out, 'a well-behaved tenant stays isolated').to.match(/isolation tenant-a\s+isolated=true/);
    // a default (deferred reuse) channel: the buffer is not detached, its memory parked until collected
    const deferred = /a tenant-a buffer after close \(deferred reuse\): length (\d+) of (\d+) requested \(not detached; memory parked until collected\), cleanup verified: false, pendingRelease (\d+)/.exec(out);
    expect(deferred, `the deferred-reuse line in:\n${out}`).to.not.equal(null);
    const [, length, size, pending] = (deferred as RegExpExecArray).map(Number);
    expect(length, 'the closed default channel\'s buffer keeps its whole length').to.equal(size);
    expect(length, 'a non-empty buffer').to.be.greaterThan(0);
    expect(pending, 'its memory (at least) is parked').to.be.greaterThan(0);
    expect(out, 'once collected, nothing is parked and the cleanup is verified').to.include(
      'after dropping the references and a GC: pendingRelease 0, tenant-a buffer cleanup verified: true',
    );
    // the unsafeImmediateReuse channel: revoked at the close
    expect(out, 'an unsafeImmediateReuse buffer is revoked after closeChannel').to.include(
      'a tenant-e buffer after close (unsafeImmediateReuse): length 0 (revoked), cleanup verified: true',
    );
  });

  it('the demo without --expose-gc says how to see the parked memory return', () => {
    const out = run('demo.js', ['--seconds', '0.2']);
    expect(out, 'the deferred-reuse line').to.match(/a tenant-a buffer after close \(deferred reuse\): length [1-9]\d* of [1-9]\d* requested/);
    expect(out, 'the hint').to.include('(run with node --expose-gc to see the parked memory return after a collection)');
    expect(out, 'no collection without gc').to.not.include('after dropping the references');
  });
});
