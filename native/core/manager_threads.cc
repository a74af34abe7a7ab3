// manager_threads.cc — handles between threads (SPEC §3): transfer and adoption, memory parked
// while another thread's buffer (or a pinned one) can reach it, revocations announced to the
// holder, and what a leaving thread leaves behind (ReclaimEnv).
#include "manager_impl.h"

namespace isopool {

using detail::FillInfo;
using detail::StaleKind;
using detail::kGenMask;
using detail::kMaxSafeInteger;
using detail::kMaxSlotSize;

// --- threads ------------------------------------------------------------------------------------

Status Manager::BeginTransfer(uint64_t id, HandleInfo* info) noexcept {
  Impl& m = *impl_;
  for (;;) {
    const IdProbe p = m.table.Probe(id);
    switch (p.kind) {
      case IdProbe::kForged:
      case IdProbe::kTransit:  // already in transit
        return Status::kInvalidHandle;
      case IdProbe::kStale:
      case IdProbe::kFreeing:
        return Status::kStaleHandle;
      case IdProbe::kLive: {
        HandleRecord rec;
        if (!m.table.ReadRecord(p.index, p.state, &rec)) continue;
        ChannelState* st = m.EnterChannel(rec);
        if (st == nullptr) return Status::kStaleHandle;  // its channel is closing: the close frees it
        if (!m.table.TryTransition(p.index, p.state, EntryState::kTransit)) {  // raced: re-probe
          m.ExitChannel(st);
          continue;
        }
        FillInfo(id, rec, true, info);
        if (info != nullptr) info->parked = false;
        // Nobody holds it in transit. Immediate reuse: the caller detaches its buffer before its
        // JS runs again. Deferred reuse: nothing revokes the holder's buffer, so its attachment
        // becomes a pin (info->parked) that keeps the memory from every other owner until that
        // buffer dies. The holder's own OnBufferReleased either clears the attached bit first
        // (then there is nothing to pin) or, losing the CAS, finds the pin under the lock.
        if (rec.data != nullptr && rec.access == static_cast<uint32_t>(AccessMode::kRevocable) &&
            !m.ImmediateReuse(rec.channel)) {
          Impl::ParkedShard& shard = m.ShardOf(id);
          std::lock_guard<std::mutex> lock(shard.mu);
          const uint64_t h = m.table.LoadHolder(p.index);
          const uint32_t env = HandleTable::HolderEnv(h);
          if (env != 0 && HandleTable::HolderAttached(h) && HandleTable::HolderGeneration(h) == Impl::GenerationOf(id)) {
            try {
              auto pin = shard.pins.emplace(id, env);
              if (m.table.CasHolder(p.index, h, 0)) {
                m.pin_count.fetch_add(1, std::memory_order_seq_cst);
                if (info != nullptr) info->parked = true;
              } else {
                shard.pins.erase(pin);  // released meanwhile: nothing left to pin
              }
            } catch (...) {
              // No memory to remember the pin: the caller detaches its buffer (info->parked false).
            }
          }
        }
        m.table.StoreHolder(p.index, 0);
        m.ExitChannel(st);
        return Status::kOk;
      }
    }
  }
}

Status Manager::Adopt(uint64_t id, HandleInfo* info) noexcept {
  return Adopt(id, CallContext{}, false, info);
}

Status Manager::Adopt(uint64_t id, const CallContext& ctx, bool attached, HandleInfo* info) noexcept {
  Impl& m = *impl_;
  for (;;) {
    const IdProbe p = m.table.Probe(id);
    switch (p.kind) {
      case IdProbe::kForged:
      case IdProbe::kLive:  // not in transit
        return Status::kInvalidHandle;
      case IdProbe::kStale:
      case IdProbe::kFreeing:
        return Status::kStaleHandle;
      case IdProbe::kTransit: {
        HandleRecord rec;
        if (!m.table.ReadRecord(p.index, p.state, &rec)) continue;
        ChannelState* st = m.EnterChannel(rec);
        if (st == nullptr) return Status::kStaleHandle;  // its channel is closing: the close frees it
        // The holder goes in before the CAS that publishes kLive: a thread that then wins a
        // free of the live handle sees it and parks the memory. Freeing an in-transit
        // handle ignores the holder, so a losing adopter's store is harmless.
        m.table.StoreHolder(p.index, HandleTable::HolderWord(ctx.env, attached && rec.data != nullptr,
                                                             Impl::GenerationOf(id)));
        // One winner among racing adopters; losers re-probe and see kLive.
        const bool won = m.table.TryTransition(p.index, p.state, EntryState::kLive);
        m.ExitChannel(st);
        if (!won) continue;
        FillInfo(id, rec, false, info);
        return Status::kOk;
      }
    }
  }
}

void Manager::OnBufferReleased(uint64_t id, uint32_t env) noexcept {
  Impl& m = *impl_;
  // 1. The incarnation's buffer in `env` is gone: nothing needs parking for it any more. The
  //    holder word is keyed by generation, so this never touches a later incarnation.
  const uint32_t index = static_cast<uint32_t>(id >> 32);
  bool cleared = false;
  if ((id >> 53) == 0 && index != 0 && index < m.table.HighWater()) {
    const uint32_t generation = Impl::GenerationOf(id);
    cleared = m.table.CasHolder(index, HandleTable::HolderWord(env, true, generation),
                                HandleTable::HolderWord(env, false, generation));
  }
  const bool pins = m.pin_count.load(std::memory_order_seq_cst) != 0;
  // 2. Memory parked until this buffer died (seq_cst: Dekker with ParkOrRelease).
  if (!pins && m.parked_count.load(std::memory_order_seq_cst) == 0) return;
  Impl::ParkedShard& shard = m.ShardOf(id);
  std::lock_guard<std::mutex> lock(shard.mu);
  if (!cleared && pins) {
    // A pinned buffer (BeginTransfer of a deferred handle): one of env's buffers over the memory
    // is gone. Buffers of one env over one id are interchangeable here: each counts once.
    auto range = shard.pins.equal_range(id);
    for (auto p = range.first; p != range.second; ++p) {
      if (p->second != env) continue;
      shard.pins.erase(p);
      m.pin_count.fetch_sub(1, std::memory_order_relaxed);
      auto it = shard.parked.find(id);
      if (it != shard.parked.end() && it->second.env == 0 && !m.PinnedLocked(shard, id)) {
        m.ReleaseMemory(it->second.rec, ThisThreadShard());
        shard.parked.erase(it);
        m.parked_count.fetch_sub(1, std::memory_order_relaxed);
      }
      return;
    }
  }
  auto it = shard.parked.find(id);
  if (it != shard.parked.end() && it->second.env == env) {
    if (m.PinnedLocked(shard, id)) {
      it->second.env = 0;  // the holder's buffer is gone; pinned ones are not
      return;
    }
    m.ReleaseMemory(it->second.rec, ThisThreadShard());
    shard.parked.erase(it);
    m.parked_count.fetch_sub(1, std::memory_order_relaxed);
  }
}

void Manager::DrainRevocations(uint32_t env, std::vector<uint64_t>* ids) noexcept {
  Impl& m = *impl_;
  if (m.revoke_count.load(std::memory_order_relaxed) == 0) return;
  std::lock_guard<std::mutex> lock(m.revoke_mu);
  auto it = m.revoke.find(env);
  if (it == m.revoke.end()) return;
  auto signal = m.revoke_signal.find(env);
  try {
    ids->insert(ids->end(), it->second.begin(), it->second.end());
  } catch (...) {
    return;  // std::bad_alloc: left for the next drain
  }
  m.revoke_count.fetch_sub(it->second.size(), std::memory_order_relaxed);
  m.revoke.erase(it);
  if (signal != m.revoke_signal.end()) signal->second->store(0, std::memory_order_relaxed);
}

bool Manager::HasRevocations() const noexcept {
  return impl_->revoke_count.load(std::memory_order_relaxed) != 0;
}

bool Manager::WatchRevocations(uint32_t env, std::atomic<uint32_t>* pending) noexcept {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.revoke_mu);
  if (pending == nullptr) {
    m.revoke_signal.erase(env);
    return true;
  }
  try {
    m.revoke_signal[env] = pending;
  } catch (...) {
    return false;  // std::bad_alloc
  }
  pending->store(m.revoke.count(env) != 0 ? 1 : 0, std::memory_order_relaxed);
  return true;
}

uint64_t Manager::ReclaimEnv(uint32_t env, FreeReason reason) noexcept {
  Impl& m = *impl_;
  if (env == 0) return 0;
  // Closes this thread began and did not finish: their handles were freed already as far as
  // any caller is concerned, so they are not counted here.
  {
    std::lock_guard<std::mutex> lock(m.closing_mu);
    for (size_t i = 0; i < m.closing.size();) {
      auto it = m.closing.begin() + static_cast<std::ptrdiff_t>(i);
      if (it->env != env) {
        ++i;
        continue;
      }
      while (!m.Step(&*it, CallContext{env, 0, false}, UINT64_MAX, nullptr)) {
      }
      m.AfterStep(it);  // done: removed, so index i now holds the next close
    }
  }
  uint64_t reclaimed = 0;
  const uint32_t high = m.table.HighWater();
  for (uint32_t i = 1; i < high; ++i) {
    uint64_t state;
    HandleRecord rec;
    if (!m.ReadLive(i, &state, &rec)) continue;
    if (HandleTable::StateOf(state) != EntryState::kLive) continue;  // transit/freeing: not env's
    const uint64_t h = m.table.LoadHolder(i);
    const uint32_t generation = static_cast<uint32_t>(HandleTable::UsesOf(state) & kGenMask);
    if (HandleTable::HolderEnv(h) != env || HandleTable::HolderGeneration(h) != generation) continue;
    const uint64_t id = m.table.MakeId(i, generation);
    ChannelState* st = m.EnterChannel(rec);
    if (st == nullptr) {
      // Another thread's close owns it. At thread exit the buffers are gone: as if each was
      // collected, so that close returns the memory instead of waiting for this thread.
      if (reason == FreeReason::kLeak) OnBufferReleased(id, env);
      continue;
    }
    if (!m.table.TryTransition(i, state, EntryState::kFreeing)) {  // someone else frees it
      m.ExitChannel(st);
      continue;
    }
    m.CheckCanaryOnFree(rec, /*closing=*/false);  // hardened: counted against the owner channel
    m.FinishClaimedFree(i, id, EntryState::kLive, rec, reason, CallContext{env, 0, false}, nullptr);
    m.ExitChannel(st);
    ++reclaimed;
  }
  if (reason == FreeReason::kLeak) m.exit_reclaims.Add(reclaimed);
  // Memory parked for this thread's buffers: at thread exit they can no longer be used. A
  // close() of the attachment leaves them parked: that thread's JS still runs.
  if (reason != FreeReason::kLeak) return reclaimed;
  for (Impl::ParkedShard& shard : m.parked_shards) {
    std::lock_guard<std::mutex> lock(shard.mu);
    for (auto p = shard.pins.begin(); p != shard.pins.end();) {
      if (p->second == env) {
        p = shard.pins.erase(p);
        m.pin_count.fetch_sub(1, std::memory_order_relaxed);
      } else {
        ++p;
      }
    }
    for (auto it = shard.parked.begin(); it != shard.parked.end();) {
      if ((it->second.env == env || it->second.env == 0) && !m.PinnedLocked(shard, it->first)) {
        m.ReleaseMemory(it->second.rec, ThisThreadShard());
        it = shard.parked.erase(it);
        m.parked_count.fetch_sub(1, std::memory_order_relaxed);
      } else {
        if (it->second.env == env) it->second.env = 0;
        ++it;
      }
    }
  }
  std::lock_guard<std::mutex> lock(m.revoke_mu);
  auto r = m.revoke.find(env);
  if (r != m.revoke.end()) {
    m.revoke_count.fetch_sub(r->second.size(), std::memory_order_relaxed);
    m.revoke.erase(r);
  }
  m.revoke_signal.erase(env);
  return reclaimed;
}
}  // namespace isopool
