/**
 * The addon check (lib/native/loader.ts narrowAddon): a stale or foreign isopool.node is refused at load
 * with a message that says what to do, instead of failing in the middle of a call. The binding
 * version moves whenever the JS <-> native contract changes (native/binding/addon.cc kBindingVersion).
 */
import { expect } from 'chai';
import { BINDING_VERSION, loadNative, narrowAddon } from '../lib/native/loader';

describe('loading the addon', () => {
  const good = { NativeManager: function NativeManager(): void {}, pageSize: 4096, bindingVersion: BINDING_VERSION, mallocStats: (): undefined => undefined, mallocTrim: (): undefined => undefined };

  it('the built addon speaks this lib/ binding version', () => {
    expect(loadNative().bindingVersion).to.equal(BINDING_VERSION);
    expect(narrowAddon(good)).to.equal(good);
  });

  it('refuses a build from before versioning, or of another version, naming the rebuild', () => {
    const { bindingVersion: _omit, ...unversioned } = good;
    expect(() => narrowAddon(unversioned)).to.throw(/binding version none \(built before versioning\), this isopool needs \d+: .*npm run build:native/);
    expect(() => narrowAddon({ ...good, bindingVersion: BINDING_VERSION - 1 })).to.throw(`binding version ${BINDING_VERSION - 1}, this isopool needs ${BINDING_VERSION}`);
    expect(() => narrowAddon({ ...good, bindingVersion: String(BINDING_VERSION) })).to.throw(/binding version/);
  });

  it('refuses a foreign export: not an object, no NativeManager class, a bad pageSize', () => {
    expect(() => narrowAddon(null)).to.throw('exported null, expected an object');
    expect(() => narrowAddon({ ...good, NativeManager: undefined })).to.throw('has no NativeManager class');
    expect(() => narrowAddon({ ...good, pageSize: 0 })).to.throw("pageSize is 0");
    expect(() => narrowAddon({ ...good, mallocStats: undefined })).to.throw('has no mallocStats function');
    expect(() => narrowAddon({ ...good, mallocTrim: 1 })).to.throw('has no mallocTrim function (got number)');
  });

  it('mallocStats counts the process C heap on glibc: a 64 MiB Buffer held is 64 MiB more in use', async function () {
    const stats = loadNative().mallocStats;
    const glibc = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime;
    if (glibc === undefined) {
      expect(stats()).to.equal(undefined);
      return;
    }
    // Earlier tests' ArrayBuffers are freed by V8's sweeper threads after a GC: let that settle
    // first, and hold a buffer large enough that what is still moving (KiB) cannot pass for it.
    for (let i = 0; i < 2; i++) {
      (globalThis as { gc?: () => void }).gc?.();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const before = stats();
    if (before === undefined) throw new Error(`glibc ${glibc} but no mallocStats`);
    const size = 64 << 20;
    const held = Buffer.alloc(size, 1); // Node's ArrayBuffer allocator: calloc
    const after = stats();
    if (after === undefined) throw new Error('mallocStats went away');
    expect(after.inUseBytes - before.inUseBytes).to.be.within(size - (2 << 20), size + (2 << 20));
    expect(after.systemBytes).to.be.at.least(after.inUseBytes);
    expect(held[size - 1]).to.equal(1);
  });

  it('mallocTrim gives the pages of freed malloc memory back on glibc: RSS falls by most of them', async function () {
    const { mallocTrim, mallocStats } = loadNative();
    if (mallocStats() === undefined) {
      expect(mallocTrim()).to.equal(undefined);
      return;
    }
    const inUse = (): number => mallocStats()?.inUseBytes ?? NaN;
    // 64 MiB in 32 KiB chunks (below the mmap threshold: they come from an arena), each
    // followed by one of the same size that stays, so the arena cannot shrink from its top
    // when they go (a small keeper could come from an earlier hole and pin nothing).
    mallocTrim();
    const keep: Buffer[] = [];
    let freed: Buffer[] | null = [];
    for (let i = 0; i < 2048; i++) {
      freed.push(Buffer.alloc(32 << 10, 1));
      keep.push(Buffer.alloc(32 << 10, 2));
    }
    const peak = inUse();
    freed = null;
    // V8 frees the backing stores on its sweeper threads after a GC: wait until glibc counts
    // them free (most of the 64 MiB), on a loaded machine too.
    for (let i = 0; i < 100 && !(inUse() < peak - (56 << 20)); i++) {
      (globalThis as { gc?: () => void }).gc?.();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(inUse(), 'the 64 MiB were freed').to.be.below(peak - (56 << 20));
    const before = process.memoryUsage.rss();
    expect(mallocTrim(), 'some pages were released').to.equal(true);
    const after = process.memoryUsage.rss();
    // Most of the 64 MiB (a trim that does nothing releases nothing; some chunks may have
    // filled holes next to free memory that glibc already gave back).
    expect(before - after, `RSS ${before} -> ${after}`).to.be.at.least(24 << 20);
    expect(keep.every((k) => k[0] === 2 && k[(32 << 10) - 1] === 2), 'what is still held keeps its bytes').to.equal(true);
  });
});
