/**
 * The addon's soak diagnostics (bench/soak.ts): residentBytes, how much of the manager's mapped
 * slabs is resident. (mallocStats is checked with the loader: test/loader.test.ts.)
 */
import { expect } from 'chai';
import { loadNative } from '../lib/native/loader';

const MANAGER_CLOSED = 11;
// 4 slots of 4 KiB per slab (queueSize 4): a 16 KiB mapping, too small for a transparent huge page.
const CONFIG = { pools: [{ name: 's', slotSize: 4096, queueSize: 4 }], maxAllocationSize: 1 << 20, hardened: false };

describe('native diagnostics', () => {
  it('residentBytes counts the pages of the slabs that were written, and refuses once closed', () => {
    const m = new (loadNative().NativeManager)(CONFIG);
    expect(m.residentBytes(), 'no slab yet').to.equal(0);
    m.in.set([0, 4096, 0, 1, 0]);
    const ab = m.allocIn();
    if (!(ab instanceof ArrayBuffer)) throw new Error(`allocation failed: ${String(ab)}`);
    const page = loadNative().pageSize;
    expect(m.residentBytes(), 'a slab is mapped, but nothing was written to it').to.equal(0);
    new Uint8Array(ab)[0] = 1;
    expect(m.residentBytes(), 'one page written').to.equal(page);
    new Uint8Array(ab)[4095] = 1;
    expect(m.residentBytes(), 'the same page again').to.equal(page);
    m.release();
    expect(m.residentBytes(), 'closed').to.equal(-MANAGER_CLOSED);
  });
});
