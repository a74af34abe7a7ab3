// wrap_threads_binding.cc — ManagerWrap: threads: transfer, adoption, revocations and what a thread holds.
#include "manager_wrap.h"

namespace isopool {
namespace binding {

Napi::Value ManagerWrap::DrainRevocations(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (manager_ == nullptr || !manager_->HasRevocations()) return env.Undefined();
  std::vector<uint64_t> ids;
  manager_->DrainRevocations(holder_, &ids);
  if (ids.empty()) return env.Undefined();
  Napi::Float64Array result = Napi::Float64Array::New(env, ids.size());
  for (size_t i = 0; i < ids.size(); ++i) result[i] = U64(ids[i]);
  return result;
}

Napi::Value ManagerWrap::BeginTransfer(const Napi::CallbackInfo& info) {
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

Napi::Value ManagerWrap::Adopt(const Napi::CallbackInfo& info) {
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

Napi::Value ManagerWrap::ReclaimHeld(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (manager_ == nullptr) return Num(env, 0);
  return Num(env, U64(manager_->ReclaimEnv(holder_, FreeReason::kManagerClose)));
}

}  // namespace binding
}  // namespace isopool
