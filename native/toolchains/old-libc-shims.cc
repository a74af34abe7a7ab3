// native/toolchains/old-libc-shims.cc — linked into the prebuilt addons only
// (native/toolchains/linux.cmake adds it), never into a build from source.
//
// The prebuilds link GCC 12's libstdc++ statically. That archive was compiled against glibc 2.36,
// and some of its objects read `__libc_single_threaded` (glibc 2.32+) to skip atomic reference
// counts in a single-threaded process. A data reference is bound when the addon loads, so an older
// C library (or musl, which has no such variable) would refuse the whole binary. This hidden
// definition satisfies those references inside the addon. Its value 0 means "maybe
// multi-threaded": libstdc++ always takes the atomic path, which is correct in every process
// (a worker_threads service is multi-threaded anyway).
extern "C" {
__attribute__((visibility("hidden"))) char __libc_single_threaded = 0;
}

// libstdc++.a's random.o (std::random_device) comes along with its string and exception objects,
// and calls arc4random (glibc 2.36) and getentropy (glibc 2.25). isopool never constructs a
// std::random_device, but an unresolved name would still make the binary ask for those glibc
// versions. These hidden versions read the kernel's generator (Linux 3.17+) and abort when it
// gives nothing, as glibc's arc4random does.
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernel_random.h"

extern "C" {
__attribute__((visibility("hidden"))) int getentropy(void* buffer, size_t length) {
  if (length > 256) {
    errno = EIO;
    return -1;
  }
  return isopool::KernelRandom(buffer, length) ? 0 : -1;
}

__attribute__((visibility("hidden"))) uint32_t arc4random(void) {
  uint32_t value = 0;
  if (getentropy(&value, sizeof value) != 0) abort();
  return value;
}
}
