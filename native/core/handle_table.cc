// handle_table.cc — see handle_table.h for the id layout and state machine.
#include "handle_table.h"

#include <algorithm>

#include <cstring>
#include <new>

#if defined(__linux__)
#include "kernel_random.h"
#else
#include <random>
#endif

#include "metrics.h"

namespace isopool {

namespace {

constexpr uint64_t kGenMask = (1ull << HandleTable::kGenBits) - 1;
constexpr uint64_t kCheckMask = (1ull << HandleTable::kCheckBits) - 1;


}  // namespace

HandleTable::HandleTable(uint64_t secret, uint32_t quarantine, bool single_owner) noexcept
    : secret_(secret), single_(single_owner) {
  // One cell more than the delay: an index leaves a full quarantine (Reserve) only once
  // `quarantine` later frees queue behind it. On refusal the quarantine has capacity 0
  // and freed indices go straight to the stack.
  (void)quarantine_.Init(quarantine == 0 ? 0 : size_t{quarantine} + 1, single_owner);
  local_cap_ = single_owner || quarantine_.capacity() == 0 ? 0 : quarantine;
}

HandleTable::~HandleTable() {
  if (local_state_.load(std::memory_order_acquire) == 2) UnregisterShardCache(this);
  for (auto& q : local_) delete[] q.ring;
  for (auto& q : depot_) delete[] q.ring;
  for (auto& seg : segments_) delete[] seg.load(std::memory_order_relaxed);
  for (auto& cells : census_) delete[] cells.load(std::memory_order_relaxed);
}

uint64_t HandleTable::RandomSecret() noexcept {
  uint64_t s = 0;
#if defined(__linux__)
  // Not std::random_device: it would raise the C library the prebuilds need (kernel_random.h).
  if (!KernelRandom(&s, sizeof s, kRandomNonBlocking)) s = 0;
#else
  try {
    std::random_device rd;
    s = (uint64_t{rd()} << 32) ^ rd();
  } catch (...) {
    // No entropy device: fall back to the clock and address entropy below.
  }
#endif
  // Without entropy (early boot, a seccomp filter), the clock and address entropy below remain.
  int local = 0;
  s ^= Mix64(NowNs());
  s ^= Mix64(reinterpret_cast<uintptr_t>(&local) * 0x9e3779b97f4a7c15ull);
  s ^= Mix64(reinterpret_cast<uintptr_t>(&RandomSecret));
  return Mix64(s ^ 0x6a09e667f3bcc909ull);
}

uint32_t HandleTable::Check(uint32_t index, uint32_t generation) const noexcept {
  const uint64_t x = Mix64(((uint64_t{index} << kGenBits) | generation) ^ secret_);
  return static_cast<uint32_t>(Mix64(x ^ (secret_ >> 7 | secret_ << 57)) & kCheckMask);
}

uint64_t HandleTable::MakeId(uint32_t index, uint32_t generation) const noexcept {
  return (uint64_t{index} << 32) | (uint64_t{generation} << kCheckBits) | Check(index, generation);
}

HandleTable::Entry* HandleTable::At(uint32_t index) const noexcept {
  // acquire: pairs with EnsureSegment's publishing CAS.
  Entry* seg = segments_[index >> kSegmentBits].load(std::memory_order_acquire);
  return seg + (index & (kSegmentSize - 1));
}

void HandleTable::StoreHolder(uint32_t index, uint64_t word) noexcept {
  At(index)->holder.store(word, std::memory_order_relaxed);
}

uint64_t HandleTable::LoadHolder(uint32_t index) const noexcept {
  // seq_cst: the parking protocol (manager.cc ParkOrRelease / OnBufferReleased) is a Dekker
  // pair between this word and the parked count.
  return At(index)->holder.load(std::memory_order_seq_cst);
}

bool HandleTable::CasHolder(uint32_t index, uint64_t expected, uint64_t desired) noexcept {
  return CompareExchange(At(index)->holder, expected, desired, single_, std::memory_order_seq_cst,
                         std::memory_order_seq_cst);
}

uint64_t HandleTable::LoadState(uint32_t index) const noexcept {
  return At(index)->state.load(std::memory_order_acquire);
}

bool HandleTable::EnsureSegment(uint32_t segment) noexcept {
  if (segments_[segment].load(std::memory_order_acquire) != nullptr) return true;
  Entry* fresh = new (std::nothrow) Entry[kSegmentSize];
  CensusCell* cells = new (std::nothrow) CensusCell[kSegmentSize];
  if (fresh == nullptr || cells == nullptr) {
    delete[] fresh;
    delete[] cells;
    return false;
  }
  // The census first: whoever reaches an entry of the segment finds its census cell too.
  CensusCell* no_cells = nullptr;
  if (!census_[segment].compare_exchange_strong(no_cells, cells, std::memory_order_acq_rel,
                                                std::memory_order_acquire)) {
    delete[] cells;  // another thread installed it first
  }
  Entry* expected = nullptr;
  // release: the zeroed entries are visible to whoever loads the pointer.
  if (!segments_[segment].compare_exchange_strong(expected, fresh, std::memory_order_acq_rel,
                                                  std::memory_order_acquire)) {
    delete[] fresh;  // another thread installed it first
  }
  return true;
}

void HandleTable::PushFree(uint32_t index) noexcept {
  Entry* e = At(index);
  uint64_t head = free_head_.load(std::memory_order_relaxed);
  for (;;) {
    e->next.store(static_cast<uint32_t>(head), std::memory_order_relaxed);
    const uint64_t desired = ((((head >> 32) + 1) & 0xffffffffull) << 32) | index;
    // release: the entry's final state (and `next`) happen-before its popper.
    if (CompareExchangeWeak(free_head_, head, desired, single_, std::memory_order_release,
                            std::memory_order_relaxed)) {
      return;
    }
    // CAS failed: `head` reloaded; relink and retry.
  }
}

uint32_t HandleTable::PopFree() noexcept {
  uint64_t head = free_head_.load(std::memory_order_acquire);
  for (;;) {
    const uint32_t top = static_cast<uint32_t>(head);
    if (top == 0) return 0;
    // Safe even if `top` was popped meanwhile: entries are never freed, and
    // the tag makes the CAS below fail in that case (no ABA).
    const uint32_t next = At(top)->next.load(std::memory_order_relaxed);
    const uint64_t desired = ((((head >> 32) + 1) & 0xffffffffull) << 32) | next;
    // acquire: see the pusher's writes to the entry.
    if (CompareExchangeWeak(free_head_, head, desired, single_, std::memory_order_acquire,
                            std::memory_order_acquire)) {
      return top;
    }
    // CAS failed: another thread pushed or popped; `head` reloaded.
  }
}

HandleTable::LocalQuarantine* HandleTable::LocalOf(uint32_t shard) noexcept {
  if (local_cap_ == 0 || shard >= kStatShards) return nullptr;
  // acquire: a registered table is flushed by exiting threads.
  int state = local_state_.load(std::memory_order_acquire);
  if (state != 2) {
    if (state == 1 || !second_thread_.Seen(shard)) return nullptr;
    // One thread registers the table; the others use the shared quarantine meanwhile.
    if (!local_state_.compare_exchange_strong(state, 1, std::memory_order_acq_rel)) return nullptr;
    if (!RegisterShardCache(this)) {
      local_state_.store(0, std::memory_order_release);  // no memory: stay shared, try again later
      return nullptr;
    }
    local_state_.store(2, std::memory_order_release);
  }
  LocalQuarantine* q = &local_[shard];
  if (q->ring == nullptr) {
    {
      std::lock_guard<std::mutex> lock(depot_mu_);
      if (!depot_.empty()) {
        *q = depot_.back();  // an exited thread's quarantine, its run already given back
        depot_.pop_back();
        return q;
      }
    }
    q->ring = new (std::nothrow) uint32_t[local_cap_ + kRun];
    if (q->ring == nullptr) return nullptr;
    q->head = q->count = q->run_count = 0;
  }
  return q;
}

uint32_t HandleTable::PopOldest(LocalQuarantine* q) const noexcept {
  const uint32_t index = q->ring[q->head];
  q->head = q->head + 1 == local_cap_ ? 0 : q->head + 1;
  --q->count;
  return index;
}

void HandleTable::FlushShard(uint32_t shard) noexcept {
  if (shard >= kStatShards) return;
  LocalQuarantine* q = &local_[shard];
  if (q->ring == nullptr) return;
  // The run never reached a handle: back on the stack, as Unreserve does.
  while (q->run_count > 0) PushFree(q->ring[local_cap_ + --q->run_count]);
  {
    std::lock_guard<std::mutex> lock(depot_mu_);
    try {
      depot_.push_back(*q);  // whole, for the next thread (see the file comment)
      *q = LocalQuarantine{};
      return;
    } catch (...) {  // std::bad_alloc: spread it over the shared quarantine instead
    }
  }
  while (q->count > 0) RecycleShared(PopOldest(q));  // oldest first: FIFO kept
}

bool HandleTable::PopDepot(uint32_t* index) noexcept {
  std::lock_guard<std::mutex> lock(depot_mu_);
  for (LocalQuarantine& q : depot_) {
    if (q.count > 0) {
      *index = PopOldest(&q);
      return true;
    }
  }
  return false;
}

bool HandleTable::FillRun(LocalQuarantine* q) noexcept {
  uint32_t* run = q->ring + local_cap_;
  uint32_t n = 0;
  while (n < kRun) {
    const uint32_t index = PopFree();
    if (index == 0) break;
    run[n++] = index;
  }
  if (n == 0) {
    const size_t cap = quarantine_.capacity();
    if (cap > 0 && quarantine_.SizeApprox() >= cap) return false;  // Reserve drains it first
    uint32_t begin = 0;
    uint32_t end = 0;
    if (TakeFresh(kRun, &begin, &end) != Status::kOk) return false;
    for (uint32_t i = end; i > begin; --i) run[n++] = i - 1;  // the lowest on top
  }
  q->run_count = n;
  return true;
}

Status HandleTable::Reserve(uint32_t* index, uint32_t shard) noexcept {
  LocalQuarantine* local = LocalOf(shard);
  if (local != nullptr && local->count == local_cap_) {
    // Its oldest index has waited behind kQuarantine frees of this thread.
    *index = PopOldest(local);
    return Status::kOk;
  }
  if (local != nullptr && (local->run_count > 0 || FillRun(local))) {
    *index = local->ring[local_cap_ + --local->run_count];
    return Status::kOk;
  }
  const uint32_t recycled = PopFree();
  if (recycled != 0) {
    *index = recycled;
    return Status::kOk;
  }
  // A full quarantine: its oldest index has waited behind kQuarantine frees; take it
  // directly (one pop here and one push in Recycle per allocate/free pair, instead of
  // Recycle moving it to the stack for Reserve to pop).
  const size_t cap = quarantine_.capacity();
  if (cap > 0 && quarantine_.SizeApprox() >= cap) {
    uint32_t oldest = 0;
    if (quarantine_.TryPop(&oldest)) {
      *index = oldest;
      return Status::kOk;
    }
  }
  uint32_t end = 0;
  const Status fresh = TakeFresh(1, index, &end);
  if (fresh == Status::kOk) return Status::kOk;
  // Table full (or segment memory refused): fall back to quarantined indices.
  uint32_t quarantined = 0;
  if (quarantine_.TryPop(&quarantined)) {
    *index = quarantined;
    return Status::kOk;
  }
  if (local != nullptr && local->count > 0) {
    *index = PopOldest(local);
    return Status::kOk;
  }
  if (PopDepot(index)) return Status::kOk;
  return fresh;
}

Status HandleTable::TakeFresh(uint32_t want, uint32_t* begin, uint32_t* end) noexcept {
  uint32_t hw = high_water_.load(std::memory_order_acquire);
  for (;;) {
    if (hw > kMaxIndex) return Status::kHandleTableFull;
    if (!EnsureSegment(hw >> kSegmentBits)) return Status::kPoolExhausted;
    // Within hw's segment (the one EnsureSegment installed) and the table.
    const uint32_t last = std::min({hw + want, ((hw >> kSegmentBits) + 1) << kSegmentBits, kMaxIndex + 1});
    // acq_rel: the segment (installed before) is visible to readers of high_water_.
    if (CompareExchangeWeak(high_water_, hw, last, single_, std::memory_order_acq_rel,
                            std::memory_order_acquire)) {
      *begin = hw;
      *end = last;
      return Status::kOk;
    }
    // CAS failed: another thread moved the mark; `hw` reloaded.
  }
}

void HandleTable::Unreserve(uint32_t index) noexcept { PushFree(index); }  // never published: no quarantine

void HandleTable::Recycle(uint32_t index, uint32_t shard) noexcept {
  if (LocalQuarantine* q = LocalOf(shard)) {
    if (q->count == local_cap_) PushFree(PopOldest(q));  // waited long enough; this thread frees more than it takes
    uint32_t tail = q->head + q->count;
    if (tail >= local_cap_) tail -= local_cap_;
    q->ring[tail] = index;
    ++q->count;
    return;
  }
  RecycleShared(index);
}

void HandleTable::RecycleShared(uint32_t index) noexcept {
  if (quarantine_.TryPush(index)) return;
  // Quarantine full: its oldest index has waited long enough; move it to the stack.
  uint32_t oldest = 0;
  if (quarantine_.TryPop(&oldest)) PushFree(oldest);
  if (!quarantine_.TryPush(index)) PushFree(index);  // refilled concurrently: skip the delay
}

uint64_t HandleTable::Publish(uint32_t index, const HandleRecord& record) noexcept {
  Entry* e = At(index);
  uint64_t words[kRecordWords];
  std::memcpy(words, &record, sizeof(words));
  const uint64_t uses = UsesOf(e->state.load(std::memory_order_relaxed)) + 1;
  // Seqlock writer. First move the state word off the previous incarnation
  // (kFree with the new uses: ids of older generations are stale, the new id
  // is not issued yet), then the words with release stores: a reader whose
  // acquire load saw any new word synchronizes with it, so its re-check of the
  // state sees the change and it never accepts a torn record. (Per-word
  // release/acquire instead of fences: the same code on x86, and visible to
  // ThreadSanitizer, which does not model atomic_thread_fence.)
  e->state.store((uses << 4) | static_cast<uint64_t>(EntryState::kFree), std::memory_order_relaxed);
  for (uint32_t i = 0; i < kRecordWords; ++i) e->words[i].store(words[i], std::memory_order_release);
  CensusCell& cell = Census(index);
  cell.charged.store(record.charged, std::memory_order_relaxed);
  cell.tag.store(CensusTag(record.channel, record.owner), std::memory_order_release);
  // release: the record words happen-before any acquire load that sees kLive.
  e->state.store((uses << 4) | static_cast<uint64_t>(EntryState::kLive), std::memory_order_release);
  return MakeId(index, static_cast<uint32_t>(uses & kGenMask));
}

uint64_t HandleTable::NextId(uint32_t index) const noexcept {
  const uint64_t uses = UsesOf(At(index)->state.load(std::memory_order_relaxed)) + 1;
  return MakeId(index, static_cast<uint32_t>(uses & kGenMask));  // as Publish
}

void HandleTable::PublishFreed(uint32_t index, const HandleRecord& record, FreeReason reason) noexcept {
  Entry* e = At(index);
  uint64_t words[kRecordWords];
  std::memcpy(words, &record, sizeof(words));
  const uint64_t uses = UsesOf(e->state.load(std::memory_order_relaxed)) + 1;
  // Seqlock writer as in Publish, with kFreeing as the writing mark: a reader of the old
  // or the marked state re-checks the word after reading the record and retries. The
  // census cell stays 0: the incarnation was never live here.
  e->state.store((uses << 4) | static_cast<uint64_t>(EntryState::kFreeing), std::memory_order_relaxed);
  for (uint32_t i = 0; i < kRecordWords; ++i) e->words[i].store(words[i], std::memory_order_release);
  if (reason == FreeReason::kChannelClose) {
    e->close_gen.store((static_cast<uint32_t>(uses & kGenMask) << 1) | 1u, std::memory_order_relaxed);
  }
  // release: the record words happen-before any acquire load that sees the final state.
  e->state.store((uses << 4) | (static_cast<uint64_t>(reason) << 2) | static_cast<uint64_t>(EntryState::kFree),
                 std::memory_order_release);
  Recycle(index);
}

IdProbe HandleTable::Probe(uint64_t id) const noexcept {
  IdProbe probe;
  if (id >> 53) return probe;  // not a safe integer
  const uint32_t index = static_cast<uint32_t>(id >> 32);
  const uint32_t gen = static_cast<uint32_t>((id >> kCheckBits) & kGenMask);
  if (index == 0 || index >= HighWater()) return probe;
  if (Check(index, gen) != (id & kCheckMask)) return probe;
  const Entry* e = At(index);
  const uint64_t state = e->state.load(std::memory_order_acquire);
  const uint64_t uses = UsesOf(state);
  if (uses == 0) return probe;  // reserved once, never published
  probe.index = index;
  probe.state = state;
  if ((uses & kGenMask) == gen) {
    switch (StateOf(state)) {
      case EntryState::kLive: probe.kind = IdProbe::kLive; break;
      case EntryState::kTransit: probe.kind = IdProbe::kTransit; break;
      case EntryState::kFreeing:
        probe.kind = IdProbe::kFreeing;
        probe.closed_by_channel = ReasonOf(state) == FreeReason::kChannelClose;
        break;
      case EntryState::kFree:
        probe.kind = IdProbe::kStale;
        probe.same_generation = true;
        probe.closed_by_channel = ReasonOf(state) == FreeReason::kChannelClose;
        break;
    }
    return probe;
  }
  const bool issued = uses > kGenMask || (gen >= 1 && gen < uses);
  if (!issued) {
    probe.index = 0;
    probe.state = 0;
    return probe;  // a generation this entry never reached: forged
  }
  probe.kind = IdProbe::kStale;
  probe.closed_by_channel =
      e->close_gen.load(std::memory_order_relaxed) == ((gen << 1) | 1u);
  return probe;
}

bool HandleTable::ReadRecord(uint32_t index, uint64_t state, HandleRecord* out) const noexcept {
  const Entry* e = At(index);
  uint64_t words[kRecordWords];
  // Seqlock reader: acquire loads keep the re-check of `state` after every word read.
  for (uint32_t i = 0; i < kRecordWords; ++i) words[i] = e->words[i].load(std::memory_order_acquire);
  if (e->state.load(std::memory_order_relaxed) != state) return false;
  std::memcpy(out, words, sizeof(words));
  return true;
}

bool HandleTable::TryTransition(uint32_t index, uint64_t expected, EntryState to, FreeReason reason) noexcept {
  uint64_t desired = (expected & ~uint64_t{3}) | static_cast<uint64_t>(to);
  if (to == EntryState::kFreeing) desired = (desired & ~uint64_t{0xC}) | (static_cast<uint64_t>(reason) << 2);
  // acq_rel: the winner sees the record of this incarnation and publishes its claim.
  if (!CompareExchange(At(index)->state, expected, desired, single_, std::memory_order_acq_rel,
                       std::memory_order_acquire)) {
    return false;
  }
  if (to == EntryState::kFreeing) {  // leaving: no longer counted; closeChannel still waits for it
    CensusCell& cell = Census(index);
    cell.tag.store(cell.tag.load(std::memory_order_relaxed) | kCensusLeaving, std::memory_order_relaxed);
  }
  return true;
}

HandleTable::CensusCell& HandleTable::Census(uint32_t index) const noexcept {
  return census_[index >> kSegmentBits].load(std::memory_order_acquire)[index & (kSegmentSize - 1)];
}

void HandleTable::CountChannel(int32_t channel, uint32_t owner, uint64_t* handles, uint64_t* charged) const noexcept {
  const uint64_t tag = CensusTag(channel, owner);
  const uint32_t high = HighWater();
  uint64_t h = 0, c = 0;
  for (uint32_t segment = 0; segment * kSegmentSize < high; ++segment) {
    const CensusCell* cells = census_[segment].load(std::memory_order_acquire);
    if (cells == nullptr) continue;
    const uint32_t n = std::min(kSegmentSize, high - segment * kSegmentSize);
    for (uint32_t i = 0; i < n; ++i) {
      if (cells[i].tag.load(std::memory_order_acquire) != tag) continue;
      ++h;
      c += cells[i].charged.load(std::memory_order_relaxed);
    }
  }
  *handles = h;
  *charged = c;
}

void HandleTable::FinishFree(uint32_t index, FreeReason reason) noexcept {
  Entry* e = At(index);
  const uint64_t uses = UsesOf(e->state.load(std::memory_order_relaxed));
  if (reason == FreeReason::kChannelClose) {
    e->close_gen.store((static_cast<uint32_t>(uses & kGenMask) << 1) | 1u, std::memory_order_relaxed);
  }
  Census(index).tag.store(0, std::memory_order_relaxed);
  // release: every resource return before this store happens-before IsReleased readers.
  e->state.store((uses << 4) | (static_cast<uint64_t>(reason) << 2) |
                     static_cast<uint64_t>(EntryState::kFree),
                 std::memory_order_release);
  Recycle(index);
}

}  // namespace isopool
