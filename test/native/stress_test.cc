// stress_test.cc — many threads, one Manager, mixed operations.
//
// Each of ISOPOOL_STRESS_THREADS threads (default 4) runs ISOPOOL_STRESS_OPS
// (default 1,000,000) operations: allocate (several channels, one with hard
// byte/handle limits, one in view mode), free its own handles, hand handles to
// other threads through a shared ring and free theirs, validate live / stale /
// forged ids, cross-channel attempts, and deliberate limit hits.
//
// Checks:
//   * every slot carries a unique stamp written at allocation and verified at
//     free: no slot is handed out twice while live;
//   * a watcher thread never sees the limited channel above its hard limits,
//     and its peak stays <= the limit;
//   * at the end: ledger charges == sum of live handle charges per channel
//     and per type, RecountChannel agrees, pool live slots == live pooled
//     handles; after freeing everything all usage is 0 and every pool is back
//     to <= queueSize retained slots with fragmentation < 5%.
#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <set>
#include <cstring>
#include <thread>
#include <vector>

#include "manager.h"
#include "mpmc_ring.h"
#include "slab_pool.h"
#include "test_util.h"

using namespace isopool;

namespace {

struct Live {
  uint64_t id;
  uint8_t* data;
  uint64_t size;
  uint64_t stamp;
  uint64_t charged;
  int32_t channel;
  int32_t pool;
};

void Stamp(const Live& h) {
  if (h.size >= 16) {
    std::memcpy(h.data, &h.stamp, 8);
    std::memcpy(h.data + h.size - 8, &h.stamp, 8);
  } else {
    for (uint64_t i = 0; i < h.size; ++i) h.data[i] = static_cast<uint8_t>(h.stamp >> (8 * (i % 8)));
  }
}

bool StampIntact(const Live& h) {
  if (h.size >= 16) {
    uint64_t a, b;
    std::memcpy(&a, h.data, 8);
    std::memcpy(&b, h.data + h.size - 8, 8);
    return a == h.stamp && b == h.stamp;
  }
  for (uint64_t i = 0; i < h.size; ++i)
    if (h.data[i] != static_cast<uint8_t>(h.stamp >> (8 * (i % 8)))) return false;
  return true;
}

uint64_t PickSize(testing::Rng& rng) {
  const uint64_t r = rng.Below(10000);
  if (r < 8900) return 1 + rng.Below(4096);                 // small
  if (r < 9900) return 4097 + rng.Below(65536 - 4096);      // medium
  if (r < 9995) return 65537 + rng.Below((1 << 20) - 65536);// large
  return (1 << 20) + 1 + rng.Below(1 << 20);                // direct
}

/// Bytes charged for `size` with the default pools (slot size, or 4 KiB pages when direct).
uint64_t ChargeOf(uint64_t size) {
  for (uint64_t slot : {4096ull, 65536ull, 1ull << 20})
    if (size <= slot) return slot;
  return (size + 4095) / 4096 * 4096;
}

}  // namespace

TEST(MixedOperationsManyThreads) {
  const int threads_n = static_cast<int>(testing::EnvU64("ISOPOOL_STRESS_THREADS", 4));
  const uint64_t ops = testing::EnvU64("ISOPOOL_STRESS_OPS", 1000000);
  ManagerConfig cfg;
  cfg.pools = {{"small", 4096, 500}, {"medium", 65536, 250}, {"large", 1 << 20, 125}};
  Manager* m = nullptr;
  CHECK(Manager::Create(cfg, &m) == Status::kOk);

  int32_t ch[4] = {0, -1, -1, -1};
  bool created;
  ChannelOptions view;
  view.access = AccessMode::kView;
  CHECK(m->OpenChannel("limited", ChannelOptions{}, &ch[1], &created) == Status::kOk);
  CHECK(m->OpenChannel("open", ChannelOptions{}, &ch[2], &created) == Status::kOk);
  CHECK(m->OpenChannel("view", view, &ch[3], &created) == Status::kOk);
  const int32_t limited = ch[1];
  const uint64_t kLimitBytes = 6 << 20;
  const uint64_t kLimitHandles = 400;
  Limits lim;
  lim.max_bytes = kLimitBytes;
  lim.max_handles = kLimitHandles;
  lim.soft_bytes = 4 << 20;
  CHECK(m->SetLimits(kAllTypes, limited, lim) == Status::kOk);

  MpmcRing<Live> exchange;
  CHECK(exchange.Init(1024));

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> max_bytes_seen{0}, max_handles_seen{0};
  std::thread watcher([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      const LedgerUsage u = m->ChannelUsage(limited);
      if (u.bytes > max_bytes_seen.load()) max_bytes_seen.store(u.bytes);
      if (u.handles > max_handles_seen.load()) max_handles_seen.store(u.handles);
      std::this_thread::yield();
    }
  });

  struct Counts {
    uint64_t allocs = 0, frees = 0, handoffs = 0, foreign_frees = 0, validates = 0, limit_hits = 0,
             cross = 0, errors = 0, bad_stamps = 0, bad_refusals = 0;
  };
  std::vector<Counts> counts(threads_n);
  std::vector<std::vector<Live>> leftovers(threads_n);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int th = 0; th < threads_n; ++th) {
    threads.emplace_back([&, th] {
      testing::Rng rng(0x1234 + th);
      Counts& c = counts[th];
      std::vector<Live> mine;
      uint64_t last_freed = 0, serial = 0;
      auto free_one = [&](const Live& h, int32_t presenter) {
        if (!StampIntact(h)) c.bad_stamps++;
        HandleInfo info;
        uint32_t v = 0;
        if (m->Free(h.id, presenter, FreeReason::kDeallocate, &info, &v) != Status::kOk || v != 0 ||
            info.charged != h.charged) {
          c.errors++;
        }
        last_freed = h.id;
        c.frees++;
      };
      auto allocate = [&](int32_t channel, uint64_t size) {
        Allocation a;
        const Status s = m->Allocate(0, size, channel, &a);
        if (s == Status::kResourceLimit) {
          c.limit_hits++;
          const bool plausible = a.refused_handles ? a.refused_in_use + 1 > a.refused_limit
                                                   : a.refused_in_use + ChargeOf(size) > a.refused_limit;
          if (channel != limited || !plausible) c.bad_refusals++;
          return;
        }
        if (s != Status::kOk) {
          c.errors++;
          return;
        }
        Live h{a.id, a.data, size, (uint64_t(th + 1) << 40) | ++serial, a.charged, channel, a.pool};
        Stamp(h);
        mine.push_back(h);
        c.allocs++;
      };
      for (uint64_t i = 0; i < ops; ++i) {
        const uint64_t r = rng.Below(100);
        if (r < 40 && mine.size() < 200) {
          allocate(ch[rng.Below(4)], PickSize(rng));
        } else if (r < 75 && !mine.empty()) {
          const size_t k = rng.Below(mine.size());
          const Live h = mine[k];
          mine[k] = mine.back();
          mine.pop_back();
          free_one(h, rng.Below(2) ? h.channel : -1);
        } else if (r < 80 && !mine.empty()) {
          // Hand a live handle to whichever thread pops it.
          const Live h = mine.back();
          if (exchange.TryPush(h)) {
            mine.pop_back();
            c.handoffs++;
          }
        } else if (r < 85) {
          Live h;
          if (exchange.TryPop(&h)) {
            free_one(h, -1);
            c.foreign_frees++;
          }
        } else if (r < 92) {
          c.validates++;
          HandleInfo info;
          if (!mine.empty()) {
            const Live& h = mine[rng.Below(mine.size())];
            if (m->Validate(h.id, h.channel, &info) != 0 || info.data != h.data) c.errors++;
          }
          if (last_freed != 0 && m->Lookup(last_freed, &info) == Status::kOk) {
            // Only an id whose index was re-issued 2^20 times could be live again.
            c.errors++;
          }
          const uint64_t forged = rng.Next() & ((1ull << 53) - 1);
          if (m->Lookup(forged, &info) == Status::kOk) c.errors++;
        } else if (r < 94 && !mine.empty()) {
          // Cross-channel attempt: refused, the handle stays live.
          const Live& h = mine[rng.Below(mine.size())];
          const int32_t wrong = h.channel == ch[2] ? ch[1] : ch[2];
          if (m->Free(h.id, wrong, FreeReason::kDeallocate, nullptr, nullptr) != Status::kIsolationViolation) {
            c.errors++;
          }
          c.cross++;
        } else if (mine.size() < 200) {
          allocate(limited, 32768 + rng.Below(65536));  // push the limited channel against its limit
        }
      }
      leftovers[th] = std::move(mine);
    });
  }
  for (auto& t : threads) t.join();
  const double secs = testing::SecondsSince(t0);
  stop.store(true);
  watcher.join();

  Counts total;
  for (auto& c : counts) {
    total.allocs += c.allocs;
    total.frees += c.frees;
    total.handoffs += c.handoffs;
    total.foreign_frees += c.foreign_frees;
    total.validates += c.validates;
    total.limit_hits += c.limit_hits;
    total.cross += c.cross;
    total.errors += c.errors;
    total.bad_stamps += c.bad_stamps;
    total.bad_refusals += c.bad_refusals;
  }
  CHECK_EQ(total.errors, uint64_t{0}) << "unexpected statuses";
  CHECK_EQ(total.bad_stamps, uint64_t{0}) << "a slot was handed out twice (stamp overwritten)";
  CHECK_EQ(total.bad_refusals, uint64_t{0}) << "refusals only by the limited channel, with coherent details";
  CHECK(total.limit_hits > 0) << "the hard limit was exercised";
  CHECK(max_bytes_seen.load() <= kLimitBytes) << "usage seen above the hard limit: " << max_bytes_seen.load();
  CHECK(max_handles_seen.load() <= kLimitHandles) << "handles seen above the limit: " << max_handles_seen.load();
  CHECK(m->ChannelUsage(limited).peak_bytes <= kLimitBytes) << "peak " << m->ChannelUsage(limited).peak_bytes;

  // Every live handle: the thread leftovers plus whatever sits in the exchange ring.
  std::vector<Live> live;
  for (auto& v : leftovers) live.insert(live.end(), v.begin(), v.end());
  Live h;
  while (exchange.TryPop(&h)) live.push_back(h);
  uint64_t sum_all = 0, pooled = 0;
  for (int k = 0; k < 4; ++k) {
    uint64_t bytes = 0, handles = 0;
    for (const Live& x : live) {
      if (x.channel != ch[k]) continue;
      bytes += x.charged;
      ++handles;
    }
    const LedgerUsage u = m->ChannelUsage(ch[k]);
    CHECK_EQ(u.bytes, bytes) << "ledger == sum of live charges, channel " << ch[k];
    CHECK_EQ(u.handles, handles) << "channel " << ch[k];
    uint64_t rh = 0, rb = 0;
    m->RecountChannel(ch[k], &rh, &rb);
    CHECK_EQ(rh, handles) << "recount, channel " << ch[k];
    CHECK_EQ(rb, bytes) << "recount, channel " << ch[k];
    sum_all += bytes;
  }
  for (const Live& x : live) pooled += x.pool >= 0;
  CHECK_EQ(m->TypeUsage(0, kTypeTotal).bytes, sum_all) << "type total == sum over channels";
  ManagerSnapshot s;
  m->Snapshot(&s);
  CHECK_EQ(s.handles, uint64_t{live.size()});
  uint64_t pool_live = 0;
  for (const auto& p : s.pools) pool_live += p.live_slots;
  CHECK_EQ(pool_live, pooled) << "every pooled slot accounted for";
  CHECK_EQ(s.allocations - s.deallocations, uint64_t{live.size()});

  uint64_t bad = 0;
  for (const Live& x : live) {
    if (!StampIntact(x)) ++bad;
    if (m->Free(x.id, x.channel, FreeReason::kDeallocate, nullptr, nullptr) != Status::kOk) ++bad;
  }
  CHECK_EQ(bad, uint64_t{0}) << "final frees";
  // The workers' slot caches were emptied as they exited; this thread's still holds slots.
  m->Snapshot(&s);
  for (const auto& p : s.pools) {
    CHECK_EQ(p.live_slots, uint64_t{0}) << p.name << " (cached slots count as free)";
    CHECK(p.retained_free_slots <= 2ull * p.queue_size + 2ull * kMagazineSlots) << p.name << " (plus one magazine per set)";
  }
  m->FlushThreadCaches();
  m->Snapshot(&s);
  CHECK_EQ(s.handles, uint64_t{0});
  CHECK_EQ(s.bytes_in_use, uint64_t{0});
  CHECK_EQ(s.requested_bytes, uint64_t{0});
  CHECK_EQ(s.direct.reserved_bytes, uint64_t{0}) << "direct mappings all returned";
  for (int k = 0; k < 4; ++k) CHECK_EQ(m->ChannelUsage(ch[k]).bytes, uint64_t{0});
  for (const auto& p : s.pools) {
    CHECK_EQ(p.live_slots, uint64_t{0}) << p.name;
    CHECK(p.retained_free_slots <= 2ull * p.queue_size) << p.name << " (one queue per slab set)";
    const double frag =
        p.reserved_bytes == 0 ? 0 : 1 - double(p.retained_free_slots * p.slot_size) / double(p.reserved_bytes);
    CHECK(frag < 0.05) << p.name << " fragmentation after the run " << frag << " reserved " << p.reserved_bytes;
  }
  std::cout << "  " << threads_n << " threads x " << ops << " ops = " << threads_n * ops << " ops in " << secs
            << " s (" << (secs * 1e9 / double(threads_n * ops)) << " ns/op)\n"
            << "  allocs " << total.allocs << ", frees " << total.frees << " (cross-thread " << total.foreign_frees
            << "), validates " << total.validates << ", cross-channel " << total.cross << ", limit hits "
            << total.limit_hits << ", live at end " << live.size() << "\n"
            << "  limited channel: peak " << m->ChannelUsage(limited).peak_bytes << " <= " << kLimitBytes
            << ", max handles seen " << max_handles_seen.load() << " <= " << kLimitHandles << "\n"
            << "  allocate p50/p99/p999 ns: " << s.allocate_latency.Quantile(0.5) << " / "
            << s.allocate_latency.Quantile(0.99) << " / " << s.allocate_latency.Quantile(0.999) << std::endl;
  m->Unref();
}

TEST(CloseRacesWithAllocateAndFree) {
  const uint64_t rounds = testing::EnvU64("ISOPOOL_CLOSE_ROUNDS", 300);
  Manager* m = nullptr;
  ManagerConfig cfg;
  cfg.pools = {{"small", 4096, 64}};
  CHECK(Manager::Create(cfg, &m) == Status::kOk);
  uint64_t errors = 0;
  std::atomic<uint64_t> stale_data{0};
  for (uint64_t r = 0; r < rounds; ++r) {
    int32_t c = -1;
    bool created;
    CHECK(m->OpenChannel("racy", ChannelOptions{}, &c, &created) == Status::kOk);
    std::atomic<bool> go{false};
    std::atomic<uint64_t> freed_by_threads{0};
    std::vector<std::thread> workers;
    for (int w = 0; w < 2; ++w) {
      workers.emplace_back([&] {
        while (!go.load()) std::this_thread::yield();
        for (int i = 0; i < 50; ++i) {
          Allocation a;
          const Status s = m->Allocate(0, 100, c, &a);
          if (s == Status::kChannelClosed) break;
          if (s != Status::kOk) continue;
          // A slot reaches this incarnation zeroed, or stamped by this incarnation's own writes
          // (a slot freed in this round): never carrying an earlier round's stamp.
          uint64_t seen;
          std::memcpy(&seen, a.data, 8);
          if (seen != 0 && seen != r + 1) stale_data++;
          const uint64_t stamp = r + 1;
          std::memcpy(a.data, &stamp, 8);
          if (i % 2 == 0 && m->Free(a.id, c, FreeReason::kDeallocate, nullptr, nullptr) == Status::kOk) {
            freed_by_threads++;
          }
        }
      });
    }
    go.store(true);
    std::vector<HandleInfo> freed;
    if (m->CloseChannel(c, &freed) != Status::kOk) ++errors;
    for (auto& w : workers) w.join();
    uint64_t h = 0, b = 0;
    m->RecountChannel(c, &h, &b);
    if (h != 0) ++errors;  // nothing of the closed channel survives
  }
  ManagerSnapshot s;
  m->Snapshot(&s);
  CHECK_EQ(errors, uint64_t{0});
  CHECK_EQ(stale_data.load(), uint64_t{0}) << "a reopened channel never sees an earlier incarnation's bytes";
  CHECK_EQ(s.handles, uint64_t{0}) << "close + racing allocations leave no live handle";
  CHECK_EQ(s.pools[0].live_slots, uint64_t{0});
  CHECK_EQ(s.allocations, s.deallocations);
  std::cout << "  " << rounds << " close rounds with 2 racing allocators" << std::endl;
  m->Unref();
}

TEST(CloseInStepsRacesWithFreeTransferAndAdopt) {
  // A close that finishes in steps owns every handle from BeginChannelClose on: racing frees,
  // transfers and adoptions either finished before it (the close waited for them) or are
  // refused. Every handle is freed exactly once, by a thread or by the close.
  const uint64_t rounds = testing::EnvU64("ISOPOOL_CLOSE_ROUNDS", 300) / 3 + 1;
  Manager* m = nullptr;
  ManagerConfig cfg;
  cfg.pools = {{"small", 4096, 64}};
  CHECK(Manager::Create(cfg, &m) == Status::kOk);
  uint64_t errors = 0;
  for (uint64_t r = 0; r < rounds; ++r) {
    int32_t c = -1;
    bool created;
    CHECK(m->OpenChannel("stepped", ChannelOptions{}, &c, &created) == Status::kOk);
    constexpr int kHandles = 200;
    std::vector<uint64_t> ids(kHandles);
    for (int i = 0; i < kHandles; ++i) {
      Allocation a;
      CHECK(m->Allocate(0, 100, c, &a) == Status::kOk);
      ids[i] = a.id;
    }
    for (int i = 1; i < kHandles; i += 4) CHECK(m->BeginTransfer(ids[i], nullptr) == Status::kOk);  // some in transit
    std::atomic<bool> go{false};
    std::atomic<uint64_t> freed_by_threads{0};
    std::vector<std::thread> workers;
    for (int w = 0; w < 2; ++w) {
      workers.emplace_back([&, w] {
        while (!go.load()) std::this_thread::yield();
        for (int i = w; i < kHandles; i += 2) {
          if (i % 4 == 1) {  // in transit: adopt, then free
            if (m->Adopt(ids[i], CallContext{static_cast<uint32_t>(10 + w), 0}, false, nullptr) != Status::kOk) continue;
          } else if (i % 4 == 2 && m->BeginTransfer(ids[i], nullptr) != Status::kOk) {
            continue;
          }
          if (m->Free(ids[i], c, FreeReason::kDeallocate, nullptr, nullptr) == Status::kOk) freed_by_threads++;
        }
      });
    }
    go.store(true);
    uint64_t count = 0, bytes = 0, left = 0, closed = 0;
    if (m->BeginChannelClose(c, CallContext{}, &count, &bytes) != Status::kOk) ++errors;
    std::vector<HandleInfo> freed;
    do {
      m->CloseChannelStep(c, CallContext{}, 7, &freed, &left);
    } while (left != 0);
    closed = freed.size();
    for (auto& w : workers) w.join();
    if (closed != count) ++errors;                          // the ledger counted exactly what the close freed
    if (closed + freed_by_threads.load() != kHandles) ++errors;  // each handle freed once
    uint64_t h = 0, b = 0;
    m->RecountChannel(c, &h, &b);
    if (h != 0) ++errors;
    if (m->ClosingHandles() != 0) ++errors;
    for (uint64_t id : ids) {
      if (!m->IsReleased(id)) ++errors;
    }
  }
  ManagerSnapshot s;
  m->Snapshot(&s);
  CHECK_EQ(errors, uint64_t{0});
  CHECK_EQ(s.handles, uint64_t{0});
  CHECK_EQ(s.pools[0].live_slots, uint64_t{0});
  CHECK_EQ(s.allocations, s.deallocations);
  std::cout << "  " << rounds << " stepped closes with 2 racing freeing, transferring and adopting threads" << std::endl;
  m->Unref();
}

// Another thread closes a channel while slots the channel freed sit in a worker's cache (its
// magazine), and the channel is reopened: the worker's next allocations come from that cache,
// zeroed for the new incarnation, and every ledger stays exact. The worker then exits.
TEST(ChannelClosedWhileItsSlotsSitInACache) {
  const uint64_t rounds = testing::EnvU64("ISOPOOL_CLOSE_ROUNDS", 300) / 6 + 1;
  Manager* m = nullptr;
  ManagerConfig cfg;
  cfg.pools = {{"small", 4096, 64}};
  CHECK(Manager::Create(cfg, &m) == Status::kOk);
  {
    int32_t warm = -1;
    bool created;
    Allocation a;
    CHECK(m->OpenChannel("warm", ChannelOptions{}, &warm, &created) == Status::kOk);
    CHECK(m->Allocate(0, 4096, warm, &a) == Status::kOk);  // this thread uses the pool first
    CHECK(m->Free(a.id, warm, FreeReason::kDeallocate, nullptr, nullptr) == Status::kOk);
  }
  constexpr int kFreed = 12, kLive = 4, kAgain = 16;
  uint64_t reused = 0;
  for (uint64_t r = 0; r < rounds; ++r) {
    int32_t c = -1;
    bool created;
    CHECK(m->OpenChannel("tenant", ChannelOptions{}, &c, &created) == Status::kOk);
    std::mutex mu;
    std::condition_variable cv;
    int stage = 0;
    auto advance = [&](int to) {
      std::lock_guard<std::mutex> lock(mu);
      stage = to;
      cv.notify_all();
    };
    auto wait_for = [&](int at) {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return stage == at; });
    };
    int32_t reopened = -1;
    uint64_t nonzero = 0, again_reused = 0;
    std::vector<uint64_t> again_ids;
    std::thread worker([&] {
      std::set<uint8_t*> freed_slots;
      std::vector<Allocation> held(kFreed + kLive);
      for (Allocation& a : held) {
        CHECK(m->Allocate(0, 4096, c, &a) == Status::kOk);
        std::memset(a.data, 0xAB, 4096);  // the old tenant's secret, over the whole slot
      }
      for (int i = 0; i < kFreed; ++i) {
        freed_slots.insert(held[i].data);
        CHECK(m->Free(held[i].id, c, FreeReason::kDeallocate, nullptr, nullptr) == Status::kOk);
      }
      advance(1);  // freed slots sit in this thread's cache; kLive handles stay live
      wait_for(2);
      for (int i = 0; i < kAgain; ++i) {
        Allocation a;
        CHECK(m->Allocate(0, 4096, reopened, &a) == Status::kOk);
        for (int b = 0; b < 4096; ++b) nonzero += a.data[b] != 0;
        again_reused += freed_slots.count(a.data);
        again_ids.push_back(a.id);
      }
      advance(3);
      wait_for(4);
      for (uint64_t id : again_ids) CHECK(m->Free(id, reopened, FreeReason::kDeallocate, nullptr, nullptr) == Status::kOk);
    });
    wait_for(1);
    std::vector<HandleInfo> freed;
    CHECK(m->CloseChannel(c, &freed) == Status::kOk);
    CHECK_EQ(freed.size(), size_t{kLive}) << "the close frees what was live, not what sits in a cache";
    CHECK(m->OpenChannel("tenant", ChannelOptions{}, &reopened, &created) == Status::kOk);
    advance(2);
    wait_for(3);
    CHECK_EQ(nonzero, uint64_t{0}) << "round " << r << ": the reopened channel saw the old tenant's bytes";
    const LedgerUsage u = m->ChannelUsage(reopened);
    uint64_t h = 0, b = 0;
    m->RecountChannel(reopened, &h, &b);
    CHECK_EQ(u.handles, uint64_t{kAgain});
    CHECK_EQ(u.bytes, uint64_t{kAgain} * 4096);
    CHECK(h == u.handles && b == u.bytes) << "ledger agrees with a recount";
    ManagerSnapshot s;
    m->Snapshot(&s);
    CHECK_EQ(s.pools[0].live_slots, uint64_t{kAgain}) << "cached slots are not counted live";
    advance(4);
    worker.join();
    CHECK(m->CloseChannel(reopened, &freed) == Status::kOk);
    reused += again_reused;
  }
  ManagerSnapshot s;
  m->Snapshot(&s);
  CHECK(reused > 0) << "the reopened channel was served from the worker's cache";
  CHECK_EQ(s.handles, uint64_t{0});
  CHECK_EQ(s.pools[0].live_slots, uint64_t{0});
  CHECK(s.pools[0].retained_free_slots <= 64u + kMagazineSlots) << "only this thread's cache is left";
  m->FlushThreadCaches();
  m->Snapshot(&s);
  CHECK(s.pools[0].retained_free_slots <= 64u) << "every worker's cache was emptied when it exited";
  std::cout << "  " << rounds << " closes by another thread with slots in a worker's cache; " << reused
            << " slots served again from that cache, all zeroed" << std::endl;
  m->Unref();
}

TEST_MAIN()
