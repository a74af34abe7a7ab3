/** The README's usage example, verbatim except for the import path (test/examples.test.ts runs it). */
import { ResourceManager, ResourceLimitError } from '../lib';

using manager = new ResourceManager();                    // default pools: 4 KiB, 64 KiB, 1 MiB
const tenant = manager.openChannel('tenant-42', {
  limits: { '*': { maxBytes: 8 * 1024 * 1024, softBytes: 6 * 1024 * 1024 } },
});
manager.on('pressure', (e) => console.warn('soft limit crossed', e));

const h = tenant.allocate('buffer', 5000);                 // a 64 KiB slot, charged 64 KiB
h.buffer!.write('hello');                                  // exactly 5000 bytes
console.log(tenant.track(h).slotBytes);                    // 65536
tenant.deallocate(h);                                      // h.buffer.length === 0 now (revoked)

try {
  for (;;) tenant.allocate('buffer', 1 << 20);
} catch (err) {
  if (err instanceof ResourceLimitError) console.log(err.code, err.limit, err.inUse);
}
console.log(manager.verifyResourceIsolation('tenant-42').isolated);   // true
console.log(manager.getResourceMetrics().channels['tenant-42']);
manager.closeChannel('tenant-42');                         // frees and revokes everything it held
