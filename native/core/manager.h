// manager.h — the native core's facade: pools + handle table + channel ledgers.
//
// Glossary
//   type      a resource type. Index 0 is the built-in memory type "buffer".
//             Others are added by DefineType (memory or counter kind). At most
//             kMaxTypes types.
//   channel   an isolation domain (tenant, connection). Index 0 is the unscoped
//             domain: always open, name "", governed only by type-level limits.
//             Channel indices are recycled after close; every open gets a fresh
//             `owner` epoch so zeroing never confuses two incarnations.
//   handle    one live allocation. Its id is a safe integer (< 2^53) carrying
//             index, generation and keyed check bits (see handle_table.h).
//   slot      a fixed-size piece of a slab, served by a size-class pool.
//   direct    an allocation above the largest slot size: its own mapping,
//             charged its size rounded up to 4 KiB; pool index kPoolDirect.
//   charged   bytes charged to ledgers: slot bytes for pooled memory, size
//             rounded up to 4 KiB for direct, `size` units for counters.
//
// Contract
//   * Never throws; every fallible call returns a Status.
//   * A call that fails leaves pools, ledgers and the handle table exactly as
//     they were; only refusal/violation counters record it.
//   * Thread-safe: any thread may call any method concurrently. Hot paths
//     (Allocate, Free, Validate, Lookup) are lock-free; channel open/close,
//     type definition and limit changes may take a mutex. Except with
//     ManagerConfig::single_owner: then one thread at a time makes every call.
//   * Limits hold exactly: usage never exceeds a hard limit, even transiently.
//
// Lifetime: Manager is reference counted (Ref/Unref). The binding holds one
// reference per JS wrapper and one per exported ArrayBuffer, so memory stays
// mapped while any JS object can still reach it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "status.h"
#include "types.h"

namespace isopool {

class Manager {
 public:
  /// Creates a manager. kInvalidArgument for a bad config (no pools is allowed:
  /// then every memory allocation is direct). Never throws.
  static Status Create(const ManagerConfig& config, Manager** out) noexcept;

  void Ref() noexcept;
  void Unref() noexcept;  ///< deletes the manager (unmapping everything) at zero

  const ManagerConfig& config() const noexcept;

  // --- types -------------------------------------------------------------
  /// kInvalidArgument if the name exists or kMaxTypes is reached.
  Status DefineType(std::string_view name, TypeKind kind, int32_t* index) noexcept;
  int32_t FindType(std::string_view name) const noexcept;  ///< -1 if unknown
  TypeKind KindOf(int32_t type) const noexcept;

  // --- channels ----------------------------------------------------------
  /// Opens `name`. If it is already open: *created = false and *index is the
  /// open channel (options ignored; the caller decides whether that is an
  /// error). A previously closed name reopens with a fresh ledger.
  Status OpenChannel(std::string_view name, const ChannelOptions& options,
                     int32_t* index, bool* created) noexcept;
  /// >= 0: open channel index; -1: never opened (or forgotten); -2: closed.
  int32_t FindChannel(std::string_view name) const noexcept;
  /// Frees every live handle of the channel (reason kChannelClose), appends
  /// them to *freed, marks the name closed and recycles the index.
  Status CloseChannel(int32_t channel, std::vector<HandleInfo>* freed) noexcept;
  Status CloseChannel(int32_t channel, const CallContext& ctx, std::vector<HandleInfo>* freed) noexcept;
  /// The first half of a close that finishes in steps: from now on no allocation, free,
  /// transfer or adoption enters the channel, so to every caller its handles are freed
  /// (STALE_HANDLE, closed by its channel), and its name is closed (it reopens as a new
  /// incarnation). *count and *bytes are what it holds: what the steps will free. The same
  /// thread (ctx.env) calls CloseChannelStep until nothing is left; ReclaimEnv finishes what
  /// that thread leaves.
  Status BeginChannelClose(int32_t channel, const CallContext& ctx, uint64_t* count, uint64_t* bytes) noexcept;
  /// Frees up to `max` handles of a close under way (reason kChannelClose), appending them to
  /// *freed (may be null); *left is how many remain (0: done, the index is recycled). A
  /// channel with no close under way: *left = 0, nothing happens.
  void CloseChannelStep(int32_t channel, const CallContext& ctx, uint64_t max,
                        std::vector<HandleInfo>* freed, uint64_t* left) noexcept;
  /// CloseChannelStep in two halves, for a caller that must look at each handle between them:
  /// Claim takes up to `max` more handles (appended to *claimed; each now waits for Finish),
  /// Finish frees them, parking the memory of the k-th until its buffer dies where keep[k]
  /// (a buffer the caller cannot revoke), and sets *left. kChannelClosed: no close under way;
  /// kInvalidArgument: Claim before the last claim's Finish.
  Status CloseChannelClaim(int32_t channel, uint64_t max, std::vector<HandleInfo>* claimed) noexcept;
  Status CloseChannelFinish(int32_t channel, const CallContext& ctx, const uint8_t* keep, size_t keep_n,
                            uint64_t* left) noexcept;
  /// Handles of closes that have not finished yet.
  uint64_t ClosingHandles() const noexcept;
  /// Undoes an open that turned out unneeded (an auto-open whose allocation failed): closes
  /// the incarnation `expected_owner` (0: whichever is open) if it holds no handles and no
  /// allocation is in flight in it, without remembering its name, as if it was never opened.
  /// kInvalidArgument (and the channel stays open) if it is in use; kChannelClosed if that
  /// incarnation is gone. Never waits, and a concurrent allocation in the channel never sees
  /// it closed unless the discard succeeds.
  Status DiscardChannel(int32_t channel, uint32_t expected_owner = 0) noexcept;
  ChannelOptions OptionsOf(int32_t channel) const noexcept;
  uint32_t OwnerOf(int32_t channel) const noexcept;

  // --- limits ------------------------------------------------------------
  /// type kAllTypes + channel c : the channel's total; type t + kTypeTotal :
  /// the type's total; type t + channel c : that type within that channel.
  /// Fields equal to kUnlimited mean "none". kInvalidArgument for other combos.
  Status SetLimits(int32_t type, int32_t channel, const Limits& limits) noexcept;
  /// Field by field, the tightest limit that applies to (type, channel),
  /// including the manager's max_allocation_size.
  Limits EffectiveLimits(int32_t type, int32_t channel) const noexcept;
  /// The limits set on exactly that scope (same addressing as SetLimits), not the effective ones.
  Limits ScopeLimits(int32_t type, int32_t channel) const noexcept;

  // --- handles (lock-free) -------------------------------------------------
  /// Size is validated by the caller (1..max_allocation_size) but re-checked
  /// here (kInvalidSize). Memory types get zeroed memory per the channel's
  /// ZeroMode; view-mode channels draw from view-only slabs.
  Status Allocate(int32_t type, uint64_t size, int32_t channel, Allocation* out) noexcept;
  Status Allocate(int32_t type, uint64_t size, int32_t channel, const CallContext& ctx,
                  Allocation* out) noexcept;
  /// Frees a live handle. `presenter` is the channel whose scope presented the
  /// id, or -1 for the manager itself. Returns:
  ///   kOk (freed; *info describes it), kInvalidHandle (forged),
  ///   kStaleHandle (already freed; *violations has CHANNEL_CLOSED if its channel's close freed it),
  ///   kIsolationViolation (presenter != owner channel: refused, counted),
  ///   kChannelClosed (ctx.expected_owner > 0 and the presenter is not that open incarnation:
  ///   the caller's scope was closed; nothing is looked at or counted).
  /// Forged/stale/cross-channel attempts are counted as violations against
  /// the presenter (or the owner channel when presenter == -1 and known).
  Status Free(uint64_t id, int32_t presenter, FreeReason reason, HandleInfo* info,
              uint32_t* violations) noexcept;
  /// As above, from thread ctx.env: a revocable handle whose buffer another thread holds is
  /// freed now but its memory is parked (HandleInfo::parked) until that buffer is released.
  Status Free(uint64_t id, int32_t presenter, FreeReason reason, const CallContext& ctx,
              HandleInfo* info, uint32_t* violations) noexcept;
  /// Violation mask (ViolationBit) for presenting `id` to `presenter` (-1 =
  /// manager). Counts each violation found. Fills *info when the id is live.
  uint32_t Validate(uint64_t id, int32_t presenter, HandleInfo* info) noexcept;
  /// kOk and *info for a live id; kInvalidHandle / kStaleHandle otherwise. No counting.
  Status Lookup(uint64_t id, HandleInfo* info) const noexcept;
  /// True only for an id that was issued and is fully released (slot returned,
  /// ledger refunded). False for live, in-transit and forged ids, and for freed ids whose
  /// memory is parked until a buffer over it dies.
  bool IsReleased(uint64_t id) const noexcept;
  /// Counts a violation found by the binding (e.g. kBufferDetached).
  void CountViolation(int32_t channel, Violation kind) noexcept;

  // --- threads (SPEC §3) -------------------------------------------------------
  /// Live -> in transit. kInvalidHandle/kStaleHandle/kIsolationViolation as Free;
  /// kInvalidHandle if already in transit. A deferred-reuse revocable handle whose holder has
  /// a buffer attached keeps it: that buffer is pinned (info->parked) and the memory returns
  /// to no pool while it lives; otherwise the caller revokes its buffer.
  Status BeginTransfer(uint64_t id, HandleInfo* info) noexcept;
  /// In transit -> live. kInvalidHandle if forged or not in transit, kStaleHandle if freed.
  Status Adopt(uint64_t id, HandleInfo* info) noexcept;
  /// As above; ctx.env becomes the holder, with a buffer attached if `attached`.
  Status Adopt(uint64_t id, const CallContext& ctx, bool attached, HandleInfo* info) noexcept;

  /// The thread `env` released its revocable buffer over `id` (finalizer of that buffer, after
  /// detach or GC). Returns parked memory to its pool; marks a live handle as no longer
  /// reachable through a buffer in that thread.
  void OnBufferReleased(uint64_t id, uint32_t env) noexcept;
  /// Ids freed by other threads whose revocable buffers `env` still holds: that thread must
  /// detach them (which releases the parked memory). Appends and clears. Cheap when empty.
  void DrainRevocations(uint32_t env, std::vector<uint64_t>* ids) noexcept;
  bool HasRevocations() const noexcept;
  /// Makes `*pending` say whether `env` has revocations to drain: 1 from the moment ids are
  /// posted for it, 0 once DrainRevocations took them, so the thread need not call in to ask.
  /// nullptr (or ReclaimEnv) stops it; the word must stay valid until then. False if memory
  /// was refused: `*pending` is then left as it is.
  bool WatchRevocations(uint32_t env, std::atomic<uint32_t>* pending) noexcept;
  /// Thread `env` is leaving (worker exit: kLeak, or close() of its attachment: kManagerClose):
  /// frees every live handle it holds (not those in transit) with `reason`. kLeak also
  /// releases memory parked for its buffers (no JS runs there any more) and counts the frees
  /// as thread-exit reclaims. Returns how many were freed.
  uint64_t ReclaimEnv(uint32_t env, FreeReason reason) noexcept;

  // --- fast lane (single owner, not hardened) ------------------------------------------
  // The binding's JS side may reuse the slot of a deallocated pooled handle for the next
  // allocation of the same channel, type and pool without calling in here, under an id it
  // reserved beforehand; it reports what happened (a journal) before anything observes the
  // manager. These three calls replay that journal so ledgers, statistics and the handle
  // table end exactly as the plain Free/Allocate calls would have left them. Each refuses
  // (kInvalidArgument, nothing changed) unless config().single_owner && !config().hardened.
  //
  // Reserved-for-the-fast-lane indices are remembered (a bitmap by index) until consumed by
  // Reissue or Burn; unconsumed ones are dropped at teardown. Their ids probe as forged (or,
  // after the index's generation wrapped, as stale) until consumed.

  /// Takes up to `n` free handle indices and writes to ids[0..*got) the id each will carry
  /// when published (exactly what HandleTable::Publish returns, generation wrap included).
  /// *got < n when the table is full.
  Status ReserveIds(uint32_t n, uint64_t* ids, uint32_t* got) noexcept;
  /// As if Free(old_id, -1, kDeallocate) and an Allocate of `size` that landed on the same
  /// slot happened at once: old_id becomes stale (its index recycled through the
  /// quarantine), new_id (unconsumed, from ReserveIds) is published live with old_id's
  /// record but size `size`, alloc_time now, latency 0, and the holder env of old_id.
  /// Ledgers unchanged (net zero); pool live bytes += size - old size; allocations,
  /// deallocations and the pool's hits + 1; no latency samples, no zeroing.
  /// Refused (nothing changed): kInvalidArgument unless old_id is live (not in transit),
  /// pooled memory (view or revocable), new_id is unconsumed, 1 <= size <=
  /// max_allocation_size and size picks the same pool; kResourceLimit if a limit's
  /// max_allocation_size is below `size`. Byte and handle limits are not checked: the
  /// charge is the same, so usage does not grow (a plain Free + Allocate would refuse only
  /// where a limit was lowered below the usage; the caller must not reuse then).
  Status Reissue(uint64_t old_id, uint64_t new_id, uint64_t size) noexcept;
  /// `id` (unconsumed, from ReserveIds) counts as an allocation of `size` bytes over the slot of
  /// live handle `source_id`, deallocated again (reason kDeallocate): the JS side issued and
  /// freed it between two journals while `source_id` held the slot natively. It probes as
  /// stale from now on, never live or forged, and its record is the source's (channel, type,
  /// pool) with `size`, so a stale presentation is counted as after a plain free. Its index
  /// is recycled through the quarantine. Allocations, deallocations and the pool's hits + 1;
  /// no ledger change, no latency samples. Refused (nothing changed, kInvalidArgument) as
  /// Reissue refuses `source_id` and `size`, except that no limit's max_allocation_size is
  /// checked (the id is dead once burned; the JS side applies it before reuse), and for an `id`
  /// that is not unconsumed.
  Status Burn(uint64_t id, uint64_t source_id, uint64_t size) noexcept;

  // --- view mode -------------------------------------------------------------
  /// Base address and byte length of the slab `slab_key` so the binding can
  /// export one ArrayBuffer per slab. Increments the slab's export count; the
  /// slab's memory stays mapped until every export is released.
  Status ExportSlab(uint64_t slab_key, uint8_t** base, uint64_t* length) noexcept;
  void ReleaseSlabExport(uint64_t slab_key) noexcept;
  /// Changes whenever an exported slab is retired (emptied and given up while exported).
  uint64_t SlabRetireEpoch() const noexcept;
  /// True while `slab_key` is retired: mapped only until its exports are released.
  bool SlabRetired(uint64_t slab_key) noexcept;
  /// Bytes of the manager's slabs and direct mappings resident in memory (mincore). Diagnostic:
  /// walks every slab under the registry lock.
  uint64_t ResidentBytes() noexcept;

  // --- observation -----------------------------------------------------------
  LedgerUsage ChannelUsage(int32_t channel) const noexcept;             ///< over all types
  LedgerUsage TypeUsage(int32_t type, int32_t channel) const noexcept;  ///< channel kTypeTotal: type total
  /// Appends the names of open channels with their indices.
  void OpenChannels(std::vector<std::pair<std::string, int32_t>>* out) const noexcept;
  void Snapshot(ManagerSnapshot* out) const noexcept;
  /// Live handles of a channel (for isolation checks): count and charged bytes
  /// recomputed from the handle table, independent of the ledger.
  void RecountChannel(int32_t channel, uint64_t* handles, uint64_t* charged) const noexcept;
  /// Ids of the channel's live and in-transit handles (appended to `ids`; on std::bad_alloc the
  /// list is incomplete). A snapshot: other threads may change it meanwhile.
  void ChannelIds(int32_t channel, std::vector<uint64_t>* ids) const noexcept;

  /// Empties the calling thread's caches (slab_pool.h magazines, handle_table.h quarantine)
  /// into the shared structures. A thread's exit does this by itself; a thread that goes idle
  /// after a burst may call it so that its cached slots do not keep their slabs mapped.
  void FlushThreadCaches() noexcept;

  // --- test hooks --------------------------------------------------------------
  /// Makes the next `n` system allocations fail (ERR_POOL_EXHAUSTED path).
  void InjectAllocationFailures(uint32_t n) noexcept;

 private:
  Manager() = default;
  ~Manager();
  struct Impl;
  Impl* impl_ = nullptr;
  std::atomic<uint32_t> refs_{1};
};

}  // namespace isopool
