// types.h — the native core's shared vocabulary: limits, options, identifiers and the plain
// records that pass between the pools, the handle table, the ledgers, the metrics and the
// manager facade (manager.h), and the one 64-bit mixer they use.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "status.h"

namespace isopool {

constexpr uint64_t kUnlimited = UINT64_MAX;  ///< "Infinity" in a limit field
constexpr int32_t kMaxTypes = 16;            ///< including "buffer"
constexpr int32_t kUnscopedChannel = 0;
constexpr int32_t kAllTypes = -1;    ///< SetLimits: the channel's total over all types ('*')
constexpr int32_t kTypeTotal = -1;   ///< SetLimits channel: the type's total over every channel
constexpr int32_t kPoolDirect = -1;  ///< Allocation::pool for direct (oversize) memory
constexpr int32_t kPoolCounter = -2; ///< Allocation::pool for counter types

enum class TypeKind : uint8_t { kMemory = 0, kCounter = 1 };
enum class AccessMode : uint8_t { kRevocable = 0, kView = 1 };
enum class ZeroMode : uint8_t { kCrossChannel = 0, kAlways = 1 };
// abi: NativeFreeReason
enum class FreeReason : uint8_t { kDeallocate = 0, kChannelClose = 1, kManagerClose = 2, kLeak = 3 };
/// Which limit refused an allocation or was crossed softly.
// abi: NativeLimitScope
enum class LimitScope : uint8_t { kNone = 0, kType = 1, kChannel = 2, kChannelType = 3, kAllocationSize = 4 };

struct PoolConfig {
  std::string name;     ///< e.g. "small"
  uint64_t slot_size;   ///< bytes, > 0; pools are sorted by slot_size, strictly increasing
  uint32_t queue_size;  ///< free slots retained for reuse; the rest go back to the system
};

struct ManagerConfig {
  std::vector<PoolConfig> pools;   ///< default: small 4 KiB×500, medium 64 KiB×250, large 1 MiB×125
  uint64_t max_allocation_size = 64ull << 20;  ///< bytes (or units for counters)
  bool hardened = false;           ///< hardened mode: canaries, guard pages, poisoning (hardening.h)
  /// Single owner: the caller promises that one thread at a time calls this manager (and runs
  /// every release paired with it, e.g. buffer finalizers); a handoff to another thread must be
  /// ordered by synchronisation (a join, a mutex). The hot paths then update
  /// the same atomics with plain loads and stores instead of locked read-modify-writes
  /// (single_owner.h); results are identical. The binding sets it for non-shared managers.
  bool single_owner = false;
};

struct Limits {
  uint64_t max_bytes = kUnlimited;
  uint64_t max_handles = kUnlimited;
  uint64_t max_allocation_size = kUnlimited;
  uint64_t soft_bytes = kUnlimited;
};

struct ChannelOptions {
  AccessMode access = AccessMode::kRevocable;
  ZeroMode zero = ZeroMode::kCrossChannel;
  /// Revocable channels only. false (the default): a freed handle's memory is parked until the
  /// buffer over it dies (OnBufferReleased), so I/O that Node still runs on that buffer never
  /// meets another owner. true: it returns to its pool at once (the caller revokes its buffer).
  bool immediate_reuse = false;
};

/// Who is calling (SPEC §3). The binding fills it per call; the Node-free tests may leave it
/// zero. `env` identifies the JS thread (a token > 0) that will hold the handle's buffer;
/// `expected_owner` (if > 0) makes Allocate refuse with kChannelClosed when the channel index
/// now belongs to another incarnation (closed, and perhaps reopened, by another thread).
struct CallContext {
  uint32_t env = 0;
  uint32_t expected_owner = 0;
  /// Free only: the caller cannot vouch that its own buffer over the memory is revoked (it
  /// was detached by other code, whose transfer() may hold the memory, or JS only knows it
  /// became unreachable). The memory is then parked until the buffer's backing store dies.
  bool keep_until_released = false;
  /// Allocate only: some charges in the type's total are slots the caller holds parked (a fast
  /// lane's freed slots, allocated natively until it syncs). A refusal by that total is then
  /// kParkedCharges, counted nowhere: without those slots the answer may differ.
  bool total_parked = false;
};

/// Out-parameter of Allocate. On kResourceLimit only slot_bytes, charged (what the refused
/// allocation would have been charged) and the refused_* fields are set.
struct Allocation {
  uint64_t id = 0;
  uint8_t* data = nullptr;    ///< first byte of the user extent (nullptr for counters)
  uint64_t slot_bytes = 0;    ///< capacity of the slot (== charged for direct/counters)
  uint64_t charged = 0;       ///< bytes (units) charged to every applicable ledger
  int32_t pool = 0;           ///< pool index, kPoolDirect or kPoolCounter
  uint64_t slab_key = 0;      ///< unique-for-lifetime key of the slab (view mode: ExportSlab)
  uint64_t slab_offset = 0;   ///< byte offset of `data` inside its slab
  LimitScope soft_crossed = LimitScope::kNone;  ///< a soft limit was crossed by this charge
  uint64_t latency_ns = 0;    ///< time spent in the core for this allocation
  // refusal details (kResourceLimit)
  LimitScope refused_scope = LimitScope::kNone;
  uint64_t refused_limit = 0;   ///< the limit value that refused
  uint64_t refused_in_use = 0;  ///< usage in that scope at refusal (bytes or handles)
  bool refused_handles = false; ///< true: maxHandles refused
  bool refused_size = false;    ///< true: the scope's max_allocation_size refused (before any charge)
};

/// What the table knows about one id (Lookup/Validate/Free).
struct HandleInfo {
  uint64_t id = 0;
  int32_t type = -1;
  int32_t channel = -1;       ///< channel index at allocation
  uint32_t owner = 0;         ///< channel incarnation (owner epoch)
  int32_t pool = 0;
  uint64_t size = 0;          ///< requested bytes/units
  uint64_t slot_bytes = 0;
  uint64_t charged = 0;
  uint64_t slab_key = 0;
  uint64_t slab_offset = 0;
  uint8_t* data = nullptr;
  uint64_t alloc_time_ns = 0; ///< steady clock at allocation
  uint64_t latency_ns = 0;
  bool in_transit = false;    ///< transferHandle'd and not yet adopted (SPEC §3)
  /// Free/CloseChannel only: the memory was "parked" because another thread still holds a
  /// revocable buffer over it; it returns to its pool once that buffer is released
  /// (OnBufferReleased). The handle itself is freed and its ledgers refunded.
  bool parked = false;
  /// CloseChannel only: violation bits found while freeing it (hardened: a damaged canary).
  uint32_t violations = 0;
};

/// Snapshot of one ledger scope.
struct LedgerUsage {
  uint64_t bytes = 0;
  uint64_t handles = 0;
  uint64_t peak_bytes = 0;
  uint64_t limit_rejections = 0;
  uint64_t violations[kViolationKinds] = {};
};

struct PoolStats {
  std::string name;
  uint64_t slot_size = 0;
  uint32_t queue_size = 0;
  uint64_t reserved_bytes = 0;     ///< bytes mapped from the system for this pool's slabs
  uint64_t live_slots = 0;
  uint64_t live_bytes = 0;         ///< requested bytes of live slots
  uint64_t retained_free_slots = 0;///< min(free slots held, queue_size)
  uint64_t hits = 0;               ///< allocations served from a retained free slot
  uint64_t misses = 0;             ///< allocations that needed fresh memory
  uint64_t released_to_system = 0; ///< slabs (count) returned to the system
  uint64_t failures = 0;           ///< allocations the system refused
};

/// Log2-bucket latency histogram snapshot: bucket i counts samples in [2^i, 2^(i+1)) ns.
constexpr int kLatencyBuckets = 48;
struct LatencySnapshot {
  uint64_t count = 0;
  uint64_t sum_ns = 0;  ///< the samples' total, ns (a Prometheus histogram's _sum)
  uint64_t buckets[kLatencyBuckets] = {};
  /// Quantile estimate (q in [0,1]) from the buckets; 0 when count == 0.
  double Quantile(double q) const noexcept;
};

struct ManagerSnapshot {
  std::vector<PoolStats> pools;        ///< one per configured pool, in config order
  PoolStats direct;                    ///< name "direct": reserved/live for oversize allocations
  uint64_t handles = 0;                ///< live handles
  uint64_t bytes_in_use = 0;           ///< charged bytes of live memory handles
  uint64_t requested_bytes = 0;        ///< requested bytes of live memory handles
  uint64_t reserved_bytes = 0;         ///< all pools + direct
  uint64_t allocations = 0;
  uint64_t deallocations = 0;
  uint64_t refusals = 0;               ///< failed allocations of any cause
  uint64_t live_slot_bytes = 0;        ///< slot bytes of live pooled + direct allocations
  uint64_t retained_free_bytes = 0;    ///< sum over pools of retained_free_slots * slot_size
  uint64_t parked_handles = 0;         ///< freed handles whose memory has not returned: parked for a buffer, or in a close still in steps
  uint64_t thread_exit_reclaims = 0;   ///< live handles reclaimed because their thread exited (ReclaimEnv kLeak)
  LatencySnapshot allocate_latency;
  LatencySnapshot deallocate_latency;
};

/// MurmurHash3's 64-bit finalizer: a bijective avalanche mix (handle check bits, secrets,
/// hardened canaries). Bijective, so distinct inputs give distinct outputs.
constexpr uint64_t Mix64(uint64_t x) noexcept {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

}  // namespace isopool
