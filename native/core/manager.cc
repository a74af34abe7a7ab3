// manager.cc — the core facade: pools + handle table + channel ledgers.
//
// Allocate, in order (each step undone if a later one fails, so a failed call
// changes nothing but refusal counters):
//   1. type and size checks              (kUnknownType, kInvalidSize)
//   2. channel Enter: inflight + 1       (kUnknownChannel, kChannelClosed)
//   3. ledger check-and-charge           (kResourceLimit)
//   4. handle index Reserve              (kHandleTableFull; kPoolExhausted: segment refused)
//   5. slot from the pool / direct map   (kPoolExhausted: system refused)
//   6. zeroing, ledger Commit (usage readers see, peaks), Publish (id is live), channel Exit.
//
// Free: classify the id, read its record under the seqlock, check the
// presenter, win the CAS live|transit -> freeing, return the slot, refund the
// ledgers, then FinishFree (state free + index recycled). IsReleased is true
// only after FinishFree, i.e. after every resource went back.
//
// CloseChannel = BeginChannelClose, then CloseChannelStep until nothing is left.
// BeginChannelClose: BeginClose (no new allocation can enter, and no free, transfer or
// adoption of the channel's handles: those enter the channel like an allocation and find it
// closing, so to every caller the handles are freed from here on; waits for those in flight),
// reads what the channel holds from its ledger and closes the name (it reopens as a new
// incarnation). Each CloseChannelStep walks the channel's census on from where the last one
// stopped and frees up to `max` handles; the last one recycles the index (FinishClose). Hence
// a channel index is never reused while anything may still charge or refund its ledger, and a
// close of a million handles can return them a few thousand at a time.
//
// Fast lane (ReserveIds, Reissue, Burn; single owner and not hardened): replays what the
// binding's JS side did without calling in (a pooled slot freed and handed to the next
// allocation of the same channel, type and pool: view mode, and revocable channels whose
// buffers the binding moves with transfer()). Reissue is the Free above and an Allocate
// on the same slot in one step: the entry of the old id goes freeing -> free (recycled), the
// reserved index is published with the old record, and the ledgers, slot and slot metadata
// are left as they are (same charge, same owner). Burn publishes and frees a reserved index
// at once (HandleTable::PublishFreed), with the record of the live handle whose slot it used. Both count the allocation, the deallocation and a hit.
//
// Single owner (ManagerConfig::single_owner): the ledger, the handle table and the slab sets
// are created in single-owner mode (single_owner.h), so the steps above update their atomics
// with loads and stores instead of locked read-modify-writes; the steps and their rollbacks
// are the same. The parking protocol's counters keep their atomics (they change under a
// mutex, off the hot path); the holder word's CAS is a compare and a store like the others.
#include "manager_impl.h"

namespace isopool {

using detail::FillInfo;
using detail::StaleKind;
using detail::kGenMask;
using detail::kMaxSafeInteger;
using detail::kMaxSlotSize;

// --- LatencySnapshot ---------------------------------------------------------------

double LatencySnapshot::Quantile(double q) const noexcept {
  uint64_t total = 0;
  for (uint64_t b : buckets) total += b;
  if (total == 0) return 0;
  if (!(q > 0)) q = 0;  // also maps NaN to 0
  if (q > 1) q = 1;
  const double target = q * static_cast<double>(total);
  double cum = 0;
  for (int i = 0; i < kLatencyBuckets; ++i) {
    if (buckets[i] == 0) continue;
    const double b = static_cast<double>(buckets[i]);
    if (cum + b >= target) {
      // Linear interpolation inside [2^i, 2^(i+1)) (bucket 0 covers [0, 2)).
      const double lo = i == 0 ? 0.0 : static_cast<double>(1ull << i);
      const double hi = static_cast<double>(1ull << (i + 1));
      const double frac = (target - cum) / b;
      return lo + (hi - lo) * (frac < 0 ? 0 : frac);
    }
    cum += b;
  }
  return static_cast<double>(1ull << kLatencyBuckets);
}

// --- lifetime ------------------------------------------------------------------------

Status Manager::Create(const ManagerConfig& config, Manager** out) noexcept {
  *out = nullptr;
  if (config.max_allocation_size == 0 || config.max_allocation_size > kMaxSafeInteger) {
    return Status::kInvalidArgument;
  }
  uint64_t prev = 0;
  for (const auto& p : config.pools) {
    if (p.slot_size == 0 || p.slot_size <= prev || p.slot_size > kMaxSlotSize) {
      return Status::kInvalidArgument;
    }
    prev = p.slot_size;
  }
  std::unique_ptr<Impl> impl;
  try {
    impl.reset(new Impl(config.single_owner));
    impl->config = config;
    impl->types[0].name = "buffer";
  } catch (...) {  // std::bad_alloc
    return Status::kPoolExhausted;
  }
  StartStopwatchCalibration();  // latency samples (metrics.h)
  impl->types[0].kind = TypeKind::kMemory;
  impl->type_count.store(1, std::memory_order_release);
  impl->hardening = Hardening::For(config.hardened, HandleTable::RandomSecret());
  if (impl->hardening.guard_pages) impl->registry.EnableGuardPages();  // before any mapping
  impl->pool_count = config.pools.size();
  if (impl->pool_count > 0) {
    impl->pools.reset(new (std::nothrow) SlabPool[impl->pool_count]);
    if (!impl->pools) return Status::kPoolExhausted;
    for (size_t i = 0; i < impl->pool_count; ++i) {
      if (!impl->pools[i].Init(config.pools[i], &impl->registry, config.single_owner)) {
        return Status::kPoolExhausted;
      }
    }
  }
  if (!impl->ledger.Init(config.single_owner)) return Status::kPoolExhausted;
  Manager* m = new (std::nothrow) Manager();
  if (m == nullptr) return Status::kPoolExhausted;
  m->impl_ = impl.release();
  *out = m;
  return Status::kOk;
}

Manager::~Manager() { delete impl_; }

void Manager::Ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }

void Manager::Unref() noexcept {
  // acq_rel: every use by other holders happens-before the deletion.
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

const ManagerConfig& Manager::config() const noexcept { return impl_->config; }

// --- types ------------------------------------------------------------------------------

Status Manager::DefineType(std::string_view name, TypeKind kind, int32_t* index) noexcept {
  std::lock_guard<std::mutex> lock(impl_->types_mu);
  const int32_t n = impl_->type_count.load(std::memory_order_relaxed);
  if (name.empty() || n >= kMaxTypes || FindType(name) >= 0) return Status::kInvalidArgument;
  try {
    impl_->types[n].name.assign(name.data(), name.size());
  } catch (...) {  // std::bad_alloc
    return Status::kPoolExhausted;
  }
  impl_->types[n].kind = kind;
  // release: the name and kind are visible to lock-free FindType/KindOf readers.
  impl_->type_count.store(n + 1, std::memory_order_release);
  *index = n;
  return Status::kOk;
}

int32_t Manager::FindType(std::string_view name) const noexcept {
  const int32_t n = impl_->type_count.load(std::memory_order_acquire);
  for (int32_t i = 0; i < n; ++i) {
    if (impl_->types[i].name == name) return i;
  }
  return -1;
}

TypeKind Manager::KindOf(int32_t type) const noexcept {
  return impl_->ValidType(type) ? impl_->types[type].kind : TypeKind::kMemory;
}

// --- channels ------------------------------------------------------------------------------

Status Manager::OpenChannel(std::string_view name, const ChannelOptions& options, int32_t* index,
                            bool* created) noexcept {
  return impl_->ledger.Open(name, options, index, created);
}

int32_t Manager::FindChannel(std::string_view name) const noexcept { return impl_->ledger.Find(name); }

Status Manager::DiscardChannel(int32_t channel, uint32_t expected_owner) noexcept {
  return impl_->ledger.TryDiscard(channel, expected_owner);
}

ChannelOptions Manager::OptionsOf(int32_t channel) const noexcept {
  ChannelOptions o;
  const ChannelState* st = impl_->ledger.Get(channel);
  if (st == nullptr) return o;
  const uint32_t bits = st->options.load(std::memory_order_relaxed);
  o.access = (bits & 1u) ? AccessMode::kView : AccessMode::kRevocable;
  o.zero = (bits & 2u) ? ZeroMode::kAlways : ZeroMode::kCrossChannel;
  o.immediate_reuse = (bits & 4u) != 0;
  return o;
}

uint32_t Manager::OwnerOf(int32_t channel) const noexcept {
  const ChannelState* st = impl_->ledger.Get(channel);
  return st == nullptr ? 0 : st->owner.load(std::memory_order_relaxed);
}

// --- limits ------------------------------------------------------------------------------------

Status Manager::SetLimits(int32_t type, int32_t channel, const Limits& limits) noexcept {
  if (type != kAllTypes && !impl_->ValidType(type)) {
    return type < 0 ? Status::kInvalidArgument : Status::kUnknownType;
  }
  return impl_->ledger.SetLimits(type, channel, limits);
}

Limits Manager::EffectiveLimits(int32_t type, int32_t channel) const noexcept {
  Limits l = impl_->ledger.Effective(type, channel);
  l.max_allocation_size = std::min(l.max_allocation_size, impl_->config.max_allocation_size);
  return l;
}

// --- handles -----------------------------------------------------------------------------------

Status Manager::Allocate(int32_t type, uint64_t size, int32_t channel, Allocation* out) noexcept {
  return Allocate(type, size, channel, CallContext{}, out);
}

Status Manager::Allocate(int32_t type, uint64_t size, int32_t channel, const CallContext& ctx,
                         Allocation* out) noexcept {
  Impl& m = *impl_;
  const bool single = m.config.single_owner;  // single_owner.h
  const Stopwatch watch;
  const uint32_t shard = ThisThreadShard();
  *out = Allocation{};
  if (!m.ValidType(type)) {
    m.refusals.Add();
    return Status::kUnknownType;
  }
  if (size == 0 || size > m.config.max_allocation_size) {
    m.refusals.Add();
    return Status::kInvalidSize;
  }
  ChannelState* ch = nullptr;
  Status s = m.ledger.Enter(channel, &ch);
  if (s != Status::kOk) {
    m.refusals.Add();
    return s;
  }
  const bool memory = m.types[type].kind == TypeKind::kMemory;
  const uint32_t bits = ch->options.load(std::memory_order_relaxed);
  const AccessMode access = (bits & 1u) ? AccessMode::kView : AccessMode::kRevocable;
  const bool zero_always = (bits & 2u) != 0;
  const uint32_t owner = ch->owner.load(std::memory_order_relaxed);
  if (ctx.expected_owner != 0 && owner != ctx.expected_owner) {
    // The index was recycled: the caller's channel was closed (by another thread).
    ChannelLedger::Exit(ch, single);
    m.refusals.Add();
    return Status::kChannelClosed;
  }

  int32_t pool = kPoolCounter;
  uint64_t slot_bytes = size;
  const uint64_t tail = memory ? m.hardening.Tail() : 0;  // hardened: room for the canary
  if (memory) {
    pool = m.PoolFor(size + tail);
    slot_bytes = pool >= 0 ? m.pools[pool].config().slot_size : DirectPool::RoundUp(size + tail);
  }
  const uint64_t charged = slot_bytes;

  ChargeTicket ticket;
  ticket.total_parked = ctx.total_parked;
  s = m.ledger.TryCharge(type, ch, size, charged, &ticket, out);
  if (s != Status::kOk) {
    out->slot_bytes = slot_bytes;  // what the refused allocation would have been charged
    out->charged = charged;
    ChannelLedger::Exit(ch, single);
    if (s != Status::kParkedCharges) m.refusals.Add();  // not an answer: the caller asks again
    return s;
  }
  uint32_t index = 0;
  s = m.table.Reserve(&index);
  if (s != Status::kOk) {
    m.ledger.Cancel(type, ch, &ticket);
    ChannelLedger::Exit(ch, single);
    m.refusals.Add();
    return s;
  }

  SlotRef ref;
  if (memory) {
    if (pool >= 0) {
      bool hit = false;
      s = m.pools[pool].set(access).Acquire(&ref, &hit, shard);
    } else {
      s = m.direct.Acquire(size, &ref, tail);
    }
    if (s != Status::kOk) {
      m.table.Unreserve(index);
      m.ledger.Cancel(type, ch, &ticket);
      ChannelLedger::Exit(ch, single);
      m.refusals.Add();
      return s;
    }
    if (pool >= 0) {
      // Zeroing from out-of-band metadata (slab_pool.h SlotMeta).
      SlotMeta& meta = ref.meta();
      const bool view = access == AccessMode::kView;
      if (meta.owner != owner) {
        // View users can write anywhere in the slot (and the slab): zero it all.
        const uint64_t extent = view ? slot_bytes : meta.dirty;
        if (extent > 0) ZeroSlotMemory(ref.data(), extent);
        meta.dirty = 0;
      } else if (zero_always) {
        ZeroSlotMemory(ref.data(), size);
      }
      meta.owner = owner;
      meta.dirty = view ? slot_bytes : std::max(meta.dirty, size + tail);
      m.pools[pool].AddLiveBytes(size, shard);
    } else {
      m.direct_slot_bytes.Add(charged);
    }
    m.hardening.WriteCanary(ref.data() + size);
  }
  // Nothing below can fail: the charge becomes usage readers see (peaks, soft crossing).
  m.ledger.Commit(type, ch, &ticket);

  HandleRecord rec;
  rec.size = size;
  rec.slot_bytes = slot_bytes;
  rec.charged = charged;
  rec.slab_key = memory ? ref.slab->key : 0;
  rec.slab_offset = memory ? ref.offset() : 0;
  rec.alloc_time_ns = watch.StartNs();
  rec.data = memory ? ref.data() : nullptr;
  rec.slab = ref.slab;
  rec.type = type;
  rec.channel = channel;
  rec.owner = owner;
  rec.pool = pool;
  rec.slot = ref.index;
  rec.access = static_cast<uint32_t>(access);
  rec.latency_ns = watch.ElapsedNs();
  // The holder is stored before Publish's release of kLive, so whoever later wins a
  // transition on this incarnation sees it.
  const uint32_t generation =
      static_cast<uint32_t>((HandleTable::UsesOf(m.table.LoadState(index)) + 1) & kGenMask);
  m.table.StoreHolder(index, HandleTable::HolderWord(ctx.env, memory && ctx.env != 0, generation));
  const uint64_t id = m.table.Publish(index, rec);
  ChannelLedger::Exit(ch, single);
  m.events.Add(shard, Impl::kAllocations);
  m.alloc_latency.Record(rec.latency_ns, shard);

  out->id = id;
  out->data = rec.data;
  out->slot_bytes = slot_bytes;
  out->charged = charged;
  out->pool = pool;
  out->slab_key = rec.slab_key;
  out->slab_offset = rec.slab_offset;
  out->soft_crossed = ticket.soft;
  out->latency_ns = rec.latency_ns;
  return Status::kOk;
}

Status Manager::Free(uint64_t id, int32_t presenter, FreeReason reason, HandleInfo* info,
                     uint32_t* violations) noexcept {
  return Free(id, presenter, reason, CallContext{}, info, violations);
}

Status Manager::Free(uint64_t id, int32_t presenter, FreeReason reason, const CallContext& ctx,
                     HandleInfo* info, uint32_t* violations) noexcept {
  Impl& m = *impl_;
  const Stopwatch watch;
  const uint32_t shard = ThisThreadShard();
  if (violations != nullptr) *violations = 0;
  if (ctx.expected_owner != 0 && presenter >= 0 && !m.ledger.IsOpenAs(presenter, ctx.expected_owner)) {
    return Status::kChannelClosed;  // the presenting scope's incarnation was closed
  }
  for (;;) {
    const IdProbe p = m.table.Probe(id);
    switch (p.kind) {
      case IdProbe::kForged:
        m.ledger.CountViolation(presenter >= 0 ? presenter : kUnscopedChannel, Violation::kForgedHandle);
        if (violations != nullptr) *violations = ViolationBit(Violation::kForgedHandle);
        return Status::kInvalidHandle;
      case IdProbe::kStale:
      case IdProbe::kFreeing: {
        // kFreeing: another caller won the free; to us it is a double free.
        const Violation v = StaleKind(p);
        m.ledger.CountViolation(m.StaleTarget(p, presenter), v);
        if (violations != nullptr) *violations = ViolationBit(v);
        return Status::kStaleHandle;
      }
      case IdProbe::kLive:
      case IdProbe::kTransit: {
        HandleRecord rec;
        if (!m.table.ReadRecord(p.index, p.state, &rec)) continue;  // changed meanwhile: re-probe
        if (presenter >= 0 && presenter != rec.channel) {
          m.ledger.CountViolation(presenter, Violation::kCrossChannel);
          if (violations != nullptr) *violations = ViolationBit(Violation::kCrossChannel);
          FillInfo(id, rec, p.kind == IdProbe::kTransit, info);
          return Status::kIsolationViolation;
        }
        ChannelState* st = m.EnterChannel(rec);
        if (st == nullptr) {  // its channel is closing: the close frees it
          m.ledger.CountViolation(presenter >= 0 ? presenter : kUnscopedChannel, Violation::kChannelClosed);
          if (violations != nullptr) *violations = ViolationBit(Violation::kChannelClosed);
          return Status::kStaleHandle;
        }
        // One winner: a racing Free/BeginTransfer/Adopt makes this fail.
        if (!m.table.TryTransition(p.index, p.state, EntryState::kFreeing)) {
          m.ExitChannel(st);
          continue;
        }
        FillInfo(id, rec, false, info);
        // Hardened: a damaged canary is reported (and counted) but the free goes ahead (hardening.h).
        const uint32_t canary = m.CheckCanaryOnFree(rec, /*closing=*/false);
        if (violations != nullptr) *violations = canary;
        m.FinishClaimedFree(p.index, id, HandleTable::StateOf(p.state), rec, reason, ctx, info, shard);
        m.ExitChannel(st);
        m.free_latency.Record(watch.ElapsedNs(), shard);
        return Status::kOk;
      }
    }
  }
}

uint32_t Manager::Validate(uint64_t id, int32_t presenter, HandleInfo* info) noexcept {
  Impl& m = *impl_;
  for (;;) {
    const IdProbe p = m.table.Probe(id);
    switch (p.kind) {
      case IdProbe::kForged:
        m.ledger.CountViolation(presenter >= 0 ? presenter : kUnscopedChannel, Violation::kForgedHandle);
        return ViolationBit(Violation::kForgedHandle);
      case IdProbe::kStale:
      case IdProbe::kFreeing: {
        const Violation v = StaleKind(p);
        m.ledger.CountViolation(m.StaleTarget(p, presenter), v);
        return ViolationBit(v);
      }
      case IdProbe::kLive:
      case IdProbe::kTransit: {
        HandleRecord rec;
        if (!m.table.ReadRecord(p.index, p.state, &rec)) continue;
        if (m.Closing(rec)) {  // freed by a close that has not finished
          m.ledger.CountViolation(presenter >= 0 ? presenter : kUnscopedChannel, Violation::kChannelClosed);
          return ViolationBit(Violation::kChannelClosed);
        }
        const bool cross = presenter >= 0 && presenter != rec.channel;
        bool canary_ok = true;
        if (m.hardening.canaries && rec.data != nullptr && !cross) {
          // Hardened (hardening.h). Under the pin no slab is unmapped; the state re-checks
          // around the read prove the handle (so its slot) was live throughout: otherwise
          // the bytes may belong to a later owner and the read is discarded (re-probe).
          std::unique_lock<std::mutex> pin = m.registry.PinMappings();
          if (m.table.LoadState(p.index) != p.state) continue;
          canary_ok = m.CanaryIntact(rec);
          if (m.table.LoadState(p.index) != p.state) continue;
        }
        FillInfo(id, rec, p.kind == IdProbe::kTransit, info);
        uint32_t mask = 0;
        if (cross) {
          mask |= ViolationBit(Violation::kCrossChannel);
          m.ledger.CountViolation(presenter, Violation::kCrossChannel);
        }
        if (!canary_ok) {
          mask |= ViolationBit(Violation::kCanaryCorrupted);
          m.ledger.CountViolation(rec.channel, Violation::kCanaryCorrupted);
        }
        // The recorded extent must lie inside its slot (record arithmetic only:
        // the slab may be returned concurrently, so it is not dereferenced).
        const bool oob = rec.size > rec.slot_bytes || rec.charged < rec.slot_bytes ||
                         (rec.pool >= 0 && (rec.slot_bytes == 0 || rec.slab_offset % rec.slot_bytes != 0));
        if (oob) {
          mask |= ViolationBit(Violation::kOutOfBounds);
          m.ledger.CountViolation(rec.channel, Violation::kOutOfBounds);
        }
        return mask;
      }
    }
  }
}

Status Manager::Lookup(uint64_t id, HandleInfo* info) const noexcept {
  const Impl& m = *impl_;
  for (;;) {
    const IdProbe p = m.table.Probe(id);
    switch (p.kind) {
      case IdProbe::kForged:
        return Status::kInvalidHandle;
      case IdProbe::kStale:
      case IdProbe::kFreeing:
        return Status::kStaleHandle;
      case IdProbe::kLive:
      case IdProbe::kTransit: {
        HandleRecord rec;
        if (!m.table.ReadRecord(p.index, p.state, &rec)) continue;
        if (m.Closing(rec)) return Status::kStaleHandle;  // freed by a close that has not finished
        FillInfo(id, rec, p.kind == IdProbe::kTransit, info);
        return Status::kOk;
      }
    }
  }
}

bool Manager::IsReleased(uint64_t id) const noexcept {
  const Impl& m = *impl_;
  if (m.table.Probe(id).kind != IdProbe::kStale) return false;
  // Freed, but its memory may still wait for a buffer to die (parked): not released yet.
  if (m.parked_count.load(std::memory_order_seq_cst) == 0) return true;
  const Impl::ParkedShard& shard = m.ShardOf(id);
  std::lock_guard<std::mutex> lock(shard.mu);
  return shard.parked.find(id) == shard.parked.end();
}

void Manager::CountViolation(int32_t channel, Violation kind) noexcept {
  impl_->ledger.CountViolation(channel, kind);
}

Limits Manager::ScopeLimits(int32_t type, int32_t channel) const noexcept {
  return impl_->ledger.Scope(type, channel);
}

// --- observation ----------------------------------------------------------------------------------

LedgerUsage Manager::ChannelUsage(int32_t channel) const noexcept { return impl_->ledger.ChannelUsage(channel); }

LedgerUsage Manager::TypeUsage(int32_t type, int32_t channel) const noexcept {
  return impl_->ledger.TypeUsage(type, channel);
}

void Manager::OpenChannels(std::vector<std::pair<std::string, int32_t>>* out) const noexcept {
  impl_->ledger.OpenChannels(out);
}

void Manager::Snapshot(ManagerSnapshot* out) const noexcept {
  const Impl& m = *impl_;
  try {
    out->pools.clear();
    out->pools.resize(m.pool_count);
  } catch (...) {  // std::bad_alloc: pools omitted, totals still filled
    out->pools.clear();
  }
  out->reserved_bytes = 0;
  out->live_slot_bytes = 0;
  out->retained_free_bytes = 0;
  out->requested_bytes = 0;
  for (size_t i = 0; i < out->pools.size(); ++i) {
    PoolStats& ps = out->pools[i];
    m.pools[i].Stats(&ps);
    try {
      ps.name = m.config.pools[i].name;
    } catch (...) {
    }
    out->reserved_bytes += ps.reserved_bytes;
    out->live_slot_bytes += ps.live_slots * ps.slot_size;
    out->retained_free_bytes += ps.retained_free_slots * ps.slot_size;
    out->requested_bytes += ps.live_bytes;
  }
  out->direct = PoolStats{};
  m.direct.Stats(&out->direct);
  try {
    out->direct.name = "direct";
  } catch (...) {
  }
  out->reserved_bytes += out->direct.reserved_bytes;
  // Handles of a close still in steps wait for their memory the same way.
  out->parked_handles = m.parked_count.load(std::memory_order_relaxed) + m.closing_handles.load(std::memory_order_relaxed);
  out->thread_exit_reclaims = m.exit_reclaims.Load();
  out->live_slot_bytes += m.direct_slot_bytes.Load();
  out->requested_bytes += out->direct.live_bytes;

  out->handles = 0;
  out->bytes_in_use = 0;
  const int32_t types = m.type_count.load(std::memory_order_acquire);
  for (int32_t t = 0; t < types; ++t) {
    const LedgerUsage u = m.ledger.TypeUsage(t, kTypeTotal);
    out->handles += u.handles;
    if (m.types[t].kind == TypeKind::kMemory) out->bytes_in_use += u.bytes;
  }
  out->allocations = m.events.Sum(Impl::kAllocations);
  out->deallocations = m.events.Sum(Impl::kDeallocations);
  out->refusals = m.refusals.Load();
  m.alloc_latency.Snapshot(&out->allocate_latency);
  m.free_latency.Snapshot(&out->deallocate_latency);
}

void Manager::RecountChannel(int32_t channel, uint64_t* handles, uint64_t* charged) const noexcept {
  // The handle table's census: an account of live handles kept by the table itself (Publish,
  // the claim of a free), independent of the ledgers it is compared with.
  impl_->table.CountChannel(channel, OwnerOf(channel), handles, charged);
}

void Manager::ChannelIds(int32_t channel, std::vector<uint64_t>* ids) const noexcept {
  const Impl& m = *impl_;
  const uint32_t owner = OwnerOf(channel);
  if (m.ledger.ChannelUsage(channel).handles == 0) return;  // see CloseChannel: none to find
  m.table.ForEachOfChannel(channel, owner, [&](uint32_t i) {
    uint64_t state;
    HandleRecord rec;
    if (!m.ReadLive(i, &state, &rec)) return;
    if (HandleTable::StateOf(state) == EntryState::kFreeing) return;  // already leaving
    if (rec.channel != channel || rec.owner != owner) return;
    try {
      ids->push_back(m.table.MakeId(i, static_cast<uint32_t>(HandleTable::UsesOf(state) & kGenMask)));
    } catch (...) {
      // std::bad_alloc: the list is incomplete.
    }
  });
}

void Manager::FlushThreadCaches() noexcept {
  Impl& m = *impl_;
  const uint32_t shard = ThisThreadShard();
  for (size_t i = 0; i < m.pool_count; ++i) {
    m.pools[i].set(AccessMode::kRevocable).FlushShard(shard);
    m.pools[i].set(AccessMode::kView).FlushShard(shard);
  }
  m.table.FlushShard(shard);
}

void Manager::InjectAllocationFailures(uint32_t n) noexcept { impl_->registry.InjectFailures(n); }

}  // namespace isopool
