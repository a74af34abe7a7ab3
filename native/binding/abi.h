// abi.h — the binding's calling convention with lib/: every slot layout of its scratch arrays
// and every number code that crosses into JavaScript, in one place.
//
// lib/native/abi.ts is generated from the enums marked `// abi: <Name>` here and in status.h
// and types.h (scripts/abi.js), and the build checks it is current: an edit on one side only
// fails `npm run build`. Names carry over without their k: kFooBar -> FooBar.
//
// Calling convention: arguments are primitives; results with several numbers are written into
// the manager's scratch `out` Float64Array (ids are safe integers: a double holds them exactly).
// The hot calls allocIn()/freeIn() read their arguments from `in` instead of converting JS values.
#pragma once

#include <cstddef>
#include <cstdint>

#include "status.h"
#include "types.h"

namespace isopool {
namespace binding {

/// Lengths of the scratch arrays (one block: out, in, fastIds, journal).
constexpr size_t kOutLength = 32;
constexpr size_t kInLength = 8;
/// `fastIds`: the ids reserveIds() hands out.
constexpr size_t kFastIdsLength = 256;
/// `journal`: applyJournal()'s ops, kJournalOpLength doubles each: [op, a, b, c].
constexpr size_t kJournalOps = 1024, kJournalOpLength = 4;
constexpr size_t kJournalLength = kJournalOps * kJournalOpLength;

/// What allocate()/allocIn() make for revocable memory.
namespace buffer_mode {
// abi: BufferMode
enum : int32_t {
  kNone = 0,       ///< no buffer (view memory, counted types)
  kFresh = 1,      ///< a fresh external ArrayBuffer over the slot
  kSlotCache = 2,  ///< the slot cache: a fresh ArrayBuffer, or Ok and "take cache entry out[CacheToken]"
};
}  // namespace buffer_mode
constexpr int32_t kBufferNone = buffer_mode::kNone, kBufferFresh = buffer_mode::kFresh,
                  kBufferSlotCache = buffer_mode::kSlotCache;

/// Slots of `out` after allocate()/allocIn().
namespace alloc_out {
// abi: AllocOut
enum : size_t {
  kId = 0,
  kSlotBytes = 1,
  kCharged = 2,
  kPool = 3,            ///< pool index, -1 direct, -2 counter
  kSlabKey = 4,
  kSlabOffset = 5,
  kSoftCrossed = 6,     ///< LimitScope
  kLatencyNs = 7,
  kRefusedScope = 8,    ///< LimitScope
  kRefusedLimit = 9,
  kRefusedInUse = 10,
  kRefusedHandles = 11, ///< 0 maxBytes refused, 1 maxHandles, 2 the scope's maxAllocationSize
  kCacheToken = 12,     ///< slot cache: the JS cache entry of the handle's backing store
  kCacheEvict = 13,     ///< slot cache: a JS cache entry to drop (-1: none)
};
}  // namespace alloc_out

/// Slots of `in`: the arguments of allocIn() and freeIn().
namespace in_args {
// abi: InArgs
enum : size_t {
  kAllocType = 0,
  kAllocSize = 1,
  kAllocChannel = 2,
  kAllocMode = 3,      ///< BufferMode
  kAllocOwner = 4,     ///< expected owner epoch, 0 = any
  kAllocParked = 5,    ///< 1: the caller holds parked charges in the type's total (CallContext)
  kFreeId = 0,
  kFreePresenter = 1,
  kFreeReason = 2,
  kFreeKeep = 3,       ///< 1: keep the memory until the buffer is released
  kFreeToken = 4,      ///< slot-cache token, -1 = none
  kFreeOwner = 5,      ///< the presenter's expected owner epoch, 0 = any
};
}  // namespace in_args

/// Slots of `out` after lookup(), validate() (a live id), free() (a freed id).
namespace info_out {
// abi: InfoOut
enum : size_t {
  kType = 0,
  kChannel = 1,
  kPool = 2,
  kSize = 3,
  kSlotBytes = 4,
  kCharged = 5,
  kAgeNs = 6,
  kLatencyNs = 7,
  kSlabKey = 8,
  kSlabOffset = 9,
  kInTransit = 10,
  kOwner = 11,
  kViolationMask = 12,    ///< set by free and validate
  kClosedByChannel = 13,  ///< 1 if a stale id was freed by its channel's close
  kRecached = 14,         ///< free with a slot-cache token: 1 if JS must move the backing store to its cache
};
}  // namespace info_out

/// Slots of `out` after channelUsage()/typeUsage().
namespace usage_out {
// abi: UsageOut
enum : size_t {
  kBytes = 0,
  kHandles = 1,
  kPeakBytes = 2,
  kLimitRejections = 3,
  kViolations = 4,  ///< kViolationKinds counters follow, in Violation order
};
}  // namespace usage_out
static_assert(usage_out::kViolations + kViolationKinds <= kOutLength, "UsageOut must fit in out");

/// Slots of `out` after getLimits()/getScopeLimits(); Infinity means none.
namespace limits_out {
// abi: LimitsOut
enum : size_t {
  kMaxBytes = 0,
  kMaxHandles = 1,
  kMaxAllocationSize = 2,
  kSoftBytes = 3,
};
}  // namespace limits_out

/// Slots of `out` after closeChannel() (status Ok).
namespace close_out {
// abi: CloseOut
enum : size_t {
  kCount = 0,  ///< handles the close frees
  kBytes = 1,  ///< their charged bytes
};
}  // namespace close_out

/// Slots of `out` after findType() (a known type).
namespace type_out {
// abi: TypeOut
enum : size_t { kKind = 0 };  ///< TypeKind: 0 memory, 1 counter
}  // namespace type_out

/// Slots of `out` after openChannel() (status Ok).
namespace open_out {
// abi: OpenOut
enum : size_t { kCreated = 0 };  ///< 1 if this call opened it, 0 if it was open
}  // namespace open_out

/// Slots of `out` after findChannel() (an open channel).
namespace find_out {
// abi: FindOut
enum : size_t {
  kBits = 0,   ///< access (1: view) | zero (2: always) | immediate reuse (4)
  kOwner = 1,  ///< the incarnation's owner epoch
};
}  // namespace find_out

/// Slots of `out` after recountChannel().
namespace recount_out {
// abi: RecountOut
enum : size_t { kHandles = 0, kCharged = 1 };
}  // namespace recount_out

/// Slots of `out` after slotCacheStats().
namespace cache_out {
// abi: CacheOut
enum : size_t { kBuffersCreated = 0, kBuffersReused = 1 };
}  // namespace cache_out

/// Slots of `out` after applyJournal() failed.
namespace journal_out {
// abi: JournalOut
enum : size_t { kStatus = 0 };  ///< the failed op's Status
}  // namespace journal_out

/// Layout of the `snap` Float64Array that snapshot() fills.
namespace snapshot_out {
// abi: SnapshotOut
enum : size_t {
  kHandles = 0,
  kBytesInUse = 1,
  kRequestedBytes = 2,
  kReservedBytes = 3,
  kAllocations = 4,
  kDeallocations = 5,
  kRefusals = 6,
  kLiveSlotBytes = 7,
  kRetainedFreeBytes = 8,
  kParkedHandles = 9,
  kThreadExitReclaims = 10,
  kAllocateLatency = 11,    ///< count, p50, p99, p999, sumNs, then kLatencyBuckets bucket counts
  kDeallocateLatency = 64,
  kLatencyLength = 53,
  kLatencyBuckets = 48,     ///< types.h kLatencyBuckets: bucket i counts samples in [2^i, 2^(i+1)) ns
  kDirect = 117,            ///< a pool: slotSize, queueSize, reservedBytes, liveSlots, liveBytes, retainedFreeSlots, hits, misses, releasedToSystem, failures
  kPools = 127,             ///< one pool after another, in configuration order
  kPoolLength = 10,
};
static_assert(kLatencyLength == 5 + isopool::kLatencyBuckets, "a latency block is 5 values and the buckets");
static_assert(kLatencyBuckets == isopool::kLatencyBuckets, "SnapshotOut.LatencyBuckets mirrors types.h");
static_assert(kDeallocateLatency == kAllocateLatency + kLatencyLength, "latency blocks are adjacent");
static_assert(kDirect == kDeallocateLatency + kLatencyLength, "the direct pool follows the latency blocks");
static_assert(kPools == kDirect + kPoolLength, "pools follow the direct pool");
}  // namespace snapshot_out

/// Journal ops (applyJournal): 4 doubles each, [op, a, b, c].
namespace journal_op {
// abi: JournalOp
enum : int32_t {
  kReissue = 1,     ///< a = old id, b = new id (from fastIds), c = size: Manager::Reissue
  kFree = 2,        ///< a = id: freeIn(id) with presenter -1, reason Deallocate, no buffer, keep 0, token -1
  kBurn = 3,        ///< a = id (from fastIds), b = source id (holds the slot), c = size: Manager::Burn
  kFreeCached = 4,  ///< a = id, b = slot-cache token: kFree, and the backing store goes back to the slot cache
  kSlotOwner = 5,   ///< a = old id, b = new id, c = slot-cache token: the token's backing store is new id's now
};
}  // namespace journal_op

}  // namespace binding
}  // namespace isopool
