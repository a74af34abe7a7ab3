// wrap_lane_binding.cc — ManagerWrap: the fast lane, the slot cache and slab exports.
#include "manager_wrap.h"

namespace isopool {
namespace binding {

napi_value ManagerWrap::ReserveIdsHot(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 0;
  napi_value argv[1];
  HotState* hot = HotStateOf(env, cbinfo, &argv[0], &argc);
  if (hot == nullptr) return nullptr;
  return CallHot(env, [&]() -> Napi::Value {
    Napi::Env e(env);
    ManagerWrap* self = hot->wrap;
    double n_d = 0;
    if (self == nullptr || self->manager_ == nullptr || argc < 1 || !ReadDouble(env, argv[0], &n_d) ||
        !IsIntegerIn(n_d, 0, kMaxSafeInteger)) {
      return Num(e, 0);
    }
    const uint32_t n = static_cast<uint32_t>(std::min<double>(n_d, kFastIdsLength));
    uint64_t ids[kFastIdsLength];
    uint32_t got = 0;
    if (self->manager_->ReserveIds(n, ids, &got) != Status::kOk) return Num(e, 0);
    for (uint32_t i = 0; i < got; ++i) self->fast_ids_[i] = U64(ids[i]);
    return Num(e, got);
  });
}

napi_value ManagerWrap::ApplyJournalHot(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 0;
  napi_value argv[1];
  HotState* hot = HotStateOf(env, cbinfo, &argv[0], &argc);
  if (hot == nullptr) return nullptr;
  return CallHot(env, [&]() -> Napi::Value {
    Napi::Env e(env);
    ManagerWrap* self = hot->wrap;
    if (self == nullptr) return Num(e, kJournalClosed);
    if (self->manager_ == nullptr) {
      self->out_[journal_out::kStatus] = StatusNumber(Status::kManagerClosed);
      return Num(e, kJournalClosed);
    }
    double count = 0;
    if (argc < 1 || !ReadDouble(env, argv[0], &count) || !IsIntegerIn(count, 0, kJournalOps)) {
      return Num(e, kJournalBadCount);
    }
    return Num(e, self->ApplyJournal(e, static_cast<uint32_t>(count)));
  });
}

double ManagerWrap::ApplyJournal(Napi::Env env, uint32_t count) {
  for (uint32_t i = 0; i < count; ++i) {
    const double* op = journal_ + size_t{i} * kJournalOpLength;
    int32_t kind = 0;
    Status s = Status::kInvalidArgument;
    const bool a_ok = IsIntegerIn(op[1], 0, kMaxSafeInteger);
    const uint64_t a = a_ok ? static_cast<uint64_t>(op[1]) : kMalformedId;
    if (!AsInt32(op[0], &kind)) {
      // not an op: refused
    } else if (kind == journal_op::kReissue) {
      if (a_ok && IsIntegerIn(op[2], 0, kMaxSafeInteger) && IsIntegerIn(op[3], 1, kMaxSafeInteger)) {
        s = manager_->Reissue(a, static_cast<uint64_t>(op[2]), static_cast<uint64_t>(op[3]));
      }
    } else if (kind == journal_op::kFree) {
      // Exactly freeIn() with in = [id, -1, Deallocate, 0, -1] and no buffer.
      s = FreeStatus(env, a, -1, static_cast<int32_t>(FreeReason::kDeallocate), nullptr, false, -1);
    } else if (kind == journal_op::kBurn) {
      if (a_ok && IsIntegerIn(op[2], 0, kMaxSafeInteger) && IsIntegerIn(op[3], 1, kMaxSafeInteger)) {
        s = manager_->Burn(a, static_cast<uint64_t>(op[2]), static_cast<uint64_t>(op[3]));
      }
    } else if (kind == journal_op::kFreeCached) {
      int32_t token = -1;
      if (AsInt32(op[2], &token) && token >= 0) {
        s = FreeStatus(env, a, -1, static_cast<int32_t>(FreeReason::kDeallocate), nullptr, false, token);
      }
    } else if (kind == journal_op::kSlotOwner) {
      int32_t token = -1;
      if (a_ok && IsIntegerIn(op[2], 1, kMaxSafeInteger) && AsInt32(op[3], &token) && token >= 0) {
        s = SetSlotOwner(a, static_cast<uint64_t>(op[2]), static_cast<uint32_t>(token));
      }
    }
    if (s != Status::kOk) {
      out_[journal_out::kStatus] = StatusNumber(s);
      return i;
    }
  }
  return kJournalApplied;
}

Status ManagerWrap::SetSlotOwner(uint64_t old_id, uint64_t new_id, uint32_t token) noexcept {
  if (cache_ == nullptr) return Status::kInvalidArgument;
  if (token >= cache_->by_token.size()) return Status::kOk;
  SlotBuffer* b = cache_->by_token[token];
  if (b != nullptr && b->id == old_id && !b->cached) b->id = new_id;
  return Status::kOk;
}

Napi::Value ManagerWrap::ExportSlab(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (manager_ == nullptr) return NegStatusValue(env, Status::kManagerClosed);
  double key_d;
  if (!ReadDouble(env, info[0], &key_d) || !IsIntegerIn(key_d, 0, kMaxSafeInteger)) {
    return NegStatusValue(env, Status::kInvalidArgument);
  }
  const uint64_t key = static_cast<uint64_t>(key_d);
  uint8_t* base = nullptr;
  uint64_t length = 0;
  Status s = manager_->ExportSlab(key, &base, &length);
  if (s != Status::kOk) return NegStatusValue(env, s);
  manager_->Ref();
  SlabExport* hint = new SlabExport{manager_, key, nullptr};
  napi_value ab;
  napi_status ns = napi_create_external_arraybuffer(env, base, static_cast<size_t>(length), FinalizeSlabExport, hint, &ab);
  if (ns != napi_ok) {
    FinalizeSlabExport(env, nullptr, hint);
    NAPI_THROW_IF_FAILED(env, ns, Napi::Value());
  }
  // Listed (so ReleaseSlab can give it back early) only if both steps succeed; else it is
  // released by its finalizer, as before early release existed.
  if (book_ != nullptr && napi_wrap(env, ab, hint, nullptr, nullptr, nullptr) == napi_ok) {
    try {
      book_->Add(key);
      hint->book = book_;
      ++book_->refs;
    } catch (...) {  // std::bad_alloc: stays unlisted; the wrap then names an unlisted hint
    }
  }
  return Napi::Value(env, ab);
}

Napi::Value ManagerWrap::ResidentBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (manager_ == nullptr) return NegStatusValue(env, Status::kManagerClosed);
  return Num(env, static_cast<double>(manager_->ResidentBytes()));
}

Napi::Value ManagerWrap::TakeRetiredSlab(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (manager_ == nullptr || book_ == nullptr) return Num(env, -1);
  ExportBook& book = *book_;
  const uint64_t epoch = manager_->SlabRetireEpoch();
  if (epoch != book.seen_epoch) {
    book.retired.clear();
    try {
      for (const auto& [key, count] : book.held) {
        if (manager_->SlabRetired(key)) book.retired.push_back(key);
      }
      book.seen_epoch = epoch;  // only after a complete scan
    } catch (...) {             // std::bad_alloc: what was found is returned; the next call rescans
    }
  }
  if (book.retired.empty()) return Num(env, -1);
  const uint64_t key = book.retired.back();
  book.retired.pop_back();
  return Num(env, static_cast<double>(key));
}

Napi::Value ManagerWrap::ReleaseSlab(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  napi_value ab;
  if (!ReadOptionalArrayBuffer(env, info[0], &ab)) {
    throw ArgumentTypeError(env, "isopool: releaseSlab(ab): ab must be an ArrayBuffer or undefined");
  }
  bool detached = true;
  if (manager_ == nullptr || book_ == nullptr || ab == nullptr ||
      napi_is_detached_arraybuffer(env, ab, &detached) != napi_ok || detached) {
    return Napi::Boolean::New(env, false);
  }
  void* data = nullptr;
  if (napi_unwrap(env, ab, &data) != napi_ok || data == nullptr) return Napi::Boolean::New(env, false);
  SlabExport* e = static_cast<SlabExport*>(data);
  if (e->book != book_ || e->released || !manager_->SlabRetired(e->slab_key)) return Napi::Boolean::New(env, false);
  DetachIfAttached(env, ab);
  e->released = true;
  book_->Drop(e->slab_key);
  manager_->ReleaseSlabExport(e->slab_key);
  return Napi::Boolean::New(env, true);
}

void ManagerWrap::FlushSlotCache(const Napi::CallbackInfo&) {
  if (cache_ != nullptr) cache_->Flush();
}

Napi::Value ManagerWrap::SlotCacheStats(const Napi::CallbackInfo& info) {
  out_[cache_out::kBuffersCreated] = U64(buffers_created_);
  out_[cache_out::kBuffersReused] = cache_ == nullptr ? 0 : U64(cache_->reused);
  return Napi::Boolean::New(info.Env(), cache_ != nullptr);
}

}  // namespace binding
}  // namespace isopool
