// thread_cache.cc — the registry of per-thread caches emptied at thread exit (thread_cache.h).
#include "thread_cache.h"

#include <algorithm>
#include <mutex>
#include <new>
#include <vector>

namespace isopool {

namespace {

// Never destroyed: a thread may exit after static destructors ran.
std::mutex& CachesMutex() noexcept {
  static std::mutex* mu = new std::mutex;
  return *mu;
}
std::vector<ShardCache*>& Caches() noexcept {
  static std::vector<ShardCache*>* caches = new std::vector<ShardCache*>;
  return *caches;
}

/// metrics.h exit hook: the exiting thread owns `shard`, so it may empty that cache of each.
void FlushExitingThread(uint32_t shard) noexcept {
  std::lock_guard<std::mutex> lock(CachesMutex());
  for (ShardCache* cache : Caches()) cache->FlushShard(shard);
}

}  // namespace

bool RegisterShardCache(ShardCache* cache) noexcept {
  std::lock_guard<std::mutex> lock(CachesMutex());
  try {
    Caches().push_back(cache);
  } catch (...) {  // std::bad_alloc
    return false;
  }
  shard_detail::exit_hook.store(&FlushExitingThread, std::memory_order_release);
  return true;
}

void UnregisterShardCache(ShardCache* cache) noexcept {
  std::lock_guard<std::mutex> lock(CachesMutex());
  auto& caches = Caches();
  caches.erase(std::remove(caches.begin(), caches.end(), cache), caches.end());
}

}  // namespace isopool
