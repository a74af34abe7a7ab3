/**
 * The addon's soak diagnostics (bench/soak.ts): residentBytes, how much of the manager's mapped
 * slabs is resident. (mallocStats is checked with the loader: test/loader.test.ts.)
 */
import { expect } from 'chai';
import { loadNative } from '../lib/native/loader';

const MANAGER_CLOSED = 11;
// One small pool; larger allocations (up to 1 MiB) get direct mappings, too small for a transparent huge page.
const CONFIG = { pools: [{ name: 's', slotSize: 4096, queueSize: 4 }], maxAllocationSize: 1 << 20, hardened: false };

describe('native diagnostics', () => {
  it('residentBytes counts the pages of the mappings that were written, and refuses once closed', () => {
    const m = new (loadNative().NativeManager)(CONFIG);
    const page = loadNative().pageSize;
    expect(m.residentBytes(), 'no slab yet').to.equal(0);
    // Larger than every pool's slot: a direct mapping, which stays lazy (a new pooled slab of
    // several slots is made resident at once: test/native/slab_pool_test.cc).
    m.in.set([0, 3 * page, 0, 1, 0]);
    const ab = m.allocIn();
    if (!(ab instanceof ArrayBuffer)) throw new Error(`allocation failed: ${String(ab)}`);
    expect(m.residentBytes(), 'mapped, but nothing was written to it').to.equal(0);
    new Uint8Array(ab)[0] = 1;
    expect(m.residentBytes(), 'one page written').to.equal(page);
    new Uint8Array(ab)[page - 1] = 1;
    expect(m.residentBytes(), 'the same page again').to.equal(page);
    new Uint8Array(ab)[2 * page] = 1;
    expect(m.residentBytes(), 'a second page').to.equal(2 * page);
    m.release();
    expect(m.residentBytes(), 'closed').to.equal(-MANAGER_CLOSED);
  });
});
