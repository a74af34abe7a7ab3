// wrap_channels_binding.cc — ManagerWrap: types, channels, closes and limits.
#include "manager_wrap.h"

namespace isopool {
namespace binding {

Napi::Value ManagerWrap::DefineType(const Napi::CallbackInfo& info) {
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

Napi::Value ManagerWrap::FindType(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Manager* m = Live(env);
  if (!info[0].IsString()) throw ArgumentTypeError(env, "isopool: findType(name): name must be a string");
  const int32_t index = m->FindType(info[0].As<Napi::String>().Utf8Value());
  if (index >= 0) out_[type_out::kKind] = static_cast<double>(m->KindOf(index));
  return Num(env, index);
}

Napi::Value ManagerWrap::OpenChannel(const Napi::CallbackInfo& info) {
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

Napi::Value ManagerWrap::FindChannel(const Napi::CallbackInfo& info) {
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

Napi::Value ManagerWrap::CloseChannel(const Napi::CallbackInfo& info) {
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

Napi::Value ManagerWrap::CloseChannelClaim(const Napi::CallbackInfo& info) {
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

Napi::Value ManagerWrap::CloseChannelFinish(const Napi::CallbackInfo& info) {
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

Napi::Value ManagerWrap::DiscardChannel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (manager_ == nullptr) return StatusValue(env, Status::kManagerClosed);
  int32_t channel;
  if (!ReadInt32(env, info[0], &channel)) return StatusValue(env, Status::kInvalidArgument);
  const double owner = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
  if (!IsIntegerIn(owner, 1, 4294967295.0)) return StatusValue(env, Status::kInvalidArgument);
  return StatusValue(env, manager_->DiscardChannel(channel, static_cast<uint32_t>(owner)));
}

Napi::Value ManagerWrap::ChannelOptionsOf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Manager* m = Live(env);
  int32_t channel;
  if (!ReadInt32(env, info[0], &channel)) throw ArgumentTypeError(env, "isopool: channelOptions(channel): channel must be an integer");
  ChannelOptions o = m->OptionsOf(channel);
  return Num(env, static_cast<int32_t>(o.access) | (static_cast<int32_t>(o.zero) << 1) | (o.immediate_reuse ? 4 : 0));
}

Napi::Value ManagerWrap::SetLimits(const Napi::CallbackInfo& info) {
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

void ManagerWrap::GetLimits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Manager* m = Live(env);
  int32_t type, channel;
  if (!ReadInt32(env, info[0], &type) || !ReadInt32(env, info[1], &channel)) {
    throw ArgumentTypeError(env, "isopool: getLimits(type, channel): both must be integers");
  }
  WriteLimits(m->EffectiveLimits(type, channel));
}

void ManagerWrap::GetScopeLimits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Manager* m = Live(env);
  int32_t type, channel;
  if (!ReadInt32(env, info[0], &type) || !ReadInt32(env, info[1], &channel)) {
    throw ArgumentTypeError(env, "isopool: getScopeLimits(type, channel): both must be integers");
  }
  WriteLimits(m->ScopeLimits(type, channel));
}

void ManagerWrap::WriteLimits(const Limits& l) noexcept {
  out_[limits_out::kMaxBytes] = Limit(l.max_bytes);
  out_[limits_out::kMaxHandles] = Limit(l.max_handles);
  out_[limits_out::kMaxAllocationSize] = Limit(l.max_allocation_size);
  out_[limits_out::kSoftBytes] = Limit(l.soft_bytes);
}

}  // namespace binding
}  // namespace isopool
