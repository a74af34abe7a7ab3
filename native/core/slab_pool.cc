// slab_pool.cc — see slab_pool.h for the glossary, invariants and retention policy.
#include "slab_pool.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

namespace isopool {

namespace {

uint64_t RoundUpPage(uint64_t n) noexcept { return (n + kSystemPage - 1) / kSystemPage * kSystemPage; }

uint64_t CeilDiv(uint64_t a, uint64_t b) noexcept { return (a + b - 1) / b; }

/// Maps `bytes` usable bytes with `guard` PROT_NONE bytes on each side; the usable start, or nullptr.
uint8_t* MapGuarded(uint64_t bytes, uint64_t guard) noexcept {
  const uint64_t total = bytes + 2 * guard;
  // Reserve everything inaccessible, then open the middle: the guards are never committed.
  void* mem = mmap(nullptr, total, guard > 0 ? PROT_NONE : PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | (guard > 0 ? MAP_NORESERVE : 0), -1, 0);
  if (mem == MAP_FAILED) return nullptr;
  uint8_t* base = static_cast<uint8_t*>(mem) + guard;
  if (guard > 0 && mprotect(base, bytes, PROT_READ | PROT_WRITE) != 0) {
    munmap(mem, total);
    return nullptr;
  }
  return base;
}

void UnmapGuarded(uint8_t* base, uint64_t bytes, uint64_t guard) noexcept {
  munmap(base - guard, bytes + 2 * guard);
}

#ifdef MADV_POPULATE_WRITE
constexpr int kPopulateWrite = MADV_POPULATE_WRITE;
#else
constexpr int kPopulateWrite = 23;  // Linux 5.14 (older C library headers lack the name)
#endif

}  // namespace

bool PrefaultPages(uint8_t* base, uint64_t bytes) noexcept {
  // Best effort: before Linux 5.14 (EINVAL), or if the system refuses memory now, the pages
  // fault on first touch as they would have anyway.
  return madvise(base, bytes, kPopulateWrite) == 0;
}

namespace {

constexpr uint64_t kPagePresent = 1ull << 63;
constexpr uint64_t kPageSwapped = 1ull << 62;
/// A page with either bit may hold data; one with neither reads as zero (private anonymous memory).
constexpr uint64_t kPageMayHoldData = kPagePresent | kPageSwapped;

/// This process's page map, opened once per process: a descriptor inherited across fork()
/// still reads the parent's map, so the owner's pid is kept beside it (pid << 32 | fd + 1).
std::atomic<uint64_t> g_pagemap{0};

uint64_t PageBytes() noexcept {
  static const uint64_t page = [] {
    const long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? static_cast<uint64_t>(p) : kSystemPage;
  }();
  return page;
}

/// Whether `fd` maps this process's addresses as the kernel does: four fresh pages, the first
/// and third written, must read present, empty, present, empty. An emulator that passes its own
/// map through (qemu-user with a guest base) fails this, and zeroing then writes everything.
bool PagemapAgrees(int fd) noexcept {
  const uint64_t page = PageBytes();
  void* mem = mmap(nullptr, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return false;
  auto* probe = static_cast<uint8_t*>(mem);
  madvise(probe, 4 * page, MADV_NOHUGEPAGE);
  probe[0] = 1;
  probe[2 * page] = 1;
  uint64_t e[4] = {0, 0, 0, 0};
  const auto at = static_cast<off_t>(reinterpret_cast<uintptr_t>(probe) / page * sizeof(uint64_t));
  const bool read = pread(fd, e, sizeof(e), at) == static_cast<ssize_t>(sizeof(e));
  munmap(mem, 4 * page);
  return read && (e[0] & kPagePresent) != 0 && (e[1] & kPageMayHoldData) == 0 && (e[2] & kPagePresent) != 0 &&
         (e[3] & kPageMayHoldData) == 0;
}

int PagemapFd() noexcept {
  const auto pid = static_cast<uint64_t>(getpid());
  uint64_t seen = g_pagemap.load(std::memory_order_acquire);
  while ((seen >> 32) != pid) {
    int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && !PagemapAgrees(fd)) {
      ::close(fd);
      fd = -1;
    }
    const uint64_t mine = pid << 32 | static_cast<uint32_t>(fd + 1);
    if (g_pagemap.compare_exchange_strong(seen, mine, std::memory_order_acq_rel)) {
      // A parent's descriptor, inherited: this process's own replaces it.
      if ((seen & 0xffffffffu) != 0) ::close(static_cast<int>(seen & 0xffffffffu) - 1);
      return fd;
    }
    if (fd >= 0) ::close(fd);  // another thread of this process opened it first
  }
  return static_cast<int>(seen & 0xffffffffu) - 1;
}

}  // namespace

void ZeroSlotMemory(uint8_t* data, uint64_t bytes) noexcept {
  const uint64_t page = PageBytes();
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t end = begin + bytes;
  const uintptr_t first = (begin + page - 1) / page * page;  // whole pages: [first, last)
  const uintptr_t last = end / page * page;
  const int fd = bytes >= kSparseZeroBytes && first < last ? PagemapFd() : -1;
  if (fd < 0) {
    std::memset(data, 0, bytes);
    return;
  }
  std::memset(data, 0, first - begin);
  std::memset(reinterpret_cast<uint8_t*>(last), 0, end - last);
  uint64_t entries[256];
  for (uintptr_t at = first; at < last;) {
    const uint64_t n = std::min<uint64_t>(256, (last - at) / page);
    const ssize_t got = pread(fd, entries, n * sizeof(uint64_t), static_cast<off_t>(at / page * sizeof(uint64_t)));
    if (got != static_cast<ssize_t>(n * sizeof(uint64_t))) {
      std::memset(reinterpret_cast<uint8_t*>(at), 0, last - at);  // the map cannot say: write
      return;
    }
    for (uint64_t i = 0; i < n;) {
      if ((entries[i] & kPageMayHoldData) == 0) {
        ++i;
        continue;
      }
      uint64_t j = i + 1;
      while (j < n && (entries[j] & kPageMayHoldData) != 0) ++j;
      std::memset(reinterpret_cast<uint8_t*>(at + i * page), 0, (j - i) * page);
      i = j;
    }
    at += n * page;
  }
}

// --- SlabRegistry -------------------------------------------------------------

SlabRegistry::~SlabRegistry() {
  // Manager teardown: every reference (and so every export) is gone. Counters
  // may already be destroyed, so only unmap and free.
  for (auto& kv : slabs_) {
    Slab* slab = kv.second;
    UnmapGuarded(slab->base, slab->map_bytes, slab->guard);
    slab->~Slab();
    std::free(slab);
  }
}

bool SlabRegistry::TakeInjectedFailure() noexcept {
  uint32_t n = inject_.load(std::memory_order_relaxed);
  while (n > 0) {
    // relaxed: a test hook; only the count matters, not ordering with other data.
    if (inject_.compare_exchange_weak(n, n - 1, std::memory_order_relaxed)) return true;
    // CAS failed: another mapping consumed one; `n` is reloaded.
  }
  return false;
}

Slab* SlabRegistry::CreateSlab(uint64_t slot_size, uint32_t slots, uint64_t map_bytes,
                               SlabSet* set, SlabCounters* counters) noexcept {
  if (TakeInjectedFailure()) return nullptr;
  const uint64_t guard = guard_;
  uint8_t* mem = MapGuarded(map_bytes, guard);
  if (mem == nullptr) return nullptr;

  // Header layout: Slab | SlotMeta[slots] | uint32_t[slots], line aligned (SlotMeta).
  const size_t meta_off = (sizeof(Slab) + alignof(SlotMeta) - 1) / alignof(SlotMeta) * alignof(SlotMeta);
  const size_t stack_off = meta_off + sizeof(SlotMeta) * slots;
  const size_t header_bytes = (stack_off + sizeof(uint32_t) * slots + kCacheLine - 1) / kCacheLine * kCacheLine;
  void* header = std::aligned_alloc(kCacheLine, header_bytes);
  const uint64_t key = next_key_.fetch_add(1, std::memory_order_relaxed);
  if (header == nullptr || key > kMaxSlabKey) {
    std::free(header);
    UnmapGuarded(mem, map_bytes, guard);
    return nullptr;
  }
  Slab* slab = new (header) Slab();
  slab->base = mem;
  slab->map_bytes = map_bytes;
  slab->guard = guard;
  slab->key = key;
  slab->slot_size = slot_size;
  slab->set = set;
  slab->counters = counters;
  slab->slots = slots;
  slab->meta = new (static_cast<uint8_t*>(header) + meta_off) SlotMeta[slots];
  slab->free_stack = reinterpret_cast<uint32_t*>(static_cast<uint8_t*>(header) + stack_off);

  {
    std::lock_guard<std::mutex> lock(mu_);
    try {
      slabs_.emplace(key, slab);
    } catch (...) {  // std::bad_alloc: the system refused memory
      slab->~Slab();
      std::free(header);
      UnmapGuarded(mem, map_bytes, guard);
      return nullptr;
    }
  }
  counters->reserved_bytes.fetch_add(map_bytes, std::memory_order_relaxed);
  return slab;
}

void SlabRegistry::DestroyLocked(Slab* slab) noexcept {
  slabs_.erase(slab->key);
  UnmapGuarded(slab->base, slab->map_bytes, slab->guard);
  slab->counters->reserved_bytes.fetch_sub(slab->map_bytes, std::memory_order_relaxed);
  slab->counters->released.fetch_add(1, std::memory_order_relaxed);
  slab->~Slab();
  std::free(slab);
}

bool SlabRegistry::ReleaseOrRetire(Slab* slab) noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  if (slab->exports > 0) {
    slab->retired = true;  // the last ReleaseExport unmaps it
    // release: a binding that reads the new epoch then finds `retired` set (also under mu_).
    retire_epoch_.fetch_add(1, std::memory_order_release);
    return false;
  }
  DestroyLocked(slab);
  return true;
}

Status SlabRegistry::Export(uint64_t key, uint8_t** base, uint64_t* length) noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = slabs_.find(key);
  if (it == slabs_.end() || it->second->retired) return Status::kInvalidArgument;
  Slab* slab = it->second;
  ++slab->exports;
  *base = slab->base;
  *length = slab->map_bytes;
  return Status::kOk;
}

void SlabRegistry::ReleaseExport(uint64_t key) noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = slabs_.find(key);
  if (it == slabs_.end() || it->second->exports == 0) return;
  Slab* slab = it->second;
  if (--slab->exports == 0 && slab->retired) DestroyLocked(slab);
}

uint64_t SlabRegistry::ResidentBytes() noexcept {
  const long sys_page = sysconf(_SC_PAGESIZE);  // mincore's unit (mappings are kSystemPage multiples)
  const uint64_t page = sys_page > 0 ? static_cast<uint64_t>(sys_page) : kSystemPage;
  unsigned char vec[256];  // one byte per page, a chunk of pages at a time
  uint64_t resident = 0;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [key, slab] : slabs_) {
    const uint64_t pages = (slab->map_bytes + page - 1) / page;
    uint64_t in_slab = 0;
    for (uint64_t first = 0; first < pages; first += sizeof(vec)) {
      const uint64_t n = pages - first < sizeof(vec) ? pages - first : sizeof(vec);
      if (mincore(slab->base + first * page, n * page, vec) != 0) continue;  // our own live mapping: cannot fail
      for (uint64_t i = 0; i < n; ++i) in_slab += (vec[i] & 1u) * page;
    }
    resident += in_slab < slab->map_bytes ? in_slab : slab->map_bytes;
  }
  return resident;
}

bool SlabRegistry::IsRetired(uint64_t key) noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = slabs_.find(key);
  return it != slabs_.end() && it->second->retired;
}

// --- geometry -------------------------------------------------------------------

uint32_t ChooseSlotsPerSlab(uint64_t slot_size, uint32_t queue_size) noexcept {
  if (slot_size >= kSingleSlotSlab) return 1;
  uint64_t max_s = kMaxSlabBytes / slot_size;
  if (max_s > kMaxSlotsPerSlab) max_s = kMaxSlotsPerSlab;
  if (max_s < 1) max_s = 1;
  if (queue_size == 0) return static_cast<uint32_t>(max_s);
  for (uint64_t s = max_s; s > 1; --s) {
    const uint64_t held = s * CeilDiv(queue_size, s);  // free slots kept after a burst
    if ((held - queue_size) * 100 < 3 * held) return static_cast<uint32_t>(s);
  }
  return 1;
}

// --- SlabSet --------------------------------------------------------------------

SlabSet::~SlabSet() {
  // Slab memory and headers belong to the registry, which outlives no set but
  // unmaps everything at teardown. Slots in magazines go with it. First out of the
  // registry, so an exiting thread's flush (which may still be returning slots) is over.
  if (Magazine* mags = magazines_.load(std::memory_order_acquire)) {
    UnregisterShardCache(this);
    delete[] mags;
  }
  std::free(buckets_);
}

bool SlabSet::Init(uint64_t slot_size, uint32_t queue_size, uint32_t slots_per_slab,
                   SlabRegistry* registry, bool single_owner) noexcept {
  single_ = single_owner;
  slot_size_ = slot_size;
  queue_size_ = queue_size;
  slots_ = slots_per_slab;
  slab_bytes_ = RoundUpPage(slot_size * slots_per_slab);
  registry_ = registry;
  // m >= 2 when on (q >= 8), so a batch of m/2 is never empty.
  magazine_cap_ = single_owner || queue_size < 8 ? 0 : std::min<uint32_t>(kMagazineSlots, queue_size / 4);
  buckets_ = static_cast<Slab**>(std::calloc(slots_ + 1, sizeof(Slab*)));
  return buckets_ != nullptr && ring_.Init(queue_size, single_owner);
}

uint64_t SlabSet::Held() const noexcept {
  const uint64_t live = live_slots_.load(std::memory_order_seq_cst);
  const uint64_t mapped = mapped_slots_.load(std::memory_order_seq_cst);
  return mapped > live ? mapped - live : 0;
}

Magazine* SlabSet::MagazineOf(uint32_t shard) noexcept {
  if (magazine_cap_ == 0 || shard >= kStatShards) return nullptr;
  // acquire: the magazines' construction happens before their use.
  if (Magazine* mags = magazines_.load(std::memory_order_acquire)) return &mags[shard];
  if (!second_thread_.Seen(shard) || !EnableMagazines()) return nullptr;
  return &magazines_.load(std::memory_order_acquire)[shard];
}

bool SlabSet::EnableMagazines() noexcept {
  Magazine* mags = new (std::nothrow) Magazine[kStatShards];
  if (mags == nullptr) return false;  // no memory: keep using the ring
  if (!RegisterShardCache(this)) {
    delete[] mags;
    return false;
  }
  Magazine* expected = nullptr;
  // acq_rel: publishes the construction; on failure, sees the winner's.
  if (!magazines_.compare_exchange_strong(expected, mags, std::memory_order_acq_rel)) {
    delete[] mags;  // another thread enabled them first (this set is registered twice: harmless)
  }
  return true;
}

void SlabSet::Refill(Magazine* g, uint32_t shard) noexcept {
  const uint32_t want = MagazineBatch();
  uint32_t got = 0;
  SlotRef ref;
  while (got < want && ring_.TryPop(&ref)) {
    FetchAdd<uint32_t>(ref.slab->live, 1, single_, std::memory_order_seq_cst);
    g->slots[got++] = ref;
  }
  if (got == 0) return;
  // seq_cst: as in Acquire (one update for the batch).
  FetchAdd<uint64_t>(live_slots_, got, single_, std::memory_order_seq_cst);
  g->count = got;
  cached_.Add(shard, got);
}

void SlabSet::Flush(Magazine* g, uint32_t n, uint32_t shard) noexcept {
  if (n > g->count) n = g->count;
  if (n == 0) return;
  cached_.Sub(shard, n);
  for (uint32_t i = 0; i < n; ++i) ReturnSlot(g->slots[i]);
  std::memmove(g->slots, g->slots + n, sizeof(SlotRef) * (g->count - n));
  g->count -= n;
}

void SlabSet::FlushShard(uint32_t shard) noexcept {
  Magazine* mags = magazines_.load(std::memory_order_acquire);
  if (mags == nullptr || shard >= kStatShards) return;
  Flush(&mags[shard], mags[shard].count, shard);
}

Status SlabSet::Acquire(SlotRef* out, bool* hit, uint32_t shard) noexcept {
  if (Magazine* g = MagazineOf(shard)) {
    if (g->count == 0) Refill(g, shard);
    if (g->count > 0) {
      *out = g->slots[--g->count];
      cached_.Sub(shard);
      hits_.Add(shard);
      *hit = true;
      return Status::kOk;
    }
    // The ring is empty: the slow path below takes a slot for this call alone.
  }
  if (ring_.TryPop(out)) {
    // seq_cst on both live counters: see Release (the last free must observe
    // every earlier decrement to decide on rebalancing).
    FetchAdd<uint64_t>(live_slots_, 1, single_, std::memory_order_seq_cst);
    FetchAdd<uint32_t>(out->slab->live, 1, single_, std::memory_order_seq_cst);
    hits_.Add(shard);
    *hit = true;
    return Status::kOk;
  }
  return AcquireSlow(out, hit, shard);
}

Status SlabSet::AcquireSlow(SlotRef* out, bool* hit, uint32_t shard) noexcept {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Fullest partially used slab first (fewest free slots), wholly free slabs last.
    for (uint32_t k = 1; k <= slots_; ++k) {
      Slab* slab = buckets_[k];
      if (slab == nullptr) continue;
      out->slab = slab;
      out->index = PopFreeLocked(slab);
      FetchAdd<uint64_t>(live_slots_, 1, single_, std::memory_order_seq_cst);
      FetchAdd<uint32_t>(slab->live, 1, single_, std::memory_order_seq_cst);
      hits_.Add(shard);
      *hit = true;
      return Status::kOk;
    }
  }
  // A new slab is mapped and made resident without the set's mutex: that takes microseconds
  // per page, and the set's other threads would sleep on the mutex meanwhile. Nobody else
  // reaches the slab until it is in a bucket. Threads that miss together map one slab each;
  // a wholly free one beyond queueSize goes back like any other (ReturnSlot).
  Slab* slab = registry_->CreateSlab(slot_size_, slots_, slab_bytes_, this, &counters_);
  if (slab == nullptr) {
    failures_.Add();
    return Status::kPoolExhausted;
  }
  // Slots of at most a page: every page is some slot's first, written by its first user.
  // Larger slots stay lazy: a 16 KiB body in a 64 KiB slot touches 4 of its 16 pages.
  if (slots_ > 1 && slot_size_ <= kSystemPage) PrefaultPages(slab->base, slab->map_bytes);
  // Slot 0 is handed out; 1..s-1 go on the free list, lowest index on top.
  for (uint32_t i = slots_ - 1; i >= 1; --i) slab->free_stack[slab->free_count++] = i;
  std::lock_guard<std::mutex> lock(mu_);
  FetchAdd<uint64_t>(mapped_slots_, slots_, single_, std::memory_order_seq_cst);
  BucketInsertLocked(slab);
  out->slab = slab;
  out->index = 0;
  FetchAdd<uint64_t>(live_slots_, 1, single_, std::memory_order_seq_cst);
  FetchAdd<uint32_t>(slab->live, 1, single_, std::memory_order_seq_cst);
  misses_.Add();
  *hit = false;
  return Status::kOk;
}

void SlabSet::Release(SlotRef ref, uint32_t shard) noexcept {
  if (Magazine* g = MagazineOf(shard)) {
    if (g->count == magazine_cap_) Flush(g, MagazineBatch(), shard);
    g->slots[g->count++] = ref;
    cached_.Add(shard);
    return;
  }
  ReturnSlot(ref);
}

void SlabSet::ReturnSlot(SlotRef ref) noexcept {
  Slab* slab = ref.slab;
  const uint64_t threshold = uint64_t{queue_size_} + slots_;  // held >= q + s: a slab too many
  FetchSub<uint64_t>(live_slots_, 1, single_, std::memory_order_seq_cst);
  const bool emptied = FetchSub<uint32_t>(slab->live, 1, single_, std::memory_order_seq_cst) == 1;
  if (ring_.TryPush(ref)) {
    // Hot path. A slab just became unused but some of its slots sit in the
    // ring, so it can never become wholly free on its own: rebalance.
    if (emptied && Held() >= threshold) {
      std::lock_guard<std::mutex> lock(mu_);
      if (Held() >= threshold) RebalanceLocked();
    }
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  PushFreeLocked(slab, ref.index);
  if (slab->free_count == slots_) {
    // Wholly free on its free list: return it if the set keeps >= q without it.
    if (Held() >= threshold) ReleaseSlabLocked(slab);
  } else if (emptied && Held() >= threshold) {
    RebalanceLocked();
  }
}

void SlabSet::BucketInsertLocked(Slab* slab) noexcept {
  Slab*& head = buckets_[slab->free_count];
  slab->prev = nullptr;
  slab->next = head;
  if (head != nullptr) head->prev = slab;
  head = slab;
}

void SlabSet::BucketRemoveLocked(Slab* slab) noexcept {
  if (slab->prev != nullptr) {
    slab->prev->next = slab->next;
  } else {
    buckets_[slab->free_count] = slab->next;
  }
  if (slab->next != nullptr) slab->next->prev = slab->prev;
  slab->prev = slab->next = nullptr;
}

void SlabSet::PushFreeLocked(Slab* slab, uint32_t index) noexcept {
  BucketRemoveLocked(slab);
  slab->free_stack[slab->free_count++] = index;
  BucketInsertLocked(slab);
}

uint32_t SlabSet::PopFreeLocked(Slab* slab) noexcept {
  BucketRemoveLocked(slab);
  const uint32_t index = slab->free_stack[--slab->free_count];
  BucketInsertLocked(slab);
  return index;
}

void SlabSet::ReleaseSlabLocked(Slab* slab) noexcept {
  BucketRemoveLocked(slab);
  FetchSub<uint64_t>(mapped_slots_, slots_, single_, std::memory_order_seq_cst);
  registry_->ReleaseOrRetire(slab);  // retired view slabs stay in reserved_bytes
}

void SlabSet::RebalanceLocked() noexcept {
  // 1. Drain the ring so every held slot is on its slab's free list.
  SlotRef ref;
  while (ring_.TryPop(&ref)) PushFreeLocked(ref.slab, ref.index);

  // 2. Free slots on partially used slabs stay mapped anyway; keep only as
  //    many wholly free slabs as needed to reach q.
  uint64_t partial_free = 0;
  for (uint32_t k = 1; k < slots_; ++k) {
    for (Slab* x = buckets_[k]; x != nullptr; x = x->next) partial_free += k;
  }
  const uint64_t keep = partial_free >= queue_size_ ? 0 : CeilDiv(queue_size_ - partial_free, slots_);
  uint64_t kept = 0;
  for (Slab* x = buckets_[slots_]; x != nullptr;) {
    Slab* next = x->next;
    if (kept < keep) {
      ++kept;
    } else {
      ReleaseSlabLocked(x);
    }
    x = next;
  }

  // 3. Refill the ring from the fullest slabs first, so sparse slabs keep
  //    their slots on the free list and can drain and be returned.
  uint64_t budget = queue_size_;
  for (uint32_t k = 1; k <= slots_ && budget > 0; ++k) {
    while (budget > 0 && buckets_[k] != nullptr) {
      Slab* x = buckets_[k];
      while (budget > 0 && x->free_count > 0) {
        const uint32_t index = PopFreeLocked(x);
        if (!ring_.TryPush(SlotRef{x, index})) {
          // Concurrent frees filled the ring meanwhile: it is full, stop.
          PushFreeLocked(x, index);
          budget = 0;
          break;
        }
        --budget;
      }
    }
  }
}

void SlabSet::AddStats(PoolStats* stats) const noexcept {
  const uint64_t held = Held();
  const uint64_t cached = cached_.Load();
  const uint64_t taken = live_slots_.load(std::memory_order_relaxed);
  stats->reserved_bytes += counters_.reserved_bytes.load(std::memory_order_relaxed);
  stats->live_slots += taken > cached ? taken - cached : 0;
  stats->retained_free_slots += (held < queue_size_ ? held : queue_size_) + cached;
  stats->hits += hits_.Load();
  stats->misses += misses_.Load();
  stats->released_to_system += counters_.released.load(std::memory_order_relaxed);
  stats->failures += failures_.Load();
}

// --- SlabPool -------------------------------------------------------------------

bool SlabPool::Init(const PoolConfig& config, SlabRegistry* registry, bool single_owner) noexcept {
  try {
    config_ = config;
  } catch (...) {  // std::bad_alloc copying the name
    return false;
  }
  const uint32_t s = ChooseSlotsPerSlab(config.slot_size, config.queue_size);
  return revocable_.Init(config.slot_size, config.queue_size, s, registry, single_owner) &&
         view_.Init(config.slot_size, config.queue_size, s, registry, single_owner);
}

void SlabPool::Stats(PoolStats* out) const noexcept {
  out->slot_size = config_.slot_size;
  out->queue_size = config_.queue_size;
  revocable_.AddStats(out);
  view_.AddStats(out);
  out->live_bytes = live_bytes_.Load();
}

// --- DirectPool -----------------------------------------------------------------

Status DirectPool::Acquire(uint64_t size, SlotRef* out, uint64_t tail) noexcept {
  const uint64_t bytes = RoundUp(size + tail);
  Slab* slab = registry_->CreateSlab(bytes, 1, bytes, nullptr, &counters_);
  if (slab == nullptr) {
    failures_.Add();
    return Status::kPoolExhausted;
  }
  slab->live.store(1, std::memory_order_relaxed);
  out->slab = slab;
  out->index = 0;
  live_slots_.Add();
  live_bytes_.Add(size);
  misses_.Add();
  return Status::kOk;
}

void DirectPool::Release(SlotRef ref, uint64_t size) noexcept {
  live_slots_.Sub();
  live_bytes_.Sub(size);
  registry_->ReleaseOrRetire(ref.slab);
}

void DirectPool::Stats(PoolStats* out) const noexcept {
  out->slot_size = 0;
  out->queue_size = 0;
  out->reserved_bytes = counters_.reserved_bytes.load(std::memory_order_relaxed);
  out->live_slots = live_slots_.Load();
  out->live_bytes = live_bytes_.Load();
  out->retained_free_slots = 0;
  out->hits = 0;
  out->misses = misses_.Load();
  out->released_to_system = counters_.released.load(std::memory_order_relaxed);
  out->failures = failures_.Load();
}

}  // namespace isopool
