// status.h — the native core's only error vocabulary.
//
// The core never throws. Every fallible operation returns a Status; the binding
// layer (native/binding/) maps each value to the JS error class with the
// same `code` (SPEC.md §4). The numeric values cross into JS: keep them stable
// (lib/native/abi.ts `NativeStatus` is generated from this enum).
#pragma once

#include <cstdint>

namespace isopool {

// abi: NativeStatus
enum class Status : int32_t {
  kOk = 0,
  kInvalidArgument = 1,     ///< ERR_INVALID_ARGUMENT
  kInvalidSize = 2,         ///< ERR_INVALID_SIZE
  kUnknownType = 3,         ///< ERR_UNKNOWN_RESOURCE_TYPE
  kUnknownChannel = 4,      ///< ERR_UNKNOWN_CHANNEL
  kChannelClosed = 5,       ///< ERR_CHANNEL_CLOSED
  kResourceLimit = 6,       ///< ERR_RESOURCE_LIMIT
  kPoolExhausted = 7,       ///< ERR_POOL_EXHAUSTED (the system refused memory)
  kInvalidHandle = 8,       ///< ERR_INVALID_HANDLE (forged or malformed)
  kStaleHandle = 9,         ///< ERR_STALE_HANDLE (freed or reused)
  kIsolationViolation = 10, ///< ERR_ISOLATION_VIOLATION
  kManagerClosed = 11,      ///< ERR_MANAGER_CLOSED
  kHandleTableFull = 12,    ///< ERR_HANDLE_TABLE_FULL (every index of the handle table is live)
  /// Allocate with CallContext::total_parked: the type's total refused, and some of its charges
  /// are the caller's parked slots. Nothing was counted; the caller frees them and asks again.
  kParkedCharges = 13,
};

/// Violation kinds (SPEC.md §2). Values are bit positions in a violation mask
/// and indices into per-channel violation counters.
// abi: NativeViolation
enum class Violation : uint32_t {
  kForgedHandle = 0,     ///< FORGED_HANDLE: never issued
  kStaleHandle = 1,      ///< STALE_HANDLE: freed
  kChannelClosed = 2,    ///< CHANNEL_CLOSED: freed by its channel's close
  kCrossChannel = 3,     ///< CROSS_CHANNEL: presented to another channel's scope
  kOutOfBounds = 4,      ///< OUT_OF_BOUNDS: recorded extent outside its slot/slab
  kCanaryCorrupted = 5,  ///< CANARY_CORRUPTED: hardened canary damaged
  kBufferDetached = 6,   ///< BUFFER_DETACHED: detected in JS, counted here
};
constexpr uint32_t kViolationKinds = 7;

constexpr uint32_t ViolationBit(Violation v) noexcept {
  return 1u << static_cast<uint32_t>(v);
}

}  // namespace isopool
