// metrics.h — the core's clock, relaxed event counters and latency histograms.
//
// Glossary
//   sample   one measured duration in nanoseconds.
//   bucket   log2 class of a sample: bucket(ns) = floor(log2(ns)) (0 for 0 and 1),
//            clamped to kLatencyBuckets - 1. Bucket i covers [2^i, 2^(i+1)) ns.
//
// Invariants (at quiescence)
//   count == sum(buckets[i] for i in 0..kLatencyBuckets-1)
//
// Everything here is lock-free and allocation-free: a sample costs one relaxed
// fetch_add on a bucket shared by all threads (the count is the bucket sum). There are no per-operation
// arrays, so memory does not grow with traffic. Counters are only statistics:
// they carry no ordering, so every atomic here is memory_order_relaxed.
#pragma once

#include <time.h>

#include <atomic>
#include <cstdint>

#include "manager.h"

namespace isopool {

/// Steady clock in nanoseconds (CLOCK_MONOTONIC, a vDSO call: ~20 ns).
inline uint64_t NowNs() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

/// Bucket index of a sample, see the glossary.
inline int LatencyBucket(uint64_t ns) noexcept {
  if (ns < 2) return 0;
  const int b = 63 - __builtin_clzll(ns);
  return b < kLatencyBuckets ? b : kLatencyBuckets - 1;
}

/// A counter that only statistics read (relaxed increments, relaxed reads).
class RelaxedCounter {
 public:
  void Add(uint64_t n = 1) noexcept { v_.fetch_add(n, std::memory_order_relaxed); }
  void Sub(uint64_t n = 1) noexcept { v_.fetch_sub(n, std::memory_order_relaxed); }
  uint64_t Load() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

/// Log2-bucket latency histogram (see LatencySnapshot in manager.h).
class LatencyHistogram {
 public:
  /// Records one sample.
  void Record(uint64_t ns) noexcept {
    buckets_[LatencyBucket(ns)].fetch_add(1, std::memory_order_relaxed);
  }

  /// Copies the counters; count is the bucket sum (so always consistent with the buckets).
  void Snapshot(LatencySnapshot* out) const noexcept {
    uint64_t sum = 0;
    for (int i = 0; i < kLatencyBuckets; ++i) {
      out->buckets[i] = buckets_[i].load(std::memory_order_relaxed);
      sum += out->buckets[i];
    }
    out->count = sum;
  }

 private:
  std::atomic<uint64_t> buckets_[kLatencyBuckets] = {};///< samples per log2 bucket
};

}  // namespace isopool
