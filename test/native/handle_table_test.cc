// handle_table_test.cc — ids, forged vs stale, generations, CAS one-winner
// races, lazy growth and the random-forgery bound.
#include "handle_table.h"

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "test_util.h"

using isopool::EntryState;
using isopool::FreeReason;
using isopool::HandleRecord;
using isopool::HandleTable;
using isopool::IdProbe;
using isopool::Status;

namespace {

uint64_t Publish(HandleTable& t, int32_t channel, uint32_t* index_out = nullptr) {
  uint32_t index = 0;
  if (t.Reserve(&index) != Status::kOk) return 0;
  HandleRecord rec;
  rec.channel = channel;
  rec.size = 100 + index;
  if (index_out) *index_out = index;
  return t.Publish(index, rec);
}

bool FreeId(HandleTable& t, uint64_t id, FreeReason reason = FreeReason::kDeallocate) {
  IdProbe p = t.Probe(id);
  if (p.kind != IdProbe::kLive && p.kind != IdProbe::kTransit) return false;
  if (!t.TryTransition(p.index, p.state, EntryState::kFreeing)) return false;
  t.FinishFree(p.index, reason);
  return true;
}

}  // namespace

TEST(IdLayoutAndRecord) {
  HandleTable t(HandleTable::RandomSecret());
  uint32_t index = 0;
  const uint64_t id = Publish(t, 7, &index);
  CHECK(id != 0) << "publish returns an id";
  CHECK(id < (1ull << 53)) << "ids are safe integers";
  CHECK_EQ(uint32_t(id >> 32), index) << "index in bits 52..32";
  CHECK_EQ(uint32_t((id >> 12) & 0xfffff), 1u) << "first generation is 1";
  IdProbe p = t.Probe(id);
  CHECK_EQ(int(p.kind), int(IdProbe::kLive));
  HandleRecord rec;
  CHECK(t.ReadRecord(p.index, p.state, &rec));
  CHECK_EQ(rec.channel, 7);
  CHECK_EQ(rec.size, uint64_t{100} + index);
}

TEST(ForgedIds) {
  HandleTable t(HandleTable::RandomSecret());
  const uint64_t id = Publish(t, 1);
  CHECK_EQ(int(t.Probe(0).kind), int(IdProbe::kForged)) << "id 0 is never issued";
  CHECK_EQ(int(t.Probe(id ^ 1).kind), int(IdProbe::kForged)) << "one check bit flipped";
  CHECK_EQ(int(t.Probe(id ^ 0x800).kind), int(IdProbe::kForged)) << "top check bit flipped";
  CHECK_EQ(int(t.Probe(id | (1ull << 53)).kind), int(IdProbe::kForged)) << ">= 2^53";
  // Index beyond the high-water mark, with valid check bits.
  CHECK_EQ(int(t.Probe(t.MakeId(1000, 1)).kind), int(IdProbe::kForged)) << "index never handed out";
  // A generation the entry never reached (uses == 1), with valid check bits.
  const uint32_t index = uint32_t(id >> 32);
  CHECK_EQ(int(t.Probe(t.MakeId(index, 5)).kind), int(IdProbe::kForged)) << "generation 5 never reached";
  CHECK_EQ(int(t.Probe(t.MakeId(index, 0)).kind), int(IdProbe::kForged)) << "generation 0 never issued";
  // Another table's secret gives different check bits.
  HandleTable other(HandleTable::RandomSecret() ^ 0x5555);
  int differing = 0;
  for (uint32_t g = 1; g < 200; ++g) differing += other.MakeId(index, g) != t.MakeId(index, g);
  CHECK(differing > 150) << "check bits depend on the secret: " << differing << "/199 differ";
}

TEST(StaleAndDoubleFree) {
  HandleTable t(HandleTable::RandomSecret());
  const uint64_t id = Publish(t, 1);
  CHECK(FreeId(t, id)) << "first free wins";
  CHECK(!FreeId(t, id)) << "double free refused";
  IdProbe p = t.Probe(id);
  CHECK_EQ(int(p.kind), int(IdProbe::kStale)) << "freed id is stale";
  CHECK(p.same_generation);
  CHECK(!p.closed_by_channel) << "freed by a plain deallocate";
  // Freed by channel close: reported even after the index was reused.
  const uint64_t id2 = Publish(t, 2);
  CHECK(FreeId(t, id2, FreeReason::kChannelClose));
  CHECK(t.Probe(id2).closed_by_channel) << "CHANNEL_CLOSED right after close";
  std::vector<uint64_t> later;
  for (int i = 0; i < 10000; ++i) later.push_back(Publish(t, 3));  // reuses indices
  for (uint64_t x : later) FreeId(t, x);
  for (int i = 0; i < 10000; ++i) later.push_back(Publish(t, 3));
  const IdProbe p2 = t.Probe(id2);
  CHECK_EQ(int(p2.kind), int(IdProbe::kStale)) << "still stale after reuse";
  CHECK(p2.closed_by_channel) << "still CHANNEL_CLOSED after its index was reused";
  CHECK_EQ(int(t.Probe(id).kind), int(IdProbe::kStale)) << "old id still stale";
}

TEST(TransitTransitions) {
  HandleTable t(HandleTable::RandomSecret());
  const uint64_t id = Publish(t, 1);
  IdProbe p = t.Probe(id);
  CHECK(t.TryTransition(p.index, p.state, EntryState::kTransit));
  CHECK(!t.TryTransition(p.index, p.state, EntryState::kTransit)) << "stale expected state loses";
  p = t.Probe(id);
  CHECK_EQ(int(p.kind), int(IdProbe::kTransit));
  CHECK(t.TryTransition(p.index, p.state, EntryState::kLive)) << "adopt";
  CHECK_EQ(int(t.Probe(id).kind), int(IdProbe::kLive));
}

TEST(CensusCountsLiveAndTransitPerIncarnation) {
  // CountChannel (verifyResourceIsolation's recount) against a model kept by the test, over
  // random publishes, frees, transits and adoptions across segments, channels and owners.
  HandleTable t(HandleTable::RandomSecret(), /*quarantine=*/0);
  struct Live {
    uint64_t id;
    int32_t channel;
    uint32_t owner;
    uint64_t charged;
    bool transit;
  };
  std::vector<Live> live;
  uint64_t seed = 12345;
  auto next = [&seed]() {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(seed >> 33);
  };
  auto check = [&](int op) {
    for (int32_t channel = 1; channel <= 3; ++channel) {
      for (uint32_t owner = 1; owner <= 2; ++owner) {
        uint64_t want_h = 0, want_c = 0;
        for (const Live& l : live) {
          if (l.channel == channel && l.owner == owner) {
            ++want_h;
            want_c += l.charged;
          }
        }
        uint64_t h = 0, c = 0;
        t.CountChannel(channel, owner, &h, &c);
        CHECK_EQ(h, want_h) << "handles of channel " << channel << "/" << owner << " after op " << op;
        CHECK_EQ(c, want_c) << "charges of channel " << channel << "/" << owner << " after op " << op;
      }
    }
  };
  for (int op = 0; op < 25000; ++op) {
    const uint32_t r = next() % 10;
    if (r < 5 || live.empty() || op < 5000) {  // first 5,000: fill past one segment
      uint32_t index = 0;
      CHECK(t.Reserve(&index) == Status::kOk);
      if (r == 0 && op >= 5000) {  // reserved, then rolled back: never counted
        t.Unreserve(index);
        continue;
      }
      HandleRecord rec;
      rec.channel = static_cast<int32_t>(1 + next() % 3);
      rec.owner = 1 + next() % 2;
      rec.charged = 4096 * (1 + next() % 16);
      live.push_back(Live{t.Publish(index, rec), rec.channel, rec.owner, rec.charged, false});
    } else {
      const size_t k = next() % live.size();
      Live& l = live[k];
      IdProbe p = t.Probe(l.id);
      if (r == 9) {  // in transit and back: still counted
        CHECK(t.TryTransition(p.index, p.state, l.transit ? EntryState::kLive : EntryState::kTransit));
        l.transit = !l.transit;
      } else {
        CHECK(t.TryTransition(p.index, p.state, EntryState::kFreeing));
        live[k] = live.back();
        live.pop_back();
        if (r == 8) check(op);  // claimed but not finished: no longer counted
        t.FinishFree(p.index, FreeReason::kDeallocate);
      }
    }
    if (op % 97 == 0) check(op);
  }
  CHECK(t.HighWater() > HandleTable::kSegmentSize) << "the census spans segments";
  check(-1);
}

TEST(QuarantineSpreadsReuse) {
  HandleTable t(HandleTable::RandomSecret());
  const uint64_t first = Publish(t, 1);
  const uint32_t index = uint32_t(first >> 32);
  FreeId(t, first);
  uint64_t reused = 0;
  for (uint32_t k = 0; k < HandleTable::kQuarantine; ++k) {
    const uint64_t id = Publish(t, 1);
    reused += uint32_t(id >> 32) == index;
    FreeId(t, id);
  }
  CHECK_EQ(reused, uint64_t{0}) << "a freed index waits behind kQuarantine frees before reuse";
  CHECK(t.HighWater() <= HandleTable::kQuarantine + 3) << "bounded growth: " << t.HighWater();
}

TEST(GenerationsLastAMillionReuses) {
  HandleTable t(HandleTable::RandomSecret(), /*quarantine=*/0);  // LIFO: same index every time
  const uint64_t first = Publish(t, 1);
  const uint32_t index = uint32_t(first >> 32);
  FreeId(t, first);
  // Drive the same index through 2^20 - 1 more generations by freeing and
  // re-reserving until the table hands `index` back (it cycles through the quarantine).
  uint64_t reuses = 0, checked_bad = 0;
  std::vector<uint32_t> parked;
  while (reuses < (1u << 20) - 1) {
    uint32_t i = 0;
    CHECK(t.Reserve(&i) == Status::kOk);
    HandleRecord rec;
    const uint64_t id = t.Publish(i, rec);
    if (i == index) {
      ++reuses;
      if (t.Probe(first).kind != IdProbe::kStale) ++checked_bad;
    }
    FreeId(t, id);
  }
  CHECK_EQ(checked_bad, uint64_t{0}) << "the first id stayed stale for 2^20 - 1 reuses of its index";
  std::cout << "  index " << index << " reused " << reuses << " times, high water " << t.HighWater() << std::endl;
}

TEST(LazySegmentsAndUniqueness) {
  HandleTable t(HandleTable::RandomSecret());
  std::set<uint32_t> indices;
  std::vector<uint64_t> ids;
  for (int i = 0; i < 10000; ++i) {
    uint32_t index = 0;
    ids.push_back(Publish(t, 1, &index));
    indices.insert(index);
  }
  CHECK_EQ(indices.size(), size_t{10000}) << "live indices are unique";
  CHECK(t.HighWater() <= 10001u) << "high water " << t.HighWater();
  for (uint64_t id : ids) CHECK(FreeId(t, id));
}

TEST(ConcurrentOneWinner) {
  const uint64_t rounds = testing::EnvU64("ISOPOOL_TABLE_RACE_ROUNDS", 20000);
  HandleTable t(HandleTable::RandomSecret());
  std::atomic<uint64_t> current{0};
  std::atomic<uint64_t> wins{0};
  std::atomic<uint64_t> round{0};
  std::atomic<int> arrived{0};
  const int racers = 4;
  std::vector<std::thread> threads;
  for (int r = 0; r < racers; ++r) {
    threads.emplace_back([&] {
      for (uint64_t k = 1; k <= rounds; ++k) {
        while (round.load(std::memory_order_acquire) < k) std::this_thread::yield();
        const uint64_t id = current.load(std::memory_order_acquire);
        if (FreeId(t, id)) wins.fetch_add(1);
        arrived.fetch_add(1, std::memory_order_acq_rel);
      }
    });
  }
  for (uint64_t k = 1; k <= rounds; ++k) {
    current.store(Publish(t, 1), std::memory_order_release);
    round.store(k, std::memory_order_release);
    while (arrived.load(std::memory_order_acquire) < int(k * racers)) std::this_thread::yield();
  }
  for (auto& th : threads) th.join();
  CHECK_EQ(wins.load(), rounds) << "exactly one of " << racers << " racing frees wins each round";
  std::cout << "  " << rounds << " rounds x " << racers << " racers" << std::endl;
}

TEST(ConcurrentReserveRelease) {
  const uint64_t ops = testing::EnvU64("ISOPOOL_TABLE_OPS", 1000000);
  HandleTable t(HandleTable::RandomSecret());
  const int threads_n = 4;
  std::vector<std::vector<uint8_t>> owned(threads_n);
  std::atomic<uint64_t> errors{0};
  std::vector<std::atomic<int32_t>> holder(1 << 16);
  for (auto& h : holder) h.store(-1);
  std::vector<std::thread> threads;
  for (int th = 0; th < threads_n; ++th) {
    threads.emplace_back([&, th] {
      testing::Rng rng(th + 1);
      std::vector<uint64_t> mine;
      for (uint64_t i = 0; i < ops; ++i) {
        if (mine.size() < 64 && (mine.empty() || rng.Below(2) == 0)) {
          uint32_t index = 0;
          const uint64_t id = Publish(t, th, &index);
          int32_t expected = -1;
          if (index >= holder.size() || !holder[index].compare_exchange_strong(expected, th)) errors++;
          mine.push_back(id);
        } else {
          const size_t k = rng.Below(mine.size());
          const uint64_t id = mine[k];
          mine[k] = mine.back();
          mine.pop_back();
          const uint32_t index = uint32_t(id >> 32);
          if (index < holder.size()) holder[index].store(-1);
          if (!FreeId(t, id)) errors++;
        }
      }
      for (uint64_t id : mine) {
        holder[uint32_t(id >> 32)].store(-1);
        if (!FreeId(t, id)) errors++;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK_EQ(errors.load(), uint64_t{0}) << "no index is live twice; every free succeeds";
  std::cout << "  " << threads_n << " threads x " << ops << " reserve/free ops, high water " << t.HighWater()
            << std::endl;
}

TEST(ThreadsTakeIndicesInRunsAndGiveBackWhatTheyLeave) {
  HandleTable t(HandleTable::RandomSecret());
  FreeId(t, Publish(t, 0));  // the first thread: a second one turns the threads' caches on
  const int per_thread = 100;  // one full run and part of a second
  std::vector<uint32_t> got[2];
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int th = 0; th < 2; ++th) {
    threads.emplace_back([&, th] {
      ready.fetch_add(1);
      while (ready.load() < 2) std::this_thread::yield();  // both reserve at the same time
      std::vector<uint64_t> ids;
      for (int i = 0; i < per_thread; ++i) {
        uint32_t index = 0;
        ids.push_back(Publish(t, th, &index));
        got[th].push_back(index);
      }
      for (uint64_t id : ids) FreeId(t, id);
    });
  }
  for (auto& th : threads) th.join();
  std::set<uint32_t> used;
  for (int th = 0; th < 2; ++th) {
    int breaks = 0;
    for (size_t i = 1; i < got[th].size(); ++i) breaks += got[th][i] != got[th][i - 1] + 1;
    CHECK(breaks <= 2) << "thread " << th << " took its indices in runs, not interleaved (" << breaks
                       << " breaks)";
    used.insert(got[th].begin(), got[th].end());
  }
  CHECK_EQ(used.size(), size_t{2 * per_thread}) << "no index was handed to both threads";
  // What the runs held and no handle used went back on the stack when the threads exited:
  // the next reserves take exactly those before the high-water mark moves.
  const uint32_t high = t.HighWater();
  std::set<uint32_t> left;
  for (uint32_t i = 2; i < high; ++i) {
    if (used.count(i) == 0) left.insert(i);
  }
  CHECK(!left.empty()) << "the threads left part of a run";
  std::set<uint32_t> again;
  for (size_t i = 0; i < left.size(); ++i) {
    uint32_t index = 0;
    CHECK(t.Reserve(&index) == Status::kOk);
    again.insert(index);
  }
  CHECK(again == left) << "every index of the leaving threads' runs was reserved again";
  CHECK_EQ(t.HighWater(), high) << "before any fresh index";
  for (uint32_t index : again) t.Unreserve(index);
}

TEST(AnExitedThreadsQuarantineIsAdoptedWhole) {
  HandleTable t(HandleTable::RandomSecret());
  FreeId(t, Publish(t, 0));  // the first thread: a second one turns the threads' caches on
  // Two threads fill their quarantines and exit together; two later ones take indices in turn.
  // Each later thread must adopt one whole quarantine: its indices all come from one exited
  // thread, and the two take different ones (not both from the shared quarantine or stack).
  std::set<uint32_t> sets[4];
  auto run_pair = [&](int first, bool publish_all) {
    std::atomic<int> turn{0};
    std::vector<std::thread> pair;
    for (int th = first; th < first + 2; ++th) {
      pair.emplace_back([&, th] {
        // The first pair holds all its handles, then frees them (a full quarantine each); the
        // later pair frees each handle at once (a full quarantine gives its oldest index).
        const uint32_t n = publish_all ? HandleTable::kQuarantine : 200;
        std::vector<uint64_t> ids;
        for (uint32_t i = 0; i < n; ++i) {
          while (turn.load() % 2 != th - first) std::this_thread::yield();  // alternate
          uint32_t index = 0;
          ids.push_back(Publish(t, th, &index));
          sets[th].insert(index);
          if (!publish_all) FreeId(t, ids.back());
          turn.fetch_add(1);
        }
        if (publish_all) {
          for (uint64_t id : ids) FreeId(t, id);
        }
      });
    }
    for (auto& th : pair) th.join();
  };
  run_pair(0, true);
  run_pair(2, false);
  auto within = [&](int later, int exited) {
    return std::includes(sets[exited].begin(), sets[exited].end(), sets[later].begin(), sets[later].end());
  };
  CHECK((within(2, 0) && within(3, 1)) || (within(2, 1) && within(3, 0)))
      << "each later thread took all its indices from one exited thread's quarantine, the two from different ones";
}

TEST(RandomSafeIntegersRejected) {
  const uint64_t samples = testing::EnvU64("ISOPOOL_FORGERY_SAMPLES", 10000000);
  HandleTable t(HandleTable::RandomSecret());
  std::vector<uint64_t> live;
  for (int i = 0; i < 100000; ++i) live.push_back(Publish(t, 1));
  testing::Rng rng(0xfeedface);
  uint64_t accepted = 0;
  for (uint64_t i = 0; i < samples; ++i) {
    const uint64_t x = rng.Next() & ((1ull << 53) - 1);
    const IdProbe::Kind k = t.Probe(x).kind;
    accepted += k == IdProbe::kLive || k == IdProbe::kTransit;
  }
  CHECK_EQ(accepted, uint64_t{0}) << "random safe integers accepted";
  // Same with ids whose index is known live (the attacker knows the index range).
  uint64_t accepted_near = 0;
  for (uint64_t i = 0; i < samples / 10; ++i) {
    const uint64_t base = live[rng.Below(live.size())];
    const uint64_t x = (base & ~0xffffffffull) | (rng.Next() & 0xffffffffull);
    if (x != base && t.Probe(x).kind == IdProbe::kLive) ++accepted_near;
  }
  CHECK(accepted_near <= 1) << "ids with a live index and random low 32 bits: " << accepted_near;
  std::cout << "  " << samples << " random safe integers + " << samples / 10
            << " same-index guesses probed against 100000 live handles" << std::endl;
}

TEST_MAIN()
