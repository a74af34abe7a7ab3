// handle_table.h — generational, lock-free table of live handles.
//
// Glossary
//   index      entry number, 1..kMaxIndex. Index 0 is null: id 0 is never issued.
//   uses       how many times the entry was published (handed out); grows by 1
//              per allocation and never wraps in practice (60 bits).
//   generation uses mod 2^20 of the publish that issued an id.
//   check      12 keyed-hash bits of (index, generation) under a per-table
//              random secret.
//   state      one atomic 64-bit word per entry:
//                bits 0-1  kFree | kLive | kFreeing | kTransit
//                bits 2-3  FreeReason of the last free (kFreeing: of the free under way)
//                bits 4-63 uses
//   record     the handle's payload (HandleRecord), stored as relaxed atomic
//              words and read with a seqlock on `state`.
//
// Id layout (a safe integer, < 2^53)
//   id = index * 2^32 + generation * 2^12 + check
//        [52..32] index (21 bits)  [31..12] generation (20 bits)  [11..0] check
//
// Forged vs stale
//   forged: id >= 2^53, index 0 or >= high-water mark, wrong check bits, or a
//           generation the entry never reached (uses < 2^20 and generation
//           not in 1..uses).
//   stale:  issued, and the entry is free or has moved on to a later
//           generation. close_gen records the last generation freed by a
//           channel close, so that case reports CHANNEL_CLOSED even after the
//           index was reused.
//   A freed id stays invalid until its index is published 2^20 (> 1,000,000)
//   more times; only then is the same (index, generation), hence the same id,
//   issued again, naming the new handle. With the quarantine (below) that takes
//   about kQuarantine * 2^20 allocations, not 2^20.
//
// Forgery bound (SPEC §2: < 1e-9 for uniformly random safe integers)
//   A random id is accepted only if its index is live, its generation equals
//   that entry's current generation, and its 12 check bits match:
//     P(accept) <= (live / 2^21) * 2^-20 * 2^-12 <= 2^-32 ~= 2.3e-10
//   for any number of live handles up to the capacity (2^21 - 1). A random id
//   that matches an issued but older generation of a live index is classified
//   stale, never accepted. Ids arithmetically near a known id (±1, ±2^12 =
//   generation ±1, ±2^32 = index ±1) are no easier: each changes the keyed
//   check, so each is accepted with P <= 2^-12 only if it names a live entry's
//   current generation. The keyed hash is a fast mix, not a MAC: it defeats
//   guessing, not cryptanalysis; and an id is not a capability against a
//   tenant that was given it: scopes refuse other channels' ids (CROSS_CHANNEL).
//
// State machine (every transition is one CAS on `state`, so two racing
// Free/Adopt/BeginTransfer calls on the same id have exactly one winner)
//   kFree --Publish--> kLive --TryTransition--> kFreeing --FinishFree--> kFree
//                      kLive <--Adopt-- kTransit <--BeginTransfer-- kLive
//                                       kTransit --TryTransition--> kFreeing
//   kFree --PublishFreed--> kFree (uses + 1: an incarnation issued and freed at once, the
//   binding's fast lane; its id is stale from then on)
//   Publish and PublishFreed bump uses; other transitions keep it, so a CAS with an expected
//   state word can never succeed on a later incarnation (no ABA). Publish
//   first stores kFree with the new uses (the seqlock "writing" mark), then
//   the record words, then kLive.
//   (The only reader that can see the writing mark as its own generation is a
//   forger who guessed the not-yet-returned id, P <= 2^-32; it may then read a
//   half-written record, used only to pick the channel a violation is counted
//   against.)
//
// Free indices: a freed index first waits in a FIFO quarantine (an MpmcRing
// of kQuarantine + 1 indices). Reserve takes from a Treiber stack (a 32-bit tag
// next to the top index in one 64-bit word, ABA-safe: every push/pop bumps the
// tag), then the oldest index of a full quarantine (it has kQuarantine frees
// behind it), then a fresh index (high-water mark), then any quarantined index.
// A free that finds the quarantine full moves its oldest index to the stack
// (rare: Reserve drains a full quarantine first). So a tight
// allocate/free loop cycles through ~kQuarantine indices instead of one, and
// an index is reused about once per kQuarantine frees: its generation wraps
// after ~kQuarantine * 2^20 (~4e9) allocations, not 2^20. Cost: up to
// kQuarantine extra entries. Entries are never freed while the table lives,
// so reading `next` of a popped entry is safe.
// Storage grows lazily in segments of 2^12 entries (at most 512 segments).
//
// Threads (thread_cache.h): once a second thread uses the table, each thread keeps its own
// quarantine of the same length, a plain FIFO only it touches. Its frees wait there; a full
// one gives its oldest index to its next Reserve (so an index still waits behind kQuarantine
// frees) or, when the thread frees more than it allocates, to the shared stack. A tight
// allocate/free loop then touches no shared cache line of the table. An exiting thread gives
// its quarantine to a depot (below). A table that is full takes the caller's own quarantined
// indices, not other threads': those (at most kQuarantine per thread) wait for their threads.
// Such a thread also takes the indices it needs beyond its quarantine in runs of kRun: up to
// kRun pops of the stack at once, or kRun fresh indices in one step of the high-water mark.
// So the indices one thread cycles through lie together, not interleaved with another
// thread's: entries of two threads that alternate in memory put both threads' lines in
// reach of each other's hardware prefetchers, and every entry write then moves a line between
// cores (bench/native measured 2 threads at ~1.6x one thread interleaved, ~2.0x in runs).
// A thread's run (at most kRun - 1 indices) is not available to other threads; its exit
// pushes it back on the stack. An exiting thread's quarantine goes whole to a depot, and the
// next thread to need one adopts it (FIFO and waits kept): one thread's indices are not
// spread over the shared quarantine and stack for the next threads to take turn about, which
// would interleave them again. A table that is full also takes the oldest index of a depot
// quarantine.
//
// Single owner (the constructor's `single_owner`, single_owner.h): one thread makes every
// call, so the state transitions, the holder CAS, the free stack, the high-water mark and the
// quarantine ring update the same atomics with a load and a store (no locked instruction).
// The seqlock and publication orders are kept as they are (plain moves on x86).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "types.h"
#include "mpmc_ring.h"
#include "single_owner.h"
#include "status.h"
#include "thread_cache.h"

namespace isopool {

/// What the manager stores per handle. Plain data; the table packs it into
/// relaxed atomic words.
struct HandleRecord {
  uint64_t size = 0;         ///< requested bytes/units
  uint64_t slot_bytes = 0;   ///< slot capacity (== charged for direct/counters)
  uint64_t charged = 0;      ///< bytes/units charged to the ledgers
  uint64_t slab_key = 0;
  uint64_t slab_offset = 0;
  uint64_t alloc_time_ns = 0;
  uint64_t latency_ns = 0;
  uint8_t* data = nullptr;   ///< nullptr for counters
  void* slab = nullptr;      ///< Slab* for memory handles
  int32_t type = -1;
  int32_t channel = -1;
  uint32_t owner = 0;        ///< channel owner epoch at allocation
  int32_t pool = 0;          ///< pool index, kPoolDirect or kPoolCounter
  uint32_t slot = 0;         ///< slot index inside the slab
  uint32_t access = 0;       ///< AccessMode of the slab set
};

enum class EntryState : uint64_t { kFree = 0, kLive = 1, kFreeing = 2, kTransit = 3 };

/// Result of classifying an id.
struct IdProbe {
  enum Kind : uint8_t { kForged, kStale, kLive, kTransit, kFreeing } kind = kForged;
  uint32_t index = 0;
  uint64_t state = 0;              ///< state word observed (live/transit/freeing/stale)
  bool same_generation = false;    ///< stale and the entry still describes this id
  bool closed_by_channel = false;  ///< stale and freed by its channel's close
};

class HandleTable final : public ShardCache {
 public:
  static constexpr uint32_t kIndexBits = 21;
  static constexpr uint32_t kGenBits = 20;
  static constexpr uint32_t kCheckBits = 12;
  static constexpr uint32_t kMaxIndex = (1u << kIndexBits) - 1;  ///< capacity
  static constexpr uint32_t kSegmentBits = 12;
  static constexpr uint32_t kSegmentSize = 1u << kSegmentBits;
  static constexpr uint32_t kSegments = (kMaxIndex + 1) >> kSegmentBits;
  static constexpr uint32_t kQuarantine = 4096;  ///< freed indices delayed before reuse
  static_assert(kIndexBits + kGenBits + kCheckBits == 53, "ids are safe integers (< 2^53)");
  static_assert(kGenBits == 20 && (1u << kGenBits) > 1000000,
                "SPEC §2: a freed id stays invalid for over a million reuses");

  /// `secret` keys the check bits (use RandomSecret()). `quarantine` is the
  /// FIFO delay in freed indices (tests use 0 for pure LIFO reuse). `single_owner`: one
  /// thread only will ever call this table (see the file comment).
  explicit HandleTable(uint64_t secret, uint32_t quarantine = kQuarantine,
                       bool single_owner = false) noexcept;
  ~HandleTable();
  HandleTable(const HandleTable&) = delete;
  HandleTable& operator=(const HandleTable&) = delete;

  /// A random key from std::random_device, the clock and address entropy.
  static uint64_t RandomSecret() noexcept;

  /// Takes a free index for exclusive use. kHandleTableFull if every index up to kMaxIndex
  /// is taken (live, reserved or freeing), kPoolExhausted if segment memory is refused.
  Status Reserve(uint32_t* index, uint32_t shard = ThisThreadShard()) noexcept;
  /// Gives shard `shard`'s run back to the stack and its quarantine to the depot (thread_cache.h).
  void FlushShard(uint32_t shard) noexcept override;
  /// Gives back a reserved, never published index (rollback). uses is unchanged.
  void Unreserve(uint32_t index) noexcept;
  /// Writes the record of a reserved index and makes it live; returns the id.
  uint64_t Publish(uint32_t index, const HandleRecord& record) noexcept;
  /// The id the next Publish of the reserved `index` will return: generation
  /// (uses + 1) mod 2^20, which is 0 once in every 2^20 publishes (the wrap).
  uint64_t NextId(uint32_t index) const noexcept;
  /// A reserved index counts as published and freed at once (an allocation and
  /// deallocation the caller did elsewhere): uses + 1, `record`, state free with
  /// `reason`, census untouched, index recycled through the quarantine. The id
  /// NextId announced probes as stale (same generation) from now on, never forged.
  /// (No id is returned: the caller has it, and computing it costs a keyed hash.)
  void PublishFreed(uint32_t index, const HandleRecord& record, FreeReason reason) noexcept;

  /// Classifies `id` (no side effects).
  IdProbe Probe(uint64_t id) const noexcept;
  /// Seqlock read of the record of `index` as of state word `state`. False if
  /// the entry changed meanwhile (the caller re-probes).
  bool ReadRecord(uint32_t index, uint64_t state, HandleRecord* out) const noexcept;
  /// CAS state `expected` -> same uses, state `to`. One winner per race. Into kFreeing the
  /// word also takes `reason`, so a probe of a handle whose free has not finished (a channel
  /// close finishing in steps) already tells a close from another free.
  bool TryTransition(uint32_t index, uint64_t expected, EntryState to,
                     FreeReason reason = FreeReason::kDeallocate) noexcept;
  /// Freeing -> free with `reason`, then recycles the index. Call once, by the
  /// winner of the transition to kFreeing, after every resource is returned.
  void FinishFree(uint32_t index, FreeReason reason) noexcept;

  uint32_t HighWater() const noexcept { return high_water_.load(std::memory_order_acquire); }

  /// Live (or in transit) entries of `channel`'s incarnation `owner`, and their charges, from
  /// the census: 16 dense bytes per entry instead of a seqlock read of each ~128-byte entry
  /// (verifyResourceIsolation with 10,000 handles: ~140 µs -> a few µs). Exact when no
  /// other thread changes the table meanwhile; a snapshot in motion otherwise.
  void CountChannel(int32_t channel, uint32_t owner, uint64_t* handles, uint64_t* charged) const noexcept;
  /// Calls f(index) for every entry the census puts in `channel`'s incarnation `owner`: live,
  /// in transit, or claimed by a free that has not finished (closeChannel waits for those).
  /// With no concurrent allocation in the channel, that is every entry of it.
  /// ForEachOfChannel from table index `from`, while f returns true: returns the index to
  /// resume at, or the high-water mark once every entry was looked at.
  template <typename F>
  uint32_t ForEachOfChannelFrom(int32_t channel, uint32_t owner, uint32_t from, F&& f) const {
    const uint64_t tag = CensusTag(channel, owner);
    const uint32_t high = HighWater();
    for (uint32_t at = from; at < high;) {
      const uint32_t segment = at / kSegmentSize;
      const CensusCell* cells = census_[segment].load(std::memory_order_acquire);
      const uint32_t end = std::min((segment + 1) * kSegmentSize, high);
      if (cells == nullptr) {
        at = end;
        continue;
      }
      for (; at < end; ++at) {
        if ((cells[at - segment * kSegmentSize].tag.load(std::memory_order_acquire) & ~kCensusLeaving) == tag &&
            !f(at)) {
          return at + 1;
        }
      }
    }
    return high;
  }
  template <typename F>
  void ForEachOfChannel(int32_t channel, uint32_t owner, F&& f) const {
    const uint64_t tag = CensusTag(channel, owner);
    const uint32_t high = HighWater();
    for (uint32_t segment = 0; segment * kSegmentSize < high; ++segment) {
      const CensusCell* cells = census_[segment].load(std::memory_order_acquire);
      if (cells == nullptr) continue;
      const uint32_t n = std::min(kSegmentSize, high - segment * kSegmentSize);
      for (uint32_t i = 0; i < n; ++i) {
        if ((cells[i].tag.load(std::memory_order_acquire) & ~kCensusLeaving) == tag) f(segment * kSegmentSize + i);
      }
    }
  }
  uint64_t LoadState(uint32_t index) const noexcept;

  // --- holder (SPEC §3) ------------------------------------------------------------
  // One more atomic word per entry says which JS thread holds the incarnation:
  //   holder = env << 32 | attached << 31 | generation
  // env is the binding's token of that thread (0 = none: in transit, or never held),
  // attached says an ArrayBuffer over the memory may still be reachable there.
  // The generation keys the word to one incarnation, so a late finalizer of an older
  // incarnation can never change a newer one's holder (CAS with the full word).
  static uint64_t HolderWord(uint32_t env, bool attached, uint32_t generation) noexcept {
    return (uint64_t{env} << 32) | (attached ? (1ull << 31) : 0) | (generation & ((1u << kGenBits) - 1));
  }
  static uint32_t HolderEnv(uint64_t word) noexcept { return static_cast<uint32_t>(word >> 32); }
  static bool HolderAttached(uint64_t word) noexcept { return (word >> 31) & 1u; }
  static uint32_t HolderGeneration(uint64_t word) noexcept { return word & ((1u << kGenBits) - 1); }
  /// Stores are relaxed (published by the state transition that follows); loads and CAS are
  /// seq_cst for the parking protocol in manager.cc.
  void StoreHolder(uint32_t index, uint64_t word) noexcept;
  uint64_t LoadHolder(uint32_t index) const noexcept;
  bool CasHolder(uint32_t index, uint64_t expected, uint64_t desired) noexcept;

  static EntryState StateOf(uint64_t word) noexcept { return static_cast<EntryState>(word & 3u); }
  static uint64_t UsesOf(uint64_t word) noexcept { return word >> 4; }
  static FreeReason ReasonOf(uint64_t word) noexcept { return static_cast<FreeReason>((word >> 2) & 3u); }
  uint64_t MakeId(uint32_t index, uint32_t generation) const noexcept;

 private:
  static constexpr uint32_t kRecordWords = sizeof(HandleRecord) / sizeof(uint64_t);
  static_assert(sizeof(HandleRecord) % sizeof(uint64_t) == 0,
                "records are copied as whole 64-bit words");

  struct Entry {
    std::atomic<uint64_t> state{0};      ///< see glossary
    std::atomic<uint32_t> next{0};       ///< free-stack link (index, 0 = end)
    std::atomic<uint32_t> close_gen{0};  ///< (generation << 1) | 1 of the last channel-close free
    std::atomic<uint64_t> holder{0};     ///< HolderWord of the live incarnation (0 = none)
    std::atomic<uint64_t> words[kRecordWords] = {};  ///< the record, relaxed words
  };

  /// Per entry, dense, beside the segment: which channel incarnation holds it live (0: none),
  /// and its charge. Set by Publish; marked leaving by the transition to kFreeing (then no
  /// longer counted), cleared by FinishFree.
  struct CensusCell {
    std::atomic<uint64_t> tag{0};
    std::atomic<uint64_t> charged{0};
  };
  static constexpr uint64_t kCensusLeaving = uint64_t{1} << 63;
  static uint64_t CensusTag(int32_t channel, uint32_t owner) noexcept {
    return ((uint64_t{static_cast<uint32_t>(channel)} + 1) << 32) | owner;
  }
  CensusCell& Census(uint32_t index) const noexcept;

  Entry* At(uint32_t index) const noexcept;  ///< index < high_water_
  bool EnsureSegment(uint32_t segment) noexcept;
  void PushFree(uint32_t index) noexcept;  ///< onto the stack
  uint32_t PopFree() noexcept;             ///< from the stack; 0 if empty
  void Recycle(uint32_t index, uint32_t shard = ThisThreadShard()) noexcept;  ///< through a quarantine
  void RecycleShared(uint32_t index) noexcept;  ///< through the shared quarantine
  /// A thread's own quarantine (see the file comment): `count` indices from `head`, FIFO.
  static constexpr uint32_t kRun = 64;  ///< indices a thread takes from the shared table at once
  struct alignas(64) LocalQuarantine {
    uint32_t head = 0;
    uint32_t count = 0;
    uint32_t* ring = nullptr;  ///< local_cap_ cells, then kRun cells of the run
    uint32_t run_count = 0;    ///< indices left in the run: ring[local_cap_ + i], i < run_count
  };
  /// The calling thread's quarantine, or null (single owner, no quarantine, the shared
  /// statistics shard, only one thread so far, or memory refused).
  LocalQuarantine* LocalOf(uint32_t shard) noexcept;
  uint32_t PopOldest(LocalQuarantine* q) const noexcept;
  /// Refills `q`'s empty run: up to kRun indices off the stack, else (no full shared
  /// quarantine to drain first) kRun fresh ones. False if it found none.
  bool FillRun(LocalQuarantine* q) noexcept;
  /// Takes up to `want` (>= 1) never-used indices [*begin, *end) in one step of the
  /// high-water mark, within one segment: kOk, kHandleTableFull, or kPoolExhausted when the
  /// segment's memory is refused.
  Status TakeFresh(uint32_t want, uint32_t* begin, uint32_t* end) noexcept;
  /// A full table's last resort: the oldest index of a depot quarantine. False if none.
  bool PopDepot(uint32_t* index) noexcept;
  uint32_t Check(uint32_t index, uint32_t generation) const noexcept;

  const uint64_t secret_;
  const bool single_;                     ///< single owner (see the file comment)
  MpmcRing<uint32_t> quarantine_;         ///< FIFO of recently freed indices (capacity 0 if refused)
  std::atomic<uint64_t> free_head_{0};    ///< (tag << 32) | top index; 0 index = empty
  std::atomic<uint32_t> high_water_{1};   ///< indices [1, high_water_) were ever handed out
  std::atomic<Entry*> segments_[kSegments] = {};  ///< lazily allocated, never freed before teardown
  std::atomic<CensusCell*> census_[kSegments] = {};  ///< installed before its segment
  uint32_t local_cap_ = 0;                 ///< length of each thread's quarantine
  SecondThread second_thread_;             ///< turns the threads' quarantines on
  std::mutex depot_mu_;                     ///< guards depot_
  std::vector<LocalQuarantine> depot_;      ///< quarantines of exited threads, to adopt
  std::atomic<int> local_state_{0};        ///< 0 off, 1 turning on (registering), 2 on
  LocalQuarantine local_[kStatShards];     ///< [shard]: touched only by the shard's owner
};

}  // namespace isopool
