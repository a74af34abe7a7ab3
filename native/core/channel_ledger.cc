// channel_ledger.cc — see channel_ledger.h for scopes, invariants and the CAS protocol.
#include "channel_ledger.h"

#include <algorithm>
#include <iterator>

#include <new>
#include <thread>

namespace isopool {

namespace {

/// ScopesOf's order: most specific first.
constexpr LimitScope kScopeKinds[3] = {LimitScope::kChannelType, LimitScope::kChannel,
                                       LimitScope::kType};

uint64_t Min(uint64_t a, uint64_t b) noexcept { return a < b ? a : b; }

Limits Tighten(Limits a, const Limits& b) noexcept {
  a.max_bytes = Min(a.max_bytes, b.max_bytes);
  a.max_handles = Min(a.max_handles, b.max_handles);
  a.max_allocation_size = Min(a.max_allocation_size, b.max_allocation_size);
  a.soft_bytes = Min(a.soft_bytes, b.soft_bytes);
  return a;
}

}  // namespace

// --- LedgerScope -------------------------------------------------------------------
// Limits and usage counters are independent words that guard no other data: relaxed.
// The reservation counters order with the committed ones (TryCharge, Refund).

void LedgerScope::Reset() noexcept {
  reserved_bytes.store(0, std::memory_order_relaxed);
  reserved_handles.store(0, std::memory_order_relaxed);
  bytes.store(0, std::memory_order_relaxed);
  handles.store(0, std::memory_order_relaxed);
  peak_bytes.store(0, std::memory_order_relaxed);
  rejections.store(0, std::memory_order_relaxed);
  SetLimits(Limits{});
}

void LedgerScope::SetLimits(const Limits& limits) noexcept {
  max_bytes.store(limits.max_bytes, std::memory_order_relaxed);
  max_handles.store(limits.max_handles, std::memory_order_relaxed);
  max_allocation_size.store(limits.max_allocation_size, std::memory_order_relaxed);
  soft_bytes.store(limits.soft_bytes, std::memory_order_relaxed);
}

Limits LedgerScope::GetLimits() const noexcept {
  Limits l;
  l.max_bytes = max_bytes.load(std::memory_order_relaxed);
  l.max_handles = max_handles.load(std::memory_order_relaxed);
  l.max_allocation_size = max_allocation_size.load(std::memory_order_relaxed);
  l.soft_bytes = soft_bytes.load(std::memory_order_relaxed);
  return l;
}

void LedgerScope::FillUsage(LedgerUsage* out) const noexcept {
  out->bytes = bytes.load(std::memory_order_relaxed);
  out->handles = handles.load(std::memory_order_relaxed);
  out->peak_bytes = peak_bytes.load(std::memory_order_relaxed);
  out->limit_rejections = rejections.load(std::memory_order_relaxed);
}

// --- ChannelLedger: storage ----------------------------------------------------------

ChannelLedger::~ChannelLedger() {
  for (auto& seg : segments_) delete[] seg.load(std::memory_order_relaxed);
}

bool ChannelLedger::EnsureSegment(int32_t segment) noexcept {
  // Called with mu_ held: a plain check-then-store has no competitor.
  if (segments_[segment].load(std::memory_order_relaxed) != nullptr) return true;
  ChannelState* fresh = new (std::nothrow) ChannelState[kSegmentSize];
  if (fresh == nullptr) return false;
  // release: lock-free readers (Get) see constructed slots.
  segments_[segment].store(fresh, std::memory_order_release);
  return true;
}

ChannelState* ChannelLedger::Get(int32_t channel) const noexcept {
  if (channel < 0 || channel >= kMaxChannels) return nullptr;
  ChannelState* seg = segments_[channel >> kSegmentBits].load(std::memory_order_acquire);
  return seg == nullptr ? nullptr : seg + (channel & (kSegmentSize - 1));
}

bool ChannelLedger::Init(bool single_owner) noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  single_owner_ = single_owner;
  if (!EnsureSegment(0)) return false;
  try {
    names_.emplace_back();
    free_indices_.reserve(64);
  } catch (...) {  // std::bad_alloc
    return false;
  }
  high_water_ = 1;
  ChannelState* st = Get(0);
  st->owner.store(next_owner_++, std::memory_order_relaxed);
  st->phase.store(static_cast<uint32_t>(ChannelPhase::kOpen), std::memory_order_seq_cst);
  return true;
}

// --- channels ---------------------------------------------------------------------------

Status ChannelLedger::Open(std::string_view name, const ChannelOptions& options, int32_t* index,
                           bool* created) noexcept {
  if (name.empty()) {  // the unscoped domain is always open; only its reuse mode can be set
    ChannelState* unscoped = Get(kUnscopedChannel);
    if (unscoped != nullptr) {
      if (options.immediate_reuse) {
        unscoped->options.fetch_or(4u, std::memory_order_relaxed);
      } else {
        unscoped->options.fetch_and(~4u, std::memory_order_relaxed);
      }
    }
    *index = kUnscopedChannel;
    *created = false;
    return Status::kOk;
  }
  std::lock_guard<std::mutex> lock(mu_);
  int32_t idx = -1;
  try {
    std::string key(name);
    auto it = open_.find(key);
    if (it != open_.end()) {
      *index = it->second;
      *created = false;
      return Status::kOk;
    }
    const bool recycled = !free_indices_.empty();
    if (recycled) {
      idx = free_indices_.back();
    } else {
      if (high_water_ >= kMaxChannels) return Status::kPoolExhausted;
      if (!EnsureSegment(high_water_ >> kSegmentBits)) return Status::kPoolExhausted;
      idx = high_water_;
      if (names_.size() <= static_cast<size_t>(idx)) names_.resize(idx + 1);
      // FinishClose must be able to push every index back without allocating.
      // Geometric growth: an exact reserve would reallocate on every new index (O(n) each).
      if (free_indices_.capacity() < static_cast<size_t>(idx) + 1) {
        free_indices_.reserve(std::max<size_t>(static_cast<size_t>(idx) + 1, 2 * free_indices_.capacity()));
      }
    }
    open_.emplace(key, idx);
    try {
      names_[idx] = key;
    } catch (...) {
      open_.erase(key);
      throw;
    }
    // Nothing below allocates.
    if (recycled) {
      free_indices_.pop_back();
    } else {
      ++high_water_;
    }
    auto closed = closed_.find(key);  // reopened: no longer "closed"
    if (closed != closed_.end()) {
      closed_order_.erase(closed->second);
      closed_.erase(closed);
    }
  } catch (...) {  // std::bad_alloc: the system refused memory; nothing changed
    return Status::kPoolExhausted;
  }
  ChannelState* st = Get(idx);
  st->total.Reset();
  for (auto& scope : st->types) scope.Reset();
  for (auto& v : st->violations) v.store(0, std::memory_order_relaxed);
  st->options.store(static_cast<uint32_t>(options.access) | (static_cast<uint32_t>(options.zero) << 1) |
                        (options.immediate_reuse ? 4u : 0u),
                    std::memory_order_relaxed);
  uint32_t owner = next_owner_++;
  if (owner == 0) owner = next_owner_++;  // 0 means "fresh memory"; skip it on wrap
  st->owner.store(owner, std::memory_order_relaxed);
  // seq_cst: pairs with Enter's inflight/phase protocol; publishes the fields above.
  st->phase.store(static_cast<uint32_t>(ChannelPhase::kOpen), std::memory_order_seq_cst);
  *index = idx;
  *created = true;
  return Status::kOk;
}

int32_t ChannelLedger::Find(std::string_view name) const noexcept {
  if (name.empty()) return kUnscopedChannel;
  std::lock_guard<std::mutex> lock(mu_);
  try {
    std::string key(name);
    auto it = open_.find(key);
    if (it != open_.end()) return it->second;
    return closed_.count(key) != 0 ? -2 : -1;
  } catch (...) {  // std::bad_alloc building the key
    return -1;
  }
}

bool ChannelLedger::IsOpen(int32_t channel) const noexcept {
  const ChannelState* st = Get(channel);
  if (st == nullptr) return false;
  const uint32_t phase = st->phase.load(std::memory_order_acquire);
  return phase == static_cast<uint32_t>(ChannelPhase::kOpen) ||
         phase == static_cast<uint32_t>(ChannelPhase::kDiscarding);
}

Status ChannelLedger::BeginClose(int32_t channel) noexcept {
  if (channel == kUnscopedChannel) return Status::kInvalidArgument;
  ChannelState* st = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (channel < 0 || channel >= high_water_) return Status::kUnknownChannel;
    st = Get(channel);
    if (st->phase.load(std::memory_order_relaxed) != static_cast<uint32_t>(ChannelPhase::kOpen)) {
      return Status::kChannelClosed;
    }
    // seq_cst (Dekker with Enter): either an allocator sees kClosing, or we see its inflight.
    st->phase.store(static_cast<uint32_t>(ChannelPhase::kClosing), std::memory_order_seq_cst);
  }
  while (st->inflight.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
  return Status::kOk;
}

void ChannelLedger::AbortClose(int32_t channel) noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  // seq_cst: pairs with Enter like BeginClose's store.
  Get(channel)->phase.store(static_cast<uint32_t>(ChannelPhase::kOpen), std::memory_order_seq_cst);
}

Status ChannelLedger::TryDiscard(int32_t channel, uint32_t expected_owner) noexcept {
  if (channel == kUnscopedChannel) return Status::kInvalidArgument;
  std::lock_guard<std::mutex> lock(mu_);
  if (channel < 0 || channel >= high_water_) return Status::kUnknownChannel;
  ChannelState* st = Get(channel);
  if (st->phase.load(std::memory_order_relaxed) != static_cast<uint32_t>(ChannelPhase::kOpen) ||
      (expected_owner != 0 && st->owner.load(std::memory_order_relaxed) != expected_owner)) {
    return Status::kChannelClosed;  // that incarnation is closed (another may hold the index)
  }
  // seq_cst (Dekker with Enter, as in BeginClose): either an allocator sees kDiscarding and
  // waits, or we see its inflight and leave the channel alone.
  st->phase.store(static_cast<uint32_t>(ChannelPhase::kDiscarding), std::memory_order_seq_cst);
  // With no allocation in flight and none able to enter, the handle counts can only fall. A
  // concurrent Free unreserves the channel total last (Refund), so a channel total that
  // holds no handle has been refunded completely and nothing will touch this ledger again
  // (Open resets it for the next incarnation). The channel-type scopes are read too, as a
  // second line of defence: they are only ever 0 then.
  bool used = st->inflight.load(std::memory_order_seq_cst) != 0 ||
              st->total.reserved_handles.load(std::memory_order_acquire) != 0;
  for (int32_t t = 0; t < kMaxTypes && !used; ++t) {
    used = st->types[t].reserved_handles.load(std::memory_order_acquire) != 0;
  }
  if (used) {
    st->phase.store(static_cast<uint32_t>(ChannelPhase::kOpen), std::memory_order_seq_cst);
    return Status::kInvalidArgument;
  }
  FinishCloseLocked(channel, /*remember=*/false);
  return Status::kOk;
}

void ChannelLedger::FinishClose(int32_t channel, bool remember) noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  FinishCloseLocked(channel, remember);
}

void ChannelLedger::FinishCloseLocked(int32_t channel, bool remember) noexcept {
  ChannelState* st = Get(channel);
  UnnameLocked(channel, remember);
  free_indices_.push_back(channel);  // capacity reserved at Open: does not allocate
  st->phase.store(static_cast<uint32_t>(ChannelPhase::kFree), std::memory_order_seq_cst);
}

void ChannelLedger::Unname(int32_t channel) noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  UnnameLocked(channel, /*remember=*/true);
}

void ChannelLedger::UnnameLocked(int32_t channel, bool remember) noexcept {
  std::string& name = names_[channel];
  if (name.empty()) return;  // unnamed already (a close that finishes in steps)
  auto open = open_.find(name);
  if (open != open_.end() && open->second == channel) open_.erase(open);
  if (remember) {
    try {
      // An open name is never in closed_ (Open removed it), so this is a new entry.
      closed_order_.push_back(name);
      try {
        closed_.emplace(name, std::prev(closed_order_.end()));
      } catch (...) {
        closed_order_.pop_back();
        throw;
      }
      while (closed_order_.size() > kMaxClosedNames) {
        closed_.erase(closed_order_.front());
        closed_order_.pop_front();
      }
    } catch (...) {
      // std::bad_alloc: the name is forgotten (FindChannel -> -1) rather than remembered.
    }
  }
  name.clear();
  name.shrink_to_fit();
}

void ChannelLedger::OpenChannels(std::vector<std::pair<std::string, int32_t>>* out) const noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  try {
    for (const auto& kv : open_) out->emplace_back(kv.first, kv.second);
  } catch (...) {
    // std::bad_alloc: a partial list.
  }
}

Status ChannelLedger::Enter(int32_t channel, ChannelState** state) noexcept {
  ChannelState* st = Get(channel);
  if (st == nullptr) return Status::kUnknownChannel;
  // seq_cst: Dekker handshake with BeginClose (store phase; load inflight). A single owner
  // is never concurrent with its own BeginClose: a load and a store suffice.
  const bool single = single_owner_;
  FetchAdd<int64_t>(st->inflight, 1, single, std::memory_order_seq_cst);
  uint32_t phase = st->phase.load(std::memory_order_seq_cst);
  while (phase == static_cast<uint32_t>(ChannelPhase::kDiscarding)) {
    // A TryDiscard holds the phase for a few loads under its mutex: step aside (so it sees
    // no allocation in flight and keeps the channel open, or frees it) and look again.
    FetchSub<int64_t>(st->inflight, 1, single, std::memory_order_seq_cst);
    std::this_thread::yield();
    FetchAdd<int64_t>(st->inflight, 1, single, std::memory_order_seq_cst);
    phase = st->phase.load(std::memory_order_seq_cst);
  }
  if (phase != static_cast<uint32_t>(ChannelPhase::kOpen)) {
    FetchSub<int64_t>(st->inflight, 1, single, std::memory_order_seq_cst);
    // A never-used slot has owner 0; a closed (recycled) one has had an owner.
    return st->owner.load(std::memory_order_relaxed) == 0 ? Status::kUnknownChannel
                                                          : Status::kChannelClosed;
  }
  *state = st;
  return Status::kOk;
}

// --- limits -------------------------------------------------------------------------------

Status ChannelLedger::SetLimits(int32_t type, int32_t channel, const Limits& limits) noexcept {
  std::lock_guard<std::mutex> lock(mu_);  // serialises with Open's Reset
  if (type >= kMaxTypes || type < kAllTypes) return Status::kInvalidArgument;
  if (channel == kTypeTotal) {
    if (type == kAllTypes) return Status::kInvalidArgument;
    // A limit that needs usage counted as it changes: charge the total first (for good).
    if (limits.max_bytes != kUnlimited || limits.max_handles != kUnlimited || limits.soft_bytes != kUnlimited) {
      ChargeTotalLocked(type);
    }
    type_totals_[type].scope.SetLimits(limits);
    return Status::kOk;
  }
  if (channel < 0 || channel >= high_water_) return Status::kUnknownChannel;
  ChannelState* st = Get(channel);
  if (st->phase.load(std::memory_order_relaxed) != static_cast<uint32_t>(ChannelPhase::kOpen)) {
    return Status::kChannelClosed;
  }
  if (type == kAllTypes) {
    st->total.SetLimits(limits);
  } else {
    st->types[type].SetLimits(limits);
  }
  return Status::kOk;
}

Limits ChannelLedger::Effective(int32_t type, int32_t channel) const noexcept {
  Limits l;
  if (type >= 0 && type < kMaxTypes) l = Tighten(l, type_totals_[type].scope.GetLimits());
  const ChannelState* st = channel >= 0 ? Get(channel) : nullptr;
  if (st != nullptr) {
    l = Tighten(l, st->total.GetLimits());
    if (type >= 0 && type < kMaxTypes) l = Tighten(l, st->types[type].GetLimits());
  }
  return l;
}

Limits ChannelLedger::Scope(int32_t type, int32_t channel) const noexcept {
  if (type >= kMaxTypes || type < kAllTypes) return Limits{};
  if (channel == kTypeTotal) return type == kAllTypes ? Limits{} : type_totals_[type].scope.GetLimits();
  const ChannelState* st = channel >= 0 ? Get(channel) : nullptr;
  if (st == nullptr) return Limits{};
  return type == kAllTypes ? st->total.GetLimits() : st->types[type].GetLimits();
}

void ChannelLedger::ScopesOf(int32_t type, ChannelState* channel, LedgerScope* scopes[3]) noexcept {
  scopes[0] = &channel->types[type];
  scopes[1] = &channel->total;
  scopes[2] = &type_totals_[type].scope;
}

// Why readers never see a scope above its hard limit (channel_ledger.h), for scopes S and R
// of one allocation (S == R included): each allocation X reserves in R (a successful CAS,
// acquire) before it commits to S (sequenced after), and uncommits from S before it
// unreserves R (sequenced before a release decrement). Take any prefix of S.bytes's
// modification order and the allocations committed in it, and W the one among them whose
// reservation in R came last in R's modification order. An X of them unreserved R before W
// reserved it would synchronise with W's acquire, so X's uncommit would happen before W's
// commit and be in the prefix: a contradiction. So at W's reservation they were all reserved
// in R together, and their sum is at most R.reserved_bytes <= R.max_bytes. Same for handles.
// Single owner: one thread, program order is the only order.

Status ChannelLedger::TryCharge(int32_t type, ChannelState* channel, uint64_t size, uint64_t n,
                                ChargeTicket* ticket, Allocation* out) noexcept {
  LedgerScope* scopes[3];
  ScopesOf(type, channel, scopes);
  const bool single = single_owner_;  // single owner: a load and a store per update
  ticket->total = OpenTotal(type, &ticket->bracket);
  const int charged = ticket->total ? 3 : 2;  // a summed type total is not reserved in

  int refused = -1;
  uint64_t limit = 0, in_use = 0;
  bool by_handles = false;
  bool by_size = false;

  // 1. Per-scope allocation size caps: nothing is reserved yet.
  for (int i = 0; i < 3 && refused < 0; ++i) {
    const uint64_t cap = scopes[i]->max_allocation_size.load(std::memory_order_relaxed);
    if (size > cap) {
      refused = i;
      limit = cap;
      in_use = scopes[i]->bytes.load(std::memory_order_relaxed);
      uint64_t handles = 0;
      if (i >= charged) SumType(type, &in_use, &handles);  // a summed type total's usage
      by_size = true;
    }
  }

  // 2. Reserve scope by scope, most specific first; roll back on a refusal.
  int reserved = 0;
  for (int i = 0; i < charged && refused < 0; ++i) {
    LedgerScope* s = scopes[i];
    if (s->max_bytes.load(std::memory_order_relaxed) == kUnlimited &&
        s->max_handles.load(std::memory_order_relaxed) == kUnlimited) {
      // Nothing to check: one add each instead of a compare-exchange loop that threads charging
      // the same scope make retry. A limit set meanwhile counts this charge as made before it,
      // as a compare-exchange that won with the limit loaded before the store would.
      // acquire: as below.
      FetchAdd<uint64_t>(s->reserved_bytes, n, single, std::memory_order_acquire);
      FetchAdd<uint64_t>(s->reserved_handles, 1, single, std::memory_order_acquire);
      reserved = i + 1;
      continue;
    }
    uint64_t cur = s->reserved_bytes.load(std::memory_order_relaxed);
    for (;;) {
      const uint64_t max = s->max_bytes.load(std::memory_order_relaxed);
      if (n > max || cur > max - n) {
        // Would exceed max_bytes: refuse without touching the counter.
        refused = i;
        limit = max;
        in_use = cur;
        break;
      }
      // acquire on success: pairs with Refund's release, see the comment above TryCharge.
      if (CompareExchangeWeak<uint64_t>(s->reserved_bytes, cur, cur + n, single, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
        break;
      }
      // CAS failed: another charge/refund moved the counter; `cur` reloaded, re-check.
    }
    if (refused >= 0) break;
    uint64_t h = s->reserved_handles.load(std::memory_order_relaxed);
    for (;;) {
      const uint64_t max = s->max_handles.load(std::memory_order_relaxed);
      if (h >= max) {
        // handles + 1 > max_handles: undo this scope's byte reservation and refuse. relaxed:
        // nothing was committed on it, there is nothing to order.
        FetchSub<uint64_t>(s->reserved_bytes, n, single, std::memory_order_relaxed);
        refused = i;
        limit = max;
        in_use = h;
        by_handles = true;
        break;
      }
      // acquire on success: as for bytes.
      if (CompareExchangeWeak<uint64_t>(s->reserved_handles, h, h + 1, single, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
        break;
      }
      // CAS failed: `h` reloaded, re-check.
    }
    if (refused >= 0) break;
    reserved = i + 1;
  }

  if (refused < 0) {
    ticket->n = n;
    ticket->soft = LimitScope::kNone;
    return Status::kOk;
  }

  // relaxed: a refused allocation never committed, there is nothing to order.
  for (int i = reserved - 1; i >= 0; --i) {
    FetchSub<uint64_t>(scopes[i]->reserved_bytes, n, single, std::memory_order_relaxed);
    FetchSub<uint64_t>(scopes[i]->reserved_handles, 1, single, std::memory_order_relaxed);
  }
  CloseBracket(ticket->bracket);
  ticket->bracket = ChargeTicket::kNoBracket;
  ticket->soft = LimitScope::kNone;
  if (refused == 2 && ticket->total_parked) return Status::kParkedCharges;  // the caller asks again
  for (auto* s : scopes) FetchAdd<uint64_t>(s->rejections, 1, single, std::memory_order_relaxed);
  out->refused_scope = kScopeKinds[refused];
  out->refused_limit = limit;
  out->refused_in_use = in_use;
  out->refused_handles = by_handles;
  out->refused_size = by_size;
  return Status::kResourceLimit;
}

void ChannelLedger::Commit(int32_t type, ChannelState* channel, ChargeTicket* ticket) noexcept {
  LedgerScope* scopes[3];
  ScopesOf(type, channel, scopes);
  const bool single = single_owner_;
  const uint64_t n = ticket->n;
  ticket->soft = LimitScope::kNone;
  const int charged = ticket->total ? 3 : 2;
  for (int i = 0; i < charged; ++i) {
    LedgerScope* s = scopes[i];
    // relaxed: sequenced after every reservation of this charge (TryCharge's acquire).
    FetchAdd<uint64_t>(s->handles, 1, single, std::memory_order_relaxed);
    const uint64_t before = FetchAdd<uint64_t>(s->bytes, n, single, std::memory_order_relaxed);
    const uint64_t after = before + n;  // a committed value of s->bytes
    uint64_t peak = s->peak_bytes.load(std::memory_order_relaxed);
    while (peak < after &&
           !CompareExchangeWeak<uint64_t>(s->peak_bytes, peak, after, single, std::memory_order_relaxed,
                                          std::memory_order_relaxed)) {
      // CAS failed: `peak` reloaded; stop once it is already >= ours.
    }
    const uint64_t soft = s->soft_bytes.load(std::memory_order_relaxed);
    if (ticket->soft == LimitScope::kNone && before <= soft && after > soft) {
      ticket->soft = kScopeKinds[i];  // the first crossed is the most specific
    }
  }
  CloseBracket(ticket->bracket);  // release: a switch that sees it closed sees these commits
  ticket->bracket = ChargeTicket::kNoBracket;
}

void ChannelLedger::Refund(int32_t type, ChannelState* channel, uint64_t n) noexcept {
  LedgerScope* scopes[3];
  ScopesOf(type, channel, scopes);
  const bool single = single_owner_;
  uint32_t bracket = ChargeTicket::kNoBracket;
  // Decided now, not at the charge: a charge made while the total was summed is in the sum
  // that made it charged.
  const bool total = OpenTotal(type, &bracket);
  // relaxed: sequenced before the release decrements below. Least specific first, the
  // reverse of Commit.
  for (int i = total ? 2 : 1; i >= 0; --i) {
    FetchSub<uint64_t>(scopes[i]->bytes, n, single, std::memory_order_relaxed);
    FetchSub<uint64_t>(scopes[i]->handles, 1, single, std::memory_order_relaxed);
  }
  // Type total, channel-type, then the channel total last (HeldHandles, TryDiscard).
  // release: a later reservation of the room (acquire) orders this charge's uncommit before
  // that allocation's commit; and a reader of the channel total's reserved_handles at 0
  // (acquire) knows this refund wrote the channel's ledger for the last time.
  for (int i : {2, 0, 1}) {
    if (i == 2 && !total) continue;
    FetchSub<uint64_t>(scopes[i]->reserved_bytes, n, single, std::memory_order_release);
    FetchSub<uint64_t>(scopes[i]->reserved_handles, 1, single, std::memory_order_release);
  }
  CloseBracket(bracket);
}

void ChannelLedger::Cancel(int32_t type, ChannelState* channel, ChargeTicket* ticket) noexcept {
  LedgerScope* scopes[3];
  ScopesOf(type, channel, scopes);
  const bool single = single_owner_;
  // Never committed: nothing to order (as TryCharge's own roll-back).
  for (int i = ticket->total ? 2 : 1; i >= 0; --i) {
    FetchSub<uint64_t>(scopes[i]->reserved_bytes, ticket->n, single, std::memory_order_release);
    FetchSub<uint64_t>(scopes[i]->reserved_handles, 1, single, std::memory_order_release);
  }
  CloseBracket(ticket->bracket);
  ticket->bracket = ChargeTicket::kNoBracket;
}

bool ChannelLedger::TotalCharged(int32_t type) const noexcept {
  return type >= 0 && type < kMaxTypes && type_totals_[type].mode.load(std::memory_order_acquire) == kCharged;
}

bool ChannelLedger::OpenTotal(int32_t type, uint32_t* bracket) noexcept {
  *bracket = ChargeTicket::kNoBracket;
  std::atomic<uint32_t>& mode = type_totals_[type].mode;
  // Charged is final: no bracket. Single owner: the switch runs on this thread, between calls.
  uint32_t m = mode.load(std::memory_order_acquire);
  if (m == kCharged || single_owner_) return m == kCharged;
  const uint32_t cell = ThisThreadShard();
  for (;;) {
    // seq_cst pair with ChargeTotalLocked: it stores kSwitching then reads every cell, this
    // adds to a cell then reads the mode; one of the two sees the other.
    inflight_[cell].n.fetch_add(1, std::memory_order_seq_cst);
    m = mode.load(std::memory_order_seq_cst);
    if (m == kSummed) {
      *bracket = cell;
      return false;
    }
    inflight_[cell].n.fetch_sub(1, std::memory_order_release);
    if (m == kCharged) return true;
    while (mode.load(std::memory_order_acquire) == kSwitching) std::this_thread::yield();
  }
}

void ChannelLedger::SumType(int32_t type, uint64_t* bytes, uint64_t* handles) const noexcept {
  uint64_t b = 0, h = 0;
  for (const auto& seg : segments_) {
    const ChannelState* st = seg.load(std::memory_order_acquire);
    if (st == nullptr) continue;
    for (int32_t i = 0; i < kSegmentSize; ++i) {
      b += st[i].types[type].bytes.load(std::memory_order_relaxed);
      h += st[i].types[type].handles.load(std::memory_order_relaxed);
    }
  }
  *bytes = b;
  *handles = h;
}

void ChannelLedger::ChargeTotalLocked(int32_t type) noexcept {
  SharedScope& t = type_totals_[type];
  if (t.mode.load(std::memory_order_relaxed) == kCharged) return;
  t.mode.store(kSwitching, std::memory_order_seq_cst);
  if (!single_owner_) {
    // Every charge or refund that saw kSummed closes its bracket; the later ones wait.
    for (auto& cell : inflight_) {
      while (cell.n.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
    }
  }
  uint64_t bytes = 0, handles = 0;
  SumType(type, &bytes, &handles);
  LedgerScope& s = t.scope;
  s.reserved_bytes.store(bytes, std::memory_order_relaxed);
  s.reserved_handles.store(handles, std::memory_order_relaxed);
  s.handles.store(handles, std::memory_order_relaxed);
  s.bytes.store(bytes, std::memory_order_relaxed);
  if (s.peak_bytes.load(std::memory_order_relaxed) < bytes) s.peak_bytes.store(bytes, std::memory_order_relaxed);
  t.mode.store(kCharged, std::memory_order_release);  // charges from now on start from the sum
}

uint64_t ChannelLedger::HeldHandles(int32_t channel) const noexcept {
  const ChannelState* st = Get(channel);
  // acquire: pairs with Refund's last release (see there).
  return st == nullptr ? 0 : st->total.reserved_handles.load(std::memory_order_acquire);
}

LedgerUsage ChannelLedger::ChannelUsage(int32_t channel) const noexcept {
  LedgerUsage u;
  const ChannelState* st = Get(channel);
  if (st == nullptr) return u;
  st->total.FillUsage(&u);
  for (uint32_t k = 0; k < kViolationKinds; ++k) {
    u.violations[k] = st->violations[k].load(std::memory_order_relaxed);
  }
  return u;
}

LedgerUsage ChannelLedger::TypeUsage(int32_t type, int32_t channel) const noexcept {
  LedgerUsage u;
  if (type < 0 || type >= kMaxTypes) return u;
  if (channel == kTypeTotal) {
    type_totals_[type].scope.FillUsage(&u);
    if (!TotalCharged(type)) {
      SumType(type, &u.bytes, &u.handles);
      u.peak_bytes = std::max(u.peak_bytes, u.bytes);  // not tracked while summed
    }
    return u;
  }
  const ChannelState* st = Get(channel);
  if (st != nullptr) st->types[type].FillUsage(&u);
  return u;
}

void ChannelLedger::CountViolation(int32_t channel, Violation kind) noexcept {
  ChannelState* st = Get(channel);
  const uint32_t k = static_cast<uint32_t>(kind);
  if (st == nullptr || k >= kViolationKinds) return;
  FetchAdd<uint64_t>(st->violations[k], 1, single_owner_, std::memory_order_relaxed);
}

}  // namespace isopool
