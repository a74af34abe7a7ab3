// thread_cache.h — per-thread caches of shared structures, emptied when their thread exits.
//
// A structure that many threads update (a slab set's ring, the handle table's free indices)
// keeps one cache per statistics shard (metrics.h: a thread owns one shard while it lives), so
// that the hot path touches only the caller's cache lines. A structure used by one thread
// has no caches: the first call from a second thread's shard turns them on (SecondThread).
//
// A structure with caches registers here; when a thread that owns a shard exits, it empties
// its own cache of every registered structure (FlushShard, called on that thread, before the
// shard is given back), so no memory or index is left behind in a cache nobody owns.
#pragma once

#include <atomic>
#include <cstdint>

#include "metrics.h"

namespace isopool {

/// A structure with per-shard caches.
class ShardCache {
 public:
  /// Empties shard `shard`'s cache into the structure. Called only by the thread that owns the
  /// shard (its exit, or the structure's own calls).
  virtual void FlushShard(uint32_t shard) noexcept = 0;

 protected:
  ~ShardCache() = default;
};

/// Adds `cache` to the caches emptied at thread exit. False if memory is refused.
bool RegisterShardCache(ShardCache* cache) noexcept;
/// Removes it; returns once no exiting thread is emptying it any more.
void UnregisterShardCache(ShardCache* cache) noexcept;

/// Whether a second thread has used the owner: false while every call comes from the first
/// caller's shard, true from the first call of another shard on (calls on the shared shard,
/// kStatShards, never count: they have no cache to use).
class SecondThread {
 public:
  bool Seen(uint32_t shard) noexcept {
    // relaxed: only which shard came first matters; nothing is published through it.
    uint32_t first = first_.load(std::memory_order_relaxed);
    if (first == shard || shard >= kStatShards) return false;
    if (first == kNone && first_.compare_exchange_strong(first, shard, std::memory_order_relaxed)) return false;
    return first != shard;  // the CAS failed and reloaded `first`
  }

 private:
  static constexpr uint32_t kNone = ~0u;
  std::atomic<uint32_t> first_{kNone};
};

}  // namespace isopool
