// wrap_handles_binding.cc — ManagerWrap: allocation, release and checks (the hot calls included).
#include "manager_wrap.h"

namespace isopool {
namespace binding {

void ManagerWrap::WriteInfo(const HandleInfo& info, uint32_t violations, bool with_age) noexcept {
  double* o = out_;
  o[info_out::kType] = info.type;
  o[info_out::kChannel] = info.channel;
  o[info_out::kPool] = info.pool;
  o[info_out::kSize] = U64(info.size);
  o[info_out::kSlotBytes] = U64(info.slot_bytes);
  o[info_out::kCharged] = U64(info.charged);
  // CoreNowNs: the clock alloc_time_ns was read from (metrics.h).
  const uint64_t now = with_age && info.alloc_time_ns != 0 ? CoreNowNs() : 0;
  o[info_out::kAgeNs] = now > info.alloc_time_ns ? U64(now - info.alloc_time_ns) : 0;
  o[info_out::kLatencyNs] = U64(info.latency_ns);
  o[info_out::kSlabKey] = U64(info.slab_key);
  o[info_out::kSlabOffset] = U64(info.slab_offset);
  o[info_out::kInTransit] = info.in_transit ? 1 : 0;
  o[info_out::kOwner] = info.owner;
  o[info_out::kViolationMask] = violations;
  o[info_out::kClosedByChannel] = (violations & ViolationBit(Violation::kChannelClosed)) != 0 ? 1 : 0;
}

Napi::Value ManagerWrap::Allocate(const Napi::CallbackInfo& info) {
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

napi_value ManagerWrap::AllocIn(napi_env env, napi_callback_info cbinfo) {
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
    return self->DoAllocate(e, type, in[in_args::kAllocSize], channel, mode, in[in_args::kAllocOwner],
                            in[in_args::kAllocParked] == 1);
  });
}

Napi::Value ManagerWrap::DoAllocate(Napi::Env env, int32_t type, double size_d, int32_t channel, int32_t mode, double owner_d,
                                    bool total_parked) {
  if (!IsIntegerIn(size_d, 1, kMaxSafeInteger)) return StatusValue(env, Status::kInvalidSize);
  const uint64_t size = static_cast<uint64_t>(size_d);
  CallContext ctx{holder_, 0};
  if (IsIntegerIn(owner_d, 0, 4294967295.0)) ctx.expected_owner = static_cast<uint32_t>(owner_d);
  ctx.total_parked = total_parked;
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

Napi::Value ManagerWrap::Free(const Napi::CallbackInfo& info) {
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

napi_value ManagerWrap::FreeIn(napi_env env, napi_callback_info cbinfo) {
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
    const double owner = in[in_args::kFreeOwner];
    if (!IsIntegerIn(owner, 0, 4294967295.0)) return Num(e, StatusNumber(Status::kInvalidArgument));
    const double id_d = in[in_args::kFreeId];
    const uint64_t id = IsIntegerIn(id_d, 0, kMaxSafeInteger) ? static_cast<uint64_t>(id_d) : kMalformedId;
    return self->DoFree(e, id, presenter, reason, ab, in[in_args::kFreeKeep] == 1, token, static_cast<uint32_t>(owner));
  });
}

Napi::Value ManagerWrap::DoFree(Napi::Env env, uint64_t id, int32_t presenter, int32_t reason, napi_value ab, bool keep,
                   int32_t token, uint32_t owner) {
  return StatusValue(env, FreeStatus(env, id, presenter, reason, ab, keep, token, owner));
}

Napi::Value ManagerWrap::Validate(const Napi::CallbackInfo& info) {
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

Napi::Value ManagerWrap::Lookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (manager_ == nullptr) return StatusValue(env, Status::kManagerClosed);
  uint64_t id;
  if (!ReadId(env, info[0], &id)) return StatusValue(env, Status::kInvalidArgument);
  HandleInfo h;
  Status s = manager_->Lookup(id, &h);
  WriteInfo(h, 0);
  return StatusValue(env, s);
}

Napi::Value ManagerWrap::IsReleased(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Manager* m = Live(env);
  uint64_t id;
  if (!ReadId(env, info[0], &id)) throw ArgumentTypeError(env, "isopool: isReleased(id): id must be a number");
  return Napi::Boolean::New(env, m->IsReleased(id));
}

void ManagerWrap::CountViolation(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Manager* m = Live(env);
  int32_t channel, kind;
  if (!ReadInt32(env, info[0], &channel) || !ReadInt32(env, info[1], &kind) || kind < 0 ||
      kind >= static_cast<int32_t>(kViolationKinds)) {
    throw ArgumentTypeError(env, "isopool: countViolation(channel, kind): kind must be 0..6");
  }
  m->CountViolation(channel, static_cast<Violation>(kind));
}

void ManagerWrap::Detach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  napi_value ab;
  if (!ReadOptionalArrayBuffer(env, info[0], &ab) || ab == nullptr) {
    throw ArgumentTypeError(env, "isopool: detach(ab): ab must be an ArrayBuffer");
  }
  DetachIfAttached(env, ab);
}

}  // namespace binding
}  // namespace isopool
