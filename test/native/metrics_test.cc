// metrics_test.cc — the latency stopwatch (TSC calibrated against CLOCK_MONOTONIC) and the
// histogram's buckets.
#include "metrics.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "test_util.h"

using isopool::LatencyBucket;
using isopool::LatencyHistogram;
using isopool::LatencySnapshot;
using isopool::NowNs;
using isopool::Stopwatch;

namespace sd = isopool::stopwatch_detail;

TEST(StopwatchAgreesWithTheSteadyClock) {
  isopool::StartStopwatchCalibration();
  // Before calibration finishes (and on CPUs without an invariant TSC) a stopwatch reads
  // CLOCK_MONOTONIC; either way its samples must agree with the clock.
  for (int round = 0; round < 2; ++round) {
    const uint64_t t0 = NowNs();
    const Stopwatch w;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));  // also passes kCalibrationNs
    const uint64_t sample = w.ElapsedNs();
    const uint64_t clock = NowNs() - t0;
    const double ratio = static_cast<double>(sample) / static_cast<double>(clock);
    CHECK(ratio > 0.98 && ratio < 1.02) << "round " << round << ": stopwatch " << sample
                                        << " ns vs clock " << clock << " ns";
  }
  const uint64_t q32 = sd::ns_per_tick_q32.load();
  CHECK_EQ(sd::state.load(), uint32_t{2}) << "calibration finished after kCalibrationNs";
  if (sd::InvariantTsc()) {
    CHECK(q32 != 0) << "an invariant TSC is used once calibrated";
  }
  std::cout << "  invariant TSC: " << sd::InvariantTsc() << ", ns per tick: "
            << static_cast<double>(q32) / 4294967296.0 << std::endl;
  // Short samples are never negative or absurd.
  for (int i = 0; i < 1000; ++i) {
    const Stopwatch w;
    const uint64_t ns = w.ElapsedNs();
    CHECK(ns < 100000000) << "sample " << ns;
  }
}

TEST(CoreTimestampsFollowTheSteadyClock) {
  isopool::StartStopwatchCalibration();
  std::this_thread::sleep_for(std::chrono::milliseconds(25));
  (void)Stopwatch().ElapsedNs();  // finishes the calibration if nothing else did
  CHECK_EQ(sd::state.load(), uint32_t{2});
  // A timestamp (a stopwatch's start, or now) lies where the steady clock says, and ages
  // taken between two of them match the clock's: allocation ages are such differences.
  for (int round = 0; round < 3; ++round) {
    const uint64_t before = NowNs();
    const Stopwatch w;
    const uint64_t stamp = w.StartNs();
    const uint64_t after = NowNs();
    // Calibration error over the time since the anchor: a few ppm of well under a minute.
    constexpr uint64_t kSlackNs = 2000000;
    CHECK(stamp + kSlackNs >= before && stamp <= after + kSlackNs)
        << "stamp " << stamp << " outside [" << before << ", " << after << "]";
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const uint64_t clock_age = NowNs() - before;
    const uint64_t now = isopool::CoreNowNs();
    CHECK(now >= stamp) << "the core's clock went backwards";
    const double ratio = static_cast<double>(now - stamp) / static_cast<double>(clock_age);
    CHECK(ratio > 0.98 && ratio < 1.02) << "age " << (now - stamp) << " ns vs clock " << clock_age << " ns";
  }
}

TEST(HistogramCountIsTheBucketSum) {
  LatencyHistogram h;
  for (uint64_t ns : {0ull, 1ull, 2ull, 3ull, 1000ull, 1ull << 40, ~0ull}) h.Record(ns);
  LatencySnapshot s;
  h.Snapshot(&s);
  CHECK_EQ(s.count, uint64_t{7});
  CHECK_EQ(s.buckets[0], uint64_t{2});
  CHECK_EQ(s.buckets[1], uint64_t{2});
  CHECK_EQ(s.buckets[LatencyBucket(1000)], uint64_t{1});
  CHECK_EQ(s.buckets[isopool::kLatencyBuckets - 1], uint64_t{1}) << "clamped";
  CHECK_EQ(s.buckets[40], uint64_t{1});
}

TEST(HistogramSumIsTheSamplesTotal) {
  LatencyHistogram h;
  LatencySnapshot empty;
  h.Snapshot(&empty);
  CHECK_EQ(empty.sum_ns, uint64_t{0});
  for (uint64_t ns : {0ull, 1ull, 1000ull, 123456ull, 1ull << 40}) h.Record(ns);
  LatencySnapshot s;
  h.Snapshot(&s);
  CHECK_EQ(s.count, uint64_t{5});
  CHECK_EQ(s.sum_ns, uint64_t{124457} + (1ull << 40));
}

TEST(ShardedSumsCountEveryThreadsShard) {
  // Reads sum only the private shards ever claimed (UsedShards) and the shared one. More threads
  // at once than there are private shards: some share, and every count must still be summed.
  isopool::ShardedCounters<3> counters;
  LatencyHistogram h;
  constexpr int kThreads = isopool::kStatShards + 8;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const uint32_t shard = isopool::ThisThreadShard();
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();  // all alive at once: no shard is given back early
      for (int i = 0; i < 1000; ++i) {
        counters.Add(shard, 0);
        counters.Add(shard, 1, static_cast<uint64_t>(t));
        h.Record(1000, shard);
      }
      counters.Sub(shard, 2, 5);
    });
  }
  while (ready.load() != kThreads) std::this_thread::yield();
  CHECK_EQ(isopool::UsedShards(), isopool::kStatShards) << "every private shard is in use";
  go.store(true);
  for (std::thread& th : threads) th.join();
  uint64_t weighted = 0;
  for (int t = 0; t < kThreads; ++t) weighted += 1000 * static_cast<uint64_t>(t);
  CHECK_EQ(counters.Sum(0), uint64_t{1000} * kThreads);
  CHECK_EQ(counters.Sum(1), weighted);
  CHECK_EQ(counters.Sum(2), uint64_t{0} - 5 * kThreads) << "wraps modulo 2^64 like the cells";
  uint64_t all[3];
  counters.SumAll(all);
  CHECK_EQ(all[0], counters.Sum(0));
  CHECK_EQ(all[1], counters.Sum(1));
  CHECK_EQ(all[2], counters.Sum(2));
  LatencySnapshot s;
  h.Snapshot(&s);
  CHECK_EQ(s.count, uint64_t{1000} * kThreads);
  CHECK_EQ(s.buckets[LatencyBucket(1000)], uint64_t{1000} * kThreads);
  CHECK_EQ(s.sum_ns, uint64_t{1000} * 1000 * kThreads) << "every thread's samples are in the sum";
}

TEST_MAIN()
