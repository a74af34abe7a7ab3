// slab_pool.h — size-class slab pools with bounded retention of free slots.
//
// Glossary
//   slab       one mapping from the system (mmap, zero-filled), split into
//              `slots` equal slots. Slots of 1 MiB or more are their own slab.
//   slab set   the slabs of one pool serving one access mode. Each pool has two
//              sets, revocable and view, so memory that was ever reachable
//              through a view-mode slab buffer never serves a revocable channel.
//   ring       the set's lock-free MpmcRing of retained free slots (the hot path).
//   free list  per-slab stack of free slots that are not in the ring (slow
//              path, guarded by the set's mutex).
//   held       free slots the set holds: held = mapped_slots - live_slots
//              (ring + free lists + slots in flight between the two).
//   q          the pool's queue_size: how many free slots a set keeps.
//   s          slots per slab of the set.
//   retired    a view slab that should go back to the system while a binding
//              still exports it: never allocated from again, still counted in
//              reserved_bytes, unmapped by the last ReleaseSlabExport.
//   direct     a mapping for one oversize allocation (DirectPool).
//   magazine   a thread's private stack of free slots of one set (at most m of them), so
//              that threads sharing a set do not write its ring and counters on every call.
//              A set has none while one thread uses it; the first call from a second thread
//              gives it one magazine per statistics shard (metrics.h: one shard per thread).
//   taken      slots out of the ring and the free lists: in live handles or in magazines.
//   cached     slots in magazines (a sharded counter, exact when summed).
//   guard      hardened mode (hardening.h): a PROT_NONE page on each side of
//              every mapping; not counted in reserved_bytes (no memory backs it).
//
// Invariants (at quiescence; "free(x)" = slots of slab x on its free list)
//   mapped_slots == s * |non-retired slabs|
//   held == |ring| + sum(free(x)) == mapped_slots - taken   (magazines excluded)
//   live slots == taken - cached; a cached slot counts as free, held by the pool
//   reserved_bytes == map_bytes * (|non-retired slabs| + |retired slabs|)
//   retained_free_slots == min(held, q)
//   a slab is released only when free(x) == s (wholly free, none in the ring)
//   a slot is in at most one of: ring, a free list, a live handle
//
// Retention policy (why pool fragmentation stays < 5% after any burst)
//   * Free: push to the ring (cap q). If it is full, the slot goes to its
//     slab's free list; a slab that becomes wholly free there is unmapped when
//     held >= q + s (the pool still holds >= q free slots without it).
//   * When a slab's live count reaches 0 while held >= q + s, Rebalance():
//     drain the ring into the free lists, keep ceil(max(0, q - P) / s) wholly
//     free slabs (P = free slots on partially used slabs, which cannot be
//     returned anyway), release the other wholly free slabs, then refill the
//     ring from the fullest slabs first so sparse slabs keep draining.
//   * Slow-path allocation prefers the fullest partially used slab
//     (mimalloc-like), then a wholly free slab, then maps a new one. A new slab of
//     several slots of at most a page is made resident at once (PrefaultPages): each
//     page is the first of a slot about to be used, and one call costs far less than a
//     page fault per page (larger slots stay lazy: callers often use part of one). This matters
//     when deferred reuse returns memory in bursts after each collection: the slabs
//     such a burst empties are unmapped, and the next ones are mapped again.
//   After every slot is freed, the last free finds held >= q + s false or
//   rebalances, so held <= s * ceil(q / s) and
//     pool fragmentation = (held - q) / held <= (s*ceil(q/s) - q) / (s*ceil(q/s)),
//   which ChooseSlotsPerSlab keeps below 3%.
//   The cap q applies to each slab set; a pool serving both revocable and view
//   channels may therefore retain up to 2q free slots (one q per set).
//
// Magazines (threads sharing a set; after Bonwick's magazines and tcmalloc's per-CPU caches)
//   * Acquire pops the calling thread's magazine; an empty one first takes up to m/2 slots
//     from the ring. Release pushes onto it; a full one first returns its m/2 oldest slots
//     through the ring path above. Neither touches a shared cache line otherwise.
//   * Magazine slots stay taken: a slab with slots in a magazine is not wholly free, and the
//     retention rules above apply to what is outside the magazines. So each thread may keep
//     up to m more free slots per set: m = min(32, q / 4), 0 (no magazines) for q < 8.
//   * A magazine belongs to the thread that owns its shard. It is emptied into the set when
//     that thread exits (thread_cache.h) or calls FlushShard (Manager::FlushThreadCaches), and
//     dropped with the set. Zeroing is unaffected: it reads the slot's SlotMeta at Acquire.
//
// Single owner (Init's `single_owner`, single_owner.h): one thread makes every call, so the
// live counters and the ring update the same atomics with a load and a store (no locked
// instruction); the slow paths still take the set's mutex, as they always do.
//
// Slot metadata (SlotMeta) lives out of band, in the slab header, never in
// user bytes. The slot's current holder (a live handle, the ring or the free
// list) owns it exclusively; the ring's acquire/release handoff and the set's
// mutex order the accesses, so the fields need no atomics.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "hardening.h"
#include "types.h"
#include "metrics.h"
#include "mpmc_ring.h"
#include "single_owner.h"
#include "status.h"
#include "thread_cache.h"

namespace isopool {

constexpr uint64_t kSystemPage = 4096;          ///< charge/rounding unit of direct memory
constexpr uint64_t kSingleSlotSlab = 1ull << 20;///< slots >= 1 MiB are their own slab
constexpr uint64_t kMaxSlabBytes = 1ull << 20;  ///< target slab size for smaller slots
constexpr uint32_t kMaxSlotsPerSlab = 256;
constexpr uint64_t kMaxSlabKey = (1ull << 53) - 1;  ///< slab keys are safe integers

/// Out-of-band metadata of one slot, written by every allocation of it. One cache line each
/// (the slab header that holds them is line aligned): neighbouring slots sit in different
/// threads' magazines, and a line shared by two of them would move between cores on every
/// allocation (bench/native: 2 threads on their own channels gained 15-25%).
struct alignas(kCacheLine) SlotMeta {
  uint64_t dirty = 0;  ///< bytes [0, dirty) may hold data of `owner`; 0..slot_size
  uint32_t owner = 0;  ///< owner epoch of the last holder; 0 = fresh zero memory
};

class SlabSet;

/// Makes `bytes` of fresh anonymous memory at `base` resident and writable in one call
/// (MADV_POPULATE_WRITE): the kernel fills the pages in a loop instead of one page fault per
/// page on first touch. False where the kernel cannot (before Linux 5.14) or will not now:
/// the pages then fault on first touch.
bool PrefaultPages(uint8_t* base, uint64_t bytes) noexcept;

/// Extents from this size up are zeroed page by page where the kernel says a page may hold data.
constexpr uint64_t kSparseZeroBytes = 256 * 1024;

/// Writes zeros over `bytes` of slab memory at `data` (a private anonymous mapping).
/// From kSparseZeroBytes up it first reads the kernel's page map (/proc/self/pagemap) and skips
/// every whole page that is neither present nor swapped out. A page of a private anonymous
/// mapping in that state has not been written since it was mapped or dropped, so it reads as
/// zero; writing it would only fault it in (a fresh page costs 2-12 µs on some VMs). Whenever
/// the map cannot say (no pagemap, a short read), and for the partial pages at either end, it
/// writes. Only for memory this process maps privately: a shared mapping's page can hold data
/// with no entry here.
void ZeroSlotMemory(uint8_t* data, uint64_t bytes) noexcept;

/// Counters shared by a slab set (or the direct pool) and the registry, which
/// unmaps retired slabs on the last export release.
struct SlabCounters {
  std::atomic<uint64_t> reserved_bytes{0};  ///< mapped bytes incl. retired slabs
  std::atomic<uint64_t> released{0};        ///< slabs returned to the system
};

/// Header of one slab, allocated with malloc outside the slab's memory.
struct Slab {
  uint8_t* base = nullptr;     ///< usable mapping start, page aligned
  uint64_t map_bytes = 0;      ///< usable mapping length (page multiple)
  uint64_t guard = 0;          ///< PROT_NONE bytes before base and after base + map_bytes (0 or kGuardBytes)
  uint64_t key = 0;            ///< unique for the manager's lifetime, 1..kMaxSlabKey
  uint64_t slot_size = 0;      ///< bytes per slot
  SlabSet* set = nullptr;      ///< owning set; nullptr for a direct mapping
  SlabCounters* counters = nullptr;
  uint32_t slots = 0;          ///< slots in this slab, 1..kMaxSlotsPerSlab
  std::atomic<uint32_t> live{0};  ///< slots handed out (trigger hint, exact at quiescence)
  // Guarded by SlabRegistry::mu_.
  uint32_t exports = 0;        ///< ExportSlab count
  bool retired = false;        ///< see glossary
  // Guarded by set->mu_.
  uint32_t free_count = 0;     ///< entries in free_stack, 0..slots; also the bucket index
  Slab* prev = nullptr;        ///< bucket list links
  Slab* next = nullptr;
  uint32_t* free_stack = nullptr;  ///< slot indices on the free list
  SlotMeta* meta = nullptr;        ///< one per slot
};

/// A slot: its slab and index. Trivially copyable so it can travel in the ring.
struct SlotRef {
  Slab* slab = nullptr;
  uint32_t index = 0;
  uint8_t* data() const noexcept { return slab->base + uint64_t{index} * slab->slot_size; }
  uint64_t offset() const noexcept { return uint64_t{index} * slab->slot_size; }
  SlotMeta& meta() const noexcept { return slab->meta[index]; }
};

constexpr uint32_t kMagazineSlots = 32;  ///< most slots a thread's magazine holds (m <= this)

/// One thread's free slots of one set (see the file comment). Only its shard's owner touches it.
struct alignas(64) Magazine {
  uint32_t count = 0;
  SlotRef slots[kMagazineSlots];  ///< [0, count); the top is the most recently freed
};

/// System memory, slab keys and the key -> slab map used by ExportSlab.
/// One per manager. Lock order: SlabSet::mu_ before SlabRegistry::mu_.
class SlabRegistry {
 public:
  SlabRegistry() = default;
  ~SlabRegistry();  ///< unmaps every slab still registered (manager teardown)
  SlabRegistry(const SlabRegistry&) = delete;
  SlabRegistry& operator=(const SlabRegistry&) = delete;

  /// Hardened mode: every later mapping gets a guard page on each side. Call
  /// before the first CreateSlab (manager creation), never concurrently with it.
  void EnableGuardPages() noexcept { guard_ = kGuardBytes; }
  /// While the returned lock is held no slab is unmapped (hardened Validate
  /// reads a live handle's canary under it). Lock order as for mu_.
  std::unique_lock<std::mutex> PinMappings() noexcept { return std::unique_lock<std::mutex>(mu_); }

  /// Maps and registers a slab of `slots` slots of `slot_size` bytes (header
  /// included). nullptr if the system (or an injected failure) refuses.
  Slab* CreateSlab(uint64_t slot_size, uint32_t slots, uint64_t map_bytes, SlabSet* set,
                   SlabCounters* counters) noexcept;
  /// Unmaps `slab` now, or retires it while it is exported. True if unmapped now.
  bool ReleaseOrRetire(Slab* slab) noexcept;
  /// ExportSlab: base/length of a registered, non-retired slab; export count + 1.
  Status Export(uint64_t key, uint8_t** base, uint64_t* length) noexcept;
  /// Export count - 1; unmaps a retired slab at zero.
  void ReleaseExport(uint64_t key) noexcept;
  /// Counts retirements of exported slabs: a binding that sees it change looks for its
  /// exports of retired slabs (IsRetired) and releases them early (manager_binding.cc).
  uint64_t RetireEpoch() const noexcept { return retire_epoch_.load(std::memory_order_acquire); }
  /// True if `key` names a slab still mapped only for its exports.
  bool IsRetired(uint64_t key) noexcept;
  /// Bytes of every registered mapping (slabs and direct allocations, guards excluded) that are
  /// resident in memory, by mincore(2): how much of `reserved_bytes` the process really holds.
  /// A diagnostic (the soak splits RSS with it): walks every slab under mu_.
  uint64_t ResidentBytes() noexcept;
  /// The next `n` mappings fail.
  void InjectFailures(uint32_t n) noexcept { inject_.store(n, std::memory_order_relaxed); }

 private:
  bool TakeInjectedFailure() noexcept;
  void DestroyLocked(Slab* slab) noexcept;  ///< unmap + counters + free header; mu_ held

  std::mutex mu_;
  std::unordered_map<uint64_t, Slab*> slabs_;  ///< key -> slab, guarded by mu_
  std::atomic<uint64_t> next_key_{1};          ///< never reused; relaxed (uniqueness only)
  std::atomic<uint32_t> inject_{0};            ///< injected mapping failures left
  std::atomic<uint64_t> retire_epoch_{0};      ///< exported slabs retired so far; written under mu_
  uint64_t guard_ = 0;                         ///< guard bytes per side for new mappings (hardened)
};

/// Slots per slab for a pool: the largest s <= min(256, 1 MiB / slot_size)
/// whose retention rounding (s*ceil(q/s) - q) / (s*ceil(q/s)) is below 3%.
uint32_t ChooseSlotsPerSlab(uint64_t slot_size, uint32_t queue_size) noexcept;

/// Slabs of one pool for one access mode. See the file comment.
class SlabSet final : public ShardCache {
 public:
  SlabSet() = default;
  ~SlabSet();
  SlabSet(const SlabSet&) = delete;
  SlabSet& operator=(const SlabSet&) = delete;

  /// False if memory for the ring or buckets is refused. `single_owner`: one thread only
  /// will ever call this set (see the file comment).
  bool Init(uint64_t slot_size, uint32_t queue_size, uint32_t slots_per_slab,
            SlabRegistry* registry, bool single_owner = false) noexcept;

  /// Takes a free slot. *hit: served without mapping memory. kPoolExhausted
  /// if a new slab was needed and the system refused it. `shard`: the calling
  /// thread's statistics shard (metrics.h).
  Status Acquire(SlotRef* out, bool* hit, uint32_t shard = ThisThreadShard()) noexcept;
  /// Returns a slot taken by Acquire (to the calling thread's magazine when the set has them).
  void Release(SlotRef ref, uint32_t shard = ThisThreadShard()) noexcept;
  /// Empties shard `shard`'s magazine into the set. Only the thread that owns the shard calls it.
  void FlushShard(uint32_t shard) noexcept override;
  /// Slots in magazines (counted free, held by the pool).
  uint64_t Cached() const noexcept { return cached_.Load(); }
  /// Counts an allocation served from a slot its caller already held (single-owner fast
  /// lane: a freed slot handed straight to the next allocation, Manager::Reissue/Burn).
  void CountHit(uint32_t shard = ThisThreadShard()) noexcept { hits_.Add(shard); }

  uint64_t slot_size() const noexcept { return slot_size_; }
  uint32_t slots_per_slab() const noexcept { return slots_; }
  /// held = mapped - taken (see glossary: magazines excluded).
  uint64_t Held() const noexcept;
  /// Adds this set's figures to *stats (live_bytes is kept by the pool).
  void AddStats(PoolStats* stats) const noexcept;

 private:
  Status AcquireSlow(SlotRef* out, bool* hit, uint32_t shard) noexcept;
  /// The calling thread's magazine, or null (single owner, m = 0, the shared statistics shard,
  /// or only one thread has used the set so far).
  Magazine* MagazineOf(uint32_t shard) noexcept;
  bool EnableMagazines() noexcept;
  /// Slots a refill takes from the ring, or a full magazine's flush returns: m/2.
  uint32_t MagazineBatch() const noexcept { return magazine_cap_ / 2; }
  void Refill(Magazine* g, uint32_t shard) noexcept;
  /// Returns the `n` oldest slots of `g` to the set.
  void Flush(Magazine* g, uint32_t n, uint32_t shard) noexcept;
  /// The ring path of Release: a taken slot goes back to the ring or its slab's free list.
  void ReturnSlot(SlotRef ref) noexcept;
  void PushFreeLocked(Slab* slab, uint32_t index) noexcept;
  uint32_t PopFreeLocked(Slab* slab) noexcept;
  void BucketInsertLocked(Slab* slab) noexcept;
  void BucketRemoveLocked(Slab* slab) noexcept;
  void ReleaseSlabLocked(Slab* slab) noexcept;
  void RebalanceLocked() noexcept;

  MpmcRing<SlotRef> ring_;             ///< retained free slots, capacity q
  uint64_t slot_size_ = 0;             ///< bytes
  uint64_t slab_bytes_ = 0;            ///< mapping length per slab
  uint32_t queue_size_ = 0;            ///< q
  uint32_t slots_ = 1;                 ///< s
  bool single_ = false;                ///< single owner, fixed by Init
  SlabRegistry* registry_ = nullptr;
  SlabCounters counters_;
  std::atomic<uint64_t> mapped_slots_{0};  ///< s * non-retired slabs; written under mu_
  std::atomic<uint64_t> live_slots_{0};    ///< taken slots (see glossary)
  ShardedCounter hits_;                    ///< per-thread shards: the hot path's counter
  RelaxedCounter misses_, failures_;
  ShardedCounter cached_;                  ///< slots in magazines
  SecondThread second_thread_;                  ///< turns the magazines on
  std::atomic<Magazine*> magazines_{nullptr};    ///< kStatShards magazines, set once (EnableMagazines)
  uint32_t magazine_cap_ = 0;                    ///< m

  std::mutex mu_;
  Slab** buckets_ = nullptr;  ///< buckets_[k]: list of slabs with free_count == k, k in 0..s
};

/// One size class: a revocable and a view slab set with the same geometry.
class SlabPool {
 public:
  /// False if memory is refused. `single_owner`: see SlabSet::Init.
  bool Init(const PoolConfig& config, SlabRegistry* registry, bool single_owner = false) noexcept;
  SlabSet& set(AccessMode mode) noexcept { return mode == AccessMode::kView ? view_ : revocable_; }
  const PoolConfig& config() const noexcept { return config_; }
  void AddLiveBytes(uint64_t n, uint32_t shard = ThisThreadShard()) noexcept { live_bytes_.Add(shard, n); }
  void SubLiveBytes(uint64_t n, uint32_t shard = ThisThreadShard()) noexcept { live_bytes_.Sub(shard, n); }
  /// Both sets aggregated.
  void Stats(PoolStats* out) const noexcept;

 private:
  PoolConfig config_;
  SlabSet revocable_;
  SlabSet view_;
  ShardedCounter live_bytes_;  ///< requested bytes of live slots (per-thread shards)
};

/// Oversize allocations: one mapping each, size rounded up to kSystemPage.
class DirectPool {
 public:
  explicit DirectPool(SlabRegistry* registry) noexcept : registry_(registry) {}
  /// Maps RoundUp(size + tail) (tail: hardened canary bytes). kPoolExhausted if refused.
  Status Acquire(uint64_t size, SlotRef* out, uint64_t tail = 0) noexcept;
  void Release(SlotRef ref, uint64_t size) noexcept;
  void Stats(PoolStats* out) const noexcept;
  static uint64_t RoundUp(uint64_t size) noexcept {
    return (size + kSystemPage - 1) / kSystemPage * kSystemPage;
  }

 private:
  SlabRegistry* registry_;
  SlabCounters counters_;
  RelaxedCounter live_slots_, live_bytes_, misses_, failures_;
};

}  // namespace isopool
