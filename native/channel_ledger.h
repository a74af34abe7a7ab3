// channel_ledger.h — channels, their limits and their usage ledgers.
//
// Glossary
//   scope      one ledger: usage counters plus the limits that govern them.
//              Three kinds apply to an allocation of type t in channel c:
//                type total     TypeTotal(t): every channel + the unscoped domain
//                channel total  channel c over all types ('*')
//                channel-type   type t within channel c
//   charge     n bytes (units for counters) and one handle added to a scope.
//   owner      epoch of one channel incarnation: unique per open (the unscoped
//              domain has its own), so zeroing never confuses two incarnations.
//   inflight   allocations that passed the channel's open check and are not
//              finished; CloseChannel waits for it to reach 0.
//
// Invariants
//   for every scope S and at every instant:
//     S.bytes <= S.max_bytes and S.handles <= S.max_handles (when the limit
//     was in force before the charge); S.peak_bytes >= S.bytes at quiescence
//   at quiescence, for each channel c and type t:
//     channel_total(c).bytes == sum_t channel_type(c, t).bytes
//     type_total(t).bytes    == sum_c channel_type(c, t).bytes
//
// Check-and-charge (TryCharge)
//   Scopes are charged in the order type total, channel total, channel-type.
//   Each scope is one CAS loop on `bytes` (refuse if bytes + n > max_bytes),
//   then one on `handles` (refuse if handles + 1 > max_handles). A refusal
//   rolls back the scopes already charged, so a hard limit is never exceeded,
//   not even transiently, and a refused allocation leaves every usage counter
//   as it was: it only adds 1 to limit_rejections of every scope that applies
//   (so a channel's limit_rejections counts its refused allocations whichever
//   scope refused them). Peaks and soft crossings are committed only once the
//   allocation has succeeded (Commit).
//
// Threads: charge/refund/violation counting are lock-free. Open, close, names
// and limits updates take mu_. Channel storage grows lazily in segments and is
// never freed before teardown, so a ChannelState* stays valid.
//
// Single owner (Init's `single_owner`, single_owner.h): one thread makes every call, so
// Enter/Exit, charges, refunds, peaks and counters update the same atomics with a load and a
// store instead of a locked read-modify-write. A limit check followed by its store is exact
// then (nothing can move the counter in between); refusals roll back the same way.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "manager.h"
#include "single_owner.h"
#include "status.h"

namespace isopool {

/// One ledger scope. All fields are atomics read and written relaxed except
/// the CAS loops (see TryCharge).
struct LedgerScope {
  std::atomic<uint64_t> bytes{0};             ///< charged bytes/units in use
  std::atomic<uint64_t> handles{0};           ///< live handles
  std::atomic<uint64_t> peak_bytes{0};        ///< max bytes after any successful charge
  std::atomic<uint64_t> rejections{0};        ///< allocations refused by a limit
  std::atomic<uint64_t> max_bytes{kUnlimited};
  std::atomic<uint64_t> max_handles{kUnlimited};
  std::atomic<uint64_t> max_allocation_size{kUnlimited};
  std::atomic<uint64_t> soft_bytes{kUnlimited};

  void Reset() noexcept;  ///< zero usage, no limits
  void SetLimits(const Limits& limits) noexcept;
  Limits GetLimits() const noexcept;
  void FillUsage(LedgerUsage* out) const noexcept;  ///< all but violations
};
static_assert(sizeof(LedgerScope) == 64, "one scope is one cache line");

/// kDiscarding: open, but TryDiscard (under mu_) is checking that nothing uses it. It never
/// waits in that phase, so Enter waits it out instead of reporting the channel closed.
enum class ChannelPhase : uint32_t { kFree = 0, kOpen = 1, kClosing = 2, kDiscarding = 3 };

/// One channel slot (an index); reused by later incarnations.
struct ChannelState {
  std::atomic<uint32_t> phase{0};     ///< ChannelPhase
  std::atomic<uint32_t> owner{0};     ///< owner epoch of the current incarnation
  std::atomic<uint32_t> options{0};   ///< access | zero << 1 | immediate_reuse << 2
  std::atomic<int64_t> inflight{0};   ///< allocations between Enter and Exit
  std::atomic<uint64_t> violations[kViolationKinds] = {};  ///< per Violation kind
  LedgerScope total;                  ///< the channel over all types
  LedgerScope types[kMaxTypes];       ///< the channel per type
};

/// Result of a successful TryCharge, needed by Commit / Refund.
struct ChargeTicket {
  uint64_t after[3] = {};        ///< bytes of each scope right after our charge
  LimitScope soft = LimitScope::kNone;  ///< most specific soft limit crossed upward
};

class ChannelLedger {
 public:
  static constexpr int32_t kMaxChannels = 1 << 20;   ///< indices, incl. the unscoped 0
  static constexpr int32_t kSegmentBits = 8;
  static constexpr int32_t kSegmentSize = 1 << kSegmentBits;
  static constexpr int32_t kSegments = kMaxChannels >> kSegmentBits;
  /// Remembered closed names: the most recently closed names that are still closed (a reopened
  /// name leaves the list, so closing and reopening the same ids never pushes other closed
  /// names out). ~200 bytes each, so at most ~13 MiB however many channels a long-running
  /// service opens and closes.
  static constexpr size_t kMaxClosedNames = 1u << 16;

  ChannelLedger() = default;
  ~ChannelLedger();
  ChannelLedger(const ChannelLedger&) = delete;
  ChannelLedger& operator=(const ChannelLedger&) = delete;

  /// Opens the unscoped channel 0. False if memory is refused. `single_owner`: one thread
  /// only will ever call this ledger (see the file comment).
  bool Init(bool single_owner = false) noexcept;
  bool single_owner() const noexcept { return single_owner_; }

  // --- channels (mutex) ---------------------------------------------------------
  Status Open(std::string_view name, const ChannelOptions& options, int32_t* index,
              bool* created) noexcept;
  int32_t Find(std::string_view name) const noexcept;
  /// Open -> closing, then waits for in-flight allocations to finish.
  /// kInvalidArgument for channel 0, kUnknownChannel / kChannelClosed otherwise.
  Status BeginClose(int32_t channel) noexcept;
  /// Closing -> free: remembers the name as closed (unless !remember: then it is as if
  /// never opened) and recycles the index.
  void FinishClose(int32_t channel, bool remember = true) noexcept;
  /// Closing -> open again (a close that was called off).
  void AbortClose(int32_t channel) noexcept;
  /// Undoes an open nobody used: if `channel` is the open incarnation `expected_owner` and
  /// no allocation is in flight in it and it holds no handles, frees it without remembering
  /// its name. Never waits and never shows the channel closed to a concurrent allocation
  /// (Enter waits out the short kDiscarding phase). kInvalidArgument if it is in use (it
  /// stays open), kChannelClosed if that incarnation is gone, kUnknownChannel for no channel.
  Status TryDiscard(int32_t channel, uint32_t expected_owner) noexcept;
  void OpenChannels(std::vector<std::pair<std::string, int32_t>>* out) const noexcept;

  // --- lock-free lookups ----------------------------------------------------------
  /// The slot of `channel`, or nullptr if never allocated.
  ChannelState* Get(int32_t channel) const noexcept;
  /// Allocation entry: kOk with *state (then call Exit), or kUnknownChannel /
  /// kChannelClosed.
  Status Enter(int32_t channel, ChannelState** state) noexcept;
  static void Exit(ChannelState* state) noexcept {
    state->inflight.fetch_sub(1, std::memory_order_seq_cst);
  }
  /// Exit for a ledger whose single_owner() is `single`.
  static void Exit(ChannelState* state, bool single) noexcept {
    FetchSub<int64_t>(state->inflight, 1, single, std::memory_order_seq_cst);
  }
  /// Open, or open while a TryDiscard looks at it.
  bool IsOpen(int32_t channel) const noexcept;

  // --- limits and usage -------------------------------------------------------------
  Status SetLimits(int32_t type, int32_t channel, const Limits& limits) noexcept;
  /// Field-wise minimum of the scopes that apply (without the manager's size cap).
  Limits Effective(int32_t type, int32_t channel) const noexcept;
  /// The limits of exactly one scope (SetLimits addressing); all unlimited if none.
  Limits Scope(int32_t type, int32_t channel) const noexcept;

  /// Check-and-charge `n` and one handle in every scope of (type, channel), see
  /// the file comment. On kResourceLimit fills out->refused_*.
  Status TryCharge(int32_t type, ChannelState* channel, uint64_t size, uint64_t n,
                   ChargeTicket* ticket, Allocation* out) noexcept;
  /// After the allocation succeeded: peaks (and the soft crossing to report).
  void Commit(int32_t type, ChannelState* channel, const ChargeTicket& ticket) noexcept;
  /// Gives back a charge.
  void Refund(int32_t type, ChannelState* channel, uint64_t n) noexcept;

  LedgerUsage ChannelUsage(int32_t channel) const noexcept;
  LedgerUsage TypeUsage(int32_t type, int32_t channel) const noexcept;
  void CountViolation(int32_t channel, Violation kind) noexcept;

 private:
  bool EnsureSegment(int32_t segment) noexcept;
  void ScopesOf(int32_t type, ChannelState* channel, LedgerScope* scopes[3]) noexcept;
  /// FinishClose with mu_ held.
  void FinishCloseLocked(int32_t channel, bool remember) noexcept;

  LedgerScope type_totals_[kMaxTypes];
  std::atomic<ChannelState*> segments_[kSegments] = {};  ///< lazily allocated
  bool single_owner_ = false;                            ///< fixed by Init

  mutable std::mutex mu_;
  // Guarded by mu_.
  int32_t high_water_ = 0;                          ///< indices [0, high_water_) allocated once
  std::vector<int32_t> free_indices_;               ///< recycled indices
  std::vector<std::string> names_;                  ///< name of each open index
  std::unordered_map<std::string, int32_t> open_;   ///< open name -> index
  std::list<std::string> closed_order_;             ///< closed names, oldest close first
  /// closed name -> its place in closed_order_ (so a reopen removes it in O(1))
  std::unordered_map<std::string, std::list<std::string>::iterator> closed_;
  uint32_t next_owner_ = 1;                         ///< owner epochs handed out
};

}  // namespace isopool
