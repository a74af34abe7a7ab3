// manager_close.cc — closing a channel in steps (see manager.cc's file comment): BeginChannelClose
// makes every handle of the channel freed to every caller and reads what it holds from the
// ledger; each step claims a batch from the channel's census and frees it.
#include "manager_impl.h"

namespace isopool {

using detail::FillInfo;
using detail::StaleKind;
using detail::kGenMask;
using detail::kMaxSafeInteger;
using detail::kMaxSlotSize;

// --- channel close in steps ----------------------------------------------------------------

uint64_t Manager::Impl::Claim(PendingClose* p, uint64_t max, std::vector<HandleInfo>* claimed) noexcept {
  uint64_t got = 0;
  try {
    p->batch.reserve(p->batch.size() + static_cast<size_t>(std::min<uint64_t>(max, p->left)));
  } catch (...) {
    max = std::min<uint64_t>(max, p->batch.capacity() - p->batch.size());  // std::bad_alloc: what fits
    if (max == 0) max = 1;
    try {
      p->batch.reserve(p->batch.size() + 1);
    } catch (...) {
      return 0;
    }
  }
  p->cursor = table.ForEachOfChannelFrom(p->channel, p->owner, p->cursor, [&](uint32_t i) {
    for (;;) {
      uint64_t state;
      HandleRecord rec;
      if (!ReadLive(i, &state, &rec)) break;  // free entry
      if (rec.channel != p->channel || rec.owner != p->owner) break;
      const EntryState was = HandleTable::StateOf(state);
      if (was == EntryState::kFreeing) {
        // Nothing else frees a handle of a closing channel; a free that began before the
        // close is over (BeginClose waited for it) but may still be leaving the census.
        std::this_thread::yield();
        continue;
      }
      if (!table.TryTransition(i, state, EntryState::kFreeing, FreeReason::kChannelClose)) continue;
      const uint64_t id = table.MakeId(i, static_cast<uint32_t>(HandleTable::UsesOf(state) & kGenMask));
      p->batch.push_back(Claimed{id, i, was});  // reserved: does not throw
      ++got;
      if (claimed != nullptr) {
        HandleInfo info;
        FillInfo(id, rec, was == EntryState::kTransit, &info);
        info.violations = CheckCanaryOnFree(rec, /*closing=*/true);  // hardened
        try {
          claimed->push_back(info);
        } catch (...) {
          // std::bad_alloc: the handle is freed; only the report is incomplete.
        }
      } else {
        CheckCanaryOnFree(rec, /*closing=*/true);
      }
      break;
    }
    return got < max && p->batch.size() < p->batch.capacity();
  });
  return got;
}

void Manager::Impl::Finish(PendingClose* p, const CallContext& ctx, const uint8_t* keep, size_t keep_n,
                           HandleInfo* infos) noexcept {
  const uint32_t shard = ThisThreadShard();
  for (size_t k = 0; k < p->batch.size(); ++k) {
    const Claimed& c = p->batch[k];
    uint64_t state;
    HandleRecord rec;
    if (!ReadLive(c.index, &state, &rec)) continue;  // cannot happen: a claimed entry waits for us
    CallContext with = ctx;
    with.keep_until_released = keep != nullptr && k < keep_n && keep[k] != 0;
    FinishClaimedFree(c.index, c.id, c.was, rec, FreeReason::kChannelClose, with,
                      infos == nullptr ? nullptr : &infos[k], shard);
    if (p->left > 0) --p->left;
    closing_handles.fetch_sub(1, std::memory_order_relaxed);
  }
  p->batch.clear();
}

bool Manager::Impl::Step(PendingClose* p, const CallContext& ctx, uint64_t max, std::vector<HandleInfo>* freed) noexcept {
  const size_t start = freed == nullptr ? 0 : freed->size();
  if (p->batch.empty()) Claim(p, max, freed);
  // The claim's infos learn whether their memory was parked (unless the report missed some).
  HandleInfo* infos = freed != nullptr && freed->size() - start == p->batch.size() ? freed->data() + start : nullptr;
  Finish(p, ctx, nullptr, 0, infos);
  return Done(*p);
}

Status Manager::CloseChannel(int32_t channel, std::vector<HandleInfo>* freed) noexcept {
  return CloseChannel(channel, CallContext{}, freed);
}

Status Manager::CloseChannel(int32_t channel, const CallContext& ctx,
                             std::vector<HandleInfo>* freed) noexcept {
  uint64_t count = 0, bytes = 0, left = 0;
  const Status s = BeginChannelClose(channel, ctx, &count, &bytes);
  if (s != Status::kOk) return s;
  if (freed != nullptr) {
    // One allocation for the report: growing it by doubling reallocated and copied it about ten
    // times for 1,000 handles, a third of the native close (perf).
    try {
      freed->reserve(freed->size() + count);
    } catch (...) {
      // std::bad_alloc: push_back in the step copes the same way.
    }
  }
  do {
    CloseChannelStep(channel, ctx, UINT64_MAX, freed, &left);
  } while (left != 0);
  return Status::kOk;
}

Status Manager::BeginChannelClose(int32_t channel, const CallContext& ctx, uint64_t* count,
                                  uint64_t* bytes) noexcept {
  Impl& m = *impl_;
  *count = 0;
  *bytes = 0;
  // From here no allocation, free, transfer or adoption enters the channel, and none is in flight.
  const Status s = m.ledger.BeginClose(channel);
  if (s != Status::kOk) return s;
  // So the ledger counts exactly the handles the close frees. One that holds none has nothing
  // to free: no census walk.
  const LedgerUsage usage = m.ledger.ChannelUsage(channel);
  if (usage.handles == 0) {
    m.ledger.FinishClose(channel);
    return Status::kOk;
  }
  *count = usage.handles;
  *bytes = usage.bytes;
  m.closing_handles.fetch_add(usage.handles, std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(m.closing_mu);
  try {
    m.closing.push_back(Impl::PendingClose{channel, OwnerOf(channel), ctx.env, 1, usage.handles, {}});
  } catch (...) {
    // std::bad_alloc: no room to remember the close, so it finishes now.
    Impl::PendingClose now{channel, OwnerOf(channel), ctx.env, 1, usage.handles, {}};
    while (!m.Step(&now, ctx, UINT64_MAX, nullptr)) {
    }
    m.closing_handles.fetch_sub(now.left, std::memory_order_relaxed);
    m.ledger.FinishClose(channel);
    return Status::kOk;
  }
  m.ledger.Unname(channel);  // the name reopens as a new incarnation while the steps run
  return Status::kOk;
}

void Manager::CloseChannelStep(int32_t channel, const CallContext& ctx, uint64_t max,
                               std::vector<HandleInfo>* freed, uint64_t* left) noexcept {
  Impl& m = *impl_;
  *left = 0;
  std::lock_guard<std::mutex> lock(m.closing_mu);
  auto it = m.FindClose(channel);
  if (it == m.closing.end()) return;
  m.Step(&*it, ctx, max, freed);
  *left = m.AfterStep(it);
}

Status Manager::CloseChannelClaim(int32_t channel, uint64_t max, std::vector<HandleInfo>* claimed) noexcept {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.closing_mu);
  auto it = m.FindClose(channel);
  if (it == m.closing.end()) return Status::kChannelClosed;
  if (!it->batch.empty()) return Status::kInvalidArgument;  // the last claim is not finished
  m.Claim(&*it, max, claimed);
  return Status::kOk;
}

Status Manager::CloseChannelFinish(int32_t channel, const CallContext& ctx, const uint8_t* keep, size_t keep_n,
                                   uint64_t* left) noexcept {
  Impl& m = *impl_;
  *left = 0;
  std::lock_guard<std::mutex> lock(m.closing_mu);
  auto it = m.FindClose(channel);
  if (it == m.closing.end()) return Status::kChannelClosed;
  m.Finish(&*it, ctx, keep, keep_n, nullptr);
  *left = m.AfterStep(it);
  return Status::kOk;
}

uint64_t Manager::ClosingHandles() const noexcept {
  return impl_->closing_handles.load(std::memory_order_relaxed);
}
}  // namespace isopool
