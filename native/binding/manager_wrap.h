// manager_wrap.h — ManagerWrap, the NativeManager class of the addon over isopool::Manager,
// and the binding's helpers it uses (slot buffers, holders, exports, the hot-call state).
// Its methods are defined by concept: manager_binding.cc (lifetime, class definition),
// wrap_channels_binding.cc, wrap_handles_binding.cc, wrap_lane_binding.cc,
// wrap_threads_binding.cc and wrap_metrics_binding.cc.
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
#pragma once

#include <napi.h>

#include <algorithm>
#include <atomic>
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
#include "metrics.h"
#include "status.h"

namespace isopool {
namespace binding {

/// An id that no manager ever issues (ids are < 2^53): what a malformed JS id
/// (NaN, negative, fractional, unsafe) is presented as, so the core counts it
/// as forged exactly like any other never-issued id.
constexpr uint64_t kMalformedId = UINT64_MAX;

inline double U64(uint64_t v) noexcept { return static_cast<double>(v); }
inline double Limit(uint64_t v) noexcept {
  return v == kUnlimited ? std::numeric_limits<double>::infinity() : static_cast<double>(v);
}

/// Reads a handle id: false if not a number; a non-safe-integer becomes kMalformedId.
inline bool ReadId(napi_env env, napi_value value, uint64_t* out) noexcept {
  double d;
  if (!ReadDouble(env, value, &d)) return false;
  *out = IsIntegerIn(d, 0, kMaxSafeInteger) ? static_cast<uint64_t>(d) : kMalformedId;
  return true;
}

/// Reads a limit field: Infinity -> kUnlimited, else a safe integer >= 0.
inline bool ReadLimit(napi_env env, napi_value value, uint64_t* out) noexcept {
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
/// A shared manager's wrapper also exports `revocations` (one more ArrayBuffer, one more
/// reference): the word Manager::WatchRevocations keeps, written by any thread.
struct OutBlock {
  std::atomic<uint32_t> refs{2};  ///< wrapper + ArrayBuffer (+ the `revocations` ArrayBuffer)
  std::atomic<uint32_t> revoke_pending{0};
  double values[kOutLength + kInLength + kFastIdsLength + kJournalLength] = {};

  void Unref() noexcept {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
};

inline void FinalizeOutBlock(napi_env, void*, void* hint) { static_cast<OutBlock*>(hint)->Unref(); }

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

inline void FinalizeHotState(napi_env, void* data, void*) { static_cast<HotState*>(data)->Unref(); }

/// An int32 from an `in` slot; false for NaN, fractions and out-of-range values.
inline bool AsInt32(double d, int32_t* out) noexcept {
  if (!IsIntegerIn(d, -2147483648.0, 2147483647.0)) return false;
  *out = static_cast<int32_t>(d);
  return true;
}

/// Runs a raw napi callback body; a C++ exception becomes a pending JS exception.
template <typename F>
inline napi_value CallHot(napi_env env, F&& body) {
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
inline HotState* HotStateOf(napi_env env, napi_callback_info cbinfo) {
  void* data = nullptr;
  size_t argc = 0;
  if (napi_get_cb_info(env, cbinfo, &argc, nullptr, nullptr, &data) != napi_ok) return nullptr;
  return static_cast<HotState*>(data);
}

/// As HotStateOf, for a hot function of one optional argument: *arg (nullptr if absent) and *argc.
inline HotState* HotStateOf(napi_env env, napi_callback_info cbinfo, napi_value* arg, size_t* argc) {
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
inline void FinalizeSlotBuffer(napi_env, void*, void* hint) {
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
inline Napi::ArrayBuffer NewSlotBuffer(Napi::Env env, Manager* manager, uint64_t id, uint32_t holder, uint8_t* data,
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
inline std::atomic<uint32_t> g_next_holder{1};  ///< holder tokens, unique per process (0 = none)

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
      m->FlushThreadCaches();  // a terminated worker's cached slots go back now, not at thread exit
      m->Unref();
    }
    attached.clear();
  }
  void Unref() noexcept {
    if (--refs == 0) delete this;
  }
};

inline void FinalizeEnvHolders(napi_env, void* data, void*) {
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

inline void FinalizeSlabExport(napi_env, void*, void* hint) {
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
inline void DetachIfAttached(Napi::Env env, napi_value ab) {
  bool detached = false;
  napi_status status = napi_is_detached_arraybuffer(env, ab, &detached);
  if (status == napi_ok && !detached) status = napi_detach_arraybuffer(env, ab);
  if (status != napi_ok) throw ArgumentTypeError(env, "isopool: the buffer could not be detached (not an addon buffer?)");
}

/// undefined -> no buffer (true, *ab = nullptr); an ArrayBuffer -> it; anything else -> false.
inline bool ReadOptionalArrayBuffer(napi_env env, napi_value value, napi_value* ab) noexcept {
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

inline bool SameShape(const ManagerConfig& a, const ManagerConfig& b) noexcept {
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
inline double ConfigNumber(Napi::Env env, Napi::Object obj, const char* key, const std::string& where) {
  Napi::Value v = obj.Get(key);
  if (!v.IsNumber()) throw ArgumentTypeError(env, "isopool: " + where + "." + key + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

inline ManagerConfig ParseConfig(Napi::Env env, Napi::Value value, std::string* shared) {
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
  static Napi::Function DefineClass(Napi::Env env);

  // --- test hooks (only with ISOPOOL_TEST_HOOKS=1 in the environment) ---------------------
  static bool TestHooksEnabled() noexcept;

  /// debugWriteBeyond(id, n): writes n bytes of 0xA5 at [size, size + n) of a live memory
  /// handle, i.e. past its requested extent, as a native overrun would: over the hardened
  /// canary, then the rest of the slot, then whatever follows (a guard page in hardened mode:
  /// the process faults). Returns the handle's status. Installed on the prototype only when
  /// test hooks are enabled (InitManager), so production code cannot reach it.
  static Napi::Value DebugWriteBeyond(const Napi::CallbackInfo& info);

  explicit ManagerWrap(const Napi::CallbackInfo& info);

  /// Defines own function `name` over `hot_` (one more reference, dropped when it is collected).
  void DefineHot(Napi::Env env, Napi::Object self, const char* name, napi_callback cb);

  ~ManagerWrap() override;

 private:
  // --- lifetime ---------------------------------------------------------------------
  /// Attaches to (or creates) the process-wide manager `name`.
  Status Attach(const std::string& name, const ManagerConfig& config);

  /// Drops this wrapper's reference (and its registry use). Idempotent. With `reclaim` (an
  /// explicit release(): the JS side revoked its buffers already), a shared attachment
  /// first frees what it still holds.
  void ReleaseManager(bool reclaim) noexcept;

  // --- helpers -----------------------------------------------------------------------
  static Napi::Value Num(Napi::Env env, double v) { return Napi::Number::New(env, v); }
  Napi::Value StatusValue(Napi::Env env, Status s) const { return Num(env, StatusNumber(s)); }
  Napi::Value NegStatusValue(Napi::Env env, Status s) const { return Num(env, -StatusNumber(s)); }

  /// For methods without a status result: throws after release().
  Manager* Live(Napi::Env env) const;

  void WriteInfo(const HandleInfo& info, uint32_t violations, bool with_age = true) noexcept;

  void WriteUsage(const LedgerUsage& usage) noexcept;

  // --- types and channels -------------------------------------------------------------
  Napi::Value DefineType(const Napi::CallbackInfo& info);

  Napi::Value FindType(const Napi::CallbackInfo& info);

  Napi::Value OpenChannel(const Napi::CallbackInfo& info);

  Napi::Value FindChannel(const Napi::CallbackInfo& info);

  /// closeChannel(channel): begins a close (Manager::BeginChannelClose). Returns the status;
  /// out[0] = handles it frees, out[1] = their charged bytes. closeChannelStep frees them.
  Napi::Value CloseChannel(const Napi::CallbackInfo& info);

  /// closeChannelClaim(channel, max): claims up to `max` handles of a close under way.
  /// [id, type, size, charged, violation mask] per claimed handle, or -status.
  Napi::Value CloseChannelClaim(const Napi::CallbackInfo& info);

  /// closeChannelFinish(channel, keep: Uint8Array | null): frees what the last claim took,
  /// parking the k-th's memory until its buffer dies where keep[k] is set. Returns the handles
  /// still to free, or -status.
  Napi::Value CloseChannelFinish(const Napi::CallbackInfo& info);

  Napi::Value DiscardChannel(const Napi::CallbackInfo& info);

  Napi::Value ChannelOptionsOf(const Napi::CallbackInfo& info);

  // --- limits ---------------------------------------------------------------------------
  Napi::Value SetLimits(const Napi::CallbackInfo& info);

  void GetLimits(const Napi::CallbackInfo& info);

  void GetScopeLimits(const Napi::CallbackInfo& info);

  void WriteLimits(const Limits& l) noexcept;

  /// Ids freed elsewhere whose buffers this wrapper must detach, or undefined (the common,
  /// cheap case: one relaxed load).
  Napi::Value DrainRevocations(const Napi::CallbackInfo& info);

  // --- handles (hot) ------------------------------------------------------------------------
  /// allocate(type, size, channel, mode, expectedOwner?): see DoAllocate.
  Napi::Value Allocate(const Napi::CallbackInfo& info);

  /// allocIn(): allocate with its arguments in `in` (InArgs.Alloc*): no argument conversions.
  static napi_value AllocIn(napi_env env, napi_callback_info cbinfo);

  /// Allocates `size_d` of `type` in `channel`. mode: 0 no buffer (view memory, counters), 1 a
  /// fresh external ArrayBuffer, 2 the slot cache (a fresh one, or "take cache entry
  /// out[kCacheToken]"; 2 is 1 without a cache). owner_d > 0: the expected owner epoch.
  /// total_parked: CallContext::total_parked (allocIn only: the fast lane's parked slots).
  Napi::Value DoAllocate(Napi::Env env, int32_t type, double size_d, int32_t channel, int32_t mode, double owner_d,
                         bool total_parked = false);

  /// free(id, presenter, reason, ab?, keepUntilReleased?, cacheToken?): see DoFree.
  Napi::Value Free(const Napi::CallbackInfo& info);

  /// freeIn(ab?): free with the other arguments in `in` (InArgs.Free*).
  static napi_value FreeIn(napi_env env, napi_callback_info cbinfo);

  /// Frees `id` presented by `presenter` (-1: the manager). Detaches `ab` (if given) after a
  /// successful free. `keep`: our buffer cannot vouch for the memory (see CallContext).
  /// `token` >= 0: the handle's slot-cache entry, to be marked cached (out[kRecached]).
  /// `owner` > 0: the presenter's expected incarnation (else kChannelClosed, nothing done).
  Napi::Value DoFree(Napi::Env env, uint64_t id, int32_t presenter, int32_t reason, napi_value ab, bool keep,
                     int32_t token, uint32_t owner = 0);

  /// DoFree's work; returns the status instead of a JS number (applyJournal's FREE ops).
  Status FreeStatus(Napi::Env env, uint64_t id, int32_t presenter, int32_t reason, napi_value ab, bool keep,
                    int32_t token, uint32_t owner = 0);

  // --- fast lane (single-owner view memory) ----------------------------------------------------
  /// reserveIds(n): reserves min(n, 256) handle ids for the JS fast lane and writes them to
  /// fastIds[0..got); returns got (0 when refused: a shared or hardened manager, released, or
  /// n not a non-negative integer). See Manager::ReserveIds.
  static napi_value ReserveIdsHot(napi_env env, napi_callback_info cbinfo);

  /// applyJournal(count): applies journal ops 0..count-1 in order (journal_op). Returns -1 when
  /// all succeeded, else the index of the first that failed (the ones before it are applied,
  /// it and the later ones are not) with its status in out[0]; -2 (nothing applied) if count is
  /// not an integer in 0..1024; -3 (out[0] = ManagerClosed) after release().
  static napi_value ApplyJournalHot(napi_env env, napi_callback_info cbinfo);

  double ApplyJournal(Napi::Env env, uint32_t count);

  /// kSlotOwner: the slot-cache entry `token` follows its backing store from handle `old_id`
  /// to `new_id`. A token whose buffer has died meanwhile (collected after user code moved its
  /// store away) is no longer in the cache: nothing to follow, not an error.
  Status SetSlotOwner(uint64_t old_id, uint64_t new_id, uint32_t token) noexcept;

  Napi::Value Validate(const Napi::CallbackInfo& info);

  Napi::Value Lookup(const Napi::CallbackInfo& info);

  Napi::Value IsReleased(const Napi::CallbackInfo& info);

  void CountViolation(const Napi::CallbackInfo& info);

  void Detach(const Napi::CallbackInfo& info);

  Napi::Value ExportSlab(const Napi::CallbackInfo& info);

  /// residentBytes(): bytes of the manager's mappings resident in memory (mincore), or a negative
  /// status once closed. A soak diagnostic: walks every slab under the registry lock.
  Napi::Value ResidentBytes(const Napi::CallbackInfo& info);

  /// takeRetiredSlab(): the key of a slab this environment exported that has since been
  /// retired, or -1. Scans this environment's exports only when the manager's retire epoch
  /// moved (a retirement anywhere, any thread).
  Napi::Value TakeRetiredSlab(const Napi::CallbackInfo& info);

  /// releaseSlab(ab): if `ab` is an attached slab export of this environment whose slab is
  /// retired, detaches it and gives its export count back now (unmapping the slab if it was the
  /// last), instead of when `ab` is collected. True if released. A detached `ab` is refused
  /// before anything else: its memory may live on in an ArrayBuffer that took it over
  /// (transfer(), a BYOB read), and its finalizer may already have run.
  Napi::Value ReleaseSlab(const Napi::CallbackInfo& info);

  // --- threads --------------------------------------------------------------------------------
  Napi::Value BeginTransfer(const Napi::CallbackInfo& info);

  Napi::Value Adopt(const Napi::CallbackInfo& info);

  // --- observation ------------------------------------------------------------------------------
  void ChannelUsage(const Napi::CallbackInfo& info);

  void TypeUsage(const Napi::CallbackInfo& info);

  void RecountChannel(const Napi::CallbackInfo& info);

  Napi::Value OpenChannels(const Napi::CallbackInfo& info);

  // snapshot() layout: abi.h snapshot_out.
  static constexpr size_t kSnapDirect = snapshot_out::kPools, kSnapPool = snapshot_out::kPoolLength;

  static double* WritePool(double* o, const PoolStats& p) noexcept;

  static double* WriteLatency(double* o, const LatencySnapshot& l) noexcept;

  /// Writes the manager's statistics into `snap` (lib/native/binding.ts readSnapshot names them) and
  /// returns how many values: building a JS object field by field through Node-API cost ~20 µs.
  Napi::Value Snapshot(const Napi::CallbackInfo& info);

  void InjectAllocationFailures(const Napi::CallbackInfo& info);

  void Release(const Napi::CallbackInfo&) { ReleaseManager(/*reclaim=*/true); }

  /// The JS cache dropped every entry: none may serve an allocation any more.
  void FlushSlotCache(const Napi::CallbackInfo&);

  /// out[0] = external ArrayBuffers created over slots (allocate, adopt), out[1] = allocations
  /// served from the cache. Returns false for a manager without a slot cache (shared).
  Napi::Value SlotCacheStats(const Napi::CallbackInfo& info);

  /// close(): frees every live handle this wrapper holds (its JS side revoked their buffers
  /// first), so the final snapshot shows everything released. Returns how many.
  Napi::Value ReclaimHeld(const Napi::CallbackInfo& info);

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

}  // namespace binding
}  // namespace isopool
