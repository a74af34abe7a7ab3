// manager_binding.cc — the NativeManager class (manager_wrap.h): its JS class definition, its
// lifetime (construction, attachment to a shared manager, release) and the addon's entry.
#include "manager_wrap.h"

namespace isopool {
namespace binding {

Napi::Function ManagerWrap::DefineClass(Napi::Env env) {
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

bool ManagerWrap::TestHooksEnabled() noexcept {
  const char* v = std::getenv("ISOPOOL_TEST_HOOKS");
  return v != nullptr && v[0] == '1' && v[1] == 0;
}

Napi::Value ManagerWrap::DebugWriteBeyond(const Napi::CallbackInfo& info) {
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

ManagerWrap::ManagerWrap(const Napi::CallbackInfo& info) : ObjectWrap<ManagerWrap>(info) {
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
  napi_value revocations = nullptr;
  if (!shared.empty()) {
    block->refs.fetch_add(1, std::memory_order_relaxed);
    if (napi_create_external_arraybuffer(env, &block->revoke_pending, sizeof(block->revoke_pending), FinalizeOutBlock,
                                         block, &revocations) != napi_ok) {
      block->refs.fetch_sub(1, std::memory_order_relaxed);
      block->Unref();
      NAPI_THROW_VOID(Napi::Error::New(env, "isopool: could not create the scratch buffer"));
    }
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
    // If memory is refused, the word says "drain" for good: every call asks the manager.
    if (!manager_->WatchRevocations(holder_, &block->revoke_pending)) block->revoke_pending.store(1);
  }
  Napi::Object self = info.This().As<Napi::Object>();
  self.DefineProperty(Napi::PropertyDescriptor::Value("out", out, napi_enumerable));
  if (revocations != nullptr) {
    self.DefineProperty(Napi::PropertyDescriptor::Value(
        "revocations", Napi::Uint32Array::New(env, 1, Napi::ArrayBuffer(env, revocations), 0), napi_enumerable));
  }
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

void ManagerWrap::DefineHot(Napi::Env env, Napi::Object self, const char* name, napi_callback cb) {
  napi_value fn;
  NAPI_THROW_IF_FAILED_VOID(env, napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, hot_, &fn));
  NAPI_THROW_IF_FAILED_VOID(env, napi_add_finalizer(env, fn, hot_, FinalizeHotState, nullptr, nullptr));
  ++hot_->refs;
  self.DefineProperty(Napi::PropertyDescriptor::Value(name, Napi::Value(env, fn), napi_enumerable));
}

ManagerWrap::~ManagerWrap() {
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

Status ManagerWrap::Attach(const std::string& name, const ManagerConfig& config) {
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

void ManagerWrap::ReleaseManager(bool reclaim) noexcept {
  Manager* manager = manager_;
  if (manager == nullptr) return;
  manager_ = nullptr;
  if (!shared_.empty()) {
    manager->WatchRevocations(holder_, nullptr);  // before block_ can go
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

Manager* ManagerWrap::Live(Napi::Env env) const {
  if (manager_ == nullptr) throw StatusError(env, Status::kManagerClosed, "isopool: the native manager was released");
  return manager_;
}

Status ManagerWrap::FreeStatus(Napi::Env env, uint64_t id, int32_t presenter, int32_t reason, napi_value ab, bool keep,
                  int32_t token, uint32_t owner) {
  if (reason < 0 || reason > static_cast<int32_t>(FreeReason::kLeak)) return Status::kInvalidArgument;
  // A buffer that is already detached was detached by other code (transfer() may hold the
  // memory): park it until its backing store dies. JS also asks for that when it only knows
  // the buffer became unreachable.
  CallContext ctx{holder_, owner, keep};
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

void ManagerWrap::InjectAllocationFailures(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Manager* m = Live(env);
  double n;
  if (!ReadDouble(env, info[0], &n) || !IsIntegerIn(n, 0, 4294967295.0)) {
    throw ArgumentTypeError(env, "isopool: injectAllocationFailures(n): n must be an integer in 0..2^32-1");
  }
  m->InjectAllocationFailures(static_cast<uint32_t>(n));
}


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
