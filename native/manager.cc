// manager.cc — the core facade: pools + handle table + channel ledgers.
//
// Allocate, in order (each step undone if a later one fails, so a failed call
// changes nothing but refusal counters):
//   1. type and size checks              (kUnknownType, kInvalidSize)
//   2. channel Enter: inflight + 1       (kUnknownChannel, kChannelClosed)
//   3. ledger check-and-charge           (kResourceLimit)
//   4. handle index Reserve              (kHandleTableFull; kPoolExhausted: segment refused)
//   5. slot from the pool / direct map   (kPoolExhausted: system refused)
//   6. zeroing, ledger Commit (usage readers see, peaks), Publish (id is live), channel Exit.
//
// Free: classify the id, read its record under the seqlock, check the
// presenter, win the CAS live|transit -> freeing, return the slot, refund the
// ledgers, then FinishFree (state free + index recycled). IsReleased is true
// only after FinishFree, i.e. after every resource went back.
//
// CloseChannel = BeginChannelClose, then CloseChannelStep until nothing is left.
// BeginChannelClose: BeginClose (no new allocation can enter, and no free, transfer or
// adoption of the channel's handles: those enter the channel like an allocation and find it
// closing, so to every caller the handles are freed from here on; waits for those in flight),
// reads what the channel holds from its ledger and closes the name (it reopens as a new
// incarnation). Each CloseChannelStep walks the channel's census on from where the last one
// stopped and frees up to `max` handles; the last one recycles the index (FinishClose). Hence
// a channel index is never reused while anything may still charge or refund its ledger, and a
// close of a million handles can return them a few thousand at a time.
//
// Fast lane (ReserveIds, Reissue, Burn; single owner and not hardened): replays what the
// binding's JS side did without calling in (a pooled slot freed and handed to the next
// allocation of the same channel, type and pool: view mode, and revocable channels whose
// buffers the binding moves with transfer()). Reissue is the Free above and an Allocate
// on the same slot in one step: the entry of the old id goes freeing -> free (recycled), the
// reserved index is published with the old record, and the ledgers, slot and slot metadata
// are left as they are (same charge, same owner). Burn publishes and frees a reserved index
// at once (HandleTable::PublishFreed), with the record of the live handle whose slot it used. Both count the allocation, the deallocation and a hit.
//
// Single owner (ManagerConfig::single_owner): the ledger, the handle table and the slab sets
// are created in single-owner mode (single_owner.h), so the steps above update their atomics
// with loads and stores instead of locked read-modify-writes; the steps and their rollbacks
// are the same. The parking protocol's counters keep their atomics (they change under a
// mutex, off the hot path); the holder word's CAS is a compare and a store like the others.
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

namespace {

constexpr uint64_t kMaxSlotSize = 1ull << 40;   ///< sanity cap on configured slot sizes
constexpr uint64_t kMaxSafeInteger = (1ull << 53) - 1;
constexpr uint64_t kGenMask = (1ull << HandleTable::kGenBits) - 1;

struct TypeInfo {
  std::string name;
  TypeKind kind = TypeKind::kMemory;
};

}  // namespace

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
  TypeInfo types[kMaxTypes];           ///< [0, type_count) immutable once published
  std::atomic<int32_t> type_count{0};  ///< release-published by DefineType

  // Memory of freed revocable handles whose buffer another thread still holds (SPEC §3):
  // it returns to its pool when that buffer is released (OnBufferReleased) or that thread
  // leaves (ReclaimEnv). Invariant: a parked record's memory is in no pool and no handle.
  struct Parked {
    HandleRecord rec;
    uint32_t env;  ///< the thread whose buffer keeps the memory reachable; 0: only pins do
  };
  mutable std::mutex parked_mu;
  std::unordered_map<uint64_t, Parked> parked;                   ///< by freed id
  // Pins: buffers over a handle's memory that the holder word no longer describes. A deferred-
  // reuse handle moved by BeginTransfer keeps its sender's buffer attached (nothing revokes it),
  // so the sender's attachment becomes a pin, one entry per buffer, until OnBufferReleased.
  // Memory is released only when its holder's buffer is gone and no pin of its id is left:
  // parked memory waits while PinnedLocked(id), its env set to 0 once the holder's buffer died.
  std::unordered_multimap<uint64_t, uint32_t> pins;              ///< id -> env of the pinned buffer
  std::atomic<uint64_t> pin_count{0};       ///< pins.size(), readable without the lock
  std::unordered_map<uint32_t, std::vector<uint64_t>> revoke;   ///< per env: ids to detach
  std::atomic<uint64_t> parked_count{0};    ///< parked.size(), readable without the lock
  std::atomic<uint64_t> revoke_count{0};    ///< ids waiting in `revoke`
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
      ref.slab->set->Release(ref);
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
    std::lock_guard<std::mutex> lock(parked_mu);
    if (!PinnedLocked(id)) return false;
    try {
      parked.emplace(id, Parked{rec, 0});
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
      std::lock_guard<std::mutex> lock(parked_mu);
      try {
        parked.emplace(id, Parked{rec, env});
      } catch (...) {
        // No memory to remember it: keep the slot out of every pool (leaked, never reused)
        // rather than hand out memory a buffer may still reach.
        return true;
      }
      if (announce) {
        try {
          revoke[env].push_back(id);
          revoke_count.fetch_add(1, std::memory_order_relaxed);
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

  /// Whether a pinned buffer may still reach `id`'s memory. Caller holds parked_mu.
  bool PinnedLocked(uint64_t id) const noexcept {
    return pin_count.load(std::memory_order_relaxed) != 0 && pins.find(id) != pins.end();
  }

  /// Returns parked memory of `id` to its pool; false if it was not parked (any more) or a
  /// pinned buffer still reaches it (it then waits for the pins only).
  bool Unpark(uint64_t id) noexcept {
    std::lock_guard<std::mutex> lock(parked_mu);
    auto it = parked.find(id);
    if (it == parked.end()) return false;
    if (PinnedLocked(id)) {
      it->second.env = 0;
      return false;
    }
    ReleaseMemory(it->second.rec, ThisThreadShard());
    parked.erase(it);
    parked_count.fetch_sub(1, std::memory_order_relaxed);
    return true;
  }

  static uint32_t GenerationOf(uint64_t id) noexcept {
    return static_cast<uint32_t>((id >> HandleTable::kCheckBits) & kGenMask);
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

namespace {

void FillInfo(uint64_t id, const HandleRecord& rec, bool in_transit, HandleInfo* info) noexcept {
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

Violation StaleKind(const IdProbe& probe) noexcept {
  return probe.closed_by_channel ? Violation::kChannelClosed : Violation::kStaleHandle;
}

}  // namespace

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

// --- LatencySnapshot ---------------------------------------------------------------

double LatencySnapshot::Quantile(double q) const noexcept {
  uint64_t total = 0;
  for (uint64_t b : buckets) total += b;
  if (total == 0) return 0;
  if (!(q > 0)) q = 0;  // also maps NaN to 0
  if (q > 1) q = 1;
  const double target = q * static_cast<double>(total);
  double cum = 0;
  for (int i = 0; i < kLatencyBuckets; ++i) {
    if (buckets[i] == 0) continue;
    const double b = static_cast<double>(buckets[i]);
    if (cum + b >= target) {
      // Linear interpolation inside [2^i, 2^(i+1)) (bucket 0 covers [0, 2)).
      const double lo = i == 0 ? 0.0 : static_cast<double>(1ull << i);
      const double hi = static_cast<double>(1ull << (i + 1));
      const double frac = (target - cum) / b;
      return lo + (hi - lo) * (frac < 0 ? 0 : frac);
    }
    cum += b;
  }
  return static_cast<double>(1ull << kLatencyBuckets);
}

// --- lifetime ------------------------------------------------------------------------

Status Manager::Create(const ManagerConfig& config, Manager** out) noexcept {
  *out = nullptr;
  if (config.max_allocation_size == 0 || config.max_allocation_size > kMaxSafeInteger) {
    return Status::kInvalidArgument;
  }
  uint64_t prev = 0;
  for (const auto& p : config.pools) {
    if (p.slot_size == 0 || p.slot_size <= prev || p.slot_size > kMaxSlotSize) {
      return Status::kInvalidArgument;
    }
    prev = p.slot_size;
  }
  std::unique_ptr<Impl> impl;
  try {
    impl.reset(new Impl(config.single_owner));
    impl->config = config;
    impl->types[0].name = "buffer";
  } catch (...) {  // std::bad_alloc
    return Status::kPoolExhausted;
  }
  StartStopwatchCalibration();  // latency samples (metrics.h)
  impl->types[0].kind = TypeKind::kMemory;
  impl->type_count.store(1, std::memory_order_release);
  impl->hardening = Hardening::For(config.hardened, HandleTable::RandomSecret());
  if (impl->hardening.guard_pages) impl->registry.EnableGuardPages();  // before any mapping
  impl->pool_count = config.pools.size();
  if (impl->pool_count > 0) {
    impl->pools.reset(new (std::nothrow) SlabPool[impl->pool_count]);
    if (!impl->pools) return Status::kPoolExhausted;
    for (size_t i = 0; i < impl->pool_count; ++i) {
      if (!impl->pools[i].Init(config.pools[i], &impl->registry, config.single_owner)) {
        return Status::kPoolExhausted;
      }
    }
  }
  if (!impl->ledger.Init(config.single_owner)) return Status::kPoolExhausted;
  Manager* m = new (std::nothrow) Manager();
  if (m == nullptr) return Status::kPoolExhausted;
  m->impl_ = impl.release();
  *out = m;
  return Status::kOk;
}

Manager::~Manager() { delete impl_; }

void Manager::Ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }

void Manager::Unref() noexcept {
  // acq_rel: every use by other holders happens-before the deletion.
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

const ManagerConfig& Manager::config() const noexcept { return impl_->config; }

// --- types ------------------------------------------------------------------------------

Status Manager::DefineType(std::string_view name, TypeKind kind, int32_t* index) noexcept {
  std::lock_guard<std::mutex> lock(impl_->types_mu);
  const int32_t n = impl_->type_count.load(std::memory_order_relaxed);
  if (name.empty() || n >= kMaxTypes || FindType(name) >= 0) return Status::kInvalidArgument;
  try {
    impl_->types[n].name.assign(name.data(), name.size());
  } catch (...) {  // std::bad_alloc
    return Status::kPoolExhausted;
  }
  impl_->types[n].kind = kind;
  // release: the name and kind are visible to lock-free FindType/KindOf readers.
  impl_->type_count.store(n + 1, std::memory_order_release);
  *index = n;
  return Status::kOk;
}

int32_t Manager::FindType(std::string_view name) const noexcept {
  const int32_t n = impl_->type_count.load(std::memory_order_acquire);
  for (int32_t i = 0; i < n; ++i) {
    if (impl_->types[i].name == name) return i;
  }
  return -1;
}

TypeKind Manager::KindOf(int32_t type) const noexcept {
  return impl_->ValidType(type) ? impl_->types[type].kind : TypeKind::kMemory;
}

// --- channels ------------------------------------------------------------------------------

Status Manager::OpenChannel(std::string_view name, const ChannelOptions& options, int32_t* index,
                            bool* created) noexcept {
  return impl_->ledger.Open(name, options, index, created);
}

int32_t Manager::FindChannel(std::string_view name) const noexcept { return impl_->ledger.Find(name); }

Status Manager::DiscardChannel(int32_t channel, uint32_t expected_owner) noexcept {
  return impl_->ledger.TryDiscard(channel, expected_owner);
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
  auto it = std::find_if(m.closing.begin(), m.closing.end(),
                         [&](const Impl::PendingClose& p) { return p.channel == channel; });
  if (it == m.closing.end()) return;
  const bool done = m.Step(&*it, ctx, max, freed);
  if (!done) {
    *left = it->left == 0 ? 1 : it->left;  // the census is not walked to its end yet
    return;
  }
  m.closing_handles.fetch_sub(it->left, std::memory_order_relaxed);  // 0 unless the ledger miscounted
  m.closing.erase(it);
  m.ledger.FinishClose(channel, /*remember=*/false);
}

Status Manager::CloseChannelClaim(int32_t channel, uint64_t max, std::vector<HandleInfo>* claimed) noexcept {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.closing_mu);
  auto it = std::find_if(m.closing.begin(), m.closing.end(),
                         [&](const Impl::PendingClose& p) { return p.channel == channel; });
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
  auto it = std::find_if(m.closing.begin(), m.closing.end(),
                         [&](const Impl::PendingClose& p) { return p.channel == channel; });
  if (it == m.closing.end()) return Status::kChannelClosed;
  m.Finish(&*it, ctx, keep, keep_n, nullptr);
  if (!m.Done(*it)) {
    *left = it->left == 0 ? 1 : it->left;  // the census is not walked to its end yet
    return Status::kOk;
  }
  m.closing_handles.fetch_sub(it->left, std::memory_order_relaxed);  // 0 unless the ledger miscounted
  m.closing.erase(it);
  m.ledger.FinishClose(channel, /*remember=*/false);
  return Status::kOk;
}

uint64_t Manager::ClosingHandles() const noexcept {
  return impl_->closing_handles.load(std::memory_order_relaxed);
}

ChannelOptions Manager::OptionsOf(int32_t channel) const noexcept {
  ChannelOptions o;
  const ChannelState* st = impl_->ledger.Get(channel);
  if (st == nullptr) return o;
  const uint32_t bits = st->options.load(std::memory_order_relaxed);
  o.access = (bits & 1u) ? AccessMode::kView : AccessMode::kRevocable;
  o.zero = (bits & 2u) ? ZeroMode::kAlways : ZeroMode::kCrossChannel;
  o.immediate_reuse = (bits & 4u) != 0;
  return o;
}

uint32_t Manager::OwnerOf(int32_t channel) const noexcept {
  const ChannelState* st = impl_->ledger.Get(channel);
  return st == nullptr ? 0 : st->owner.load(std::memory_order_relaxed);
}

// --- limits ------------------------------------------------------------------------------------

Status Manager::SetLimits(int32_t type, int32_t channel, const Limits& limits) noexcept {
  if (type != kAllTypes && !impl_->ValidType(type)) {
    return type < 0 ? Status::kInvalidArgument : Status::kUnknownType;
  }
  return impl_->ledger.SetLimits(type, channel, limits);
}

Limits Manager::EffectiveLimits(int32_t type, int32_t channel) const noexcept {
  Limits l = impl_->ledger.Effective(type, channel);
  l.max_allocation_size = std::min(l.max_allocation_size, impl_->config.max_allocation_size);
  return l;
}

// --- handles -----------------------------------------------------------------------------------

Status Manager::Allocate(int32_t type, uint64_t size, int32_t channel, Allocation* out) noexcept {
  return Allocate(type, size, channel, CallContext{}, out);
}

Status Manager::Allocate(int32_t type, uint64_t size, int32_t channel, const CallContext& ctx,
                         Allocation* out) noexcept {
  Impl& m = *impl_;
  const bool single = m.config.single_owner;  // single_owner.h
  const uint64_t t0 = NowNs();
  const Stopwatch watch(t0);
  const uint32_t shard = ThisThreadShard();
  *out = Allocation{};
  if (!m.ValidType(type)) {
    m.refusals.Add();
    return Status::kUnknownType;
  }
  if (size == 0 || size > m.config.max_allocation_size) {
    m.refusals.Add();
    return Status::kInvalidSize;
  }
  ChannelState* ch = nullptr;
  Status s = m.ledger.Enter(channel, &ch);
  if (s != Status::kOk) {
    m.refusals.Add();
    return s;
  }
  const bool memory = m.types[type].kind == TypeKind::kMemory;
  const uint32_t bits = ch->options.load(std::memory_order_relaxed);
  const AccessMode access = (bits & 1u) ? AccessMode::kView : AccessMode::kRevocable;
  const bool zero_always = (bits & 2u) != 0;
  const uint32_t owner = ch->owner.load(std::memory_order_relaxed);
  if (ctx.expected_owner != 0 && owner != ctx.expected_owner) {
    // The index was recycled: the caller's channel was closed (by another thread).
    ChannelLedger::Exit(ch, single);
    m.refusals.Add();
    return Status::kChannelClosed;
  }

  int32_t pool = kPoolCounter;
  uint64_t slot_bytes = size;
  const uint64_t tail = memory ? m.hardening.Tail() : 0;  // hardened: room for the canary
  if (memory) {
    pool = m.PoolFor(size + tail);
    slot_bytes = pool >= 0 ? m.pools[pool].config().slot_size : DirectPool::RoundUp(size + tail);
  }
  const uint64_t charged = slot_bytes;

  ChargeTicket ticket;
  s = m.ledger.TryCharge(type, ch, size, charged, &ticket, out);
  if (s != Status::kOk) {
    out->slot_bytes = slot_bytes;  // what the refused allocation would have been charged
    out->charged = charged;
    ChannelLedger::Exit(ch, single);
    m.refusals.Add();
    return s;
  }
  uint32_t index = 0;
  s = m.table.Reserve(&index);
  if (s != Status::kOk) {
    m.ledger.Refund(type, ch, charged, /*committed=*/false);
    ChannelLedger::Exit(ch, single);
    m.refusals.Add();
    return s;
  }

  SlotRef ref;
  if (memory) {
    if (pool >= 0) {
      bool hit = false;
      s = m.pools[pool].set(access).Acquire(&ref, &hit, shard);
    } else {
      s = m.direct.Acquire(size, &ref, tail);
    }
    if (s != Status::kOk) {
      m.table.Unreserve(index);
      m.ledger.Refund(type, ch, charged, /*committed=*/false);
      ChannelLedger::Exit(ch, single);
      m.refusals.Add();
      return s;
    }
    if (pool >= 0) {
      // Zeroing from out-of-band metadata (slab_pool.h SlotMeta).
      SlotMeta& meta = ref.meta();
      const bool view = access == AccessMode::kView;
      if (meta.owner != owner) {
        // View users can write anywhere in the slot (and the slab): zero it all.
        const uint64_t extent = view ? slot_bytes : meta.dirty;
        if (extent > 0) std::memset(ref.data(), 0, extent);
        meta.dirty = 0;
      } else if (zero_always) {
        std::memset(ref.data(), 0, size);
      }
      meta.owner = owner;
      meta.dirty = view ? slot_bytes : std::max(meta.dirty, size + tail);
      m.pools[pool].AddLiveBytes(size, shard);
    } else {
      m.direct_slot_bytes.Add(charged);
    }
    m.hardening.WriteCanary(ref.data() + size);
  }
  // Nothing below can fail: the charge becomes usage readers see (peaks, soft crossing).
  m.ledger.Commit(type, ch, &ticket);

  HandleRecord rec;
  rec.size = size;
  rec.slot_bytes = slot_bytes;
  rec.charged = charged;
  rec.slab_key = memory ? ref.slab->key : 0;
  rec.slab_offset = memory ? ref.offset() : 0;
  rec.alloc_time_ns = t0;
  rec.data = memory ? ref.data() : nullptr;
  rec.slab = ref.slab;
  rec.type = type;
  rec.channel = channel;
  rec.owner = owner;
  rec.pool = pool;
  rec.slot = ref.index;
  rec.access = static_cast<uint32_t>(access);
  rec.latency_ns = watch.ElapsedNs();
  // The holder is stored before Publish's release of kLive, so whoever later wins a
  // transition on this incarnation sees it.
  const uint32_t generation =
      static_cast<uint32_t>((HandleTable::UsesOf(m.table.LoadState(index)) + 1) & kGenMask);
  m.table.StoreHolder(index, HandleTable::HolderWord(ctx.env, memory && ctx.env != 0, generation));
  const uint64_t id = m.table.Publish(index, rec);
  ChannelLedger::Exit(ch, single);
  m.events.Add(shard, Impl::kAllocations);
  m.alloc_latency.Record(rec.latency_ns, shard);

  out->id = id;
  out->data = rec.data;
  out->slot_bytes = slot_bytes;
  out->charged = charged;
  out->pool = pool;
  out->slab_key = rec.slab_key;
  out->slab_offset = rec.slab_offset;
  out->soft_crossed = ticket.soft;
  out->latency_ns = rec.latency_ns;
  return Status::kOk;
}

Status Manager::Free(uint64_t id, int32_t presenter, FreeReason reason, HandleInfo* info,
                     uint32_t* violations) noexcept {
  return Free(id, presenter, reason, CallContext{}, info, violations);
}

Status Manager::Free(uint64_t id, int32_t presenter, FreeReason reason, const CallContext& ctx,
                     HandleInfo* info, uint32_t* violations) noexcept {
  Impl& m = *impl_;
  const Stopwatch watch;
  const uint32_t shard = ThisThreadShard();
  if (violations != nullptr) *violations = 0;
  for (;;) {
    const IdProbe p = m.table.Probe(id);
    switch (p.kind) {
      case IdProbe::kForged:
        m.ledger.CountViolation(presenter >= 0 ? presenter : kUnscopedChannel, Violation::kForgedHandle);
        if (violations != nullptr) *violations = ViolationBit(Violation::kForgedHandle);
        return Status::kInvalidHandle;
      case IdProbe::kStale:
      case IdProbe::kFreeing: {
        // kFreeing: another caller won the free; to us it is a double free.
        const Violation v = StaleKind(p);
        m.ledger.CountViolation(m.StaleTarget(p, presenter), v);
        if (violations != nullptr) *violations = ViolationBit(v);
        return Status::kStaleHandle;
      }
      case IdProbe::kLive:
      case IdProbe::kTransit: {
        HandleRecord rec;
        if (!m.table.ReadRecord(p.index, p.state, &rec)) continue;  // changed meanwhile: re-probe
        if (presenter >= 0 && presenter != rec.channel) {
          m.ledger.CountViolation(presenter, Violation::kCrossChannel);
          if (violations != nullptr) *violations = ViolationBit(Violation::kCrossChannel);
          FillInfo(id, rec, p.kind == IdProbe::kTransit, info);
          return Status::kIsolationViolation;
        }
        ChannelState* st = m.EnterChannel(rec);
        if (st == nullptr) {  // its channel is closing: the close frees it
          m.ledger.CountViolation(presenter >= 0 ? presenter : kUnscopedChannel, Violation::kChannelClosed);
          if (violations != nullptr) *violations = ViolationBit(Violation::kChannelClosed);
          return Status::kStaleHandle;
        }
        // One winner: a racing Free/BeginTransfer/Adopt makes this fail.
        if (!m.table.TryTransition(p.index, p.state, EntryState::kFreeing)) {
          m.ExitChannel(st);
          continue;
        }
        FillInfo(id, rec, false, info);
        // Hardened: a damaged canary is reported (and counted) but the free goes ahead (hardening.h).
        const uint32_t canary = m.CheckCanaryOnFree(rec, /*closing=*/false);
        if (violations != nullptr) *violations = canary;
        m.FinishClaimedFree(p.index, id, HandleTable::StateOf(p.state), rec, reason, ctx, info, shard);
        m.ExitChannel(st);
        m.free_latency.Record(watch.ElapsedNs(), shard);
        return Status::kOk;
      }
    }
  }
}

uint32_t Manager::Validate(uint64_t id, int32_t presenter, HandleInfo* info) noexcept {
  Impl& m = *impl_;
  for (;;) {
    const IdProbe p = m.table.Probe(id);
    switch (p.kind) {
      case IdProbe::kForged:
        m.ledger.CountViolation(presenter >= 0 ? presenter : kUnscopedChannel, Violation::kForgedHandle);
        return ViolationBit(Violation::kForgedHandle);
      case IdProbe::kStale:
      case IdProbe::kFreeing: {
        const Violation v = StaleKind(p);
        m.ledger.CountViolation(m.StaleTarget(p, presenter), v);
        return ViolationBit(v);
      }
      case IdProbe::kLive:
      case IdProbe::kTransit: {
        HandleRecord rec;
        if (!m.table.ReadRecord(p.index, p.state, &rec)) continue;
        if (m.Closing(rec)) {  // freed by a close that has not finished
          m.ledger.CountViolation(presenter >= 0 ? presenter : kUnscopedChannel, Violation::kChannelClosed);
          return ViolationBit(Violation::kChannelClosed);
        }
        const bool cross = presenter >= 0 && presenter != rec.channel;
        bool canary_ok = true;
        if (m.hardening.canaries && rec.data != nullptr && !cross) {
          // Hardened (hardening.h). Under the pin no slab is unmapped; the state re-checks
          // around the read prove the handle (so its slot) was live throughout: otherwise
          // the bytes may belong to a later owner and the read is discarded (re-probe).
          std::unique_lock<std::mutex> pin = m.registry.PinMappings();
          if (m.table.LoadState(p.index) != p.state) continue;
          canary_ok = m.CanaryIntact(rec);
          if (m.table.LoadState(p.index) != p.state) continue;
        }
        FillInfo(id, rec, p.kind == IdProbe::kTransit, info);
        uint32_t mask = 0;
        if (cross) {
          mask |= ViolationBit(Violation::kCrossChannel);
          m.ledger.CountViolation(presenter, Violation::kCrossChannel);
        }
        if (!canary_ok) {
          mask |= ViolationBit(Violation::kCanaryCorrupted);
          m.ledger.CountViolation(rec.channel, Violation::kCanaryCorrupted);
        }
        // The recorded extent must lie inside its slot (record arithmetic only:
        // the slab may be returned concurrently, so it is not dereferenced).
        const bool oob = rec.size > rec.slot_bytes || rec.charged < rec.slot_bytes ||
                         (rec.pool >= 0 && (rec.slot_bytes == 0 || rec.slab_offset % rec.slot_bytes != 0));
        if (oob) {
          mask |= ViolationBit(Violation::kOutOfBounds);
          m.ledger.CountViolation(rec.channel, Violation::kOutOfBounds);
        }
        return mask;
      }
    }
  }
}

Status Manager::Lookup(uint64_t id, HandleInfo* info) const noexcept {
  const Impl& m = *impl_;
  for (;;) {
    const IdProbe p = m.table.Probe(id);
    switch (p.kind) {
      case IdProbe::kForged:
        return Status::kInvalidHandle;
      case IdProbe::kStale:
      case IdProbe::kFreeing:
        return Status::kStaleHandle;
      case IdProbe::kLive:
      case IdProbe::kTransit: {
        HandleRecord rec;
        if (!m.table.ReadRecord(p.index, p.state, &rec)) continue;
        if (m.Closing(rec)) return Status::kStaleHandle;  // freed by a close that has not finished
        FillInfo(id, rec, p.kind == IdProbe::kTransit, info);
        return Status::kOk;
      }
    }
  }
}

bool Manager::IsReleased(uint64_t id) const noexcept {
  const Impl& m = *impl_;
  if (m.table.Probe(id).kind != IdProbe::kStale) return false;
  // Freed, but its memory may still wait for a buffer to die (parked): not released yet.
  if (m.parked_count.load(std::memory_order_seq_cst) == 0) return true;
  std::lock_guard<std::mutex> lock(m.parked_mu);
  return m.parked.find(id) == m.parked.end();
}

void Manager::CountViolation(int32_t channel, Violation kind) noexcept {
  impl_->ledger.CountViolation(channel, kind);
}

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
          std::lock_guard<std::mutex> lock(m.parked_mu);
          const uint64_t h = m.table.LoadHolder(p.index);
          const uint32_t env = HandleTable::HolderEnv(h);
          if (env != 0 && HandleTable::HolderAttached(h) && HandleTable::HolderGeneration(h) == Impl::GenerationOf(id)) {
            try {
              auto pin = m.pins.emplace(id, env);
              if (m.table.CasHolder(p.index, h, 0)) {
                m.pin_count.fetch_add(1, std::memory_order_seq_cst);
                if (info != nullptr) info->parked = true;
              } else {
                m.pins.erase(pin);  // released meanwhile: nothing left to pin
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
  std::lock_guard<std::mutex> lock(m.parked_mu);
  if (!cleared && pins) {
    // A pinned buffer (BeginTransfer of a deferred handle): one of env's buffers over the memory
    // is gone. Buffers of one env over one id are interchangeable here: each counts once.
    auto range = m.pins.equal_range(id);
    for (auto p = range.first; p != range.second; ++p) {
      if (p->second != env) continue;
      m.pins.erase(p);
      m.pin_count.fetch_sub(1, std::memory_order_relaxed);
      auto it = m.parked.find(id);
      if (it != m.parked.end() && it->second.env == 0 && !m.PinnedLocked(id)) {
        m.ReleaseMemory(it->second.rec, ThisThreadShard());
        m.parked.erase(it);
        m.parked_count.fetch_sub(1, std::memory_order_relaxed);
      }
      return;
    }
  }
  auto it = m.parked.find(id);
  if (it != m.parked.end() && it->second.env == env) {
    if (m.PinnedLocked(id)) {
      it->second.env = 0;  // the holder's buffer is gone; pinned ones are not
      return;
    }
    m.ReleaseMemory(it->second.rec, ThisThreadShard());
    m.parked.erase(it);
    m.parked_count.fetch_sub(1, std::memory_order_relaxed);
  }
}

void Manager::DrainRevocations(uint32_t env, std::vector<uint64_t>* ids) noexcept {
  Impl& m = *impl_;
  if (m.revoke_count.load(std::memory_order_relaxed) == 0) return;
  std::lock_guard<std::mutex> lock(m.parked_mu);
  auto it = m.revoke.find(env);
  if (it == m.revoke.end()) return;
  try {
    ids->insert(ids->end(), it->second.begin(), it->second.end());
  } catch (...) {
    return;  // std::bad_alloc: left for the next drain
  }
  m.revoke_count.fetch_sub(it->second.size(), std::memory_order_relaxed);
  m.revoke.erase(it);
}

bool Manager::HasRevocations() const noexcept {
  return impl_->revoke_count.load(std::memory_order_relaxed) != 0;
}

uint64_t Manager::ReclaimEnv(uint32_t env, FreeReason reason) noexcept {
  Impl& m = *impl_;
  if (env == 0) return 0;
  // Closes this thread began and did not finish: their handles were freed already as far as
  // any caller is concerned, so they are not counted here.
  {
    std::lock_guard<std::mutex> lock(m.closing_mu);
    for (auto it = m.closing.begin(); it != m.closing.end();) {
      if (it->env != env) {
        ++it;
        continue;
      }
      while (!m.Step(&*it, CallContext{env, 0, false}, UINT64_MAX, nullptr)) {
      }
      m.closing_handles.fetch_sub(it->left, std::memory_order_relaxed);
      m.ledger.FinishClose(it->channel, /*remember=*/false);
      it = m.closing.erase(it);
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
  std::lock_guard<std::mutex> lock(m.parked_mu);
  for (auto p = m.pins.begin(); p != m.pins.end();) {
    if (p->second == env) {
      p = m.pins.erase(p);
      m.pin_count.fetch_sub(1, std::memory_order_relaxed);
    } else {
      ++p;
    }
  }
  for (auto it = m.parked.begin(); it != m.parked.end();) {
    if ((it->second.env == env || it->second.env == 0) && !m.PinnedLocked(it->first)) {
      m.ReleaseMemory(it->second.rec, ThisThreadShard());
      it = m.parked.erase(it);
      m.parked_count.fetch_sub(1, std::memory_order_relaxed);
    } else {
      if (it->second.env == env) it->second.env = 0;
      ++it;
    }
  }
  auto r = m.revoke.find(env);
  if (r != m.revoke.end()) {
    m.revoke_count.fetch_sub(r->second.size(), std::memory_order_relaxed);
    m.revoke.erase(r);
  }
  return reclaimed;
}

Limits Manager::ScopeLimits(int32_t type, int32_t channel) const noexcept {
  return impl_->ledger.Scope(type, channel);
}

// --- fast lane --------------------------------------------------------------------------------------

Status Manager::ReserveIds(uint32_t n, uint64_t* ids, uint32_t* got) noexcept {
  Impl& m = *impl_;
  *got = 0;
  if (!m.FastLaneAllowed()) return Status::kInvalidArgument;
  constexpr size_t kWords = (size_t{HandleTable::kMaxIndex} >> 6) + 1;
  uint32_t k = 0;
  for (; k < n; ++k) {
    uint32_t index = 0;
    if (m.table.Reserve(&index) != Status::kOk) break;  // table full
    const size_t word = index >> 6;
    if (word >= m.fast_reserved.size()) {
      try {
        m.fast_reserved.resize(std::min(kWords, std::max(word + 1, m.fast_reserved.size() * 2)));
      } catch (...) {  // std::bad_alloc: fewer ids
        m.table.Unreserve(index);
        break;
      }
    }
    m.fast_reserved[word] |= uint64_t{1} << (index & 63);
    ids[k] = m.table.NextId(index);
  }
  *got = k;
  return Status::kOk;
}

Status Manager::Reissue(uint64_t old_id, uint64_t new_id, uint64_t size) noexcept {
  Impl& m = *impl_;
  if (!m.FastLaneAllowed()) return Status::kInvalidArgument;
  uint32_t new_index = 0;
  if (!m.FastReserved(new_id, &new_index)) return Status::kInvalidArgument;
  uint32_t index = 0;
  uint64_t state = 0;
  HandleRecord rec;
  const Status s = m.FastLaneSource(old_id, size, /*size_cap=*/true, &index, &state, &rec);
  if (s != Status::kOk) return s;

  // The Free half: claim, then free the entry (the slot and the ledger charge move on).
  if (!m.table.TryTransition(index, state, EntryState::kFreeing)) return Status::kInvalidArgument;
  const uint32_t shard = ThisThreadShard();
  // The new incarnation's buffer is the old one's backing store, moved (revocable) or the same
  // slab view (view): it is attached exactly when the old one still was (a revocable buffer
  // whose moved-out store already died has told OnBufferReleased, which cleared the bit).
  const uint64_t holder = m.table.LoadHolder(index);
  const uint32_t env = HandleTable::HolderEnv(holder);
  const bool attached = HandleTable::HolderAttached(holder);
  m.pools[rec.pool].AddLiveBytes(size, shard);
  m.pools[rec.pool].SubLiveBytes(rec.size, shard);
  m.table.FinishFree(index, FreeReason::kDeallocate);
  // The Allocate half: the same slot, owner and charge (slot metadata unchanged: dirty ==
  // slot_bytes in a view set, owner the same incarnation, so no zeroing would happen).
  HandleRecord fresh = rec;
  fresh.size = size;
  fresh.alloc_time_ns = NowNs();
  fresh.latency_ns = 0;
  m.table.StoreHolder(new_index, HandleTable::HolderWord(env, attached, Impl::GenerationOf(new_id)));
  m.table.Publish(new_index, fresh);  // returns new_id (FastReserved checked NextId)
  m.ClearFastReserved(new_index);
  m.CountReuse(rec, shard);
  return Status::kOk;
}

Status Manager::Burn(uint64_t id, uint64_t source_id, uint64_t size) noexcept {
  Impl& m = *impl_;
  if (!m.FastLaneAllowed()) return Status::kInvalidArgument;
  uint32_t index = 0;
  if (!m.FastReserved(id, &index)) return Status::kInvalidArgument;
  // The source of the previous Burn, while its entry is unchanged (same state word: the same
  // live incarnation), skips the probe and the record read: a slot cycling through the lane
  // burns one id per round trip, all over the same source.
  Impl::BurnSource& cached = m.burn_source;
  HandleRecord rec;
  if (cached.id == source_id && cached.id != 0 && m.table.LoadState(cached.index) == cached.state) {
    if (size == 0 || size > m.config.max_allocation_size || m.PoolFor(size + m.hardening.Tail()) != cached.rec.pool) {
      return Status::kInvalidArgument;
    }
    rec = cached.rec;
  } else {
    // No allocation-size cap here: the id is dead once burned, so nothing lasting depends on
    // the size; the JS side applies the cap before it reuses a slot.
    uint32_t source = 0;
    uint64_t state = 0;
    const Status s = m.FastLaneSource(source_id, size, /*size_cap=*/false, &source, &state, &rec);
    if (s != Status::kOk) return s;
    cached = Impl::BurnSource{source_id, source, state, rec};
  }
  // The burned incarnation was a handle over the source's slot: the same record but its size,
  // so a stale presentation is counted against the same channel as after a plain free
  // (StaleTarget reads the record). Its age is never read (a stale id reports none).
  rec.size = size;
  rec.latency_ns = 0;
  m.table.StoreHolder(index, HandleTable::HolderWord(0, false, Impl::GenerationOf(id)));
  m.table.PublishFreed(index, rec, FreeReason::kDeallocate);
  m.ClearFastReserved(index);
  const uint32_t shard = ThisThreadShard();
  m.CountReuse(rec, shard);
  return Status::kOk;
}

// --- view mode ------------------------------------------------------------------------------------

Status Manager::ExportSlab(uint64_t slab_key, uint8_t** base, uint64_t* length) noexcept {
  return impl_->registry.Export(slab_key, base, length);
}

void Manager::ReleaseSlabExport(uint64_t slab_key) noexcept { impl_->registry.ReleaseExport(slab_key); }

uint64_t Manager::SlabRetireEpoch() const noexcept { return impl_->registry.RetireEpoch(); }

bool Manager::SlabRetired(uint64_t slab_key) noexcept { return impl_->registry.IsRetired(slab_key); }

uint64_t Manager::ResidentBytes() noexcept { return impl_->registry.ResidentBytes(); }

// --- observation ----------------------------------------------------------------------------------

LedgerUsage Manager::ChannelUsage(int32_t channel) const noexcept { return impl_->ledger.ChannelUsage(channel); }

LedgerUsage Manager::TypeUsage(int32_t type, int32_t channel) const noexcept {
  return impl_->ledger.TypeUsage(type, channel);
}

void Manager::OpenChannels(std::vector<std::pair<std::string, int32_t>>* out) const noexcept {
  impl_->ledger.OpenChannels(out);
}

void Manager::Snapshot(ManagerSnapshot* out) const noexcept {
  const Impl& m = *impl_;
  try {
    out->pools.clear();
    out->pools.resize(m.pool_count);
  } catch (...) {  // std::bad_alloc: pools omitted, totals still filled
    out->pools.clear();
  }
  out->reserved_bytes = 0;
  out->live_slot_bytes = 0;
  out->retained_free_bytes = 0;
  out->requested_bytes = 0;
  for (size_t i = 0; i < out->pools.size(); ++i) {
    PoolStats& ps = out->pools[i];
    m.pools[i].Stats(&ps);
    try {
      ps.name = m.config.pools[i].name;
    } catch (...) {
    }
    out->reserved_bytes += ps.reserved_bytes;
    out->live_slot_bytes += ps.live_slots * ps.slot_size;
    out->retained_free_bytes += ps.retained_free_slots * ps.slot_size;
    out->requested_bytes += ps.live_bytes;
  }
  out->direct = PoolStats{};
  m.direct.Stats(&out->direct);
  try {
    out->direct.name = "direct";
  } catch (...) {
  }
  out->reserved_bytes += out->direct.reserved_bytes;
  // Handles of a close still in steps wait for their memory the same way.
  out->parked_handles = m.parked_count.load(std::memory_order_relaxed) + m.closing_handles.load(std::memory_order_relaxed);
  out->thread_exit_reclaims = m.exit_reclaims.Load();
  out->live_slot_bytes += m.direct_slot_bytes.Load();
  out->requested_bytes += out->direct.live_bytes;

  out->handles = 0;
  out->bytes_in_use = 0;
  const int32_t types = m.type_count.load(std::memory_order_acquire);
  for (int32_t t = 0; t < types; ++t) {
    const LedgerUsage u = m.ledger.TypeUsage(t, kTypeTotal);
    out->handles += u.handles;
    if (m.types[t].kind == TypeKind::kMemory) out->bytes_in_use += u.bytes;
  }
  out->allocations = m.events.Sum(Impl::kAllocations);
  out->deallocations = m.events.Sum(Impl::kDeallocations);
  out->refusals = m.refusals.Load();
  m.alloc_latency.Snapshot(&out->allocate_latency);
  m.free_latency.Snapshot(&out->deallocate_latency);
}

void Manager::RecountChannel(int32_t channel, uint64_t* handles, uint64_t* charged) const noexcept {
  // The handle table's census: an account of live handles kept by the table itself (Publish,
  // the claim of a free), independent of the ledgers it is compared with.
  impl_->table.CountChannel(channel, OwnerOf(channel), handles, charged);
}

void Manager::ChannelIds(int32_t channel, std::vector<uint64_t>* ids) const noexcept {
  const Impl& m = *impl_;
  const uint32_t owner = OwnerOf(channel);
  if (m.ledger.ChannelUsage(channel).handles == 0) return;  // see CloseChannel: none to find
  m.table.ForEachOfChannel(channel, owner, [&](uint32_t i) {
    uint64_t state;
    HandleRecord rec;
    if (!m.ReadLive(i, &state, &rec)) return;
    if (HandleTable::StateOf(state) == EntryState::kFreeing) return;  // already leaving
    if (rec.channel != channel || rec.owner != owner) return;
    try {
      ids->push_back(m.table.MakeId(i, static_cast<uint32_t>(HandleTable::UsesOf(state) & kGenMask)));
    } catch (...) {
      // std::bad_alloc: the list is incomplete.
    }
  });
}

void Manager::InjectAllocationFailures(uint32_t n) noexcept { impl_->registry.InjectFailures(n); }

}  // namespace isopool
