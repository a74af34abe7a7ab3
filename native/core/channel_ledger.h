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
// Invariants (per scope S; "reserved" counts the charges that passed S's check,
// "committed" those of allocations that passed every check and will be handed out)
//   S.committed_bytes <= S.reserved_bytes <= S.max_bytes, same for handles (when the
//     limit was in force before the charge), and S.peak_bytes is a value S.committed_bytes
//     had: so S.peak_bytes <= S.max_bytes too
//   at quiescence, reserved == committed, and for each channel c and type t:
//     channel_total(c).bytes == sum_t channel_type(c, t).bytes
//     type_total(t).bytes    == sum_c channel_type(c, t).bytes
//
// Hard limits as readers see them
//   Readers (metrics, Prometheus, trackResourceUsage, peaks) see committed usage only. A
//   charge that one scope admits and another refuses, or that is refunded because the
//   handle table or the pool failed after it, is never visible in any scope's usage or
//   peak. So no reader ever sees a scope above the hard limit effective for it:
//     channel-type (c, t)  eff(c, t) = min(channel-type, channel total, type total), field
//                          by field: what getResourceLimits(t, c) returns;
//     channel total c      min(its own limit, sum over the types t in use of eff(c, t)):
//                          with limits only on channel-type scopes, the channel may hold up
//                          to the sum of them; with one type in use, eff(c, t) bounds it;
//     type total t         min(its own limit, sum over the channels c of eff(c, t)).
//   Each bound holds because every committed allocation of a scope is, at the same
//   instant, reserved in all three of its scopes (the proof is the order argument in
//   TryCharge / Commit / Refund: reservations acquire, unreservations release).
//
// Check-and-charge (TryCharge), Commit, Refund
//   TryCharge reserves in every scope, from the most specific to the least: channel-type,
//   channel total, type total (unless it is summed: see below). Each scope is one CAS loop on `reserved_bytes` (refuse if
//   reserved_bytes + n > max_bytes), then one on `reserved_handles`. A refusal rolls back
//   the scopes already reserved, so a scope a more specific scope refuses for is never
//   touched (a channel hammering its own limit never disturbs the shared type total), and
//   a refused allocation leaves every counter as it was except limit_rejections: +1 in
//   every scope that applies (so a channel's limit_rejections counts its refused
//   allocations whichever scope refused them). A caller whose parked slots are charged in
//   the type total (ChargeTicket::total_parked) hears that total's refusal as
//   kParkedCharges, with no counter changed at all: it frees them and asks again.
//   Commit (once the allocation can no longer fail) adds the charge to the committed
//   counters, channel-type first, and records peaks and the soft crossing from them.
//   Refund takes the charge out of the committed counters (type total first), then
//   unreserves: type total, channel-type, and the channel total last, so a channel total
//   whose reserved_handles reads 0 (acquire) has seen the last refund write anything to
//   the channel (CloseChannel, TryDiscard).
//
// Summed type totals
//   A type total with no byte, handle or soft limit (every type total until one is set) is
//   not charged at all: every thread would write its counters, so it would be the one cache
//   line all allocations in the process share. Its usage is then the sum of the type's
//   channel-type scopes, read on demand (TypeUsage). The first SetLimits that gives it such a
//   limit makes it charged for good (ChargeTotalLocked): the switch waits for the charges and
//   refunds in flight that saw it summed (each brackets its work in its thread shard's
//   `inflight_` cell, a Dekker pair with the switch's mode store), sums the channel-type
//   scopes into it, and from then on every allocation charges it as above. An allocation
//   committed while it was summed is in that sum, so its later refund leaves it exact. (So no
//   thread may set such a limit between its own TryCharge and Commit: it would wait for itself.)
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

#include "metrics.h"  // ThisThreadShard
#include "types.h"
#include "single_owner.h"
#include "status.h"

namespace isopool {

/// One ledger scope. Limits and usage counters are relaxed; the reservation counters
/// order with the committed ones as TryCharge / Refund describe.
struct LedgerScope {
  std::atomic<uint64_t> reserved_bytes{0};    ///< bytes/units passed this scope's check, not refunded
  std::atomic<uint64_t> reserved_handles{0};  ///< handles passed this scope's check, not refunded
  std::atomic<uint64_t> bytes{0};             ///< committed bytes/units in use (what readers see)
  std::atomic<uint64_t> handles{0};           ///< committed live handles (what readers see)
  std::atomic<uint64_t> peak_bytes{0};        ///< max committed bytes ever
  std::atomic<uint64_t> max_bytes{kUnlimited};
  std::atomic<uint64_t> max_handles{kUnlimited};
  std::atomic<uint64_t> max_allocation_size{kUnlimited};
  std::atomic<uint64_t> soft_bytes{kUnlimited};
  std::atomic<uint64_t> rejections{0};        ///< allocations refused by a limit (cold: last)

  void Reset() noexcept;  ///< zero usage, no limits
  void SetLimits(const Limits& limits) noexcept;
  Limits GetLimits() const noexcept;
  void FillUsage(LedgerUsage* out) const noexcept;  ///< all but violations
};
// Ten words: a scope straddles two cache lines (17 scopes per channel; a 128-byte
// alignment would double every channel's ledger for a few cycles a charge).
static_assert(sizeof(LedgerScope) == 80, "ten 8-byte words, no padding");

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

/// A successful TryCharge, for Commit: the charge, and what Commit found.
struct ChargeTicket {
  uint64_t n = 0;                       ///< bytes/units reserved in every scope
  LimitScope soft = LimitScope::kNone;  ///< set by Commit: most specific soft limit crossed upward
  bool total = false;                   ///< the type total is charged (else summed)
  uint32_t bracket = kNoBracket;        ///< inflight_ cell held until Commit or Cancel
  /// In: CallContext::total_parked. A refusal by the type total is then kParkedCharges and
  /// counts no rejection (everything else as for kResourceLimit).
  bool total_parked = false;
  static constexpr uint32_t kNoBracket = UINT32_MAX;
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
  /// A closing channel's name is closed now, while its index stays reserved until
  /// FinishClose (a close that finishes in steps): the name reopens as a new incarnation.
  void Unname(int32_t channel) noexcept;
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
  /// IsOpen, as the incarnation `owner`.
  bool IsOpenAs(int32_t channel, uint32_t owner) const noexcept {
    const ChannelState* st = Get(channel);
    return st != nullptr && st->owner.load(std::memory_order_relaxed) == owner && IsOpen(channel);
  }

  // --- limits and usage -------------------------------------------------------------
  Status SetLimits(int32_t type, int32_t channel, const Limits& limits) noexcept;
  /// Field-wise minimum of the scopes that apply (without the manager's size cap).
  Limits Effective(int32_t type, int32_t channel) const noexcept;
  /// The limits of exactly one scope (SetLimits addressing); all unlimited if none.
  Limits Scope(int32_t type, int32_t channel) const noexcept;

  /// Check-and-reserve `n` and one handle in every scope of (type, channel), see
  /// the file comment. On kResourceLimit fills out->refused_*; kParkedCharges: see ChargeTicket.
  Status TryCharge(int32_t type, ChannelState* channel, uint64_t size, uint64_t n,
                   ChargeTicket* ticket, Allocation* out) noexcept;
  /// Once the allocation can no longer fail: the charge becomes usage readers see; peaks;
  /// ticket->soft gets the soft crossing to report.
  void Commit(int32_t type, ChannelState* channel, ChargeTicket* ticket) noexcept;
  /// Gives back a committed charge.
  void Refund(int32_t type, ChannelState* channel, uint64_t n) noexcept;
  /// Gives back what TryCharge reserved for an allocation that failed before Commit.
  void Cancel(int32_t type, ChannelState* channel, ChargeTicket* ticket) noexcept;
  /// Whether type `type`'s total is charged by every allocation (else summed on demand).
  bool TotalCharged(int32_t type) const noexcept;
  /// Handles reserved in the channel's total, read with acquire: 0 means no refund will
  /// write to the channel's ledger again unless an allocation enters (see Refund).
  uint64_t HeldHandles(int32_t channel) const noexcept;

  LedgerUsage ChannelUsage(int32_t channel) const noexcept;
  LedgerUsage TypeUsage(int32_t type, int32_t channel) const noexcept;
  void CountViolation(int32_t channel, Violation kind) noexcept;

 private:
  bool EnsureSegment(int32_t segment) noexcept;
  /// Most specific first: [0] channel-type, [1] channel total, [2] type total.
  void ScopesOf(int32_t type, ChannelState* channel, LedgerScope* scopes[3]) noexcept;
  /// Whether the type total is charged; if it is summed, opens a bracket in this thread's
  /// inflight_ cell (*bracket) that the caller closes with CloseBracket. Waits out a switch.
  bool OpenTotal(int32_t type, uint32_t* bracket) noexcept;
  void CloseBracket(uint32_t bracket) noexcept {
    if (bracket != ChargeTicket::kNoBracket) inflight_[bracket].n.fetch_sub(1, std::memory_order_release);
  }
  /// The committed bytes and handles of every channel-type scope of `type` (a summed total).
  void SumType(int32_t type, uint64_t* bytes, uint64_t* handles) const noexcept;
  /// Summed -> charged (see the file comment), with mu_ held.
  void ChargeTotalLocked(int32_t type) noexcept;
  /// FinishClose with mu_ held.
  void FinishCloseLocked(int32_t channel, bool remember) noexcept;
  /// Unname with mu_ held; `remember` records the name as closed.
  void UnnameLocked(int32_t channel, bool remember) noexcept;

  /// A type total is charged by every thread: each has its cache lines to itself, so no
  /// read-mostly field (the ledger's, or the manager's beside it) shares a line it writes.
  enum TotalMode : uint32_t { kSummed = 0, kSwitching = 1, kCharged = 2 };
  struct alignas(64) SharedScope {
    LedgerScope scope;
    std::atomic<uint32_t> mode{kSummed};  ///< TotalMode; only ChargeTotalLocked writes it
  };
  SharedScope type_totals_[kMaxTypes];
  /// Charges and refunds in flight that may write a summed type total, per thread shard.
  struct alignas(64) InflightCell {
    std::atomic<uint64_t> n{0};
  };
  InflightCell inflight_[kStatShards + 1];
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
