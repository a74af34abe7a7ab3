// native/toolchains/runtime-check.cc — a program built with each musl prebuild's toolchain and run by
// scripts/prebuild.js on that target's C library (arm64 under qemu-aarch64). It exercises the
// runtime paths the C library shims serve: a C++ throw unwound through frames of this binary
// (_dl_find_object), thread_local destructors at thread exit (__cxa_thread_atexit_impl), and
// std::call_once. No iostream: libstdc++'s locale code is glibc's own.
#include <atomic>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace {

std::atomic<int> destroyed{0};

struct Counted {
  int value = 1;
  ~Counted() { destroyed.fetch_add(value); }
};

thread_local Counted counted;

__attribute__((noinline)) void Thrower(int depth) {
  if (depth == 0) throw std::runtime_error("unwound");
  Thrower(depth - 1);
}

}  // namespace

int main() {
  try {
    Thrower(3);
    std::puts("runtime-check: the throw did not arrive");
    return 1;
  } catch (const std::runtime_error& e) {
    if (std::string(e.what()) != "unwound") return 1;
  }
  for (int i = 0; i < 4; ++i) {
    std::thread([] { counted.value = 1; }).join();
  }
  if (destroyed.load() != 4) {
    std::printf("runtime-check: %d of 4 thread_local destructors ran\n", destroyed.load());
    return 1;
  }
  static std::once_flag once;
  int calls = 0;
  for (int i = 0; i < 3; ++i) std::call_once(once, [&] { ++calls; });
  if (calls != 1) return 1;
  std::puts("runtime-check: ok");
  return 0;
}
