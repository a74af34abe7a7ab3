// manager_binding.cc — the NativeManager class: lib/native/binding.ts's NativeManager
// over isopool::Manager.
//
// Calling convention (abi.h; lib/native/binding.ts): arguments are primitives; hot methods
// return a status number (or -status, or an ArrayBuffer) and write their other
// results into the scratch `out` Float64Array. Only the constructor throws for
// a Status; the other methods throw only for a binding misuse (wrong argument
// types where no status can be returned) or, after release(), for methods that
// have no status to return.
//
// Lifetime
//   * The wrapper holds one Manager reference until release() or GC.
//   * Every external ArrayBuffer over pool memory holds one more (Ref() before
//     creation, Unref() in its finalizer), so slab memory stays mapped while any
//     ArrayBuffer can still reach it. Node 20 runs the finalizer when the
//     backing store is freed (after detach or GC), on the JS thread.
//   * An exported slab additionally holds the slab's export count
//     (ExportSlab / ReleaseSlabExport). When the slab is retired (emptied and given back while
//     exported), the JS side detaches its still-attached export and gives the count back at
//     once (TakeRetiredSlab / ReleaseSlab), rather than when the collector frees it.
//   * `out` is backed by an OutBlock shared by the wrapper and the ArrayBuffer:
//     whichever goes last frees it, so neither a transferred `out` nor a
//     collected wrapper can leave the other writing freed memory.
//   * Shared managers ({shared: name}) live in a process-wide registry that
//     holds one reference while at least one wrapper in any thread uses it.
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "abi.h"
#include "binding_util.h"
#include "hardening.h"
#include "manager.h"
#include "status.h"

namespace isopool {
namespace binding {
namespace {

/// An id that no manager ever issues (ids are < 2^53): what a malformed JS id
/// (NaN, negative, fractional, unsafe) is presented as, so the core counts it
/// as forged exactly like any other never-issued id.
constexpr uint64_t kMalformedId = UINT64_MAX;

inline double U64(uint64_t v) noexcept { return static_cast<double>(v); }
inline double Limit(uint64_t v) noexcept {
  return v == kUnlimited ? std::numeric_limits<double>::infinity() : static_cast<double>(v);
}

uint64_t SteadyNowNs() noexcept {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

/// Reads a handle id: false if not a number; a non-safe-integer becomes kMalformedId.
bool ReadId(napi_env env, napi_value value, uint64_t* out) noexcept {
  double d;
  if (!ReadDouble(env, value, &d)) return false;
  *out = IsIntegerIn(d, 0, kMaxSafeInteger) ? static_cast<uint64_t>(d) : kMalformedId;
  return true;
}

/// Reads a limit field: Infinity -> kUnlimited, else a safe integer >= 0.
bool ReadLimit(napi_env env, napi_value value, uint64_t* out) noexcept {
  double d;
  if (!ReadDouble(env, value, &d)) return false;
  if (d == std::numeric_limits<double>::infinity()) {
    *out = kUnlimited;
    return true;
  }
  if (!IsIntegerIn(d, 0, kMaxSafeInteger)) return false;
  *out = static_cast<uint64_t>(d);
  return true;
}

/// applyJournal()'s results besides the index of the failed op.
constexpr double kJournalApplied = -1, kJournalBadCount = -2, kJournalClosed = -3;

/// Backing memory of `out`, then `in`, `fastIds` and `journal`, co-owned by the wrapper and
/// its ArrayBuffer (so a transfer() of that buffer by user code cannot free it under us).
struct OutBlock {
  std::atomic<uint32_t> refs{2};  ///< wrapper + ArrayBuffer
  double values[kOutLength + kInLength + kFastIdsLength + kJournalLength] = {};

  void Unref() noexcept {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
};

void FinalizeOutBlock(napi_env, void*, void* hint) { static_cast<OutBlock*>(hint)->Unref(); }

// --- hot calls: per-instance functions with arguments in `in` -------------------------
class ManagerWrap;

/// What allocIn() and freeIn() reach through their data pointer: no napi_unwrap, no argument
/// conversions (a prototype method of an ObjectWrap pays both, ~10-20% of a view round trip).
/// Reference counted by the wrapper and each function, so a function that outlives its wrapper
/// finds `wrap` null instead of freed memory.
struct HotState {
  ManagerWrap* wrap;  ///< nullptr once the wrapper is gone
  const double* in;   ///< the `in` slots (inside the OutBlock, which the wrapper keeps alive)
  uint32_t refs;      ///< JS thread only
  void Unref() noexcept {
    if (--refs == 0) delete this;
  }
};

void FinalizeHotState(napi_env, void* data, void*) { static_cast<HotState*>(data)->Unref(); }

/// An int32 from an `in` slot; false for NaN, fractions and out-of-range values.
inline bool AsInt32(double d, int32_t* out) noexcept {
  if (!IsIntegerIn(d, -2147483648.0, 2147483647.0)) return false;
  *out = static_cast<int32_t>(d);
  return true;
}

/// Runs a raw napi callback body; a C++ exception becomes a pending JS exception.
template <typename F>
napi_value CallHot(napi_env env, F&& body) {
  try {
    return body();
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();
  } catch (const std::exception& e) {
    napi_throw_error(env, nullptr, e.what());
  } catch (...) {
    napi_throw_error(env, nullptr, "isopool: internal error");
  }
  return nullptr;
}

/// The HotState of a hot call without arguments (nullptr with an exception pending on failure).
HotState* HotStateOf(napi_env env, napi_callback_info cbinfo) {
  void* data = nullptr;
  size_t argc = 0;
  if (napi_get_cb_info(env, cbinfo, &argc, nullptr, nullptr, &data) != napi_ok) return nullptr;
  return static_cast<HotState*>(data);
}

/// As HotStateOf, for a hot function of one optional argument: *arg (nullptr if absent) and *argc.
HotState* HotStateOf(napi_env env, napi_callback_info cbinfo, napi_value* arg, size_t* argc) {
  void* data = nullptr;
  *argc = 1;
  *arg = nullptr;
  if (napi_get_cb_info(env, cbinfo, argc, arg, nullptr, &data) != napi_ok) return nullptr;
  return static_cast<HotState*>(data);
}

// --- external ArrayBuffers over pool memory ---------------------------------------
struct SlotCache;

/// What a slot's ArrayBuffer remembers: a manager reference, and which handle and which
/// wrapper (holder token) it exposes, so its release can return parked memory (SPEC §3).
/// Buffers of the slot cache (below) outlive their first handle: `id` follows the handle
/// whose buffer holds the backing store now, and is 0 while the JS cache holds it.
struct SlotBuffer {
  Manager* manager;
  uint64_t id;
  uint32_t holder;
  SlotCache* cache = nullptr;  ///< one reference, for slot-cache buffers only
  const uint8_t* data = nullptr;
  size_t length = 0;
  uint32_t token = 0;   ///< index in SlotCache::by_token (the JS cache's index too)
  bool cached = false;  ///< in the JS cache (then id == 0)
};

/// Revocation by `ArrayBuffer.prototype.transfer()` (Node >= 21, non-shared managers).
/// Creating an external ArrayBuffer costs ~2 µs; moving a backing store between two
/// ArrayBuffers costs a few hundred ns. So each slot's backing store is created once and
/// then moves: at deallocation JS transfers it out of the handle's buffer (which detaches
/// that buffer: the revocation) into a new ArrayBuffer that its cache keeps, and the next
/// allocation of the slot hands that ArrayBuffer out as the new handle's buffer.
/// This records, per slot, the backing store that may serve the next allocation of exactly
/// its length, and which JS cache entry (token) holds it.
///
/// A backing store that is not returned (stolen by user code's own transfer(), leaked, or
/// revoked by a plain detach on close paths) keeps the id of its last handle, so its
/// finalizer still reports OnBufferReleased(id): parked memory and leak reclaim work as for
/// one-off buffers. Touched only on the JS thread (Node runs these finalizers there).
struct SlotCache {
  uint32_t refs = 1;  ///< the wrapper + one per SlotBuffer
  std::unordered_map<const uint8_t*, SlotBuffer*> by_slot;  ///< the newest buffer of each slot
  std::vector<SlotBuffer*> by_token;                         ///< nullptr: free token
  std::vector<uint32_t> free_tokens;
  uint64_t reused = 0;   ///< allocations served by a cached backing store

  void Unref() noexcept {
    if (--refs == 0) delete this;
  }
  /// Gives `b` a token (throws std::bad_alloc, leaving nothing changed).
  void Assign(SlotBuffer* b) {
    if (!free_tokens.empty()) {
      b->token = free_tokens.back();
      free_tokens.pop_back();
      by_token[b->token] = b;
      return;
    }
    by_token.push_back(b);
    b->token = static_cast<uint32_t>(by_token.size() - 1);
  }
  /// `b` is gone (its backing store died, or it was never handed out).
  void Forget(SlotBuffer* b) noexcept {
    auto it = by_slot.find(b->data);
    if (it != by_slot.end() && it->second == b) by_slot.erase(it);
    by_token[b->token] = nullptr;
    try {
      free_tokens.push_back(b->token);
    } catch (...) {
      // The token is simply never reused.
    }
  }
  /// The JS cache drops every entry (bounded size; manager close).
  void Flush() noexcept {
    for (auto it = by_slot.begin(); it != by_slot.end();) {
      if (it->second->cached) {
        it->second->cached = false;
        it = by_slot.erase(it);
      } else {
        ++it;
      }
    }
  }
};

/// Finalizer of a slot's ArrayBuffer (after detach or GC): tells the core the holder no
/// longer reaches the memory, then drops the references it held.
void FinalizeSlotBuffer(napi_env, void*, void* hint) {
  SlotBuffer* b = static_cast<SlotBuffer*>(hint);
  if (b->id != 0) b->manager->OnBufferReleased(b->id, b->holder);
  if (b->cache != nullptr) {
    b->cache->Forget(b);
    b->cache->Unref();
  }
  b->manager->Unref();
  delete b;
}

/// An external ArrayBuffer of `length` bytes at `data` over handle `id`, held by `holder`;
/// registered in `cache` (if not null) as its slot's buffer.
/// Raw napi (not Napi::ArrayBuffer::New with a finalizer object): one small hint allocation.
Napi::ArrayBuffer NewSlotBuffer(Napi::Env env, Manager* manager, uint64_t id, uint32_t holder, uint8_t* data,
                                size_t length, SlotCache* cache = nullptr) {
  SlotBuffer* hint = new SlotBuffer{manager, id, holder};
  if (cache != nullptr) {
    hint->data = data;
    hint->length = length;
    try {
      cache->Assign(hint);
      cache->by_slot[data] = hint;  // replaces the slot's previous buffer, if any
    } catch (...) {
      if (cache->by_token.size() > hint->token && cache->by_token[hint->token] == hint) cache->Forget(hint);
      delete hint;
      throw;
    }
    hint->cache = cache;
    ++cache->refs;
  }
  manager->Ref();
  napi_value result;
  napi_status status = napi_create_external_arraybuffer(env, data, length, FinalizeSlotBuffer, hint, &result);
  if (status != napi_ok) {
    hint->id = 0;
    FinalizeSlotBuffer(env, nullptr, hint);
    NAPI_THROW_IF_FAILED(env, status, Napi::ArrayBuffer());
  }
  return Napi::ArrayBuffer(env, result);
}

// --- holders: one token per wrapper; thread exit reclaims (SPEC §3) ---------------------
std::atomic<uint32_t> g_next_holder{1};  ///< holder tokens, unique per process (0 = none)

/// Per environment (main thread, each worker): the shared-manager attachments made in it,
/// so that when the environment is torn down (a worker exits) what they still hold is
/// reclaimed. Reference counted: the environment's instance data holds one reference and
/// every shared wrapper another, so neither outlives the other's use. Only the
/// environment's own thread touches it.
struct EnvHolders {
  std::vector<std::pair<Manager*, uint32_t>> attached;  ///< each holds a manager reference
  uint32_t refs = 1;                                    ///< the environment's
  bool torn_down = false;

  void Add(Manager* m, uint32_t token) {
    m->Ref();
    attached.emplace_back(m, token);
    ++refs;
  }
  /// close() of an attachment: it reclaimed its handles itself.
  void Remove(Manager* m, uint32_t token) noexcept {
    for (auto it = attached.begin(); it != attached.end(); ++it) {
      if (it->first == m && it->second == token) {
        attached.erase(it);
        m->Unref();
        return;
      }
    }
  }
  /// Environment teardown: no JS runs here any more, so what the leaving thread still holds
  /// (buffers included) can be reclaimed; counted as leaks.
  void TearDown() noexcept {
    torn_down = true;
    for (auto& [m, token] : attached) {
      m->ReclaimEnv(token, FreeReason::kLeak);
      m->Unref();
    }
    attached.clear();
  }
  void Unref() noexcept {
    if (--refs == 0) delete this;
  }
};

void FinalizeEnvHolders(napi_env, void* data, void*) {
  EnvHolders* holders = static_cast<EnvHolders*>(data);
  holders->TearDown();
  holders->Unref();
}

/// One environment's slab exports that still hold their slab's export count, by slab key, so
/// TakeRetiredSlab can find those whose slab was retired. JS thread only. One reference is the
/// wrapper's, one each export's (its finalizer may run after the wrapper is gone).
struct ExportBook {
  uint32_t refs = 1;
  uint64_t seen_epoch = 0;                       ///< Manager::SlabRetireEpoch at the last scan
  std::unordered_map<uint64_t, uint32_t> held;  ///< slab key -> exports not yet released
  std::vector<uint64_t> retired;                 ///< keys found retired by the last scan, not yet taken

  void Add(uint64_t key) { ++held[key]; }  // may throw std::bad_alloc
  void Drop(uint64_t key) noexcept {
    auto it = held.find(key);
    if (it != held.end() && --it->second == 0) held.erase(it);
  }
  void Unref() noexcept {
    if (--refs == 0) delete this;
  }
};

/// The finalizer hint of an exported slab ArrayBuffer, also napi_wrap'ed on it (ReleaseSlab).
struct SlabExport {
  Manager* manager;
  uint64_t slab_key;
  ExportBook* book;       ///< one reference; nullptr if the export is not listed
  bool released = false;  ///< the export count was given back early (ReleaseSlab)
};

void FinalizeSlabExport(napi_env, void*, void* hint) {
  SlabExport* e = static_cast<SlabExport*>(hint);
  if (!e->released) {
    if (e->book != nullptr) e->book->Drop(e->slab_key);
    e->manager->ReleaseSlabExport(e->slab_key);
  }
  if (e->book != nullptr) e->book->Unref();
  e->manager->Unref();
  delete e;
}

/// Detaches `ab` unless it already is. Throws if V8 refuses (a non-detachable
/// buffer that this addon did not create).
void DetachIfAttached(Napi::Env env, napi_value ab) {
  bool detached = false;
  napi_status status = napi_is_detached_arraybuffer(env, ab, &detached);
  if (status == napi_ok && !detached) status = napi_detach_arraybuffer(env, ab);
  if (status != napi_ok) throw ArgumentTypeError(env, "isopool: the buffer could not be detached (not an addon buffer?)");
}

/// undefined -> no buffer (true, *ab = nullptr); an ArrayBuffer -> it; anything else -> false.
bool ReadOptionalArrayBuffer(napi_env env, napi_value value, napi_value* ab) noexcept {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok) return false;
  if (type == napi_undefined) {
    *ab = nullptr;
    return true;
  }
  bool is_ab = false;
  if (napi_is_arraybuffer(env, value, &is_ab) != napi_ok || !is_ab) return false;
  *ab = value;
  return true;
}

// --- shared managers ({shared: name}) ----------------------------------------------
/// Process-wide, shared by every thread's copy of the addon (one .so, -z nodelete).
/// Deliberately never destroyed: no static destructor may race exiting workers.
struct SharedRegistry {
  struct Entry {
    Manager* manager;  ///< the registry's own reference
    uint64_t users;    ///< wrappers attached, over all threads
  };
  std::mutex mutex;
  std::unordered_map<std::string, Entry> entries;

  static SharedRegistry& Get() {
    static SharedRegistry* registry = new SharedRegistry();
    return *registry;
  }
};

bool SameShape(const ManagerConfig& a, const ManagerConfig& b) noexcept {
  if (a.max_allocation_size != b.max_allocation_size || a.pools.size() != b.pools.size()) return false;
  for (size_t i = 0; i < a.pools.size(); ++i) {
    if (a.pools[i].name != b.pools[i].name || a.pools[i].slot_size != b.pools[i].slot_size ||
        a.pools[i].queue_size != b.pools[i].queue_size) {
      return false;
    }
  }
  return true;
}

// --- config parsing (constructor only: throws) ------------------------------------
double ConfigNumber(Napi::Env env, Napi::Object obj, const char* key, const std::string& where) {
  Napi::Value v = obj.Get(key);
  if (!v.IsNumber()) throw ArgumentTypeError(env, "isopool: " + where + "." + key + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

ManagerConfig ParseConfig(Napi::Env env, Napi::Value value, std::string* shared) {
  if (!value.IsObject()) throw ArgumentTypeError(env, "isopool: NativeManager config must be an object");
  Napi::Object obj = value.As<Napi::Object>();
  ManagerConfig config;

  Napi::Value pools = obj.Get("pools");
  if (!pools.IsArray()) throw ArgumentTypeError(env, "isopool: config.pools must be an array");
  Napi::Array array = pools.As<Napi::Array>();
  for (uint32_t i = 0; i < array.Length(); ++i) {
    std::string where = "config.pools[" + std::to_string(i) + "]";
    Napi::Value item = array.Get(i);
    if (!item.IsObject()) throw ArgumentTypeError(env, "isopool: " + where + " must be an object");
    Napi::Object pool = item.As<Napi::Object>();
    Napi::Value name = pool.Get("name");
    if (!name.IsString()) throw ArgumentTypeError(env, "isopool: " + where + ".name must be a string");
    double slot = ConfigNumber(env, pool, "slotSize", where);
    double queue = ConfigNumber(env, pool, "queueSize", where);
    if (!IsIntegerIn(slot, 1, kMaxSafeInteger)) {
      throw StatusError(env, Status::kInvalidArgument, "isopool: " + where + ".slotSize must be a positive safe integer");
    }
    if (!IsIntegerIn(queue, 0, 4294967295.0)) {
      throw StatusError(env, Status::kInvalidArgument, "isopool: " + where + ".queueSize must be an integer in 0..2^32-1");
    }
    config.pools.push_back(PoolConfig{name.As<Napi::String>().Utf8Value(), static_cast<uint64_t>(slot),
                                      static_cast<uint32_t>(queue)});
  }

  double max = ConfigNumber(env, obj, "maxAllocationSize", "config");
  if (!IsIntegerIn(max, 1, kMaxSafeInteger)) {
    throw StatusError(env, Status::kInvalidArgument, "isopool: config.maxAllocationSize must be a positive safe integer");
  }
  config.max_allocation_size = static_cast<uint64_t>(max);

  Napi::Value hardened = obj.Get("hardened");
  if (!hardened.IsUndefined() && !hardened.IsBoolean()) {
    throw ArgumentTypeError(env, "isopool: config.hardened must be a boolean");
  }
  config.hardened = hardened.IsBoolean() && hardened.As<Napi::Boolean>().Value();

  // Optional (not yet in lib/native/binding.ts NativeConfig): a process-wide name.
  Napi::Value name = obj.Get("shared");
  if (!name.IsUndefined()) {
    if (!name.IsString()) throw ArgumentTypeError(env, "isopool: config.shared must be a string");
    *shared = name.As<Napi::String>().Utf8Value();
    if (shared->empty()) throw StatusError(env, Status::kInvalidArgument, "isopool: config.shared must not be empty");
  }
  return config;
}

// --- the class ----------------------------------------------------------------------
class ManagerWrap : public Napi::ObjectWrap<ManagerWrap> {
 public:
  static Napi::Function DefineClass(Napi::Env env) {
    return ObjectWrap<ManagerWrap>::DefineClass(
        env, "NativeManager",
        {
            InstanceMethod<&ManagerWrap::DefineType>("defineType"),
            InstanceMethod<&ManagerWrap::FindType>("findType"),
            InstanceMethod<&ManagerWrap::OpenChannel>("openChannel"),
            InstanceMethod<&ManagerWrap::FindChannel>("findChannel"),
            InstanceMethod<&ManagerWrap::CloseChannel>("closeChannel"),
            InstanceMethod<&ManagerWrap::CloseChannelClaim>("closeChannelClaim"),
            InstanceMethod<&ManagerWrap::CloseChannelFinish>("closeChannelFinish"),
            InstanceMethod<&ManagerWrap::DiscardChannel>("discardChannel"),
            InstanceMethod<&ManagerWrap::ChannelOptionsOf>("channelOptions"),
            InstanceMethod<&ManagerWrap::SetLimits>("setLimits"),
            InstanceMethod<&ManagerWrap::GetLimits>("getLimits"),
            InstanceMethod<&ManagerWrap::GetScopeLimits>("getScopeLimits"),
            InstanceMethod<&ManagerWrap::DrainRevocations>("drainRevocations"),
            InstanceMethod<&ManagerWrap::Allocate>("allocate"),
            InstanceMethod<&ManagerWrap::Free>("free"),
            InstanceMethod<&ManagerWrap::Validate>("validate"),
            InstanceMethod<&ManagerWrap::Lookup>("lookup"),
            InstanceMethod<&ManagerWrap::IsReleased>("isReleased"),
            InstanceMethod<&ManagerWrap::CountViolation>("countViolation"),
            InstanceMethod<&ManagerWrap::Detach>("detach"),
            InstanceMethod<&ManagerWrap::ExportSlab>("exportSlab"),
            InstanceMethod<&ManagerWrap::TakeRetiredSlab>("takeRetiredSlab"),
            InstanceMethod<&ManagerWrap::ReleaseSlab>("releaseSlab"),
            InstanceMethod<&ManagerWrap::ResidentBytes>("residentBytes"),
            InstanceMethod<&ManagerWrap::BeginTransfer>("beginTransfer"),
            InstanceMethod<&ManagerWrap::Adopt>("adopt"),
            InstanceMethod<&ManagerWrap::ChannelUsage>("channelUsage"),
            InstanceMethod<&ManagerWrap::TypeUsage>("typeUsage"),
            InstanceMethod<&ManagerWrap::RecountChannel>("recountChannel"),
            InstanceMethod<&ManagerWrap::OpenChannels>("openChannels"),
            InstanceMethod<&ManagerWrap::Snapshot>("snapshot"),
            InstanceMethod<&ManagerWrap::InjectAllocationFailures>("injectAllocationFailures"),
            InstanceMethod<&ManagerWrap::Release>("release"),
            InstanceMethod<&ManagerWrap::ReclaimHeld>("reclaimHeld"),
            InstanceMethod<&ManagerWrap::FlushSlotCache>("flushSlotCache"),
            InstanceMethod<&ManagerWrap::SlotCacheStats>("slotCacheStats"),
        });
  }

  // --- test hooks (only with ISOPOOL_TEST_HOOKS=1 in the environment) ---------------------
  static bool TestHooksEnabled() noexcept {
    const char* v = std::getenv("ISOPOOL_TEST_HOOKS");
    return v != nullptr && v[0] == '1' && v[1] == 0;
  }

  /// debugWriteBeyond(id, n): writes n bytes of 0xA5 at [size, size + n) of a live memory
  /// handle, i.e. past its requested extent, as a native overrun would: over the hardened
  /// canary, then the rest of the slot, then whatever follows (a guard page in hardened mode:
  /// the process faults). Returns the handle's status. Installed on the prototype only when
  /// test hooks are enabled (InitManager), so production code cannot reach it.
  static Napi::Value DebugWriteBeyond(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ManagerWrap* self = Unwrap(info.This().As<Napi::Object>());
    Manager* m = self->Live(env);
    uint64_t id;
    double n;
    if (!ReadId(env, info[0], &id) || !ReadDouble(env, info[1], &n) || !IsIntegerIn(n, 0, kMaxSafeInteger)) {
      throw ArgumentTypeError(env, "isopool: debugWriteBeyond(id, n): id and n must be numbers");
    }
    HandleInfo h;
    const Status s = m->Lookup(id, &h);
    if (s != Status::kOk || h.data == nullptr) return self->StatusValue(env, s == Status::kOk ? Status::kInvalidArgument : s);
    volatile uint8_t* p = h.data + h.size;
    for (uint64_t i = 0; i < static_cast<uint64_t>(n); ++i) p[i] = 0xA5;
    return self->StatusValue(env, Status::kOk);
  }

  explicit ManagerWrap(const Napi::CallbackInfo& info) : ObjectWrap<ManagerWrap>(info) {
    Napi::Env env = info.Env();
    std::string shared;
    ManagerConfig config = ParseConfig(env, info[0], &shared);

    // Acquire the manager last among the steps that can throw, so a throwing
    // constructor leaks nothing (~ManagerWrap does not run then).
    OutBlock* block = new OutBlock();
    napi_value ab;
    if (napi_create_external_arraybuffer(env, block->values, sizeof(block->values), FinalizeOutBlock, block, &ab) != napi_ok) {
      delete block;
      NAPI_THROW_VOID(Napi::Error::New(env, "isopool: could not create the scratch buffer"));
    }
    // From here the ArrayBuffer owns one reference; this constructor owns the other.
    Napi::Float64Array out;
    try {
      out = Napi::Float64Array::New(env, kOutLength, Napi::ArrayBuffer(env, ab), 0);
    } catch (...) {
      block->Unref();
      throw;
    }
    config.single_owner = shared.empty();  // only this JS thread calls a non-shared manager (and runs its finalizers)
    Status status = shared.empty() ? Manager::Create(config, &manager_) : Attach(shared, config);
    if (status != Status::kOk) {
      block->Unref();
      manager_ = nullptr;
      throw StatusError(env, status, status == Status::kInvalidArgument && !shared.empty()
                                         ? "isopool: shared manager \"" + shared + "\" exists with other pools or maxAllocationSize"
                                         : std::string("isopool: could not create the native manager (") + StatusCode(status) + ")");
    }
    block_ = block;
    out_ = block->values;
    shared_ = std::move(shared);
    holder_ = g_next_holder.fetch_add(1, std::memory_order_relaxed);
    // One thread uses a non-shared manager, so its buffers' finalizers and its calls never race.
    if (shared_.empty()) cache_ = new (std::nothrow) SlotCache();
    book_ = new (std::nothrow) ExportBook();  // nullptr: slab exports are only released by GC
    if (!shared_.empty()) {
      void* data = nullptr;
      if (napi_get_instance_data(env, &data) == napi_ok && data != nullptr) {
        holders_ = static_cast<EnvHolders*>(data);
        holders_->Add(manager_, holder_);
      }
    }
    Napi::Object self = info.This().As<Napi::Object>();
    self.DefineProperty(Napi::PropertyDescriptor::Value("out", out, napi_enumerable));
    // A hardened build hardens every manager, whatever its options say (the fast lane must know).
    self.DefineProperty(Napi::PropertyDescriptor::Value(
        "hardened", Napi::Boolean::New(env, manager_->config().hardened || kHardenedBuild), napi_enumerable));
    self.DefineProperty(Napi::PropertyDescriptor::Value(
        "in", Napi::Float64Array::New(env, kInLength, Napi::ArrayBuffer(env, ab), kOutLength * sizeof(double)),
        napi_enumerable));
    constexpr size_t kFastIdsAt = kOutLength + kInLength, kJournalAt = kFastIdsAt + kFastIdsLength;
    fast_ids_ = block->values + kFastIdsAt;
    journal_ = block->values + kJournalAt;
    self.DefineProperty(Napi::PropertyDescriptor::Value(
        "fastIds", Napi::Float64Array::New(env, kFastIdsLength, Napi::ArrayBuffer(env, ab), kFastIdsAt * sizeof(double)),
        napi_enumerable));
    self.DefineProperty(Napi::PropertyDescriptor::Value(
        "journal", Napi::Float64Array::New(env, kJournalLength, Napi::ArrayBuffer(env, ab), kJournalAt * sizeof(double)),
        napi_enumerable));
    // snapshot()'s values, written in place: no ArrayBuffer per call (its allocation was most of
    // getResourceMetrics' tail). The property keeps the array, so `snap_` stays valid.
    Napi::Float64Array snap = Napi::Float64Array::New(env, kSnapDirect + kSnapPool * (1 + config.pools.size()));
    snap_ = snap.Data();
    snap_length_ = snap.ElementLength();
    self.DefineProperty(Napi::PropertyDescriptor::Value("snap", snap, napi_enumerable));
    hot_ = new HotState{this, block->values + kOutLength, 1};
    DefineHot(env, self, "allocIn", &ManagerWrap::AllocIn);
    DefineHot(env, self, "freeIn", &ManagerWrap::FreeIn);
    DefineHot(env, self, "reserveIds", &ManagerWrap::ReserveIdsHot);
    DefineHot(env, self, "applyJournal", &ManagerWrap::ApplyJournalHot);
  }

  /// Defines own function `name` over `hot_` (one more reference, dropped when it is collected).
  void DefineHot(Napi::Env env, Napi::Object self, const char* name, napi_callback cb) {
    napi_value fn;
    NAPI_THROW_IF_FAILED_VOID(env, napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, hot_, &fn));
    NAPI_THROW_IF_FAILED_VOID(env, napi_add_finalizer(env, fn, hot_, FinalizeHotState, nullptr, nullptr));
    ++hot_->refs;
    self.DefineProperty(Napi::PropertyDescriptor::Value(name, Napi::Value(env, fn), napi_enumerable));
  }

  ~ManagerWrap() override {
    // Collected without close(): this thread's buffers may still be in use, so nothing is
    // reclaimed now; the environment's teardown reclaims what the attachment still holds.
    ReleaseManager(/*reclaim=*/false);
    if (holders_ != nullptr) holders_->Unref();
    if (block_ != nullptr) block_->Unref();
    if (cache_ != nullptr) cache_->Unref();
    if (book_ != nullptr) book_->Unref();
    if (hot_ != nullptr) {
      hot_->wrap = nullptr;
      hot_->Unref();
    }
  }

 private:
  // --- lifetime ---------------------------------------------------------------------
  /// Attaches to (or creates) the process-wide manager `name`.
  Status Attach(const std::string& name, const ManagerConfig& config) {
    SharedRegistry& registry = SharedRegistry::Get();
    std::lock_guard<std::mutex> lock(registry.mutex);
    auto it = registry.entries.find(name);
    if (it != registry.entries.end()) {
      if (!SameShape(it->second.manager->config(), config)) return Status::kInvalidArgument;
      it->second.manager->Ref();
      it->second.users++;
      manager_ = it->second.manager;
      return Status::kOk;
    }
    Manager* created = nullptr;
    Status status = Manager::Create(config, &created);
    if (status != Status::kOk) return status;
    created->Ref();  // one for the registry, one (from Create) for this wrapper
    registry.entries.emplace(name, SharedRegistry::Entry{created, 1});
    manager_ = created;
    return Status::kOk;
  }

  /// Drops this wrapper's reference (and its registry use). Idempotent. With `reclaim` (an
  /// explicit release(): the JS side revoked its buffers already), a shared attachment
  /// first frees what it still holds.
  void ReleaseManager(bool reclaim) noexcept {
    Manager* manager = manager_;
    if (manager == nullptr) return;
    manager_ = nullptr;
    if (!shared_.empty()) {
      if (reclaim && holders_ != nullptr && !holders_->torn_down) {
        manager->ReclaimEnv(holder_, FreeReason::kManagerClose);
        holders_->Remove(manager, holder_);
      }
      Manager* registry_ref = nullptr;
      {
        SharedRegistry& registry = SharedRegistry::Get();
        std::lock_guard<std::mutex> lock(registry.mutex);
        auto it = registry.entries.find(shared_);
        if (it != registry.entries.end() && it->second.manager == manager && --it->second.users == 0) {
          registry_ref = it->second.manager;
          registry.entries.erase(it);
        }
      }
      if (registry_ref != nullptr) registry_ref->Unref();
    }
    manager->Unref();
  }

  // --- helpers -----------------------------------------------------------------------
  static Napi::Value Num(Napi::Env env, double v) { return Napi::Number::New(env, v); }
  Napi::Value StatusValue(Napi::Env env, Status s) const { return Num(env, StatusNumber(s)); }
  Napi::Value NegStatusValue(Napi::Env env, Status s) const { return Num(env, -StatusNumber(s)); }

  /// For methods without a status result: throws after release().
  Manager* Live(Napi::Env env) const {
    if (manager_ == nullptr) throw StatusError(env, Status::kManagerClosed, "isopool: the native manager was released");
    return manager_;
  }

  void WriteInfo(const HandleInfo& info, uint32_t violations, bool with_age = true) noexcept {
    double* o = out_;
    o[info_out::kType] = info.type;
    o[info_out::kChannel] = info.channel;
    o[info_out::kPool] = info.pool;
    o[info_out::kSize] = U64(info.size);
    o[info_out::kSlotBytes] = U64(info.slot_bytes);
    o[info_out::kCharged] = U64(info.charged);
    uint64_t now = with_age && info.alloc_time_ns != 0 ? SteadyNowNs() : 0;
    o[info_out::kAgeNs] = now > info.alloc_time_ns ? U64(now - info.alloc_time_ns) : 0;
    o[info_out::kLatencyNs] = U64(info.latency_ns);
    o[info_out::kSlabKey] = U64(info.slab_key);
    o[info_out::kSlabOffset] = U64(info.slab_offset);
    o[info_out::kInTransit] = info.in_transit ? 1 : 0;
    o[info_out::kOwner] = info.owner;
    o[info_out::kViolationMask] = violations;
    o[info_out::kClosedByChannel] = (violations & ViolationBit(Violation::kChannelClosed)) != 0 ? 1 : 0;
  }

  void WriteUsage(const LedgerUsage& usage) noexcept {
    out_[usage_out::kBytes] = U64(usage.bytes);
    out_[usage_out::kHandles] = U64(usage.handles);
    out_[usage_out::kPeakBytes] = U64(usage.peak_bytes);
    out_[usage_out::kLimitRejections] = U64(usage.limit_rejections);
    for (uint32_t i = 0; i < kViolationKinds; ++i) out_[usage_out::kViolations + i] = U64(usage.violations[i]);
  }

  // --- types and channels -------------------------------------------------------------
  Napi::Value DefineType(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (manager_ == nullptr) return NegStatusValue(env, Status::kManagerClosed);
    int32_t kind;
    if (!info[0].IsString() || !ReadInt32(env, info[1], &kind) || (kind != 0 && kind != 1)) {
      return NegStatusValue(env, Status::kInvalidArgument);
    }
    int32_t index = -1;
    Status s = manager_->DefineType(info[0].As<Napi::String>().Utf8Value(), static_cast<TypeKind>(kind), &index);
    return s == Status::kOk ? Num(env, index) : NegStatusValue(env, s);
  }

  Napi::Value FindType(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Manager* m = Live(env);
    if (!info[0].IsString()) throw ArgumentTypeError(env, "isopool: findType(name): name must be a string");
    const int32_t index = m->FindType(info[0].As<Napi::String>().Utf8Value());
    if (index >= 0) out_[type_out::kKind] = static_cast<double>(m->KindOf(index));
    return Num(env, index);
  }

  Napi::Value OpenChannel(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (manager_ == nullptr) return NegStatusValue(env, Status::kManagerClosed);
    int32_t access, zero, immediate;
    if (!info[0].IsString() || !ReadInt32(env, info[1], &access) || !ReadInt32(env, info[2], &zero) ||
        !ReadInt32(env, info[3], &immediate) || (access != 0 && access != 1) || (zero != 0 && zero != 1) ||
        (immediate != 0 && immediate != 1)) {
      return NegStatusValue(env, Status::kInvalidArgument);
    }
    ChannelOptions options;
    options.access = static_cast<AccessMode>(access);
    options.zero = static_cast<ZeroMode>(zero);
    options.immediate_reuse = immediate == 1;
    int32_t index = -1;
    bool created = false;
    Status s = manager_->OpenChannel(info[0].As<Napi::String>().Utf8Value(), options, &index, &created);
    if (s != Status::kOk) return NegStatusValue(env, s);
    out_[open_out::kCreated] = created ? 1 : 0;
    return Num(env, index);
  }

  Napi::Value FindChannel(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Manager* m = Live(env);
    if (!info[0].IsString()) throw ArgumentTypeError(env, "isopool: findChannel(name): name must be a string");
    const int32_t index = m->FindChannel(info[0].As<Napi::String>().Utf8Value());
    if (index >= 0) {
      const ChannelOptions o = m->OptionsOf(index);
      out_[find_out::kBits] = static_cast<int32_t>(o.access) | (static_cast<int32_t>(o.zero) << 1) | (o.immediate_reuse ? 4 : 0);
      out_[find_out::kOwner] = m->OwnerOf(index);
    }
    return Num(env, index);
  }

  /// closeChannel(channel): begins a close (Manager::BeginChannelClose). Returns the status;
  /// out[0] = handles it frees, out[1] = their charged bytes. closeChannelStep frees them.
  Napi::Value CloseChannel(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (manager_ == nullptr) return StatusValue(env, Status::kManagerClosed);
    int32_t channel;
    if (!ReadInt32(env, info[0], &channel)) return StatusValue(env, Status::kInvalidArgument);
    uint64_t count = 0, bytes = 0;
    const Status s = manager_->BeginChannelClose(channel, CallContext{holder_, 0}, &count, &bytes);
    out_[close_out::kCount] = U64(count);
    out_[close_out::kBytes] = U64(bytes);
    return StatusValue(env, s);
  }

  /// closeChannelClaim(channel, max): claims up to `max` handles of a close under way.
  /// [id, type, size, charged, violation mask] per claimed handle, or -status.
  Napi::Value CloseChannelClaim(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (manager_ == nullptr) return NegStatusValue(env, Status::kManagerClosed);
    int32_t channel;
    if (!ReadInt32(env, info[0], &channel)) return NegStatusValue(env, Status::kInvalidArgument);
    const double max = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
    if (!IsIntegerIn(max, 1, kMaxSafeInteger)) return NegStatusValue(env, Status::kInvalidArgument);
    std::vector<HandleInfo>& claimed = closed_;
    claimed.clear();
    const Status s = manager_->CloseChannelClaim(channel, static_cast<uint64_t>(max), &claimed);
    if (s != Status::kOk) return NegStatusValue(env, s);
    Napi::Float64Array result = Napi::Float64Array::New(env, claimed.size() * 5);
    double* d = result.Data();
    for (const HandleInfo& h : claimed) {
      *d++ = U64(h.id);
      *d++ = h.type;
      *d++ = U64(h.size);
      *d++ = U64(h.charged);
      *d++ = h.violations;
    }
    if (claimed.capacity() > kClosedKept) std::vector<HandleInfo>().swap(claimed);
    return result;
  }

  /// closeChannelFinish(channel, keep: Uint8Array | null): frees what the last claim took,
  /// parking the k-th's memory until its buffer dies where keep[k] is set. Returns the handles
  /// still to free, or -status.
  Napi::Value CloseChannelFinish(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (manager_ == nullptr) return NegStatusValue(env, Status::kManagerClosed);
    int32_t channel;
    if (!ReadInt32(env, info[0], &channel)) return NegStatusValue(env, Status::kInvalidArgument);
    const uint8_t* keep = nullptr;
    size_t keep_n = 0;
    if (info[1].IsTypedArray() && info[1].As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
      Napi::Uint8Array k = info[1].As<Napi::Uint8Array>();
      keep = k.Data();
      keep_n = k.ElementLength();
    } else if (!info[1].IsNull() && !info[1].IsUndefined()) {
      return NegStatusValue(env, Status::kInvalidArgument);
    }
    uint64_t left = 0;
    const Status s = manager_->CloseChannelFinish(channel, CallContext{holder_, 0}, keep, keep_n, &left);
    if (s != Status::kOk) return NegStatusValue(env, s);
    return Num(env, U64(left));
  }

  Napi::Value DiscardChannel(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (manager_ == nullptr) return StatusValue(env, Status::kManagerClosed);
    int32_t channel;
    if (!ReadInt32(env, info[0], &channel)) return StatusValue(env, Status::kInvalidArgument);
    const double owner = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
    if (!IsIntegerIn(owner, 1, 4294967295.0)) return StatusValue(env, Status::kInvalidArgument);
    return StatusValue(env, manager_->DiscardChannel(channel, static_cast<uint32_t>(owner)));
  }

  Napi::Value ChannelOptionsOf(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Manager* m = Live(env);
    int32_t channel;
    if (!ReadInt32(env, info[0], &channel)) throw ArgumentTypeError(env, "isopool: channelOptions(channel): channel must be an integer");
    ChannelOptions o = m->OptionsOf(channel);
    return Num(env, static_cast<int32_t>(o.access) | (static_cast<int32_t>(o.zero) << 1) | (o.immediate_reuse ? 4 : 0));
  }

  // --- limits ---------------------------------------------------------------------------
  Napi::Value SetLimits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (manager_ == nullptr) return StatusValue(env, Status::kManagerClosed);
    int32_t type, channel;
    Limits l;
    if (!ReadInt32(env, info[0], &type) || !ReadInt32(env, info[1], &channel) ||
        !ReadLimit(env, info[2], &l.max_bytes) || !ReadLimit(env, info[3], &l.max_handles) ||
        !ReadLimit(env, info[4], &l.max_allocation_size) || !ReadLimit(env, info[5], &l.soft_bytes)) {
      return StatusValue(env, Status::kInvalidArgument);
    }
    return StatusValue(env, manager_->SetLimits(type, channel, l));
  }

  void GetLimits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Manager* m = Live(env);
    int32_t type, channel;
    if (!ReadInt32(env, info[0], &type) || !ReadInt32(env, info[1], &channel)) {
      throw ArgumentTypeError(env, "isopool: getLimits(type, channel): both must be integers");
    }
    WriteLimits(m->EffectiveLimits(type, channel));
  }

  void GetScopeLimits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Manager* m = Live(env);
    int32_t type, channel;
    if (!ReadInt32(env, info[0], &type) || !ReadInt32(env, info[1], &channel)) {
      throw ArgumentTypeError(env, "isopool: getScopeLimits(type, channel): both must be integers");
    }
    WriteLimits(m->ScopeLimits(type, channel));
  }

  void WriteLimits(const Limits& l) noexcept {
    out_[limits_out::kMaxBytes] = Limit(l.max_bytes);
    out_[limits_out::kMaxHandles] = Limit(l.max_handles);
    out_[limits_out::kMaxAllocationSize] = Limit(l.max_allocation_size);
    out_[limits_out::kSoftBytes] = Limit(l.soft_bytes);
  }

  /// Ids freed elsewhere whose buffers this wrapper must detach, or undefined (the common,
  /// cheap case: one relaxed load).
  Napi::Value DrainRevocations(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (manager_ == nullptr || !manager_->HasRevocations()) return env.Undefined();
    std::vector<uint64_t> ids;
    manager_->DrainRevocations(holder_, &ids);
    if (ids.empty()) return env.Undefined();
    Napi::Float64Array result = Napi::Float64Array::New(env, ids.size());
    for (size_t i = 0; i < ids.size(); ++i) result[i] = U64(ids[i]);
    return result;
  }

  // --- handles (hot) ------------------------------------------------------------------------
  /// allocate(type, size, channel, mode, expectedOwner?): see DoAllocate.
  Napi::Value Allocate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (manager_ == nullptr) return StatusValue(env, Status::kManagerClosed);
    int32_t type, channel;
    double size_d;
    if (!ReadInt32(env, info[0], &type) || !ReadDouble(env, info[1], &size_d) || !ReadInt32(env, info[2], &channel)) {
      return StatusValue(env, Status::kInvalidArgument);
    }
    int32_t mode = 0;
    if (!ReadInt32(env, info[3], &mode)) mode = ReadFlag(env, info[3]) ? kBufferFresh : kBufferNone;
    double owner_d = 0;
    if (info.Length() <= 4 || !ReadDouble(env, info[4], &owner_d)) owner_d = 0;
    return DoAllocate(env, type, size_d, channel, mode, owner_d);
  }

  /// allocIn(): allocate with its arguments in `in` (InArgs.Alloc*): no argument conversions.
  static napi_value AllocIn(napi_env env, napi_callback_info cbinfo) {
    HotState* hot = HotStateOf(env, cbinfo);
    if (hot == nullptr) return nullptr;
    return CallHot(env, [&]() -> Napi::Value {
      Napi::Env e(env);
      ManagerWrap* self = hot->wrap;
      if (self == nullptr || self->manager_ == nullptr) return Num(e, StatusNumber(Status::kManagerClosed));
      const double* in = hot->in;
      int32_t type, channel, mode;
      if (!AsInt32(in[in_args::kAllocType], &type) || !AsInt32(in[in_args::kAllocChannel], &channel)) {
        return Num(e, StatusNumber(Status::kInvalidArgument));
      }
      if (!AsInt32(in[in_args::kAllocMode], &mode)) mode = kBufferNone;
      return self->DoAllocate(e, type, in[in_args::kAllocSize], channel, mode, in[in_args::kAllocOwner]);
    });
  }

  /// Allocates `size_d` of `type` in `channel`. mode: 0 no buffer (view memory, counters), 1 a
  /// fresh external ArrayBuffer, 2 the slot cache (a fresh one, or "take cache entry
  /// out[kCacheToken]"; 2 is 1 without a cache). owner_d > 0: the expected owner epoch.
  Napi::Value DoAllocate(Napi::Env env, int32_t type, double size_d, int32_t channel, int32_t mode, double owner_d) {
    if (!IsIntegerIn(size_d, 1, kMaxSafeInteger)) return StatusValue(env, Status::kInvalidSize);
    const uint64_t size = static_cast<uint64_t>(size_d);
    CallContext ctx{holder_, 0};
    if (IsIntegerIn(owner_d, 0, 4294967295.0)) ctx.expected_owner = static_cast<uint32_t>(owner_d);
    Allocation a;
    Status s = manager_->Allocate(type, size, channel, ctx, &a);
    double* o = out_;
    if (s == Status::kResourceLimit) {
      // What the refused allocation would have cost (0 if the core did not say):
      // never leave a previous call's charge in these slots.
      o[alloc_out::kSlotBytes] = U64(a.slot_bytes);
      o[alloc_out::kCharged] = U64(a.charged);
      o[alloc_out::kRefusedScope] = static_cast<double>(a.refused_scope);
      o[alloc_out::kRefusedLimit] = Limit(a.refused_limit);
      o[alloc_out::kRefusedInUse] = U64(a.refused_in_use);
      o[alloc_out::kRefusedHandles] = a.refused_handles ? 1 : a.refused_size ? 2 : 0;
      return StatusValue(env, s);
    }
    if (s != Status::kOk) return StatusValue(env, s);
    o[alloc_out::kId] = U64(a.id);
    o[alloc_out::kSlotBytes] = U64(a.slot_bytes);
    o[alloc_out::kCharged] = U64(a.charged);
    o[alloc_out::kPool] = a.pool;
    o[alloc_out::kSlabKey] = U64(a.slab_key);
    o[alloc_out::kSlabOffset] = U64(a.slab_offset);
    o[alloc_out::kSoftCrossed] = static_cast<double>(a.soft_crossed);
    o[alloc_out::kLatencyNs] = U64(a.latency_ns);
    o[alloc_out::kRefusedScope] = 0;
    if (mode == kBufferNone || a.data == nullptr) return StatusValue(env, Status::kOk);
    SlotCache* cache = mode == kBufferSlotCache ? cache_ : nullptr;
    if (cache != nullptr) {
      o[alloc_out::kCacheEvict] = -1;
      auto it = cache->by_slot.find(a.data);
      if (it != cache->by_slot.end()) {
        SlotBuffer* b = it->second;
        if (b->cached && b->length == size) {
          b->cached = false;
          b->id = a.id;
          b->holder = holder_;
          ++cache->reused;
          o[alloc_out::kCacheToken] = b->token;
          return StatusValue(env, Status::kOk);
        }
        // Another length: ArrayBuffers are exactly `size` bytes, so this one cannot serve.
        if (b->cached) {
          b->cached = false;
          o[alloc_out::kCacheEvict] = b->token;
        }
        cache->by_slot.erase(it);
      }
    }
    try {
      Napi::ArrayBuffer ab = NewSlotBuffer(env, manager_, a.id, holder_, a.data, static_cast<size_t>(size), cache);
      ++buffers_created_;
      if (cache != nullptr) o[alloc_out::kCacheToken] = cache->by_slot[a.data]->token;
      return ab;
    } catch (...) {
      // No buffer, no handle: undo so a failed call changes nothing.
      HandleInfo undone;
      uint32_t violations = 0;
      manager_->Free(a.id, channel, FreeReason::kDeallocate, ctx, &undone, &violations);
      throw;
    }
  }

  /// free(id, presenter, reason, ab?, keepUntilReleased?, cacheToken?): see DoFree.
  Napi::Value Free(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (manager_ == nullptr) return StatusValue(env, Status::kManagerClosed);
    uint64_t id;
    int32_t presenter, reason;
    napi_value ab;
    if (!ReadId(env, info[0], &id) || !ReadInt32(env, info[1], &presenter) || !ReadInt32(env, info[2], &reason) ||
        !ReadOptionalArrayBuffer(env, info[3], &ab)) {
      return StatusValue(env, Status::kInvalidArgument);
    }
    int32_t token = -1;
    if (info.Length() <= 5 || !ReadInt32(env, info[5], &token)) token = -1;
    return DoFree(env, id, presenter, reason, ab, ReadFlag(env, info[4]), token);
  }

  /// freeIn(ab?): free with the other arguments in `in` (InArgs.Free*).
  static napi_value FreeIn(napi_env env, napi_callback_info cbinfo) {
    size_t argc = 0;
    napi_value argv[1];
    HotState* hot = HotStateOf(env, cbinfo, &argv[0], &argc);
    if (hot == nullptr) return nullptr;
    return CallHot(env, [&]() -> Napi::Value {
      Napi::Env e(env);
      ManagerWrap* self = hot->wrap;
      if (self == nullptr || self->manager_ == nullptr) return Num(e, StatusNumber(Status::kManagerClosed));
      const double* in = hot->in;
      napi_value ab = nullptr;
      int32_t presenter, reason, token;
      if ((argc >= 1 && !ReadOptionalArrayBuffer(env, argv[0], &ab)) || !AsInt32(in[in_args::kFreePresenter], &presenter) ||
          !AsInt32(in[in_args::kFreeReason], &reason)) {
        return Num(e, StatusNumber(Status::kInvalidArgument));
      }
      if (!AsInt32(in[in_args::kFreeToken], &token)) token = -1;
      const double id_d = in[in_args::kFreeId];
      const uint64_t id = IsIntegerIn(id_d, 0, kMaxSafeInteger) ? static_cast<uint64_t>(id_d) : kMalformedId;
      return self->DoFree(e, id, presenter, reason, ab, in[in_args::kFreeKeep] == 1, token);
    });
  }

  /// Frees `id` presented by `presenter` (-1: the manager). Detaches `ab` (if given) after a
  /// successful free. `keep`: our buffer cannot vouch for the memory (see CallContext).
  /// `token` >= 0: the handle's slot-cache entry, to be marked cached (out[kRecached]).
  Napi::Value DoFree(Napi::Env env, uint64_t id, int32_t presenter, int32_t reason, napi_value ab, bool keep,
                     int32_t token) {
    return StatusValue(env, FreeStatus(env, id, presenter, reason, ab, keep, token));
  }

  /// DoFree's work; returns the status instead of a JS number (applyJournal's FREE ops).
  Status FreeStatus(Napi::Env env, uint64_t id, int32_t presenter, int32_t reason, napi_value ab, bool keep,
                    int32_t token) {
    if (reason < 0 || reason > static_cast<int32_t>(FreeReason::kLeak)) return Status::kInvalidArgument;
    // A buffer that is already detached was detached by other code (transfer() may hold the
    // memory): park it until its backing store dies. JS also asks for that when it only knows
    // the buffer became unreachable.
    CallContext ctx{holder_, 0, keep};
    if (ab != nullptr) {
      bool detached = false;
      if (napi_is_detached_arraybuffer(env, ab, &detached) == napi_ok && detached) ctx.keep_until_released = true;
    }
    HandleInfo h;
    uint32_t violations = 0;
    Status s = manager_->Free(id, presenter, static_cast<FreeReason>(reason), ctx, &h, &violations);
    WriteInfo(h, violations, /*with_age=*/false);
    out_[info_out::kRecached] = 0;
    // Parked memory waits for this buffer to die: it is not revoked (deferred reuse), or it was
    // detached by other code already.
    if (s == Status::kOk && ab != nullptr && !h.parked) DetachIfAttached(env, ab);
    // Slot cache: the caller revokes its buffer by moving the backing store into its cache.
    if (s == Status::kOk && cache_ != nullptr && token >= 0 &&
        static_cast<size_t>(token) < cache_->by_token.size() && !ctx.keep_until_released && !h.parked) {
      SlotBuffer* b = cache_->by_token[token];
      auto it = b == nullptr ? cache_->by_slot.end() : cache_->by_slot.find(b->data);
      if (b != nullptr && b->id == id && !b->cached && it != cache_->by_slot.end() && it->second == b) {
        b->id = 0;
        b->cached = true;
        out_[info_out::kRecached] = 1;
      }
    }
    return s;
  }

  // --- fast lane (single-owner view memory) ----------------------------------------------------
  /// reserveIds(n): reserves min(n, 256) handle ids for the JS fast lane and writes them to
  /// fastIds[0..got); returns got (0 when refused: a shared or hardened manager, released, or
  /// n not a non-negative integer). See Manager::ReserveIds.
  static napi_value ReserveIdsHot(napi_env env, napi_callback_info cbinfo) {
    size_t argc = 0;
    napi_value argv[1];
    HotState* hot = HotStateOf(env, cbinfo, &argv[0], &argc);
    if (hot == nullptr) return nullptr;
    return CallHot(env, [&]() -> Napi::Value {
      Napi::Env e(env);
      ManagerWrap* self = hot->wrap;
      double n_d = 0;
      if (self == nullptr || self->manager_ == nullptr || argc < 1 || !ReadDouble(env, argv[0], &n_d) ||
          !IsIntegerIn(n_d, 0, kMaxSafeInteger)) {
        return Num(e, 0);
      }
      const uint32_t n = static_cast<uint32_t>(std::min<double>(n_d, kFastIdsLength));
      uint64_t ids[kFastIdsLength];
      uint32_t got = 0;
      if (self->manager_->ReserveIds(n, ids, &got) != Status::kOk) return Num(e, 0);
      for (uint32_t i = 0; i < got; ++i) self->fast_ids_[i] = U64(ids[i]);
      return Num(e, got);
    });
  }

  /// applyJournal(count): applies journal ops 0..count-1 in order (journal_op). Returns -1 when
  /// all succeeded, else the index of the first that failed (the ones before it are applied,
  /// it and the later ones are not) with its status in out[0]; -2 (nothing applied) if count is
  /// not an integer in 0..1024; -3 (out[0] = ManagerClosed) after release().
  static napi_value ApplyJournalHot(napi_env env, napi_callback_info cbinfo) {
    size_t argc = 0;
    napi_value argv[1];
    HotState* hot = HotStateOf(env, cbinfo, &argv[0], &argc);
    if (hot == nullptr) return nullptr;
    return CallHot(env, [&]() -> Napi::Value {
      Napi::Env e(env);
      ManagerWrap* self = hot->wrap;
      if (self == nullptr) return Num(e, kJournalClosed);
      if (self->manager_ == nullptr) {
        self->out_[journal_out::kStatus] = StatusNumber(Status::kManagerClosed);
        return Num(e, kJournalClosed);
      }
      double count = 0;
      if (argc < 1 || !ReadDouble(env, argv[0], &count) || !IsIntegerIn(count, 0, kJournalOps)) {
        return Num(e, kJournalBadCount);
      }
      return Num(e, self->ApplyJournal(e, static_cast<uint32_t>(count)));
    });
  }

  double ApplyJournal(Napi::Env env, uint32_t count) {
    for (uint32_t i = 0; i < count; ++i) {
      const double* op = journal_ + size_t{i} * kJournalOpLength;
      int32_t kind = 0;
      Status s = Status::kInvalidArgument;
      const bool a_ok = IsIntegerIn(op[1], 0, kMaxSafeInteger);
      const uint64_t a = a_ok ? static_cast<uint64_t>(op[1]) : kMalformedId;
      if (!AsInt32(op[0], &kind)) {
        // not an op: refused
      } else if (kind == journal_op::kReissue) {
        if (a_ok && IsIntegerIn(op[2], 0, kMaxSafeInteger) && IsIntegerIn(op[3], 1, kMaxSafeInteger)) {
          s = manager_->Reissue(a, static_cast<uint64_t>(op[2]), static_cast<uint64_t>(op[3]));
        }
      } else if (kind == journal_op::kFree) {
        // Exactly freeIn() with in = [id, -1, Deallocate, 0, -1] and no buffer.
        s = FreeStatus(env, a, -1, static_cast<int32_t>(FreeReason::kDeallocate), nullptr, false, -1);
      } else if (kind == journal_op::kBurn) {
        if (a_ok && IsIntegerIn(op[2], 0, kMaxSafeInteger) && IsIntegerIn(op[3], 1, kMaxSafeInteger)) {
          s = manager_->Burn(a, static_cast<uint64_t>(op[2]), static_cast<uint64_t>(op[3]));
        }
      } else if (kind == journal_op::kFreeCached) {
        int32_t token = -1;
        if (AsInt32(op[2], &token) && token >= 0) {
          s = FreeStatus(env, a, -1, static_cast<int32_t>(FreeReason::kDeallocate), nullptr, false, token);
        }
      } else if (kind == journal_op::kSlotOwner) {
        int32_t token = -1;
        if (a_ok && IsIntegerIn(op[2], 1, kMaxSafeInteger) && AsInt32(op[3], &token) && token >= 0) {
          s = SetSlotOwner(a, static_cast<uint64_t>(op[2]), static_cast<uint32_t>(token));
        }
      }
      if (s != Status::kOk) {
        out_[journal_out::kStatus] = StatusNumber(s);
        return i;
      }
    }
    return kJournalApplied;
  }

  /// kSlotOwner: the slot-cache entry `token` follows its backing store from handle `old_id`
  /// to `new_id`. A token whose buffer has died meanwhile (collected after user code moved its
  /// store away) is no longer in the cache: nothing to follow, not an error.
  Status SetSlotOwner(uint64_t old_id, uint64_t new_id, uint32_t token) noexcept {
    if (cache_ == nullptr) return Status::kInvalidArgument;
    if (token >= cache_->by_token.size()) return Status::kOk;
    SlotBuffer* b = cache_->by_token[token];
    if (b != nullptr && b->id == old_id && !b->cached) b->id = new_id;
    return Status::kOk;
  }

  Napi::Value Validate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Manager* m = Live(env);
    uint64_t id;
    int32_t presenter;
    if (!ReadId(env, info[0], &id) || !ReadInt32(env, info[1], &presenter)) {
      throw ArgumentTypeError(env, "isopool: validate(id, presenter): both must be numbers");
    }
    HandleInfo h;
    uint32_t mask = m->Validate(id, presenter, &h);
    WriteInfo(h, mask);
    return Num(env, mask);
  }

  Napi::Value Lookup(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (manager_ == nullptr) return StatusValue(env, Status::kManagerClosed);
    uint64_t id;
    if (!ReadId(env, info[0], &id)) return StatusValue(env, Status::kInvalidArgument);
    HandleInfo h;
    Status s = manager_->Lookup(id, &h);
    WriteInfo(h, 0);
    return StatusValue(env, s);
  }

  Napi::Value IsReleased(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Manager* m = Live(env);
    uint64_t id;
    if (!ReadId(env, info[0], &id)) throw ArgumentTypeError(env, "isopool: isReleased(id): id must be a number");
    return Napi::Boolean::New(env, m->IsReleased(id));
  }

  void CountViolation(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Manager* m = Live(env);
    int32_t channel, kind;
    if (!ReadInt32(env, info[0], &channel) || !ReadInt32(env, info[1], &kind) || kind < 0 ||
        kind >= static_cast<int32_t>(kViolationKinds)) {
      throw ArgumentTypeError(env, "isopool: countViolation(channel, kind): kind must be 0..6");
    }
    m->CountViolation(channel, static_cast<Violation>(kind));
  }

  void Detach(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    napi_value ab;
    if (!ReadOptionalArrayBuffer(env, info[0], &ab) || ab == nullptr) {
      throw ArgumentTypeError(env, "isopool: detach(ab): ab must be an ArrayBuffer");
    }
    DetachIfAttached(env, ab);
  }

  Napi::Value ExportSlab(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (manager_ == nullptr) return NegStatusValue(env, Status::kManagerClosed);
    double key_d;
    if (!ReadDouble(env, info[0], &key_d) || !IsIntegerIn(key_d, 0, kMaxSafeInteger)) {
      return NegStatusValue(env, Status::kInvalidArgument);
    }
    const uint64_t key = static_cast<uint64_t>(key_d);
    uint8_t* base = nullptr;
    uint64_t length = 0;
    Status s = manager_->ExportSlab(key, &base, &length);
    if (s != Status::kOk) return NegStatusValue(env, s);
    manager_->Ref();
    SlabExport* hint = new SlabExport{manager_, key, nullptr};
    napi_value ab;
    napi_status ns = napi_create_external_arraybuffer(env, base, static_cast<size_t>(length), FinalizeSlabExport, hint, &ab);
    if (ns != napi_ok) {
      FinalizeSlabExport(env, nullptr, hint);
      NAPI_THROW_IF_FAILED(env, ns, Napi::Value());
    }
    // Listed (so ReleaseSlab can give it back early) only if both steps succeed; else it is
    // released by its finalizer, as before early release existed.
    if (book_ != nullptr && napi_wrap(env, ab, hint, nullptr, nullptr, nullptr) == napi_ok) {
      try {
        book_->Add(key);
        hint->book = book_;
        ++book_->refs;
      } catch (...) {  // std::bad_alloc: stays unlisted; the wrap then names an unlisted hint
      }
    }
    return Napi::Value(env, ab);
  }

  /// residentBytes(): bytes of the manager's mappings resident in memory (mincore), or a negative
  /// status once closed. A soak diagnostic: walks every slab under the registry lock.
  Napi::Value ResidentBytes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (manager_ == nullptr) return NegStatusValue(env, Status::kManagerClosed);
    return Num(env, static_cast<double>(manager_->ResidentBytes()));
  }

  /// takeRetiredSlab(): the key of a slab this environment exported that has since been
  /// retired, or -1. Scans this environment's exports only when the manager's retire epoch
  /// moved (a retirement anywhere, any thread).
  Napi::Value TakeRetiredSlab(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (manager_ == nullptr || book_ == nullptr) return Num(env, -1);
    ExportBook& book = *book_;
    const uint64_t epoch = manager_->SlabRetireEpoch();
    if (epoch != book.seen_epoch) {
      book.retired.clear();
      try {
        for (const auto& [key, count] : book.held) {
          if (manager_->SlabRetired(key)) book.retired.push_back(key);
        }
        book.seen_epoch = epoch;  // only after a complete scan
      } catch (...) {             // std::bad_alloc: what was found is returned; the next call rescans
      }
    }
    if (book.retired.empty()) return Num(env, -1);
    const uint64_t key = book.retired.back();
    book.retired.pop_back();
    return Num(env, static_cast<double>(key));
  }

  /// releaseSlab(ab): if `ab` is an attached slab export of this environment whose slab is
  /// retired, detaches it and gives its export count back now (unmapping the slab if it was the
  /// last), instead of when `ab` is collected. True if released. A detached `ab` is refused
  /// before anything else: its memory may live on in an ArrayBuffer that took it over
  /// (transfer(), a BYOB read), and its finalizer may already have run.
  Napi::Value ReleaseSlab(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    napi_value ab;
    if (!ReadOptionalArrayBuffer(env, info[0], &ab)) {
      throw ArgumentTypeError(env, "isopool: releaseSlab(ab): ab must be an ArrayBuffer or undefined");
    }
    bool detached = true;
    if (manager_ == nullptr || book_ == nullptr || ab == nullptr ||
        napi_is_detached_arraybuffer(env, ab, &detached) != napi_ok || detached) {
      return Napi::Boolean::New(env, false);
    }
    void* data = nullptr;
    if (napi_unwrap(env, ab, &data) != napi_ok || data == nullptr) return Napi::Boolean::New(env, false);
    SlabExport* e = static_cast<SlabExport*>(data);
    if (e->book != book_ || e->released || !manager_->SlabRetired(e->slab_key)) return Napi::Boolean::New(env, false);
    DetachIfAttached(env, ab);
    e->released = true;
    book_->Drop(e->slab_key);
    manager_->ReleaseSlabExport(e->slab_key);
    return Napi::Boolean::New(env, true);
  }

  // --- threads --------------------------------------------------------------------------------
  Napi::Value BeginTransfer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (manager_ == nullptr) return StatusValue(env, Status::kManagerClosed);
    uint64_t id;
    napi_value ab;
    if (!ReadId(env, info[0], &id) || !ReadOptionalArrayBuffer(env, info[1], &ab)) {
      return StatusValue(env, Status::kInvalidArgument);
    }
    HandleInfo h;
    Status s = manager_->BeginTransfer(id, &h);
    WriteInfo(h, 0);
    // Deferred reuse pins the sender's buffer instead (h.parked): left attached, never revoked.
    if (s == Status::kOk && ab != nullptr && !h.parked) DetachIfAttached(env, ab);
    return StatusValue(env, s);
  }

  Napi::Value Adopt(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (manager_ == nullptr) return StatusValue(env, Status::kManagerClosed);
    uint64_t id;
    if (!ReadId(env, info[0], &id)) return StatusValue(env, Status::kInvalidArgument);
    const bool external = ReadFlag(env, info[1]);
    HandleInfo h;
    Status s = manager_->Adopt(id, CallContext{holder_, 0}, external, &h);
    WriteInfo(h, 0);
    if (s != Status::kOk || !external || h.data == nullptr) return StatusValue(env, s);
    Napi::ArrayBuffer ab = NewSlotBuffer(env, manager_, id, holder_, h.data, static_cast<size_t>(h.size));
    ++buffers_created_;
    return ab;
  }

  // --- observation ------------------------------------------------------------------------------
  void ChannelUsage(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Manager* m = Live(env);
    int32_t channel;
    if (!ReadInt32(env, info[0], &channel)) throw ArgumentTypeError(env, "isopool: channelUsage(channel): channel must be an integer");
    WriteUsage(m->ChannelUsage(channel));
  }

  void TypeUsage(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Manager* m = Live(env);
    int32_t type, channel;
    if (!ReadInt32(env, info[0], &type) || !ReadInt32(env, info[1], &channel)) {
      throw ArgumentTypeError(env, "isopool: typeUsage(type, channel): both must be integers");
    }
    WriteUsage(m->TypeUsage(type, channel));
  }

  void RecountChannel(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Manager* m = Live(env);
    int32_t channel;
    if (!ReadInt32(env, info[0], &channel)) throw ArgumentTypeError(env, "isopool: recountChannel(channel): channel must be an integer");
    uint64_t handles = 0, charged = 0;
    m->RecountChannel(channel, &handles, &charged);
    out_[recount_out::kHandles] = U64(handles);
    out_[recount_out::kCharged] = U64(charged);
  }

  Napi::Value OpenChannels(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Manager* m = Live(env);
    std::vector<std::pair<std::string, int32_t>> open;
    m->OpenChannels(&open);
    Napi::Array result = Napi::Array::New(env, open.size());
    for (uint32_t i = 0; i < open.size(); ++i) {
      Napi::Array pair = Napi::Array::New(env, 2);
      pair.Set(0u, Napi::String::New(env, open[i].first));
      pair.Set(1u, Num(env, open[i].second));
      result.Set(i, pair);
    }
    return result;
  }

  // snapshot() layout: abi.h snapshot_out.
  static constexpr size_t kSnapDirect = snapshot_out::kPools, kSnapPool = snapshot_out::kPoolLength;

  static double* WritePool(double* o, const PoolStats& p) noexcept {
    *o++ = U64(p.slot_size);
    *o++ = p.queue_size;
    *o++ = U64(p.reserved_bytes);
    *o++ = U64(p.live_slots);
    *o++ = U64(p.live_bytes);
    *o++ = U64(p.retained_free_slots);
    *o++ = U64(p.hits);
    *o++ = U64(p.misses);
    *o++ = U64(p.released_to_system);
    *o++ = U64(p.failures);
    return o;
  }

  static double* WriteLatency(double* o, const LatencySnapshot& l) noexcept {
    *o++ = U64(l.count);
    *o++ = l.Quantile(0.5);
    *o++ = l.Quantile(0.99);
    *o++ = l.Quantile(0.999);
    return o;
  }

  /// Writes the manager's statistics into `snap` (lib/native/binding.ts readSnapshot names them) and
  /// returns how many values: building a JS object field by field through Node-API cost ~20 µs.
  Napi::Value Snapshot(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Manager* m = Live(env);
    ManagerSnapshot s;
    m->Snapshot(&s);
    if (kSnapDirect + kSnapPool * (1 + s.pools.size()) > snap_length_) {
      throw StatusError(env, Status::kInvalidArgument, "isopool: snapshot: more pools than the snap array holds");
    }
    double* o = snap_;
    o[snapshot_out::kHandles] = U64(s.handles);
    o[snapshot_out::kBytesInUse] = U64(s.bytes_in_use);
    o[snapshot_out::kRequestedBytes] = U64(s.requested_bytes);
    o[snapshot_out::kReservedBytes] = U64(s.reserved_bytes);
    o[snapshot_out::kAllocations] = U64(s.allocations);
    o[snapshot_out::kDeallocations] = U64(s.deallocations);
    o[snapshot_out::kRefusals] = U64(s.refusals);
    o[snapshot_out::kLiveSlotBytes] = U64(s.live_slot_bytes);
    o[snapshot_out::kRetainedFreeBytes] = U64(s.retained_free_bytes);
    o[snapshot_out::kParkedHandles] = U64(s.parked_handles);
    o[snapshot_out::kThreadExitReclaims] = U64(s.thread_exit_reclaims);
    WriteLatency(o + snapshot_out::kAllocateLatency, s.allocate_latency);
    WriteLatency(o + snapshot_out::kDeallocateLatency, s.deallocate_latency);
    WritePool(o + snapshot_out::kDirect, s.direct);
    o += snapshot_out::kPools;
    for (const PoolStats& p : s.pools) o = WritePool(o, p);
    return Num(env, static_cast<double>(o - snap_));
  }

  void InjectAllocationFailures(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Manager* m = Live(env);
    double n;
    if (!ReadDouble(env, info[0], &n) || !IsIntegerIn(n, 0, 4294967295.0)) {
      throw ArgumentTypeError(env, "isopool: injectAllocationFailures(n): n must be an integer in 0..2^32-1");
    }
    m->InjectAllocationFailures(static_cast<uint32_t>(n));
  }

  void Release(const Napi::CallbackInfo&) { ReleaseManager(/*reclaim=*/true); }

  /// The JS cache dropped every entry: none may serve an allocation any more.
  void FlushSlotCache(const Napi::CallbackInfo&) {
    if (cache_ != nullptr) cache_->Flush();
  }

  /// out[0] = external ArrayBuffers created over slots (allocate, adopt), out[1] = allocations
  /// served from the cache. Returns false for a manager without a slot cache (shared).
  Napi::Value SlotCacheStats(const Napi::CallbackInfo& info) {
    out_[cache_out::kBuffersCreated] = U64(buffers_created_);
    out_[cache_out::kBuffersReused] = cache_ == nullptr ? 0 : U64(cache_->reused);
    return Napi::Boolean::New(info.Env(), cache_ != nullptr);
  }

  /// close(): frees every live handle this wrapper holds (its JS side revoked their buffers
  /// first), so the final snapshot shows everything released. Returns how many.
  Napi::Value ReclaimHeld(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (manager_ == nullptr) return Num(env, 0);
    return Num(env, U64(manager_->ReclaimEnv(holder_, FreeReason::kManagerClose)));
  }

  Manager* manager_ = nullptr;  ///< nullptr after release()
  OutBlock* block_ = nullptr;   ///< backing of `out`; one reference is ours
  double* out_ = nullptr;          ///< block_->values
  double* fast_ids_ = nullptr;     ///< `fastIds` (kFastIdsLength), inside block_
  const double* journal_ = nullptr;  ///< `journal` (kJournalLength), inside block_
  std::string shared_;          ///< registry name, empty if not shared
  uint32_t holder_ = 0;         ///< this wrapper's holder token (CallContext::env)
  EnvHolders* holders_ = nullptr;  ///< shared attachments: this environment's holders (one reference)
  SlotCache* cache_ = nullptr;     ///< non-shared managers: the slot cache (one reference)
  HotState* hot_ = nullptr;        ///< allocIn/freeIn state (one reference)
  ExportBook* book_ = nullptr;     ///< this environment's slab exports (one reference)
  double* snap_ = nullptr;         ///< the `snap` Float64Array's values (kept alive by the property)
  size_t snap_length_ = 0;
  uint64_t buffers_created_ = 0;   ///< external ArrayBuffers created over slots
  /// closeChannelClaim's list of claimed handles, kept between calls up to kClosedKept entries: a new
  /// vector each time was malloc'd, written through freshly faulted pages and trimmed again
  /// (~10% of a 1,000-handle close in perf).
  std::vector<HandleInfo> closed_;
  static constexpr size_t kClosedKept = 4096;
};

}  // namespace

void InitManager(Napi::Env env, Napi::Object exports) {
  // Torn down (reclaiming what a leaving thread still holds) with the environment.
  EnvHolders* holders = new EnvHolders();
  if (napi_set_instance_data(env, holders, FinalizeEnvHolders, nullptr) != napi_ok) delete holders;
  Napi::Function ctor = ManagerWrap::DefineClass(env);
  if (ManagerWrap::TestHooksEnabled()) {
    ctor.Get("prototype").As<Napi::Object>().Set("debugWriteBeyond",
                                                 Napi::Function::New(env, &ManagerWrap::DebugWriteBeyond, "debugWriteBeyond"));
  }
  exports.Set("NativeManager", ctor);
}

}  // namespace binding
}  // namespace isopool
