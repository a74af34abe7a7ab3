// mpmc_ring.h — a bounded, lock-free, multi-producer multi-consumer ring.
//
// Glossary
//   cell      one element slot of the ring: a sequence word `seq` and a value.
//   position  a 64-bit ticket; cell(pos) = cells[pos % capacity]. Positions
//             never wrap in practice (2^64 operations).
//   lap       pos / capacity: how many times the ring has cycled past a cell.
//
// Algorithm (D. Vyukov's bounded MPMC queue, any capacity, not only powers of two)
//   Each cell's `seq` says whose turn it is:
//     seq == pos       the cell is empty and waits for the producer of `pos`;
//     seq == pos + 1   the cell holds the value of `pos` for its consumer;
//   after the consumer of `pos` takes the value it stores seq = pos + capacity,
//   the next producer's turn. A producer claims `pos` by CAS on enqueue_pos_,
//   a consumer by CAS on dequeue_pos_; the release store of `seq` publishes
//   the value, the acquire load of `seq` receives it (no data race on `value`).
//
// Invariants (at quiescence)
//   0 <= enqueue_pos_ - dequeue_pos_ <= capacity
//   size == enqueue_pos_ - dequeue_pos_
//
// Contract
//   * TryPush / TryPop never block and never allocate; they are noexcept.
//   * TryPop may report "empty" while a producer has claimed but not yet
//     published a cell (and TryPush "full" symmetrically): callers treat the
//     ring as a cache and have a slow path, so this is acceptable.
//   * Init is the only call that allocates; it reports failure by returning
//     false (the core never throws). Capacity 0 is allowed: every push fails.
//   * Single owner (Init's `single_owner`, see single_owner.h): only one thread ever
//     pushes and pops, so the ring is a plain array of values packed side by side
//     (`flat_`), indexed by the same two positions, with no cells, seq words or CAS.
//     A value then shares its cache line with its neighbours (nobody else writes them),
//     which matters for a long ring used as a FIFO: each push and pop reaches the entry
//     written or read `capacity` operations ago, one line per 16 uint32 values instead of
//     one line per value (a 4,096-deep quarantine is 16 KiB, not 256 KiB).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <type_traits>

#include "single_owner.h"

namespace isopool {

constexpr size_t kCacheLine = 64;  ///< bytes; x86-64 and most arm64 parts

template <typename T>
class MpmcRing {
  static_assert(std::is_trivially_copyable<T>::value,
                "values are copied in and out of cells with plain assignment");
  static_assert(std::atomic<uint64_t>::is_always_lock_free,
                "the ring is lock-free only if its 64-bit sequence words are");

 public:
  MpmcRing() noexcept = default;
  ~MpmcRing() {
    std::free(cells_);
    std::free(flat_);
  }
  MpmcRing(const MpmcRing&) = delete;
  MpmcRing& operator=(const MpmcRing&) = delete;

  /// Allocates `capacity` cells (2 when `capacity` is 1, see below). False if memory is refused.
  /// Call once, before any push/pop. `single_owner`: one thread only will ever push and pop (see
  /// the contract).
  bool Init(size_t capacity, bool single_owner = false) noexcept {
    if (capacity == 0) return true;
    // One cell cannot tell "full" from "empty": a full cell's seq (pos + 1) is what the next lap's
    // producer waits for (pos + capacity), so a second push would overwrite the first value and
    // the consumer would spin forever. Two cells are the minimum the algorithm needs.
    if (capacity == 1) capacity = 2;
    if (single_owner) {
      void* flat = nullptr;
      if (posix_memalign(&flat, kCacheLine, capacity * sizeof(T)) != 0) return false;
      flat_ = static_cast<T*>(flat);
      capacity_ = capacity;
      return true;
    }
    void* mem = nullptr;
    if (posix_memalign(&mem, kCacheLine, capacity * sizeof(Cell)) != 0) return false;
    cells_ = static_cast<Cell*>(mem);
    capacity_ = capacity;  // only once the cells exist: a failed Init leaves capacity 0
    for (size_t i = 0; i < capacity; ++i) {
      new (&cells_[i]) Cell();
      cells_[i].seq.store(i, std::memory_order_relaxed);
    }
    // Publishing the ring itself to other threads is the owner's job (it is
    // created before the manager is shared), so relaxed stores suffice here.
    return true;
  }

  /// Appends `value`; false if the ring is full.
  bool TryPush(const T& value) noexcept {
    if (capacity_ == 0) return false;
    if (flat_ != nullptr) {
      const uint64_t pos = enqueue_pos_.load(std::memory_order_relaxed);
      if (pos - dequeue_pos_.load(std::memory_order_relaxed) == capacity_) return false;
      flat_[pos % capacity_] = value;
      enqueue_pos_.store(pos + 1, std::memory_order_relaxed);
      return true;
    }
    uint64_t pos = enqueue_pos_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& cell = cells_[pos % capacity_];
      // acquire: the consumer that emptied this cell finished reading its value.
      const uint64_t seq = cell.seq.load(std::memory_order_acquire);
      const int64_t diff = static_cast<int64_t>(seq - pos);
      if (diff == 0) {
        // Our turn: claim the position. relaxed: the cell's seq carries the data ordering.
        if (CompareExchangeWeak(enqueue_pos_, pos, pos + 1, /*single=*/false, std::memory_order_relaxed,
                                std::memory_order_relaxed)) {
          cell.value = value;
          // release: publishes `value` to the consumer of `pos`.
          cell.seq.store(pos + 1, std::memory_order_release);
          return true;
        }
        // CAS failed: `pos` was reloaded with the competitor's position; retry there.
      } else if (diff < 0) {
        // The cell still holds the value of the previous lap: the ring is full.
        return false;
      } else {
        // Another producer already took `pos`; catch up.
        pos = enqueue_pos_.load(std::memory_order_relaxed);
      }
    }
  }

  /// Removes the oldest value into *out; false if the ring is (or looks) empty.
  bool TryPop(T* out) noexcept {
    if (capacity_ == 0) return false;
    if (flat_ != nullptr) {
      const uint64_t pos = dequeue_pos_.load(std::memory_order_relaxed);
      if (pos == enqueue_pos_.load(std::memory_order_relaxed)) return false;
      *out = flat_[pos % capacity_];
      dequeue_pos_.store(pos + 1, std::memory_order_relaxed);
      return true;
    }
    uint64_t pos = dequeue_pos_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& cell = cells_[pos % capacity_];
      // acquire: pairs with the producer's release store; `value` is visible.
      const uint64_t seq = cell.seq.load(std::memory_order_acquire);
      const int64_t diff = static_cast<int64_t>(seq - (pos + 1));
      if (diff == 0) {
        if (CompareExchangeWeak(dequeue_pos_, pos, pos + 1, /*single=*/false, std::memory_order_relaxed,
                                std::memory_order_relaxed)) {
          *out = cell.value;
          // release: the next producer of this cell may overwrite `value` only after we read it.
          cell.seq.store(pos + capacity_, std::memory_order_release);
          return true;
        }
        // CAS failed: another consumer took `pos`; `pos` now holds the new position.
      } else if (diff < 0) {
        // The producer of `pos` has not published: empty (or not yet visible).
        return false;
      } else {
        // Another consumer already took `pos`; catch up.
        pos = dequeue_pos_.load(std::memory_order_relaxed);
      }
    }
  }

  size_t capacity() const noexcept { return capacity_; }

  /// Number of values, exact at quiescence, approximate under concurrency.
  size_t SizeApprox() const noexcept {
    const uint64_t tail = dequeue_pos_.load(std::memory_order_relaxed);
    const uint64_t head = enqueue_pos_.load(std::memory_order_relaxed);
    return head > tail ? static_cast<size_t>(head - tail) : 0;
  }

 private:
  struct alignas(kCacheLine) Cell {
    std::atomic<uint64_t> seq{0};  ///< turn word, see the class comment
    T value{};                     ///< valid while seq == pos + 1
  };
  static_assert(sizeof(Cell) % kCacheLine == 0,
                "cells are whole cache lines so neighbouring cells never false-share");

  // Producers and consumers hammer different words: keep them on different
  // cache lines, and away from the read-mostly fields.
  alignas(kCacheLine) std::atomic<uint64_t> enqueue_pos_{0};  ///< next position to push
  alignas(kCacheLine) std::atomic<uint64_t> dequeue_pos_{0};  ///< next position to pop
  alignas(kCacheLine) Cell* cells_ = nullptr;                 ///< capacity_ cells (shared rings)
  T* flat_ = nullptr;                                         ///< capacity_ values (single owner)
  size_t capacity_ = 0;                                       ///< cells or values, fixed by Init
};

static_assert(alignof(MpmcRing<uint64_t>) >= kCacheLine,
              "head and tail must be a cache line apart to prevent false sharing");
static_assert(sizeof(MpmcRing<uint64_t>) >= 3 * kCacheLine,
              "enqueue_pos_, dequeue_pos_ and the cell pointer each own a cache line");

}  // namespace isopool
