// manager_lane.cc — the native side of the JS fast lane (ReserveIds, Reissue, Burn; single
// owner only) and the view slab exports.
#include "manager_impl.h"

namespace isopool {

using detail::FillInfo;
using detail::StaleKind;
using detail::kGenMask;
using detail::kMaxSafeInteger;
using detail::kMaxSlotSize;

// --- fast lane --------------------------------------------------------------------------------------

Status Manager::ReserveIds(uint32_t n, uint64_t* ids, uint32_t* got) noexcept {
  Impl& m = *impl_;
  *got = 0;
  if (!m.FastLaneAllowed()) return Status::kInvalidArgument;
  constexpr size_t kWords = (size_t{HandleTable::kMaxIndex} >> 6) + 1;
  uint32_t k = 0;
  for (; k < n; ++k) {
    uint32_t index = 0;
    if (m.table.Reserve(&index) != Status::kOk) break;  // table full
    const size_t word = index >> 6;
    if (word >= m.fast_reserved.size()) {
      try {
        m.fast_reserved.resize(std::min(kWords, std::max(word + 1, m.fast_reserved.size() * 2)));
      } catch (...) {  // std::bad_alloc: fewer ids
        m.table.Unreserve(index);
        break;
      }
    }
    m.fast_reserved[word] |= uint64_t{1} << (index & 63);
    ids[k] = m.table.NextId(index);
  }
  *got = k;
  return Status::kOk;
}

Status Manager::Reissue(uint64_t old_id, uint64_t new_id, uint64_t size) noexcept {
  Impl& m = *impl_;
  if (!m.FastLaneAllowed()) return Status::kInvalidArgument;
  uint32_t new_index = 0;
  if (!m.FastReserved(new_id, &new_index)) return Status::kInvalidArgument;
  uint32_t index = 0;
  uint64_t state = 0;
  HandleRecord rec;
  const Status s = m.FastLaneSource(old_id, size, /*size_cap=*/true, &index, &state, &rec);
  if (s != Status::kOk) return s;

  // The Free half: claim, then free the entry (the slot and the ledger charge move on).
  if (!m.table.TryTransition(index, state, EntryState::kFreeing)) return Status::kInvalidArgument;
  const uint32_t shard = ThisThreadShard();
  // The new incarnation's buffer is the old one's backing store, moved (revocable) or the same
  // slab view (view): it is attached exactly when the old one still was (a revocable buffer
  // whose moved-out store already died has told OnBufferReleased, which cleared the bit).
  const uint64_t holder = m.table.LoadHolder(index);
  const uint32_t env = HandleTable::HolderEnv(holder);
  const bool attached = HandleTable::HolderAttached(holder);
  m.pools[rec.pool].AddLiveBytes(size, shard);
  m.pools[rec.pool].SubLiveBytes(rec.size, shard);
  m.table.FinishFree(index, FreeReason::kDeallocate);
  // The Allocate half: the same slot, owner and charge (slot metadata unchanged: dirty ==
  // slot_bytes in a view set, owner the same incarnation, so no zeroing would happen).
  HandleRecord fresh = rec;
  fresh.size = size;
  fresh.alloc_time_ns = CoreNowNs();
  fresh.latency_ns = 0;
  m.table.StoreHolder(new_index, HandleTable::HolderWord(env, attached, Impl::GenerationOf(new_id)));
  m.table.Publish(new_index, fresh);  // returns new_id (FastReserved checked NextId)
  m.ClearFastReserved(new_index);
  m.CountReuse(rec, shard);
  return Status::kOk;
}

Status Manager::Burn(uint64_t id, uint64_t source_id, uint64_t size) noexcept {
  Impl& m = *impl_;
  if (!m.FastLaneAllowed()) return Status::kInvalidArgument;
  uint32_t index = 0;
  if (!m.FastReserved(id, &index)) return Status::kInvalidArgument;
  // The source of the previous Burn, while its entry is unchanged (same state word: the same
  // live incarnation), skips the probe and the record read: a slot cycling through the lane
  // burns one id per round trip, all over the same source.
  Impl::BurnSource& cached = m.burn_source;
  HandleRecord rec;
  if (cached.id == source_id && cached.id != 0 && m.table.LoadState(cached.index) == cached.state) {
    if (size == 0 || size > m.config.max_allocation_size || m.PoolFor(size + m.hardening.Tail()) != cached.rec.pool) {
      return Status::kInvalidArgument;
    }
    rec = cached.rec;
  } else {
    // No allocation-size cap here: the id is dead once burned, so nothing lasting depends on
    // the size; the JS side applies the cap before it reuses a slot.
    uint32_t source = 0;
    uint64_t state = 0;
    const Status s = m.FastLaneSource(source_id, size, /*size_cap=*/false, &source, &state, &rec);
    if (s != Status::kOk) return s;
    cached = Impl::BurnSource{source_id, source, state, rec};
  }
  // The burned incarnation was a handle over the source's slot: the same record but its size,
  // so a stale presentation is counted against the same channel as after a plain free
  // (StaleTarget reads the record). Its age is never read (a stale id reports none).
  rec.size = size;
  rec.latency_ns = 0;
  m.table.StoreHolder(index, HandleTable::HolderWord(0, false, Impl::GenerationOf(id)));
  m.table.PublishFreed(index, rec, FreeReason::kDeallocate);
  m.ClearFastReserved(index);
  const uint32_t shard = ThisThreadShard();
  m.CountReuse(rec, shard);
  return Status::kOk;
}

// --- view mode ------------------------------------------------------------------------------------

Status Manager::ExportSlab(uint64_t slab_key, uint8_t** base, uint64_t* length) noexcept {
  return impl_->registry.Export(slab_key, base, length);
}

void Manager::ReleaseSlabExport(uint64_t slab_key) noexcept { impl_->registry.ReleaseExport(slab_key); }

uint64_t Manager::SlabRetireEpoch() const noexcept { return impl_->registry.RetireEpoch(); }

bool Manager::SlabRetired(uint64_t slab_key) noexcept { return impl_->registry.IsRetired(slab_key); }

uint64_t Manager::ResidentBytes() noexcept { return impl_->registry.ResidentBytes(); }
}  // namespace isopool
