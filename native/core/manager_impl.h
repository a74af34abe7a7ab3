// manager_impl.h — Manager::Impl, the state behind the facade, shared by the files that
// implement the Manager (manager.cc: lifetime, types, channels, limits, handles, observation;
// manager_close.cc: closes in steps; manager_threads.cc: transfer, adoption, parking and thread
// exit; manager_lane.cc: the fast lane's native side and slab exports). Not for other code.
#pragma once

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <unordered_map>
#include <vector>

#include "channel_ledger.h"
#include "handle_table.h"
#include "hardening.h"
#include "manager.h"
#include "metrics.h"
#include "slab_pool.h"


namespace isopool {
namespace detail {

constexpr uint64_t kMaxSlotSize = 1ull << 40;   ///< sanity cap on configured slot sizes
constexpr uint64_t kMaxSafeInteger = (1ull << 53) - 1;
constexpr uint64_t kGenMask = (1ull << HandleTable::kGenBits) - 1;

struct TypeInfo {
  std::string name;
  TypeKind kind = TypeKind::kMemory;
};

}  // namespace detail

struct Manager::Impl {
  /// May throw std::bad_alloc.
  explicit Impl(bool single_owner)
      : direct(&registry), table(HandleTable::RandomSecret(), HandleTable::kQuarantine, single_owner) {}

  ManagerConfig config;
  SlabRegistry registry;
  std::unique_ptr<SlabPool[]> pools;
  size_t pool_count = 0;
  DirectPool direct;
  HandleTable table;
  Hardening hardening;                 ///< hardened mode (hardening.h); fixed at Create
  ChannelLedger ledger;

  std::mutex types_mu;                 ///< serialises DefineType
  detail::TypeInfo types[kMaxTypes];           ///< [0, type_count) immutable once published
  std::atomic<int32_t> type_count{0};  ///< release-published by DefineType

  // Memory of freed revocable handles whose buffer another thread still holds (SPEC §3):
  // it returns to its pool when that buffer is released (OnBufferReleased) or that thread
  // leaves (ReclaimEnv). Invariant: a parked record's memory is in no pool and no handle.
  struct Parked {
    HandleRecord rec;
    uint32_t env;  ///< the thread whose buffer keeps the memory reachable; 0: only pins do
  };
  // Pins: buffers over a handle's memory that the holder word no longer describes. A deferred-
  // reuse handle moved by BeginTransfer keeps its sender's buffer attached (nothing revokes it),
  // so the sender's attachment becomes a pin, one entry per buffer, until OnBufferReleased.
  // Memory is released only when its holder's buffer is gone and no pin of its id is left:
  // parked memory waits while PinnedLocked(id), its env set to 0 once the holder's buffer died.
  //
  // Parked memory and pins live in shards by id, each under its own mutex: every deferred-reuse
  // free parks its slot and every buffer's finalizer releases one, so with one mutex two threads
  // freeing took turns at it (bench/METHOD.md, worker threads). Everything about one id is in
  // its shard, so each step that reads or changes an id's entries is atomic as before.
  static constexpr uint32_t kParkedShards = 16;
  struct alignas(kCacheLine) ParkedShard {
    mutable std::mutex mu;
    std::unordered_map<uint64_t, Parked> parked;        ///< by freed id
    std::unordered_multimap<uint64_t, uint32_t> pins;   ///< id -> env of the pinned buffer
  };
  ParkedShard parked_shards[kParkedShards];
  std::atomic<uint64_t> pin_count{0};       ///< pins in every shard, readable without a lock
  std::atomic<uint64_t> parked_count{0};    ///< parked entries in every shard, idem
  // Revocations announced to other threads. Lock order: a shard's mu, then revoke_mu.
  std::mutex revoke_mu;
  std::unordered_map<uint32_t, std::vector<uint64_t>> revoke;   ///< per env: ids to detach
  std::atomic<uint64_t> revoke_count{0};    ///< ids waiting in `revoke`
  std::unordered_map<uint32_t, std::atomic<uint32_t>*> revoke_signal;  ///< WatchRevocations
  RelaxedCounter exit_reclaims;

  // Closes that finish in steps (BeginChannelClose / CloseChannelStep), one per closing channel.
  // The env that began a close finishes it; ReclaimEnv finishes what a leaving thread left.
  struct Claimed {
    uint64_t id;
    uint32_t index;
    EntryState was;
  };
  struct PendingClose {
    int32_t channel;
    uint32_t owner;
    uint32_t env;
    uint32_t cursor = 1;          ///< census index the next claim starts at (index 0 is never used)
    uint64_t left;                ///< handles not freed yet, as the ledger counted them
    std::vector<Claimed> batch;   ///< claimed (kFreeing) by the last claim, not finished yet
  };
  std::mutex closing_mu;
  std::vector<PendingClose> closing;
  std::atomic<uint64_t> closing_handles{0};  ///< sum of `left`

  // Hot statistics: per-thread shards (metrics.h).
  LatencyHistogram alloc_latency;
  LatencyHistogram free_latency;
  static constexpr uint32_t kAllocations = 0, kDeallocations = 1;
  ShardedCounters<2> events;           ///< [kAllocations], [kDeallocations]
  RelaxedCounter refusals;
  RelaxedCounter direct_slot_bytes;    ///< charged bytes of live direct allocations

  // Fast lane (ReserveIds/Reissue/Burn; single owner only, so plain data): bit i set while
  // handle index i is reserved for the binding's JS fast lane and not yet consumed.
  std::vector<uint64_t> fast_reserved;
  /// Burn's last source (see Burn).
  struct BurnSource {
    uint64_t id = 0;
    uint32_t index = 0;
    uint64_t state = 0;
    HandleRecord rec;
  } burn_source;

  bool FastLaneAllowed() const noexcept { return config.single_owner && !config.hardened; }

  /// True (with *index) if `id` is exactly the id a ReserveIds call handed out and no
  /// Reissue/Burn consumed yet.
  bool FastReserved(uint64_t id, uint32_t* index) const noexcept {
    if ((id >> 53) != 0) return false;
    const uint32_t i = static_cast<uint32_t>(id >> 32);
    const size_t word = i >> 6;
    if (word >= fast_reserved.size() || ((fast_reserved[word] >> (i & 63)) & 1u) == 0) return false;
    if (table.NextId(i) != id) return false;
    *index = i;
    return true;
  }
  void ClearFastReserved(uint32_t index) noexcept { fast_reserved[index >> 6] &= ~(uint64_t{1} << (index & 63)); }
  /// A slot reused by the fast lane: one allocation, one deallocation, one hit of its pool's
  /// slab set (`access`: the record's).
  void CountReuse(const HandleRecord& rec, uint32_t shard) noexcept {
    events.Add(shard, kAllocations);
    events.Add(shard, kDeallocations);
    pools[rec.pool].set(static_cast<AccessMode>(rec.access)).CountHit(shard);
  }

  /// The slot record of `id` for a fast-lane journal op that re-uses its slot for `size` bytes:
  /// live (not in transit), pooled memory (view or revocable) of an open channel incarnation, `size` picking the
  /// same pool. kInvalidArgument otherwise; kResourceLimit when a limit's max_allocation_size is
  /// below `size` (where a plain Allocate would refuse). Its state word goes to *state.
  Status FastLaneSource(uint64_t id, uint64_t size, bool size_cap, uint32_t* index, uint64_t* state,
                        HandleRecord* rec) const noexcept {
    const Impl& m = *this;
    const IdProbe p = m.table.Probe(id);
    if (p.kind != IdProbe::kLive) return Status::kInvalidArgument;  // forged, stale, in transit, freeing
    if (!m.table.ReadRecord(p.index, p.state, rec)) return Status::kInvalidArgument;  // single owner: stable
    if (rec->pool < 0 || rec->data == nullptr) return Status::kInvalidArgument;  // counters, direct memory
    if (size == 0 || size > m.config.max_allocation_size || m.PoolFor(size + m.hardening.Tail()) != rec->pool) {
      return Status::kInvalidArgument;
    }
    const ChannelState* ch = m.ledger.Get(rec->channel);
    if (ch == nullptr || ch->owner.load(std::memory_order_relaxed) != rec->owner) return Status::kInvalidArgument;
    // The Allocate half's size caps (TryCharge step 1). Its byte and handle checks always pass
    // right after the Free half refunded the same charge, unless a limit was lowered below the
    // usage meanwhile: the caller must not reuse a slot then (see lib/lane/fast-lane.ts).
    if (size_cap && size > m.ledger.Effective(rec->type, rec->channel).max_allocation_size) return Status::kResourceLimit;
    *index = p.index;
    *state = p.state;
    return Status::kOk;
  }

  int32_t PoolFor(uint64_t size) const noexcept {
    for (size_t i = 0; i < pool_count; ++i) {
      if (size <= pools[i].config().slot_size) return static_cast<int32_t>(i);
    }
    return kPoolDirect;
  }

  bool ValidType(int32_t type) const noexcept {
    return type >= 0 && type < type_count.load(std::memory_order_acquire);
  }

  /// Returns the handle's slot/mapping and refunds its ledgers.
  void ReleaseResources(const HandleRecord& rec) noexcept {
    ReleaseMemory(rec, ThisThreadShard());
    RefundLedgers(rec);
  }

  /// Returns the handle's slot or mapping to its pool (nothing for counters).
  void ReleaseMemory(const HandleRecord& rec, uint32_t shard) noexcept {
    SlotRef ref{static_cast<Slab*>(rec.slab), rec.slot};
    if (rec.pool >= 0) {
      PoisonSlot(ref);
      pools[rec.pool].SubLiveBytes(rec.size, shard);
      ref.slab->set->Release(ref, shard);
    } else if (rec.pool == kPoolDirect) {
      direct_slot_bytes.Sub(rec.charged);
      direct.Release(ref, rec.size);
    }
  }

  // --- hardened mode (hardening.h) -----------------------------------------------------------
  /// Hardened: whether the canary after the requested extent of a handle the caller owns
  /// (won its free, or pins the mappings) is intact. True without canaries and for counters.
  bool CanaryIntact(const HandleRecord& rec) const noexcept {
    return rec.data == nullptr || hardening.CanaryIntact(rec.data + rec.size);
  }

  /// Hardened: a freed pooled slot's dirty extent is overwritten with kPoisonByte when it goes
  /// back to its pool (never while a buffer may still reach it). Zeroing rules still apply.
  /// Under the pin: a Validate that read this handle's state as live before the free won may
  /// still be reading the canary; it re-checks the state after its read, and the pin orders
  /// that read before these writes (and so before any later owner's writes).
  void PoisonSlot(SlotRef ref) noexcept {
    if (!hardening.poison) return;
    std::unique_lock<std::mutex> pin = registry.PinMappings();
    hardening.Poison(ref.data(), ref.meta().dirty);
  }

  /// Hardened: a damaged canary found by a free is counted against the owner channel (the
  /// unscoped domain while the owner channel is closing: its counters end with it).
  uint32_t CheckCanaryOnFree(const HandleRecord& rec, bool closing) noexcept {
    if (CanaryIntact(rec)) return 0;
    ledger.CountViolation(closing ? kUnscopedChannel : rec.channel, Violation::kCanaryCorrupted);
    return ViolationBit(Violation::kCanaryCorrupted);
  }

  void RefundLedgers(const HandleRecord& rec) noexcept {
    ChannelState* ch = ledger.Get(rec.channel);
    if (ch != nullptr) ledger.Refund(rec.type, ch, rec.charged);
  }

  /// Completes a free won by the caller (entry now kFreeing, observed as `was`): parks the
  /// memory if another thread holds a revocable buffer over it, else returns it; refunds the
  /// ledgers; frees the entry. `info->parked` tells which.
  /// Completes a free won by the caller (entry now kFreeing, observed as `was`). The memory
  /// is parked instead of returned when a revocable buffer over it may still be reachable:
  /// the holder is another thread (it is told to revoke its buffer), or the caller cannot
  /// vouch for its own buffer (ctx.keep_until_released: detached by other code, or only known
  /// to be unreferenced from JS, so a transfer()ed copy may live). Parked memory returns when
  /// the buffer's backing store dies (OnBufferReleased). Refunds the ledgers; frees the entry.
  void FinishClaimedFree(uint32_t index, uint64_t id, EntryState was, const HandleRecord& rec,
                         FreeReason reason, const CallContext& ctx, HandleInfo* info,
                         uint32_t shard = ThisThreadShard()) noexcept {
    bool park = false;
    bool deferred = false;
    uint32_t holder_env = 0;
    // In transit, nobody holds a buffer (the sender detached it; an adopter has not won yet).
    if (was == EntryState::kLive && rec.data != nullptr &&
        rec.access == static_cast<uint32_t>(AccessMode::kRevocable)) {
      // seq_cst: Dekker with OnBufferReleased (see ParkOrRelease).
      const uint64_t h = table.LoadHolder(index);
      holder_env = HandleTable::HolderEnv(h);
      deferred = !ImmediateReuse(rec.channel);
      park = holder_env != 0 && HandleTable::HolderAttached(h) &&
             HandleTable::HolderGeneration(h) == GenerationOf(id) &&
             (holder_env != ctx.env || ctx.keep_until_released || deferred);
    }
    if (park) {
      // A deferred buffer is not revoked by its holder: it waits for that buffer to die.
      park = ParkOrRelease(index, id, holder_env, /*announce=*/holder_env != ctx.env && !deferred, rec);
    } else if (ParkForPins(id, rec)) {
      park = true;
    } else {
      ReleaseMemory(rec, shard);
    }
    RefundLedgers(rec);
    if (info != nullptr) info->parked = park;
    table.FinishFree(index, reason);
    events.Add(shard, kDeallocations);
  }

  /// Parks `rec`'s memory (no holder buffer left) if a pinned buffer still reaches it; false if
  /// none does. seq_cst with BeginTransfer's pin, which is published before the handle can be freed.
  bool ParkForPins(uint64_t id, const HandleRecord& rec) noexcept {
    if (rec.data == nullptr || pin_count.load(std::memory_order_seq_cst) == 0) return false;
    ParkedShard& shard = ShardOf(id);
    std::lock_guard<std::mutex> lock(shard.mu);
    if (!PinnedLocked(shard, id)) return false;
    try {
      shard.parked.emplace(id, Parked{rec, 0});
    } catch (...) {
      return true;  // no memory to remember it: never reused rather than reused too early
    }
    parked_count.fetch_add(1, std::memory_order_seq_cst);
    return true;
  }

  /// Parks `rec`'s memory for holder `env` (announcing it to that thread if `announce`), then
  /// re-checks the holder's attached bit: a buffer released meanwhile (OnBufferReleased clears
  /// the bit, then looks for parked memory) must not leave the memory parked forever. Both
  /// sides publish first and check second, seq_cst, so at least one sees the other. Returns
  /// whether the memory stays parked. Called before FinishFree, so the holder word still
  /// describes this incarnation.
  bool ParkOrRelease(uint32_t index, uint64_t id, uint32_t env, bool announce, const HandleRecord& rec) noexcept {
    {
      ParkedShard& shard = ShardOf(id);
      std::lock_guard<std::mutex> lock(shard.mu);
      try {
        shard.parked.emplace(id, Parked{rec, env});
      } catch (...) {
        // No memory to remember it: keep the slot out of every pool (leaked, never reused)
        // rather than hand out memory a buffer may still reach.
        return true;
      }
      if (announce) {
        std::lock_guard<std::mutex> revoke_lock(revoke_mu);
        try {
          revoke[env].push_back(id);
          revoke_count.fetch_add(1, std::memory_order_relaxed);
          auto signal = revoke_signal.find(env);
          if (signal != revoke_signal.end()) signal->second->store(1, std::memory_order_relaxed);
        } catch (...) {
          // Not announced: released when the holder's buffer dies or the holder leaves.
        }
      }
      parked_count.fetch_add(1, std::memory_order_seq_cst);
    }
    if (HandleTable::HolderAttached(table.LoadHolder(index))) return true;
    return !Unpark(id);
  }

  /// Whether `channel`'s freed revocable memory returns to its pool at once (options bit 2);
  /// otherwise it waits for its buffer to die. A live handle's channel is still open (a close
  /// frees every handle before the index is recycled), so its options are this incarnation's.
  bool ImmediateReuse(int32_t channel) const noexcept {
    const ChannelState* st = ledger.Get(channel);
    return st != nullptr && (st->options.load(std::memory_order_relaxed) & 4u) != 0;
  }

  /// The shard of `id`'s parked memory and pins.
  ParkedShard& ShardOf(uint64_t id) noexcept {
    return parked_shards[(static_cast<uint32_t>(id >> 32) * 0x9E3779B1u) >> 28];  // 16 shards
  }
  const ParkedShard& ShardOf(uint64_t id) const noexcept {
    return parked_shards[(static_cast<uint32_t>(id >> 32) * 0x9E3779B1u) >> 28];
  }

  /// Whether a pinned buffer may still reach `id`'s memory. Caller holds `shard` (ShardOf(id)).
  bool PinnedLocked(const ParkedShard& shard, uint64_t id) const noexcept {
    return pin_count.load(std::memory_order_relaxed) != 0 && shard.pins.find(id) != shard.pins.end();
  }

  /// Returns parked memory of `id` to its pool; false if it was not parked (any more) or a
  /// pinned buffer still reaches it (it then waits for the pins only).
  bool Unpark(uint64_t id) noexcept {
    ParkedShard& shard = ShardOf(id);
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.parked.find(id);
    if (it == shard.parked.end()) return false;
    if (PinnedLocked(shard, id)) {
      it->second.env = 0;
      return false;
    }
    ReleaseMemory(it->second.rec, ThisThreadShard());
    shard.parked.erase(it);
    parked_count.fetch_sub(1, std::memory_order_relaxed);
    return true;
  }

  static uint32_t GenerationOf(uint64_t id) noexcept {
    return static_cast<uint32_t>((id >> HandleTable::kCheckBits) & detail::kGenMask);
  }

  /// A free, transfer or adoption of a handle of `rec`'s channel enters the channel like an
  /// allocation (ChannelLedger::Enter), so a close that has begun (BeginClose waits for what is
  /// in flight) owns every handle of it: null if the channel is closing, then the handle is
  /// freed to the caller. Otherwise call ExitChannel with the result when done.
  ChannelState* EnterChannel(const HandleRecord& rec) noexcept {
    ChannelState* st = nullptr;
    if (ledger.Enter(rec.channel, &st) != Status::kOk) return nullptr;
    if (st->owner.load(std::memory_order_relaxed) != rec.owner) {  // cannot happen: a live entry's incarnation is open or closing
      ExitChannel(st);
      return nullptr;
    }
    return st;
  }
  void ExitChannel(ChannelState* st) const noexcept { ChannelLedger::Exit(st, config.single_owner); }
  /// Whether `rec`'s channel is closing: its handles read as freed (a snapshot; the frees that
  /// matter are serialised by EnterChannel).
  bool Closing(const HandleRecord& rec) const noexcept {
    return rec.channel != kUnscopedChannel && !ledger.IsOpen(rec.channel);
  }

  /// Claims (kFreeing) up to `max` more handles of a closing channel into p->batch, walking its
  /// census on from p->cursor; appends them to *claimed (may be null). Returns how many.
  uint64_t Claim(PendingClose* p, uint64_t max, std::vector<HandleInfo>* claimed) noexcept;
  /// Frees p->batch: returns (or, where keep[k], parks until its buffer dies) each memory;
  /// infos[k] (if given) learns whether the k-th was parked.
  void Finish(PendingClose* p, const CallContext& ctx, const uint8_t* keep, size_t keep_n, HandleInfo* infos) noexcept;
  /// Claim then Finish; true once the close has nothing left.
  bool Step(PendingClose* p, const CallContext& ctx, uint64_t max, std::vector<HandleInfo>* freed) noexcept;
  bool Done(const PendingClose& p) const noexcept { return p.batch.empty() && p.cursor >= table.HighWater(); }
  /// The close under way of `channel`, or closing.end(). closing_mu held.
  std::vector<PendingClose>::iterator FindClose(int32_t channel) noexcept {
    return std::find_if(closing.begin(), closing.end(), [&](const PendingClose& p) { return p.channel == channel; });
  }
  /// After a step of `*it` (closing_mu held): how many handles are left (at least 1 while the
  /// census is not walked to its end); at 0 the close is removed and its index recycled.
  uint64_t AfterStep(std::vector<PendingClose>::iterator it) noexcept {
    if (!Done(*it)) return it->left == 0 ? 1 : it->left;
    closing_handles.fetch_sub(it->left, std::memory_order_relaxed);  // 0 unless the ledger miscounted
    const int32_t channel = it->channel;
    closing.erase(it);
    ledger.FinishClose(channel, /*remember=*/false);
    return 0;
  }

  /// The channel a violation about a stale id is counted against.
  int32_t StaleTarget(const IdProbe& probe, int32_t presenter) const noexcept {
    if (presenter >= 0) return presenter;
    if (!probe.same_generation) return kUnscopedChannel;
    HandleRecord rec;
    if (!table.ReadRecord(probe.index, probe.state, &rec)) return kUnscopedChannel;
    const ChannelState* st = ledger.Get(rec.channel);
    if (st != nullptr && ledger.IsOpen(rec.channel) &&
        st->owner.load(std::memory_order_relaxed) == rec.owner) {
      return rec.channel;
    }
    return kUnscopedChannel;
  }

  /// Seqlock-consistent record of a live/transit/freeing entry, or false if free.
  bool ReadLive(uint32_t index, uint64_t* state, HandleRecord* rec) const noexcept {
    for (;;) {
      const uint64_t st = table.LoadState(index);
      if (HandleTable::StateOf(st) == EntryState::kFree) return false;
      if (table.ReadRecord(index, st, rec)) {
        *state = st;
        return true;
      }
      // The entry changed while we read: retry.
    }
  }
};

namespace detail {


inline void FillInfo(uint64_t id, const HandleRecord& rec, bool in_transit, HandleInfo* info) noexcept {
  if (info == nullptr) return;
  info->id = id;
  info->type = rec.type;
  info->channel = rec.channel;
  info->owner = rec.owner;
  info->pool = rec.pool;
  info->size = rec.size;
  info->slot_bytes = rec.slot_bytes;
  info->charged = rec.charged;
  info->slab_key = rec.slab_key;
  info->slab_offset = rec.slab_offset;
  info->data = rec.data;
  info->alloc_time_ns = rec.alloc_time_ns;
  info->latency_ns = rec.latency_ns;
  info->in_transit = in_transit;
}

inline Violation StaleKind(const IdProbe& probe) noexcept {
  return probe.closed_by_channel ? Violation::kChannelClosed : Violation::kStaleHandle;
}


}  // namespace detail
}  // namespace isopool
