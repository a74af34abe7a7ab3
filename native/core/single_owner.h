// single_owner.h — atomic read-modify-write helpers with a single-owner fast path.
//
// A single-owner manager (ManagerConfig::single_owner) is only ever called from one thread:
// the binding sets it for a non-shared JS manager, whose calls and buffer finalizers all run
// on its JS thread. Its data structures stay the same atomics (every reader keeps working),
// but a read-modify-write needs no locked instruction when no other thread can interleave:
// it becomes a load and a store. Each helper takes `single` (read once per call by the
// caller) and otherwise does exactly the atomic operation it replaces.
//
// Orders in single-owner mode: the load keeps the acquire half of the requested order and the
// store its release half (seq_cst maps to acquire/release: a seq_cst store would be a locked
// xchg on x86). Both are plain moves on x86; they only keep the compiler's ordering as
// conservative as the concurrent code's, which costs nothing.
#pragma once

#include <atomic>

namespace isopool {
namespace single_owner {

constexpr std::memory_order LoadPart(std::memory_order o) noexcept {
  return o == std::memory_order_relaxed || o == std::memory_order_release ? std::memory_order_relaxed
                                                                          : std::memory_order_acquire;
}

constexpr std::memory_order StorePart(std::memory_order o) noexcept {
  return o == std::memory_order_relaxed || o == std::memory_order_acquire || o == std::memory_order_consume
             ? std::memory_order_relaxed
             : std::memory_order_release;
}

}  // namespace single_owner

/// a += n; returns the previous value. single: load + store (no other thread touches `a`).
template <typename T>
inline T FetchAdd(std::atomic<T>& a, T n, bool single,
                  std::memory_order order = std::memory_order_relaxed) noexcept {
  if (single) {
    const T prev = a.load(single_owner::LoadPart(order));
    a.store(static_cast<T>(prev + n), single_owner::StorePart(order));
    return prev;
  }
  return a.fetch_add(n, order);
}

/// a -= n; returns the previous value. single: load + store.
template <typename T>
inline T FetchSub(std::atomic<T>& a, T n, bool single,
                  std::memory_order order = std::memory_order_relaxed) noexcept {
  if (single) {
    const T prev = a.load(single_owner::LoadPart(order));
    a.store(static_cast<T>(prev - n), single_owner::StorePart(order));
    return prev;
  }
  return a.fetch_sub(n, order);
}

/// compare_exchange_strong. single: compare, then store (never fails spuriously; on a
/// mismatch `expected` gets the current value, as with the CAS).
template <typename T>
inline bool CompareExchange(std::atomic<T>& a, T& expected, T desired, bool single,
                            std::memory_order success, std::memory_order failure) noexcept {
  if (single) {
    const T cur = a.load(single_owner::LoadPart(success));
    if (cur != expected) {
      expected = cur;
      return false;
    }
    a.store(desired, single_owner::StorePart(success));
    return true;
  }
  return a.compare_exchange_strong(expected, desired, success, failure);
}

/// compare_exchange_weak (for CAS loops). single: as CompareExchange.
template <typename T>
inline bool CompareExchangeWeak(std::atomic<T>& a, T& expected, T desired, bool single,
                                std::memory_order success, std::memory_order failure) noexcept {
  if (single) return CompareExchange(a, expected, desired, true, success, failure);
  return a.compare_exchange_weak(expected, desired, success, failure);
}

}  // namespace isopool
