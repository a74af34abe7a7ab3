// addon.cc — the addon's entry point: aggregates one InitX per concept.
//
// Context-aware (Node-API): Init runs once per environment (main thread and
// each worker). Nothing here keeps per-environment state in statics.
#include <napi.h>
#include <unistd.h>

#include "binding_util.h"

namespace isopool {
namespace binding {
namespace {

/// The contract between this binary and lib/: bump it with BINDING_VERSION in lib/loader.ts
/// whenever a method, argument or `out` slot of the binding changes, so a stale build is refused
/// at load with a clear message instead of failing in the middle of a call.
/// 2: takeRetiredSlab / releaseSlab (view slabs released early).
constexpr int32_t kBindingVersion = 2;

/// Process facts the facade needs (pageSize: direct-allocation rounding) and the binding version.
void InitSystem(Napi::Env env, Napi::Object exports) {
  long page = sysconf(_SC_PAGESIZE);
  exports.Set("pageSize", Napi::Number::New(env, static_cast<double>(page > 0 ? page : 4096)));
  exports.Set("bindingVersion", Napi::Number::New(env, kBindingVersion));
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
