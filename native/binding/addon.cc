// addon.cc — the addon's entry point: aggregates one InitX per concept.
//
// Context-aware (Node-API): Init runs once per environment (main thread and
// each worker). Nothing here keeps per-environment state in statics.
#include <napi.h>
#include <unistd.h>

#if defined(__GLIBC__)
#include <dlfcn.h>
#include <malloc.h>
#define ISOPOOL_GLIBC_MALLOC 1
#endif

#include "binding_util.h"

namespace isopool {
namespace binding {
namespace {

/// The contract between this binary and lib/: bump it with BINDING_VERSION in lib/native/loader.ts
/// whenever a method, argument or `out` slot of the binding changes, so a stale build is refused
/// at load with a clear message instead of failing in the middle of a call.
/// 2: takeRetiredSlab / releaseSlab (view slabs released early).
/// 3: mallocStats (the soak's count of the process's live malloc bytes); NativeManager
///    residentBytes (how much of the pools' mappings is resident).
/// 4: discardChannel(channel, owner) discards only that incarnation, and only if nothing is
///    in flight in it; mallocTrim (the soak's A/B of memory glibc keeps after a free).
/// 5: status 12, kHandleTableFull (ERR_HANDLE_TABLE_FULL).
/// 7: SnapshotOut latency blocks carry sumNs and the log2 bucket counts.
/// 9: allocIn's InArgs.AllocParked and status 13, kParkedCharges (the fast lane's parked slots
///    in a type's total).
constexpr int32_t kBindingVersion = 9;

#if defined(ISOPOOL_GLIBC_MALLOC)
/// glibc's `struct mallinfo2` (2.33+), field for field.
struct Mallinfo2 {
  size_t arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost;
};
using Mallinfo2Fn = Mallinfo2 (*)();

/// glibc's mallinfo2, looked up when first needed rather than linked: the prebuilds are built
/// against glibc 2.17 and must load on glibc from 2.18 on, where the function may be missing.
Mallinfo2Fn FindMallinfo2() {
  static const Mallinfo2Fn fn = reinterpret_cast<Mallinfo2Fn>(dlsym(RTLD_DEFAULT, "mallinfo2"));
  return fn;
}
#endif

/// The process's C heap as glibc counts it, or `undefined` where that count is not available
/// (another libc, glibc < 2.33). A diagnostic for the soak (bench/soak.ts), not a metric: RSS
/// keeps freed malloc memory cached, so only the allocator's own count says whether the bytes
/// native code holds (isopool's tables, Node's and V8's malloc) grow. Walks every arena under its
/// lock: do not call it on a hot path.
///   inUseBytes: bytes in allocated chunks (`uordblks` + `hblkhd`, the mmapped ones).
///   systemBytes: bytes the allocator holds from the system (`arena` + `hblkhd`).
Napi::Value MallocStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#if defined(ISOPOOL_GLIBC_MALLOC)
  const Mallinfo2Fn mallinfo2 = FindMallinfo2();
  if (mallinfo2 == nullptr) return env.Undefined();
  const Mallinfo2 mi = mallinfo2();
  Napi::Object out = Napi::Object::New(env);
  out.Set("inUseBytes", Napi::Number::New(env, static_cast<double>(mi.uordblks + mi.hblkhd)));
  out.Set("systemBytes", Napi::Number::New(env, static_cast<double>(mi.arena + mi.hblkhd)));
  return out;
#else
  return env.Undefined();
#endif
}

/// Asks glibc to give every arena's free pages back to the system (`malloc_trim(0)`): true if
/// it released any, `undefined` where mallocStats is. A diagnostic for the soak's
/// `--malloc-trim` runs, which tell memory glibc keeps after it was freed from memory something
/// still holds. Walks every arena under its lock: never on a hot path.
Napi::Value MallocTrim(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#if defined(ISOPOOL_GLIBC_MALLOC)
  if (FindMallinfo2() == nullptr) return env.Undefined();
  return Napi::Boolean::New(env, malloc_trim(0) != 0);
#else
  return env.Undefined();
#endif
}

/// Process facts the facade needs (pageSize: direct-allocation rounding) and the binding version.
void InitSystem(Napi::Env env, Napi::Object exports) {
  long page = sysconf(_SC_PAGESIZE);
  exports.Set("pageSize", Napi::Number::New(env, static_cast<double>(page > 0 ? page : 4096)));
  exports.Set("bindingVersion", Napi::Number::New(env, kBindingVersion));
  exports.Set("mallocStats", Napi::Function::New(env, MallocStats, "mallocStats"));
  exports.Set("mallocTrim", Napi::Function::New(env, MallocTrim, "mallocTrim"));
}

}  // namespace
}  // namespace binding
}  // namespace isopool

namespace {

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  isopool::binding::InitSystem(env, exports);
  isopool::binding::InitManager(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(isopool, InitAddon)
