// mpmc_ring_test.cc — MpmcRing: bounds, FIFO order, and a threaded run that
// checks every value is delivered exactly once (sum and per-value counts).
#include "mpmc_ring.h"

#include <deque>
#include <thread>
#include <vector>

#include "test_util.h"

using isopool::MpmcRing;

TEST(CapacityIsExactAndFifo) {
  MpmcRing<uint64_t> ring;
  CHECK(ring.Init(5)) << "5 cells (not a power of two) must initialise";
  for (uint64_t i = 0; i < 5; ++i) CHECK(ring.TryPush(i)) << "push " << i << " fits";
  CHECK(!ring.TryPush(99)) << "a 6th push must fail: capacity is exactly 5";
  CHECK_EQ(ring.SizeApprox(), size_t{5});
  for (int lap = 0; lap < 3; ++lap) {
    uint64_t v = 0;
    CHECK(ring.TryPop(&v));
    CHECK_EQ(v, uint64_t(lap)) << "FIFO order";
    CHECK(ring.TryPush(100 + lap)) << "room after a pop";
  }
  std::vector<uint64_t> rest;
  uint64_t v = 0;
  while (ring.TryPop(&v)) rest.push_back(v);
  const std::vector<uint64_t> expect = {3, 4, 100, 101, 102};
  CHECK(rest == expect) << "remaining values in FIFO order across laps";
  CHECK(!ring.TryPop(&v)) << "empty ring pops nothing";
}

TEST(CapacityOneHoldsTwoAndNeverOverwrites) {
  // Vyukov's sequence numbers need two cells: with one, a second push overwrote the first value
  // and the next pop spun forever. Capacity 1 is rounded up to 2.
  MpmcRing<uint64_t> ring;
  CHECK(ring.Init(1));
  CHECK(ring.TryPush(1));
  CHECK(ring.TryPush(2)) << "two cells";
  CHECK(!ring.TryPush(3)) << "a third push is refused, not written over the first";
  for (uint64_t lap = 0; lap < 4; ++lap) {
    uint64_t v = 0;
    CHECK(ring.TryPop(&v)) << "lap " << lap;
    CHECK_EQ(v, lap + 1) << "FIFO, nothing lost";
    CHECK(ring.TryPush(lap + 3));
  }
  uint64_t v = 0;
  CHECK(ring.TryPop(&v) && v == 5);
  CHECK(ring.TryPop(&v) && v == 6);
  CHECK(!ring.TryPop(&v)) << "empty";
}

TEST(ZeroCapacity) {
  MpmcRing<uint32_t> ring;
  CHECK(ring.Init(0));
  uint32_t v = 0;
  CHECK(!ring.TryPush(1)) << "capacity 0: every push fails";
  CHECK(!ring.TryPop(&v)) << "capacity 0: every pop fails";
}

TEST(SingleOwnerRingMatchesAFifoModel) {
  // The single-owner ring packs its values in a plain array: random pushes and pops, many laps
  // over capacities that are and are not powers of two, against a deque with the same bound.
  for (const size_t capacity : {size_t{0}, size_t{1}, size_t{2}, size_t{5}, size_t{64}, size_t{4097}}) {
    MpmcRing<uint32_t> ring;
    CHECK(ring.Init(capacity, /*single_owner=*/true)) << "capacity " << capacity;
    const size_t bound = capacity == 1 ? 2 : capacity;  // 1 rounds up to 2, as a shared ring
    CHECK_EQ(ring.capacity(), bound);
    std::deque<uint32_t> model;
    uint64_t rng = 0x9E3779B97F4A7C15ull ^ capacity;
    uint32_t next = 1;
    for (int step = 0; step < 200000; ++step) {
      rng ^= rng << 13;
      rng ^= rng >> 7;
      rng ^= rng << 17;
      // Push-heavy phases and pop-heavy phases, so the ring fills and empties across laps.
      const bool push = ((rng >> 8) % 100) < ((step / 5000) % 2 == 0 ? 70u : 30u);
      if (push) {
        const bool pushed = ring.TryPush(next);
        CHECK_EQ(pushed, model.size() < bound) << "push at size " << model.size() << ", capacity " << capacity;
        if (pushed) model.push_back(next);
        ++next;
      } else {
        uint32_t v = 0;
        const bool popped = ring.TryPop(&v);
        CHECK_EQ(popped, !model.empty()) << "pop at size " << model.size() << ", capacity " << capacity;
        if (popped) {
          CHECK_EQ(v, model.front()) << "FIFO order, capacity " << capacity;
          model.pop_front();
        }
      }
      CHECK_EQ(ring.SizeApprox(), model.size());
    }
  }
}

// Trivially copyable "lifetime" token: producer id + sequence + checksum.
struct Token {
  uint32_t producer;
  uint32_t seq;
  uint64_t check;
};

TEST(ThreadedExactlyOnce) {
  const uint64_t per_producer = testing::EnvU64("ISOPOOL_RING_OPS", 1000000);
  const int producers = 2, consumers = 2;
  MpmcRing<Token> ring;
  CHECK(ring.Init(64));
  std::vector<std::vector<uint8_t>> seen(producers, std::vector<uint8_t>(per_producer, 0));
  std::atomic<uint64_t> popped{0}, sum{0}, bad{0};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (uint32_t i = 0; i < per_producer; ++i) {
        Token t{static_cast<uint32_t>(p), i, (uint64_t(p) << 32 | i) * 0x9e3779b97f4a7c15ull};
        while (!ring.TryPush(t)) std::this_thread::yield();
      }
    });
  }
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&] {
      const uint64_t total = per_producer * producers;
      Token t;
      while (popped.load(std::memory_order_relaxed) < total) {
        if (!ring.TryPop(&t)) {
          std::this_thread::yield();
          continue;
        }
        if (t.check != (uint64_t(t.producer) << 32 | t.seq) * 0x9e3779b97f4a7c15ull) bad.fetch_add(1);
        seen[t.producer][t.seq]++;  // each (producer, seq) is popped by exactly one consumer
        sum.fetch_add(t.seq, std::memory_order_relaxed);
        popped.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (auto& th : threads) th.join();
  const uint64_t n = per_producer;
  CHECK_EQ(popped.load(), n * producers) << "every pushed value is popped";
  CHECK_EQ(sum.load(), producers * (n * (n - 1) / 2)) << "sum invariant";
  CHECK_EQ(bad.load(), uint64_t{0}) << "no torn values";
  uint64_t wrong = 0;
  for (auto& s : seen)
    for (uint8_t x : s) wrong += x != 1;
  CHECK_EQ(wrong, uint64_t{0}) << "each value delivered exactly once";
  std::cout << "  ring: " << producers << " producers x " << per_producer << " pushes, " << consumers
            << " consumers, " << testing::SecondsSince(t0) << " s" << std::endl;
}

TEST_MAIN()
