// wrap_metrics_binding.cc — ManagerWrap: observation: usage, recounts, open channels and the snapshot.
#include "manager_wrap.h"

namespace isopool {
namespace binding {

void ManagerWrap::WriteUsage(const LedgerUsage& usage) noexcept {
  out_[usage_out::kBytes] = U64(usage.bytes);
  out_[usage_out::kHandles] = U64(usage.handles);
  out_[usage_out::kPeakBytes] = U64(usage.peak_bytes);
  out_[usage_out::kLimitRejections] = U64(usage.limit_rejections);
  for (uint32_t i = 0; i < kViolationKinds; ++i) out_[usage_out::kViolations + i] = U64(usage.violations[i]);
}

void ManagerWrap::ChannelUsage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Manager* m = Live(env);
  int32_t channel;
  if (!ReadInt32(env, info[0], &channel)) throw ArgumentTypeError(env, "isopool: channelUsage(channel): channel must be an integer");
  WriteUsage(m->ChannelUsage(channel));
}

void ManagerWrap::TypeUsage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Manager* m = Live(env);
  int32_t type, channel;
  if (!ReadInt32(env, info[0], &type) || !ReadInt32(env, info[1], &channel)) {
    throw ArgumentTypeError(env, "isopool: typeUsage(type, channel): both must be integers");
  }
  WriteUsage(m->TypeUsage(type, channel));
}

void ManagerWrap::RecountChannel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Manager* m = Live(env);
  int32_t channel;
  if (!ReadInt32(env, info[0], &channel)) throw ArgumentTypeError(env, "isopool: recountChannel(channel): channel must be an integer");
  uint64_t handles = 0, charged = 0;
  m->RecountChannel(channel, &handles, &charged);
  out_[recount_out::kHandles] = U64(handles);
  out_[recount_out::kCharged] = U64(charged);
}

Napi::Value ManagerWrap::OpenChannels(const Napi::CallbackInfo& info) {
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

double* ManagerWrap::WritePool(double* o, const PoolStats& p) noexcept {
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

double* ManagerWrap::WriteLatency(double* o, const LatencySnapshot& l) noexcept {
  *o++ = U64(l.count);
  *o++ = l.Quantile(0.5);
  *o++ = l.Quantile(0.99);
  *o++ = l.Quantile(0.999);
  *o++ = U64(l.sum_ns);
  for (int i = 0; i < kLatencyBuckets; ++i) *o++ = U64(l.buckets[i]);
  return o;
}

Napi::Value ManagerWrap::Snapshot(const Napi::CallbackInfo& info) {
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

}  // namespace binding
}  // namespace isopool
