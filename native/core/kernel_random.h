// kernel_random.h — the kernel's random generator through the getrandom system call (Linux 3.17+),
// for the handle table's secret and for the prebuilds' getentropy/arc4random
// (native/toolchains/old-libc-shims.cc). A system call rather than the C library's wrapper or
// std::random_device: the prebuilds are built against glibc 2.17, which has neither getrandom()
// nor <sys/random.h> (docs/DECISIONS.md, "Prebuilds").
#ifndef ISOPOOL_CORE_KERNEL_RANDOM_H_
#define ISOPOOL_CORE_KERNEL_RANDOM_H_

#if defined(__linux__)
#include <errno.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <unistd.h>

// Old C library headers lack these names.
#if !defined(SYS_getrandom) && defined(__x86_64__)
#define SYS_getrandom 318
#elif !defined(SYS_getrandom) && defined(__aarch64__)
#define SYS_getrandom 278
#endif

namespace isopool {

constexpr unsigned kRandomNonBlocking = 0x0001;  // GRND_NONBLOCK

/// Fills `length` bytes, retrying after signals and short reads. False when the kernel gives
/// nothing (no getrandom, a seccomp filter, or, with kRandomNonBlocking, a pool not ready yet).
inline bool KernelRandom(void* buffer, size_t length, unsigned flags = 0) noexcept {
  auto* out = static_cast<unsigned char*>(buffer);
  while (length > 0) {
    const long got = syscall(SYS_getrandom, out, length, flags);
    if (got < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    out += got;
    length -= static_cast<size_t>(got);
  }
  return true;
}

}  // namespace isopool
#endif  // __linux__

#endif  // ISOPOOL_CORE_KERNEL_RANDOM_H_
