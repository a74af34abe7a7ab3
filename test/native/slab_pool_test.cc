// slab_pool_test.cc — geometry, retention cap, fragmentation after bursts
// freed in random order, view/revocable sets, export retirement, injected
// mapping failures, direct mappings, and a threaded burst run.
#include "slab_pool.h"

#include <sys/mman.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "test_util.h"

using namespace isopool;

namespace {

double PoolFragmentation(const PoolStats& s) {
  if (s.reserved_bytes == 0) return 0;
  return 1.0 - double((s.live_slots + s.retained_free_slots) * s.slot_size) / double(s.reserved_bytes);
}

PoolStats StatsOf(const SlabPool& pool) {
  PoolStats s;
  pool.Stats(&s);
  return s;
}

void Shuffle(std::vector<SlotRef>& v, testing::Rng& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.Below(i)]);
}

}  // namespace

TEST(Geometry) {
  CHECK_EQ(ChooseSlotsPerSlab(4096, 500), 256u) << "small: 1 MiB slabs (2*256 = 512 kept, 2.3%)";
  CHECK_EQ(ChooseSlotsPerSlab(65536, 250), 16u) << "medium: 1 MiB slabs";
  CHECK_EQ(ChooseSlotsPerSlab(1 << 20, 125), 1u) << "large: a slot is its own slab";
  for (uint32_t q : {0u, 1u, 7u, 10u, 37u, 100u, 333u, 500u, 1000u, 4097u}) {
    for (uint64_t slot : {16ull, 1000ull, 4096ull, 5000ull, 65536ull, 300000ull}) {
      const uint32_t s = ChooseSlotsPerSlab(slot, q);
      CHECK(s >= 1 && s <= kMaxSlotsPerSlab && s * slot <= kMaxSlabBytes) << "slot " << slot << " q " << q;
      if (q > 0) {
        const uint64_t held = uint64_t(s) * ((q + s - 1) / s);
        CHECK(double(held - q) / double(held) < 0.03) << "rounding waste for slot " << slot << " q " << q;
      }
    }
  }
}

// Allocates `burst` slots, frees them in random order, checks retention and fragmentation.
static void BurstCase(uint64_t slot_size, uint32_t queue, uint64_t burst, uint64_t seed) {
  SlabRegistry registry;
  SlabPool pool;
  CHECK(pool.Init(PoolConfig{"p", slot_size, queue}, &registry));
  testing::Rng rng(seed);
  for (int round = 0; round < 3; ++round) {
    std::vector<SlotRef> refs(burst);
    for (auto& r : refs) {
      bool hit;
      CHECK(pool.set(AccessMode::kRevocable).Acquire(&r, &hit) == Status::kOk);
    }
    std::set<uint8_t*> distinct;
    for (auto& r : refs) distinct.insert(r.data());
    CHECK_EQ(distinct.size(), refs.size()) << "no slot handed out twice";
    Shuffle(refs, rng);
    // Free half, check the cap on the way, then the rest.
    for (size_t i = 0; i < refs.size(); ++i) {
      pool.set(AccessMode::kRevocable).Release(refs[i]);
      if (i % 97 == 0) {
        const PoolStats s = StatsOf(pool);
        CHECK(s.retained_free_slots <= queue) << "retention capped at queueSize";
      }
    }
    const PoolStats s = StatsOf(pool);
    const double frag = PoolFragmentation(s);
    const uint32_t spb = pool.set(AccessMode::kRevocable).slots_per_slab();
    CHECK_EQ(s.live_slots, uint64_t{0});
    CHECK(s.retained_free_slots >= std::min<uint64_t>(queue, burst) && s.retained_free_slots <= queue)
        << "retained " << s.retained_free_slots << " for slot " << slot_size << " q " << queue;
    CHECK(frag < 0.05) << "pool fragmentation " << frag << " (slot " << slot_size << ", q " << queue
                       << ", burst " << burst << ", s " << spb << ", reserved " << s.reserved_bytes << ")";
    const uint64_t max_reserved =
        (uint64_t(queue) + spb) * slot_size + (slot_size < 4096 ? 4096 : 0) * ((queue / spb) + 1);
    CHECK(s.reserved_bytes <= max_reserved)
        << "reserved " << s.reserved_bytes << " ~ queueSize slots (" << queue * slot_size << ")";
    if (round == 0) {
      std::cout << "  slot " << slot_size << " q " << queue << " burst " << burst << " s " << spb
                << ": reserved " << s.reserved_bytes << " B, retained " << s.retained_free_slots
                << ", fragmentation " << frag * 100 << "%, released slabs " << s.released_to_system << std::endl;
    }
  }
}

TEST(FragmentationAfterRandomBursts) {
  BurstCase(4096, 500, 1500, 1);      // small, 3x queue
  BurstCase(65536, 250, 750, 2);      // medium
  BurstCase(1 << 20, 125, 375, 3);    // large
  BurstCase(4096, 500, 5000, 4);      // 10x queue
  BurstCase(5000, 37, 400, 5);        // odd sizes
  BurstCase(4096, 10, 1000, 6);       // tiny queue
  BurstCase(4096, 500, 300, 7);       // burst below the queue
}

TEST(QueueOneBurstsFreeAndReturn) {
  // queueSize 1 (a one-cell ring): the second free of a burst must not hang; see mpmc_ring_test.
  for (const AccessMode mode : {AccessMode::kRevocable, AccessMode::kView}) {
    SlabRegistry registry;
    SlabPool pool;
    CHECK(pool.Init(PoolConfig{"one", 4096, 1}, &registry));
    for (int round = 0; round < 3; ++round) {
      std::vector<SlotRef> refs(5);
      bool hit;
      for (auto& r : refs) CHECK(pool.set(mode).Acquire(&r, &hit) == Status::kOk);
      std::set<uint8_t*> distinct;
      for (auto& r : refs) distinct.insert(r.data());
      CHECK_EQ(distinct.size(), refs.size()) << "no slot handed out twice";
      for (auto& r : refs) pool.set(mode).Release(r);
      const PoolStats s = StatsOf(pool);
      CHECK_EQ(s.live_slots, uint64_t{0});
      CHECK_EQ(s.retained_free_slots, uint64_t{1}) << "round " << round;
      CHECK(s.reserved_bytes <= 2 * 4096) << "about queueSize slots kept: " << s.reserved_bytes;
    }
  }
}

TEST(QueueZeroReturnsEverything) {
  SlabRegistry registry;
  SlabPool pool;
  CHECK(pool.Init(PoolConfig{"z", 4096, 0}, &registry));
  std::vector<SlotRef> refs(600);
  bool hit;
  for (auto& r : refs) CHECK(pool.set(AccessMode::kRevocable).Acquire(&r, &hit) == Status::kOk);
  for (auto& r : refs) pool.set(AccessMode::kRevocable).Release(r);
  const PoolStats s = StatsOf(pool);
  CHECK_EQ(s.reserved_bytes, uint64_t{0}) << "queueSize 0 keeps nothing";
  CHECK_EQ(s.retained_free_slots, uint64_t{0});
}

TEST(HitsMissesAndMetadata) {
  SlabRegistry registry;
  SlabPool pool;
  CHECK(pool.Init(PoolConfig{"m", 65536, 4}, &registry));
  SlabSet& set = pool.set(AccessMode::kRevocable);
  SlotRef a;
  bool hit = true;
  CHECK(set.Acquire(&a, &hit) == Status::kOk);
  CHECK(!hit) << "first acquire maps a slab";
  CHECK_EQ(a.meta().owner, 0u) << "fresh memory: owner 0";
  CHECK_EQ(a.meta().dirty, uint64_t{0});
  a.meta().owner = 9;
  a.meta().dirty = 123;
  set.Release(a);
  SlotRef b;
  CHECK(set.Acquire(&b, &hit) == Status::kOk);
  CHECK(hit) << "served from the retained slot";
  CHECK(b.data() == a.data()) << "the ring hands the same slot back";
  CHECK_EQ(b.meta().owner, 9u) << "metadata is out of band and survives the free";
  CHECK_EQ(b.meta().dirty, uint64_t{123});
  set.Release(b);
  const PoolStats s = StatsOf(pool);
  CHECK_EQ(s.misses, uint64_t{1});
  CHECK_EQ(s.hits, uint64_t{1});
}

TEST(ViewAndRevocableSetsAreSeparate) {
  SlabRegistry registry;
  SlabPool pool;
  CHECK(pool.Init(PoolConfig{"v", 4096, 50}, &registry));
  std::set<uint64_t> view_keys, rev_keys;
  bool hit;
  for (int round = 0; round < 5; ++round) {
    std::vector<SlotRef> v(300), r(300);
    for (auto& x : v) {
      CHECK(pool.set(AccessMode::kView).Acquire(&x, &hit) == Status::kOk);
      view_keys.insert(x.slab->key);
    }
    for (auto& x : r) {
      CHECK(pool.set(AccessMode::kRevocable).Acquire(&x, &hit) == Status::kOk);
      rev_keys.insert(x.slab->key);
    }
    for (auto& x : v) pool.set(AccessMode::kView).Release(x);
    for (auto& x : r) pool.set(AccessMode::kRevocable).Release(x);
  }
  for (uint64_t k : view_keys) CHECK(rev_keys.count(k) == 0) << "slab " << k << " served both modes";
}

TEST(ExportRetiresViewSlab) {
  SlabRegistry registry;
  SlabPool pool;
  CHECK(pool.Init(PoolConfig{"x", 4096, 0}, &registry));
  SlotRef r;
  bool hit;
  CHECK(pool.set(AccessMode::kView).Acquire(&r, &hit) == Status::kOk);
  uint8_t* base = nullptr;
  uint64_t len = 0;
  CHECK(registry.Export(r.slab->key, &base, &len) == Status::kOk);
  CHECK(base == r.slab->base && len == r.slab->map_bytes);
  const uint64_t key = r.slab->key;
  const uint64_t bytes = len;
  pool.set(AccessMode::kView).Release(r);  // wholly free, q = 0: should go back, but is exported
  PoolStats s = StatsOf(pool);
  CHECK_EQ(s.reserved_bytes, bytes) << "retired slab still counted while exported";
  CHECK_EQ(s.released_to_system, uint64_t{0});
  base[0] = 1;  // still mapped (ASan would catch an unmapped write as SEGV)
  CHECK(registry.Export(key, &base, &len) == Status::kInvalidArgument) << "retired slabs are not re-exported";
  CHECK_EQ(registry.RetireEpoch(), uint64_t{1}) << "the retirement moved the epoch (bindings rescan)";
  CHECK(registry.IsRetired(key));
  SlotRef r2;
  CHECK(pool.set(AccessMode::kView).Acquire(&r2, &hit) == Status::kOk);
  CHECK(r2.slab->key != key) << "a retired slab is never allocated from again";
  CHECK(!registry.IsRetired(r2.slab->key)) << "a slab in use is not retired";
  pool.set(AccessMode::kView).Release(r2);  // not exported: unmapped at once, the epoch stays
  CHECK_EQ(registry.RetireEpoch(), uint64_t{1}) << "only retirements of exported slabs count";
  registry.ReleaseExport(key);
  CHECK(!registry.IsRetired(key)) << "unmapped: no longer a retired slab";
  s = StatsOf(pool);
  CHECK_EQ(s.reserved_bytes, uint64_t{0}) << "unmapped at the last export release";
  CHECK_EQ(s.released_to_system, uint64_t{2});
}

TEST(InjectedFailureChangesNothing) {
  SlabRegistry registry;
  SlabPool pool;
  CHECK(pool.Init(PoolConfig{"f", 4096, 10}, &registry));
  const PoolStats before = StatsOf(pool);
  registry.InjectFailures(1);
  SlotRef r;
  bool hit;
  CHECK(pool.set(AccessMode::kRevocable).Acquire(&r, &hit) == Status::kPoolExhausted);
  const PoolStats after = StatsOf(pool);
  CHECK_EQ(after.reserved_bytes, before.reserved_bytes);
  CHECK_EQ(after.live_slots, uint64_t{0});
  CHECK_EQ(after.failures, uint64_t{1});
  CHECK(pool.set(AccessMode::kRevocable).Acquire(&r, &hit) == Status::kOk) << "only one failure injected";
  pool.set(AccessMode::kRevocable).Release(r);
}

TEST(DirectMappings) {
  SlabRegistry registry;
  DirectPool direct(&registry);
  SlotRef r;
  CHECK(direct.Acquire((3 << 20) + 1, &r) == Status::kOk);
  PoolStats s;
  direct.Stats(&s);
  CHECK_EQ(s.reserved_bytes, uint64_t{(3 << 20) + 4096}) << "rounded up to 4 KiB";
  CHECK_EQ(s.live_slots, uint64_t{1});
  CHECK_EQ(s.live_bytes, uint64_t{(3 << 20) + 1});
  r.data()[(3 << 20)] = 7;  // last requested byte is writable
  direct.Release(r, (3 << 20) + 1);
  PoolStats s2;
  direct.Stats(&s2);
  CHECK_EQ(s2.reserved_bytes, uint64_t{0}) << "unmapped on free";
  CHECK_EQ(s2.released_to_system, uint64_t{1});
}

TEST(ResidentBytesCountsTouchedPages) {
  // Small mappings: a transparent huge page could make one touch resident 2 MiB at once.
  SlabRegistry registry;
  DirectPool direct(&registry);
  CHECK_EQ(registry.ResidentBytes(), uint64_t{0}) << "nothing mapped";
  SlotRef a;
  SlotRef b;
  CHECK(direct.Acquire(16 * 4096, &a) == Status::kOk);
  CHECK(direct.Acquire(8 * 4096, &b) == Status::kOk);
  CHECK_EQ(registry.ResidentBytes(), uint64_t{0}) << "fresh anonymous mappings hold no pages until touched";
  a.data()[0] = 1;
  a.data()[5 * 4096 + 17] = 1;
  b.data()[8 * 4096 - 1] = 1;
  CHECK_EQ(registry.ResidentBytes(), uint64_t{3 * 4096}) << "one page per touched page, over every mapping";
  direct.Release(a, 16 * 4096);
  CHECK_EQ(registry.ResidentBytes(), uint64_t{4096}) << "an unmapped slab no longer counts";
  direct.Release(b, 8 * 4096);
  CHECK_EQ(registry.ResidentBytes(), uint64_t{0});
}

TEST(ThreadedBurstsThenIdle) {
  const uint64_t ops = testing::EnvU64("ISOPOOL_SLAB_OPS", 400000);
  SlabRegistry registry;
  SlabPool pool;
  CHECK(pool.Init(PoolConfig{"t", 4096, 500}, &registry));
  const int threads_n = 4;
  std::atomic<uint64_t> bad{0};
  std::vector<std::thread> threads;
  for (int th = 0; th < threads_n; ++th) {
    threads.emplace_back([&, th] {
      testing::Rng rng(th + 100);
      std::vector<std::pair<SlotRef, uint64_t>> mine;
      bool hit;
      for (uint64_t i = 0; i < ops; ++i) {
        // Bursty: grow to a random target, then shrink.
        const bool grow = (i / 2000) % 2 == 0 ? rng.Below(4) != 0 : rng.Below(4) == 0;
        if (grow || mine.empty()) {
          SlotRef r;
          if (pool.set(AccessMode::kRevocable).Acquire(&r, &hit) != Status::kOk) {
            bad++;
            continue;
          }
          const uint64_t stamp = (uint64_t(th) << 48) | i;
          std::memcpy(r.data(), &stamp, 8);
          std::memcpy(r.data() + 4088, &stamp, 8);
          mine.emplace_back(r, stamp);
        } else {
          const size_t k = rng.Below(mine.size());
          auto [r, stamp] = mine[k];
          mine[k] = mine.back();
          mine.pop_back();
          uint64_t a, b;
          std::memcpy(&a, r.data(), 8);
          std::memcpy(&b, r.data() + 4088, 8);
          if (a != stamp || b != stamp) bad++;
          pool.set(AccessMode::kRevocable).Release(r);
        }
      }
      for (auto& [r, stamp] : mine) pool.set(AccessMode::kRevocable).Release(r);
    });
  }
  for (auto& t : threads) t.join();
  const PoolStats s = StatsOf(pool);
  CHECK_EQ(bad.load(), uint64_t{0}) << "stamps intact: no slot handed out twice";
  CHECK_EQ(s.live_slots, uint64_t{0});
  CHECK(PoolFragmentation(s) < 0.05) << "fragmentation after threaded bursts " << PoolFragmentation(s)
                                     << " reserved " << s.reserved_bytes;
  std::cout << "  " << threads_n << " threads x " << ops << " acquire/release, reserved " << s.reserved_bytes
            << " B, fragmentation " << PoolFragmentation(s) * 100 << "%, hits " << s.hits << ", misses "
            << s.misses << ", released slabs " << s.released_to_system << std::endl;
}

// A thread's magazine holds freed slots while the thread lives; metrics count them as held
// by the pool (retained), never live; the thread's exit empties it.
TEST(MagazinesEmptyWhenTheirThreadExits) {
  SlabRegistry registry;
  SlabPool pool;
  CHECK(pool.Init(PoolConfig{"m", 4096, 500}, &registry));
  SlabSet& set = pool.set(AccessMode::kRevocable);
  bool hit;
  SlotRef first;
  CHECK(set.Acquire(&first, &hit) == Status::kOk);  // this thread is the set's first
  set.Release(first);
  CHECK_EQ(set.Cached(), uint64_t{0}) << "one thread: no magazines";

  std::mutex mu;
  std::condition_variable cv;
  int stage = 0;  // 1: the thread has freed its slots; 2: it may exit
  std::thread holder([&] {
    std::vector<SlotRef> refs(40);
    bool h;
    for (auto& r : refs) CHECK(set.Acquire(&r, &h) == Status::kOk);
    for (auto& r : refs) set.Release(r);
    std::unique_lock<std::mutex> lock(mu);
    stage = 1;
    cv.notify_all();
    cv.wait(lock, [&] { return stage == 2; });
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return stage == 1; });
  }
  const uint64_t cached = set.Cached();
  const PoolStats held = StatsOf(pool);
  CHECK(cached > 0 && cached <= kMagazineSlots) << "the live thread's magazine holds " << cached;
  CHECK_EQ(held.live_slots, uint64_t{0}) << "a cached slot is not live";
  CHECK(held.retained_free_slots >= cached) << "a cached slot is held by the pool";
  {
    std::lock_guard<std::mutex> lock(mu);
    stage = 2;
  }
  cv.notify_all();
  holder.join();
  CHECK_EQ(set.Cached(), uint64_t{0}) << "the exiting thread emptied its magazine";
  const PoolStats after = StatsOf(pool);
  CHECK_EQ(after.live_slots, uint64_t{0});
  CHECK(after.retained_free_slots <= 500u);
  CHECK(PoolFragmentation(after) < 0.05) << PoolFragmentation(after);
}

// Many short-lived threads, each leaving slots in its magazine when it exits, while long-lived
// threads keep acquiring and releasing: nothing is lost, nothing is handed out twice.
TEST(ThreadsExitHoldingCachedSlots) {
  const uint64_t rounds = testing::EnvU64("ISOPOOL_EXIT_ROUNDS", 200);
  SlabRegistry registry;
  SlabPool pool;
  CHECK(pool.Init(PoolConfig{"x", 4096, 200}, &registry));
  SlabSet& set = pool.set(AccessMode::kRevocable);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> bad{0};
  auto churn = [&](uint64_t tag, uint64_t ops) {
    testing::Rng rng(tag);
    std::vector<std::pair<SlotRef, uint64_t>> mine;
    bool hit;
    for (uint64_t i = 0; i < ops && !(ops == ~0ull && stop.load(std::memory_order_relaxed)); ++i) {
      if (mine.size() < 8 || (mine.size() < 64 && rng.Below(2) == 0)) {
        SlotRef r;
        if (set.Acquire(&r, &hit) != Status::kOk) {
          bad++;
          continue;
        }
        const uint64_t stamp = (tag << 32) | i;
        std::memcpy(r.data(), &stamp, 8);
        mine.emplace_back(r, stamp);
      } else {
        const size_t k = rng.Below(mine.size());
        uint64_t got;
        std::memcpy(&got, mine[k].first.data(), 8);
        if (got != mine[k].second) bad++;
        set.Release(mine[k].first);
        mine[k] = mine.back();
        mine.pop_back();
      }
    }
    for (auto& [r, stamp] : mine) set.Release(r);
  };
  std::vector<std::thread> steady;
  for (uint64_t t = 0; t < 2; ++t) steady.emplace_back([&, t] { churn(t + 1, ~0ull); });
  for (uint64_t r = 0; r < rounds; ++r) {
    std::thread brief([&, r] { churn(1000 + r, 300); });  // frees its last slots, then exits
    brief.join();
  }
  stop.store(true);
  for (auto& t : steady) t.join();
  CHECK_EQ(bad.load(), uint64_t{0}) << "stamps intact: no slot handed out twice";
  CHECK_EQ(set.Cached(), uint64_t{0}) << "every exited thread emptied its magazine";
  const PoolStats s = StatsOf(pool);
  CHECK_EQ(s.live_slots, uint64_t{0});
  CHECK(s.retained_free_slots <= 200u) << s.retained_free_slots;
  CHECK(PoolFragmentation(s) < 0.05) << PoolFragmentation(s);
  std::cout << "  " << rounds << " threads exited holding cached slots beside 2 steady threads, reserved "
            << s.reserved_bytes << " B" << std::endl;
}

TEST(NewSlabsAreResidentAtOnce) {
  // A new slab of several slots of at most a page is populated in one call where the kernel
  // can (Linux 5.14+); larger slots, single-slot slabs and direct mappings stay lazy.
  uint8_t* probe = static_cast<uint8_t*>(mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  CHECK(probe != MAP_FAILED);
  const bool can = PrefaultPages(probe, 4096);
  munmap(probe, 4096);
  SlabRegistry registry;
  SlabPool pool;
  CHECK(pool.Init(PoolConfig{"r", 4096, 16}, &registry));
  SlotRef r;
  bool hit;
  CHECK(pool.set(AccessMode::kRevocable).Acquire(&r, &hit) == Status::kOk);
  const PoolStats s = StatsOf(pool);
  CHECK_EQ(registry.ResidentBytes(), can ? s.reserved_bytes : uint64_t{0})
      << (can ? "every page of the new slab is resident" : "no MADV_POPULATE_WRITE here: pages fault on first touch");
  pool.set(AccessMode::kRevocable).Release(r);
  // Slots larger than a page stay lazy: a caller often writes only part of one.
  SlabRegistry registry64;
  SlabPool pool64;
  CHECK(pool64.Init(PoolConfig{"m", 65536, 16}, &registry64));
  CHECK(pool64.set(AccessMode::kRevocable).Acquire(&r, &hit) == Status::kOk);
  CHECK(StatsOf(pool64).reserved_bytes > 65536u);
  CHECK_EQ(registry64.ResidentBytes(), uint64_t{0}) << "a slab of 64 KiB slots faults page by page";
  pool64.set(AccessMode::kRevocable).Release(r);
  std::cout << "  MADV_POPULATE_WRITE " << (can ? "supported" : "not supported") << ", slab " << s.reserved_bytes << " B" << std::endl;
}

namespace {

/// Pages of [base, base + bytes) that are resident now.
std::vector<bool> Resident(uint8_t* base, uint64_t bytes) {
  std::vector<unsigned char> v(bytes / 4096);
  CHECK(mincore(base, bytes, v.data()) == 0);
  std::vector<bool> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = (v[i] & 1) != 0;
  return out;
}

}  // namespace

TEST(ZeroSlotMemoryClearsEveryWrittenByteAndFaultsNoOtherPage) {
  // 1 MiB of private anonymous memory, as a slab is mapped; no huge pages, so residency is
  // per 4 KiB page.
  const uint64_t bytes = 1 << 20;
  void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(mem != MAP_FAILED);
  auto* base = static_cast<uint8_t*>(mem);
  madvise(base, bytes, MADV_NOHUGEPAGE);
  // Written: whole pages, a page's last byte, runs across page boundaries, both ends.
  const std::vector<uint64_t> pages = {0, 1, 2, 100, 128, 200, 254, 255};
  for (uint64_t p : pages) std::memset(base + p * 4096, 0xA5, 4096);
  base[7 * 4096 + 4095] = 0x5A;
  std::memset(base + 40 * 4096 + 4000, 0x3C, 200);  // pages 40 and 41
  // A written page dropped again reads as zero and is left alone.
  std::memset(base + 60 * 4096, 0x77, 4096);
  CHECK(madvise(base + 60 * 4096, 4096, MADV_DONTNEED) == 0);
  const std::vector<bool> before = Resident(base, bytes);

  // An extent that starts and ends inside pages.
  const uint64_t head = 100, tail = 50;
  ZeroSlotMemory(base + head, bytes - head - tail);

  // Nothing was faulted in: the pages never written (or dropped) are still not resident. (Read
  // before the bytes are: reading an empty page maps the zero page, which counts as resident.)
  const std::vector<bool> after = Resident(base, bytes);
  uint64_t faulted = 0, resident = 0;
  for (size_t i = 0; i < after.size(); ++i) {
    faulted += after[i] && !before[i];
    resident += after[i];
  }
  CHECK_EQ(faulted, uint64_t{0}) << "pages the map showed empty were not written";
  CHECK_EQ(resident, uint64_t{11}) << "the 8 written pages, page 7, pages 40 and 41";

  // Every byte of the extent reads zero; the bytes outside it are kept.
  for (uint64_t i = 0; i < head; ++i) CHECK_EQ(int(base[i]), 0xA5) << "before the extent";
  for (uint64_t i = bytes - tail; i < bytes; ++i) CHECK_EQ(int(base[i]), 0xA5) << "after the extent";
  uint64_t nonzero = 0;
  for (uint64_t i = head; i < bytes - tail; ++i) nonzero += base[i] != 0;
  CHECK_EQ(nonzero, uint64_t{0}) << "every byte of the extent reads zero";
  munmap(base, bytes);

  // Below kSparseZeroBytes everything is written, as memset does.
  void* small = mmap(nullptr, kSparseZeroBytes - 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(small != MAP_FAILED);
  ZeroSlotMemory(static_cast<uint8_t*>(small), kSparseZeroBytes - 4096);
  const std::vector<bool> all = Resident(static_cast<uint8_t*>(small), kSparseZeroBytes - 4096);
  CHECK(std::all_of(all.begin(), all.end(), [](bool r) { return r; })) << "a small extent is written whole";
  munmap(small, kSparseZeroBytes - 4096);
}

TEST_MAIN()
