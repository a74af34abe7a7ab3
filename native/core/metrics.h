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
//
// Stopwatch (latency samples)
//   Durations come from the x86-64 time-stamp counter when the CPU reports it invariant
//   (constant rate in every P/C-state: CPUID 0x80000007 EDX bit 8): rdtsc costs ~10 ns,
//   a CLOCK_MONOTONIC read ~25 ns. Ticks become ns with one process-wide factor measured
//   against CLOCK_MONOTONIC over >= kCalibrationNs, starting when the first manager is
//   created (StartStopwatchCalibration); until it is known, and on other CPUs, a stopwatch
//   reads CLOCK_MONOTONIC. A stopwatch picks its source once, at Start, so a sample never
//   mixes the two. A negative TSC delta (a thread migrated between unsynchronised cores) is
//   clamped to 0, like the clock's.
//
// Timestamps (alloc_time_ns, and the "now" an age is taken against) come from CoreNowNs():
//   once calibrated, the calibration anchor's CLOCK_MONOTONIC reading plus the ticks since
//   it, so an allocation reuses its stopwatch's start instead of a second clock read. Ages
//   are differences of two such timestamps: they carry the calibration's rate error (the
//   two points are 20 ms apart and each is bracketed within ~50 ns: a few ppm), not the
//   drift between the TSC and the steady clock. A handle stamped by the steady clock before
//   calibration finished and aged by the TSC later is off by at most that rate error times
//   the time since the anchor.
#pragma once

#include <time.h>

#include <atomic>
#include <cstdint>
#include <mutex>

#if defined(__x86_64__)
#include <cpuid.h>
#include <x86intrin.h>
#endif

#include "types.h"
#include "mpmc_ring.h"  // kCacheLine

namespace isopool {

/// Steady clock in nanoseconds (CLOCK_MONOTONIC, a vDSO call: ~20 ns).
inline uint64_t NowNs() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

namespace stopwatch_detail {

constexpr uint64_t kCalibrationNs = 20000000;  ///< 20 ms between the two calibration points

/// ns per TSC tick as a 32.32 fixed-point number; 0 = not known (use CLOCK_MONOTONIC).
inline std::atomic<uint64_t> ns_per_tick_q32{0};
/// 0 = not started, 1 = anchored (calibrating), 2 = finished (ns_per_tick_q32 set or unusable).
inline std::atomic<uint32_t> state{0};
inline uint64_t anchor_ns = 0;     ///< written before state's release store of 1
inline uint64_t anchor_ticks = 0;  ///< idem
inline std::once_flag start_once;

#if defined(__x86_64__)
inline uint64_t Ticks() noexcept { return __rdtsc(); }
/// Ticks after every earlier instruction completed (lfence: rdtsc alone may run ahead of the
/// work it is meant to close, which would under-report the sample).
inline uint64_t TicksAfter() noexcept {
  _mm_lfence();
  return __rdtsc();
}

inline bool InvariantTsc() noexcept {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0x80000000u, nullptr) < 0x80000007u) return false;
  __cpuid(0x80000007u, a, b, c, d);
  return (d >> 8) & 1u;
}

/// A (ns, ticks) pair read as close together as possible (tightest of a few brackets).
inline void Pair(uint64_t* ns, uint64_t* ticks) noexcept {
  uint64_t best = UINT64_MAX;
  for (int i = 0; i < 8; ++i) {
    const uint64_t t0 = Ticks();
    const uint64_t n = NowNs();
    const uint64_t t1 = Ticks();
    if (t1 >= t0 && t1 - t0 < best) {
      best = t1 - t0;
      *ns = n;
      *ticks = t0 + (t1 - t0) / 2;
    }
  }
}

inline uint64_t TicksToNs(uint64_t ticks, uint64_t q32) noexcept {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(ticks) * q32) >> 32);
}
#else
inline uint64_t Ticks() noexcept { return NowNs(); }
inline uint64_t TicksAfter() noexcept { return NowNs(); }
inline bool InvariantTsc() noexcept { return false; }
inline void Pair(uint64_t* ns, uint64_t* ticks) noexcept { *ns = *ticks = NowNs(); }
inline uint64_t TicksToNs(uint64_t ticks, uint64_t) noexcept { return ticks; }
#endif

/// Second calibration point, taken by whichever stopwatch first sees kCalibrationNs passed.
inline void MaybeFinish(uint64_t now_ns) noexcept {
  if (state.load(std::memory_order_acquire) != 1) return;
  if (now_ns - anchor_ns < kCalibrationNs) return;
  uint32_t expected = 1;
  if (!state.compare_exchange_strong(expected, 2, std::memory_order_acq_rel, std::memory_order_acquire)) {
    return;  // another thread finishes it
  }
  uint64_t ns = 0, ticks = 0;
  Pair(&ns, &ticks);
  if (ticks <= anchor_ticks || ns <= anchor_ns) return;  // not a usable counter: stay on the clock
  const uint64_t q32 = static_cast<uint64_t>(
      (static_cast<unsigned __int128>(ns - anchor_ns) << 32) / (ticks - anchor_ticks));
  // Plausible TSC rates only (0.1 to 10 GHz); anything else keeps the clock.
  if (q32 < (uint64_t{1} << 32) / 10 || q32 > (uint64_t{10} << 32)) return;
  // release: a reader that loads q32 (acquire) sees the anchor it is relative to.
  ns_per_tick_q32.store(q32, std::memory_order_release);
}

/// CoreNowNs() for a TSC reading `ticks` taken with factor `q32` (not 0).
inline uint64_t StampNs(uint64_t ticks, uint64_t q32) noexcept {
  return ticks > anchor_ticks ? anchor_ns + TicksToNs(ticks - anchor_ticks, q32) : anchor_ns;
}

}  // namespace stopwatch_detail

/// Called once per manager creation; the first call anchors the calibration (cold path).
inline void StartStopwatchCalibration() noexcept {
  namespace d = stopwatch_detail;
  std::call_once(d::start_once, [] {
    if (!d::InvariantTsc()) {
      d::state.store(2, std::memory_order_release);
      return;
    }
    d::Pair(&d::anchor_ns, &d::anchor_ticks);
    d::state.store(1, std::memory_order_release);
  });
}

/// The core's timestamp in nanoseconds, see the file comment.
inline uint64_t CoreNowNs() noexcept {
  namespace d = stopwatch_detail;
  // acquire: pairs with MaybeFinish's release (the anchor).
  const uint64_t q32 = d::ns_per_tick_q32.load(std::memory_order_acquire);
  return q32 != 0 ? d::StampNs(d::Ticks(), q32) : NowNs();
}

/// Measures one latency sample, see the file comment.
class Stopwatch {
 public:
  /// Starts now.
  Stopwatch() noexcept
      // acquire: as CoreNowNs (StartNs reads the anchor).
      : q32_(stopwatch_detail::ns_per_tick_q32.load(std::memory_order_acquire)),
        start_(q32_ != 0 ? stopwatch_detail::Ticks() : NowNs()) {}

  /// CoreNowNs() at the start.
  uint64_t StartNs() const noexcept { return q32_ != 0 ? stopwatch_detail::StampNs(start_, q32_) : start_; }

  /// Nanoseconds since the start (0 if the source went backwards).
  uint64_t ElapsedNs() const noexcept {
    if (__builtin_expect(q32_ != 0, 1)) {
      const uint64_t t = stopwatch_detail::TicksAfter();
      return t > start_ ? stopwatch_detail::TicksToNs(t - start_, q32_) : 0;
    }
    const uint64_t now = NowNs();
    stopwatch_detail::MaybeFinish(now);
    return now > start_ ? now - start_ : 0;
  }

 private:
  uint64_t q32_;    ///< ns per tick (32.32) fixed at Start; 0 = CLOCK_MONOTONIC
  uint64_t start_;  ///< ticks or ns
};

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

// --- per-thread shards ---------------------------------------------------------------
// Hot statistics (event counts, live bytes, latency buckets) are sharded by thread: each of
// the first kStatShards threads that call the core owns one shard index process-wide (given
// back when the thread exits) and adds to its own cache line of every sharded counter with a
// relaxed load + store: no locked instruction, no cache line shared with another thread.
// Threads beyond that share index kStatShards, whose cells take atomic fetch_adds. A read sums
// every shard: exact at quiescence, as relaxed as before under concurrency. Cells wrap modulo
// 2^64, so a Sub on one shard and the Add on another still sum exactly.
// Handing an index to a new thread is ordered after its previous owner's last store (release
// on give-back, acquire on claim), so each cell always has exactly one plain writer.

constexpr uint32_t kStatShards = 32;  ///< private shards; index kStatShards is the shared one

namespace shard_detail {
inline std::atomic<uint64_t> claimed{0};  ///< bit i: shard i has an owner thread
/// 1 + the highest shard index ever claimed: shards at and above it (but the shared one) were
/// never written, so a read skips them (most processes use 1 to 3 of the 32).
inline std::atomic<uint32_t> used{0};
/// -2: not claimed yet; -1: none (shared shard, also after the thread's give-back); else owned.
inline thread_local int32_t index = -2;

/// Called by a thread that owns a shard as it exits, before the shard is given back
/// (thread_cache.cc sets it: the thread's per-thread caches are emptied).
inline std::atomic<void (*)(uint32_t)> exit_hook{nullptr};

struct GiveBack {
  ~GiveBack() {
    if (index >= 0) {
      if (void (*hook)(uint32_t) = exit_hook.load(std::memory_order_acquire)) hook(static_cast<uint32_t>(index));
      claimed.fetch_and(~(uint64_t{1} << index), std::memory_order_release);
    }
    index = -1;  // calls made later in this thread's exit use the shared shard
  }
};
inline thread_local GiveBack give_back;

inline uint32_t Claim() noexcept {
  static_assert(kStatShards <= 64, "claimed is one 64-bit mask");
  constexpr uint64_t kAll = kStatShards == 64 ? ~uint64_t{0} : (uint64_t{1} << kStatShards) - 1;
  index = -1;
  uint64_t bits = claimed.load(std::memory_order_relaxed);
  while ((bits & kAll) != kAll) {
    const int i = __builtin_ctzll(~bits);
    // acquire: this thread's plain stores to shard i come after the previous owner's.
    if (claimed.compare_exchange_weak(bits, bits | (uint64_t{1} << i), std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
      (void)&give_back;  // registers the give-back at thread exit
      // Before this thread's first store to shard i; release pairs with UsedShards().
      uint32_t seen = used.load(std::memory_order_relaxed);
      while (seen < static_cast<uint32_t>(i) + 1 &&
             !used.compare_exchange_weak(seen, static_cast<uint32_t>(i) + 1, std::memory_order_release,
                                         std::memory_order_relaxed)) {
      }
      index = i;
      return static_cast<uint32_t>(i);
    }
    // CAS failed: `bits` reloaded; look again.
  }
  return kStatShards;
}
}  // namespace shard_detail

/// Private shards [0, UsedShards()) may hold counts; the others are zero.
inline uint32_t UsedShards() noexcept { return shard_detail::used.load(std::memory_order_acquire); }

/// This thread's shard index: 0..kStatShards-1 (owned) or kStatShards (shared).
inline uint32_t ThisThreadShard() noexcept {
  const int32_t i = shard_detail::index;
  if (__builtin_expect(i >= 0, 1)) return static_cast<uint32_t>(i);
  return i == -2 ? shard_detail::Claim() : kStatShards;
}

/// N statistics counters sharded by thread (see above); one cache line per shard and 8 counters.
template <uint32_t N>
class ShardedCounters {
 public:
  void Add(uint32_t shard, uint32_t i, uint64_t n = 1) noexcept {
    std::atomic<uint64_t>& c = shards_[shard].v[i];
    if (__builtin_expect(shard < kStatShards, 1)) {
      c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);  // sole writer
    } else {
      c.fetch_add(n, std::memory_order_relaxed);
    }
  }
  void Sub(uint32_t shard, uint32_t i, uint64_t n = 1) noexcept { Add(shard, i, uint64_t{0} - n); }
  uint64_t Sum(uint32_t i) const noexcept {
    uint64_t sum = shards_[kStatShards].v[i].load(std::memory_order_relaxed);
    const uint32_t used = UsedShards();
    for (uint32_t k = 0; k < used; ++k) sum += shards_[k].v[i].load(std::memory_order_relaxed);
    return sum;
  }
  /// out[i] = Sum(i) for every i, reading shard by shard.
  void SumAll(uint64_t (&out)[N]) const noexcept {
    for (uint32_t i = 0; i < N; ++i) out[i] = shards_[kStatShards].v[i].load(std::memory_order_relaxed);
    const uint32_t used = UsedShards();
    for (uint32_t k = 0; k < used; ++k) {
      for (uint32_t i = 0; i < N; ++i) out[i] += shards_[k].v[i].load(std::memory_order_relaxed);
    }
  }

 private:
  struct alignas(kCacheLine) Shard {
    std::atomic<uint64_t> v[N] = {};
  };
  Shard shards_[kStatShards + 1];
};

/// One statistics counter sharded by thread.
class ShardedCounter {
 public:
  void Add(uint32_t shard, uint64_t n = 1) noexcept { c_.Add(shard, 0, n); }
  void Sub(uint32_t shard, uint64_t n = 1) noexcept { c_.Sub(shard, 0, n); }
  void Add() noexcept { Add(ThisThreadShard()); }
  uint64_t Load() const noexcept { return c_.Sum(0); }

 private:
  ShardedCounters<1> c_;
};

/// Log2-bucket latency histogram (see LatencySnapshot in manager.h), sharded by thread.
class LatencyHistogram {
 public:
  /// Records one sample from thread shard `shard` (ThisThreadShard()).
  void Record(uint64_t ns, uint32_t shard) noexcept {
    buckets_.Add(shard, LatencyBucket(ns));
    buckets_.Add(shard, kLatencyBuckets, ns);
  }
  void Record(uint64_t ns) noexcept { Record(ns, ThisThreadShard()); }

  /// Copies the counters; count is the bucket sum (so always consistent with the buckets).
  void Snapshot(LatencySnapshot* out) const noexcept {
    uint64_t counts[kLatencyBuckets + 1];
    buckets_.SumAll(counts);
    out->sum_ns = counts[kLatencyBuckets];
    uint64_t sum = 0;
    for (int i = 0; i < kLatencyBuckets; ++i) {
      out->buckets[i] = counts[i];
      sum += counts[i];
    }
    out->count = sum;
  }

 private:
  ShardedCounters<kLatencyBuckets + 1> buckets_;  ///< samples per log2 bucket, then the sum of ns
};

}  // namespace isopool
