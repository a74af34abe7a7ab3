/**
 * Retention: a synchronous loop of allocate/deallocate round trips must not keep freed buffers
 * (or per-allocation bookkeeping) alive until the end of the turn. A WeakRef created per
 * allocation would: JS keeps WeakRef targets alive until the current job ends (~150 bytes per
 * round trip, tens of MB in a long loop).
 */
import { expect } from 'chai';
import { ResourceManager } from '../lib';
import { gc } from './helpers';

describe('retention within one synchronous turn', () => {
  for (const leakDetection of ['off', 'sampled'] as const) {
    it(`keeps no freed revocable buffer alive (leakDetection: '${leakDetection}')`, () => {
      const mgr = new ResourceManager({ leakDetection });
      try {
        const scope = mgr.openChannel('r');
        const run = (n: number): void => {
          for (let i = 0; i < n; i++) {
            const h = scope.allocate('buffer', 4096);
            h.buffer![0] = 1;
            scope.deallocate(h);
          }
        };
        run(1000); // warm up code and pools
        gc();
        const before = process.memoryUsage().heapUsed;
        const n = 100000;
        run(n);
        gc();
        const perRoundTrip = (process.memoryUsage().heapUsed - before) / n;
        expect(perRoundTrip, 'heap bytes still held per round trip after a full GC').to.be.below(16);
      } finally {
        mgr.close();
      }
    });
  }
});
