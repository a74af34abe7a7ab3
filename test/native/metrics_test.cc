// metrics_test.cc — the latency stopwatch (TSC calibrated against CLOCK_MONOTONIC) and the
// histogram's buckets.
#include "metrics.h"

#include <chrono>
#include <thread>

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
    const Stopwatch w(t0);
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

TEST_MAIN()
