// single_owner_test.cc — ManagerConfig::single_owner gives exactly the results of the default
// (concurrent) manager.
//
// One thread drives two managers with the same configuration, one default and one single
// owner, through the same randomized operation sequence (ISOPOOL_SINGLE_OWNER_OPS per seed,
// default 150,000; ISOPOOL_SINGLE_OWNER_SEEDS seeds, default 3): allocations of both types in
// channels with hard/soft limits, handle limits, size caps, view and zero-always channels,
// pooled and direct sizes; frees; cross-channel, stale and forged frees; validations;
// transfers and adoptions; buffer releases and parked memory (another env's buffer, or
// keep_until_released); injected mapping failures (pool exhaustion after the ledger charge
// and the index reserve: full rollback); limit changes; channel close and reopen; ReclaimEnv.
// Every call must return the same status and the same details on both managers (charges,
// pools, slab keys and offsets, soft crossings, refusal scope/limit/usage, violation masks,
// parked), and every 64 operations and at the end the full observable state must match:
// snapshot (pools, direct, totals, counters), every channel's and type's ledger (usage,
// peaks, rejections, violations) and the handle table's recount. Limits must hold on both.
//
// Single-threaded by design: a single-owner manager is only ever called by one thread at a
// time (ThreadSanitizer would rightly flag anything else). HandoffBetweenThreads checks the
// one thing allowed: a handoff to another thread ordered by a join.
#include <algorithm>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "manager.h"
#include "test_util.h"

using namespace isopool;

namespace {

ManagerConfig Config(bool single_owner) {
  ManagerConfig c;
  // Small queues so slabs are mapped, rebalanced and returned often.
  c.pools = {{"small", 4096, 24}, {"medium", 65536, 8}, {"large", 1 << 20, 2}};
  c.max_allocation_size = 4ull << 20;
  c.single_owner = single_owner;
  return c;
}

constexpr int kChannels = 5;  // 0 unscoped, 1 limited, 2 view, 3 zero-always, 4 plain
const char* const kNames[kChannels] = {"", "limited", "view", "zero", "plain"};
constexpr uint32_t kEnvA = 7, kEnvB = 9;  // two "JS threads" (holder tokens)

struct Handle {
  uint64_t id[2];
  int32_t channel;
  int32_t type;
  uint64_t size;
  uint32_t env;  ///< CallContext::env at allocation (0: none)
  bool attached;
};

struct Twin {
  Manager* m[2] = {nullptr, nullptr};
  int32_t ch[kChannels] = {};
  int32_t counter_type = -1;
  std::vector<Handle> live;
  std::vector<std::pair<uint64_t, uint64_t>> gone;  ///< freed ids (stale from now on)
  std::vector<std::pair<uint64_t, uint64_t>> parked;  ///< freed ids whose memory may be parked (env kEnvB)
  uint64_t step = 0;
  bool track_live = true;  ///< `live` lists every live handle (CheckState checks the count)
  uint64_t seen[16] = {};  ///< Allocate statuses seen (coverage)
  uint64_t parked_frees = 0, isolation = 0;

  Twin() {
    for (int k = 0; k < 2; ++k) {
      CHECK(Manager::Create(Config(k == 1), &m[k]) == Status::kOk);
      CHECK(m[k]->config().single_owner == (k == 1));
      int32_t t = -1;
      CHECK(m[k]->DefineType("units", TypeKind::kCounter, &t) == Status::kOk);
      counter_type = t;
      // Immediate reuse (the caller revokes its buffers at free), the unscoped domain included:
      // parking is then only for another thread's buffer, which the twins model with kEnvB.
      ChannelOptions unscoped;
      unscoped.immediate_reuse = true;
      int32_t u = -1;
      bool created = false;
      CHECK(m[k]->OpenChannel("", unscoped, &u, &created) == Status::kOk);
    }
    for (int c = 0; c < kChannels; ++c) OpenBoth(c);
  }
  ~Twin() {
    for (Manager* x : m) x->Unref();
  }

  std::string Where() const { return "step " + std::to_string(step); }

  void OpenBoth(int c) {
    ChannelOptions o;
    o.immediate_reuse = true;
    if (c == 2) o.access = AccessMode::kView;
    if (c == 3) o.zero = ZeroMode::kAlways;
    int32_t idx[2] = {-1, -1};
    for (int k = 0; k < 2; ++k) {
      bool created = false;
      CHECK(m[k]->OpenChannel(kNames[c], o, &idx[k], &created) == Status::kOk);
    }
    CHECK_EQ(idx[0], idx[1]) << Where();
    CHECK_EQ(m[0]->OwnerOf(idx[0]), m[1]->OwnerOf(idx[1])) << Where();
    ch[c] = idx[0];
    if (c == 1) {
      Limits total;  // the channel over all types
      total.max_bytes = 40 * 4096;
      total.max_handles = 24;
      total.soft_bytes = 16 * 4096;
      SetBoth(kAllTypes, ch[1], total);
      Limits mem;  // "buffer" within the channel
      mem.max_allocation_size = 200000;
      mem.soft_bytes = 8 * 4096;
      SetBoth(0, ch[1], mem);
      Limits units;
      units.max_bytes = 5000;
      SetBoth(counter_type, ch[1], units);
    }
  }

  void SetBoth(int32_t type, int32_t channel, const Limits& l) {
    const Status a = m[0]->SetLimits(type, channel, l);
    const Status b = m[1]->SetLimits(type, channel, l);
    CHECK(a == b) << Where();
    CHECK(a == Status::kOk) << Where() << " SetLimits " << type << "/" << channel;
  }

  // --- operations ---------------------------------------------------------------------------

  void Allocate(testing::Rng& rng) {
    const int c = static_cast<int>(rng.Below(kChannels));
    const bool counter = rng.Below(8) == 0;
    const int32_t type = counter ? counter_type : 0;
    uint64_t size;
    const uint64_t r = rng.Below(1000);
    if (counter) {
      size = 1 + rng.Below(3000);
    } else if (r < 800) {
      size = 1 + rng.Below(4096);
    } else if (r < 960) {
      size = 4097 + rng.Below(65536 - 4096);
    } else if (r < 995) {
      size = 65537 + rng.Below((1 << 20) - 65536);
    } else {
      size = (1 << 20) + 1 + rng.Below(1 << 20);  // direct
    }
    if (rng.Below(200) == 0) size = 0;                       // kInvalidSize
    if (rng.Below(400) == 0) size = (4ull << 20) + 1;        // above max_allocation_size
    CallContext ctx;
    const uint64_t e = rng.Below(4);
    ctx.env = e == 0 ? 0 : e == 1 ? kEnvB : kEnvA;
    if (rng.Below(300) == 0) ctx.expected_owner = m[0]->OwnerOf(ch[c]) + 1;  // a stale incarnation
    const int32_t t = rng.Below(500) == 0 ? 12 : type;                       // kUnknownType
    Allocation a[2];
    Status s[2];
    for (int k = 0; k < 2; ++k) s[k] = m[k]->Allocate(t, size, ch[c], ctx, &a[k]);
    CHECK(s[0] == s[1]) << Where() << " Allocate status " << static_cast<int>(s[0]) << " vs "
                        << static_cast<int>(s[1]);
    ++seen[static_cast<int>(s[0]) & 15];
    CHECK_EQ(a[0].slot_bytes, a[1].slot_bytes) << Where();
    CHECK_EQ(a[0].charged, a[1].charged) << Where();
    CHECK(a[0].refused_scope == a[1].refused_scope) << Where();
    CHECK_EQ(a[0].refused_limit, a[1].refused_limit) << Where();
    CHECK_EQ(a[0].refused_in_use, a[1].refused_in_use) << Where();
    CHECK_EQ(a[0].refused_handles, a[1].refused_handles) << Where();
    CHECK_EQ(a[0].refused_size, a[1].refused_size) << Where();
    if (s[0] != Status::kOk || s[1] != Status::kOk) return;
    CHECK_EQ(a[0].pool, a[1].pool) << Where();
    CHECK_EQ(a[0].slab_key, a[1].slab_key) << Where();
    CHECK_EQ(a[0].slab_offset, a[1].slab_offset) << Where();
    CHECK(a[0].soft_crossed == a[1].soft_crossed) << Where();
    CHECK((a[0].data == nullptr) == counter) << Where();
    CheckLimitsHold(t, ch[c]);
    if (a[1].data != nullptr) {
      // Zeroing is the same: the single-owner slot is zero wherever the default one is.
      const uint64_t n = std::min<uint64_t>(size, 64);
      CHECK(std::memcmp(a[0].data, a[1].data, n) == 0) << Where() << " slot contents";
      std::memset(a[0].data, 0x5a, n);  // dirty both alike
      std::memset(a[1].data, 0x5a, n);
    }
    live.push_back(Handle{{a[0].id, a[1].id}, ch[c], type, size, ctx.env, ctx.env != 0 && !counter});
  }

  static void CheckInfo(const HandleInfo& x, const HandleInfo& y, const std::string& where) {
    CHECK_EQ(x.type, y.type) << where;
    CHECK_EQ(x.channel, y.channel) << where;
    CHECK_EQ(x.owner, y.owner) << where;
    CHECK_EQ(x.pool, y.pool) << where;
    CHECK_EQ(x.size, y.size) << where;
    CHECK_EQ(x.slot_bytes, y.slot_bytes) << where;
    CHECK_EQ(x.charged, y.charged) << where;
    CHECK_EQ(x.slab_key, y.slab_key) << where;
    CHECK_EQ(x.slab_offset, y.slab_offset) << where;
    CHECK_EQ(x.in_transit, y.in_transit) << where;
    CHECK_EQ(x.parked, y.parked) << where;
  }

  /// Frees live[j] (removed from `live`), as `presenter` from `env`.
  Status FreeAt(size_t j, int32_t presenter, const CallContext& ctx) {
    const Handle h = live[j];
    HandleInfo info[2];
    uint32_t v[2] = {0, 0};
    Status s[2];
    for (int k = 0; k < 2; ++k) s[k] = m[k]->Free(h.id[k], presenter, FreeReason::kDeallocate, ctx, &info[k], &v[k]);
    CHECK(s[0] == s[1]) << Where() << " Free status";
    CHECK_EQ(v[0], v[1]) << Where() << " Free violations";
    if (s[0] == Status::kOk || s[0] == Status::kIsolationViolation) CheckInfo(info[0], info[1], Where());
    if (s[0] == Status::kOk && s[1] == Status::kOk) {
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(j));
      gone.emplace_back(h.id[0], h.id[1]);
      if (gone.size() > 256) gone.erase(gone.begin());
      if (info[0].parked) {
        parked.emplace_back(h.id[0], h.id[1]);
        ++parked_frees;
      }
    }
    if (s[0] == Status::kIsolationViolation) ++isolation;
    return s[0];
  }

  void Free(testing::Rng& rng) {
    if (live.empty()) return;
    const size_t j = rng.Below(live.size());
    const uint64_t r = rng.Below(100);
    CallContext ctx;
    ctx.env = live[j].env != 0 ? live[j].env : kEnvA;
    int32_t presenter = live[j].channel;
    if (r < 8) {
      presenter = ch[rng.Below(kChannels)];  // maybe cross-channel
    } else if (r < 12) {
      presenter = -1;  // the manager itself
    } else if (r < 20) {
      ctx.env = ctx.env == kEnvA ? kEnvB : kEnvA;  // freed by another thread: parks attached memory
    } else if (r < 26) {
      ctx.keep_until_released = true;  // our own buffer cannot vouch: parks attached memory
    }
    FreeAt(j, presenter, ctx);
  }

  void BadFree(testing::Rng& rng) {
    uint64_t ids[2];
    if (!gone.empty() && rng.Below(2) == 0) {
      const auto& g = gone[rng.Below(gone.size())];
      ids[0] = g.first;
      ids[1] = g.second;
    } else if (!live.empty()) {
      const Handle& h = live[rng.Below(live.size())];
      const uint64_t flip = uint64_t{1} << rng.Below(12);  // a check bit: forged
      ids[0] = h.id[0] ^ flip;
      ids[1] = h.id[1] ^ flip;
    } else {
      ids[0] = ids[1] = 1 + rng.Below(1000);
    }
    const int32_t presenter = rng.Below(2) == 0 ? -1 : ch[rng.Below(kChannels)];
    HandleInfo info[2];
    uint32_t v[2] = {0, 0};
    Status s[2];
    for (int k = 0; k < 2; ++k) s[k] = m[k]->Free(ids[k], presenter, FreeReason::kDeallocate, &info[k], &v[k]);
    CHECK(s[0] == s[1]) << Where() << " bad Free status";
    CHECK(s[0] != Status::kOk) << Where() << " a stale or forged id was freed";
    CHECK_EQ(v[0], v[1]) << Where();
    const uint32_t mask0 = m[0]->Validate(ids[0], presenter, &info[0]);
    const uint32_t mask1 = m[1]->Validate(ids[1], presenter, &info[1]);
    CHECK_EQ(mask0, mask1) << Where() << " Validate of a bad id";
    CHECK(m[0]->IsReleased(ids[0]) == m[1]->IsReleased(ids[1])) << Where();
  }

  void Validate(testing::Rng& rng) {
    if (live.empty()) return;
    const Handle& h = live[rng.Below(live.size())];
    const int32_t presenter = rng.Below(4) == 0 ? ch[rng.Below(kChannels)] : h.channel;
    HandleInfo info[2];
    const uint32_t a = m[0]->Validate(h.id[0], presenter, &info[0]);
    const uint32_t b = m[1]->Validate(h.id[1], presenter, &info[1]);
    CHECK_EQ(a, b) << Where() << " Validate mask";
    CheckInfo(info[0], info[1], Where());
    HandleInfo l[2];
    CHECK(m[0]->Lookup(h.id[0], &l[0]) == Status::kOk) << Where();
    CHECK(m[1]->Lookup(h.id[1], &l[1]) == Status::kOk) << Where();
    CheckInfo(l[0], l[1], Where());
  }

  void TransferAndAdopt(testing::Rng& rng) {
    if (live.empty()) return;
    const size_t j = rng.Below(live.size());
    Handle& h = live[j];
    HandleInfo info[2];
    Status s[2];
    for (int k = 0; k < 2; ++k) s[k] = m[k]->BeginTransfer(h.id[k], &info[k]);
    CHECK(s[0] == s[1]) << Where() << " BeginTransfer";
    if (s[0] == Status::kOk) CheckInfo(info[0], info[1], Where());
    if (rng.Below(4) == 0) return;  // left in transit (freed, closed or adopted later)
    const uint32_t env = rng.Below(2) == 0 ? kEnvA : kEnvB;
    const bool attached = rng.Below(2) == 0;
    for (int k = 0; k < 2; ++k) s[k] = m[k]->Adopt(h.id[k], CallContext{env, 0, false}, attached, &info[k]);
    CHECK(s[0] == s[1]) << Where() << " Adopt";
    if (s[0] == Status::kOk) {
      CheckInfo(info[0], info[1], Where());
      h.env = env;
      h.attached = attached && h.type == 0;
    }
  }

  uint64_t ParkedCount(int k) {
    ManagerSnapshot s;
    m[k]->Snapshot(&s);
    return s.parked_handles;
  }

  /// The buffer over parked[j]'s memory dies in `env` (a no-op for another env); forgets
  /// parked[j] if its memory went back.
  void ReleaseParked(size_t j, uint32_t env) {
    const uint64_t before[2] = {ParkedCount(0), ParkedCount(1)};
    m[0]->OnBufferReleased(parked[j].first, env);
    m[1]->OnBufferReleased(parked[j].second, env);
    const uint64_t after[2] = {ParkedCount(0), ParkedCount(1)};
    CHECK_EQ(before[0] - after[0], before[1] - after[1]) << Where() << " parked memory released";
    if (after[0] != before[0]) parked.erase(parked.begin() + static_cast<std::ptrdiff_t>(j));
  }

  /// The buffer over a live handle, or over parked memory, dies in its env.
  void ReleaseBuffer(testing::Rng& rng) {
    if (!parked.empty() && rng.Below(2) == 0) {
      const size_t j = rng.Below(parked.size());
      ReleaseParked(j, rng.Below(2) == 0 ? kEnvA : kEnvB);
      return;
    }
    if (live.empty()) return;
    Handle& h = live[rng.Below(live.size())];
    const uint32_t env = h.env != 0 && rng.Below(4) != 0 ? h.env : kEnvA;
    m[0]->OnBufferReleased(h.id[0], env);
    m[1]->OnBufferReleased(h.id[1], env);
    if (env == h.env) h.attached = false;
  }

  void Revocations() {
    for (uint32_t env : {kEnvA, kEnvB}) {
      std::vector<uint64_t> ids[2];
      CHECK(m[0]->HasRevocations() == m[1]->HasRevocations()) << Where();
      for (int k = 0; k < 2; ++k) m[k]->DrainRevocations(env, &ids[k]);
      CHECK_EQ(ids[0].size(), ids[1].size()) << Where() << " revocations of env " << env;
    }
  }

  void ChangeLimits(testing::Rng& rng) {
    Limits l;
    switch (rng.Below(4)) {
      case 0: l.max_bytes = (8 + rng.Below(48)) * 4096; l.max_handles = 8 + rng.Below(24); break;
      case 1: l.soft_bytes = rng.Below(64) * 4096; break;
      case 2: l.max_handles = rng.Below(40); break;
      default: break;  // none
    }
    const uint64_t which = rng.Below(3);
    if (which == 0) SetBoth(kAllTypes, ch[1 + rng.Below(kChannels - 1)], l);
    if (which == 1) {
      Limits t;  // the type total: every channel
      t.max_handles = rng.Below(2) == 0 ? kUnlimited : 60 + rng.Below(40);
      t.max_bytes = rng.Below(2) == 0 ? kUnlimited : (100 + rng.Below(200)) * 4096;
      SetBoth(0, kTypeTotal, t);
    }
    if (which == 2) {
      Limits u;
      u.max_bytes = rng.Below(2) == 0 ? kUnlimited : 1000 + rng.Below(20000);
      u.max_allocation_size = rng.Below(3) == 0 ? 500 : kUnlimited;
      SetBoth(counter_type, ch[rng.Below(kChannels)], u);
    }
  }

  void CloseAndReopen(testing::Rng& rng) {
    const int c = 1 + static_cast<int>(rng.Below(kChannels - 1));
    std::vector<HandleInfo> freed[2];
    Status s[2];
    for (int k = 0; k < 2; ++k) s[k] = m[k]->CloseChannel(ch[c], CallContext{kEnvA, 0, false}, &freed[k]);
    CHECK(s[0] == s[1]) << Where() << " CloseChannel";
    CHECK_EQ(freed[0].size(), freed[1].size()) << Where() << " handles freed by the close";
    for (size_t i = 0; i < freed[0].size() && i < freed[1].size(); ++i) CheckInfo(freed[0][i], freed[1][i], Where());
    for (size_t i = 0; i < live.size();) {
      if (live[i].channel == ch[c]) {
        gone.emplace_back(live[i].id[0], live[i].id[1]);
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
    for (size_t i = 0; i < freed[0].size() && i < freed[1].size(); ++i) {
      if (freed[0][i].parked) parked.emplace_back(freed[0][i].id, freed[1][i].id);  // another env's buffer
    }
    OpenBoth(c);
  }

  void Reclaim(uint32_t env, FreeReason reason) {
    if (reason == FreeReason::kLeak) {
      // ReclaimEnv(kLeak) returns the env's parked memory in the order of a hash map keyed by
      // id, and ids differ between the two managers (keyed check bits): return it here first,
      // in one order, so both pools keep the same slot order.
      for (size_t j = parked.size(); j-- > 0;) ReleaseParked(j, env);
    }
    const uint64_t a = m[0]->ReclaimEnv(env, reason);
    const uint64_t b = m[1]->ReclaimEnv(env, reason);
    CHECK_EQ(a, b) << Where() << " ReclaimEnv";
    for (size_t i = 0; i < live.size();) {
      // ReclaimEnv frees the live (not in transit) handles that env holds.
      HandleInfo info;
      const Status s = m[0]->Lookup(live[i].id[0], &info);
      CHECK(s == m[1]->Lookup(live[i].id[1], &info)) << Where() << " Lookup after ReclaimEnv";
      if (s != Status::kOk) {
        gone.emplace_back(live[i].id[0], live[i].id[1]);
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
  }

  // --- state comparison -------------------------------------------------------------------------

  static void CheckPool(const PoolStats& x, const PoolStats& y, const std::string& where) {
    CHECK_EQ(x.reserved_bytes, y.reserved_bytes) << where << " " << x.name;
    CHECK_EQ(x.live_slots, y.live_slots) << where << " " << x.name;
    CHECK_EQ(x.live_bytes, y.live_bytes) << where << " " << x.name;
    CHECK_EQ(x.retained_free_slots, y.retained_free_slots) << where << " " << x.name;
    CHECK_EQ(x.hits, y.hits) << where << " " << x.name;
    CHECK_EQ(x.misses, y.misses) << where << " " << x.name;
    CHECK_EQ(x.released_to_system, y.released_to_system) << where << " " << x.name;
    CHECK_EQ(x.failures, y.failures) << where << " " << x.name;
  }

  static void CheckUsage(const LedgerUsage& x, const LedgerUsage& y, const std::string& where) {
    CHECK_EQ(x.bytes, y.bytes) << where;
    CHECK_EQ(x.handles, y.handles) << where;
    CHECK_EQ(x.peak_bytes, y.peak_bytes) << where;
    CHECK_EQ(x.limit_rejections, y.limit_rejections) << where;
    for (uint32_t v = 0; v < kViolationKinds; ++v) CHECK_EQ(x.violations[v], y.violations[v]) << where << " violation " << v;
  }

  void CheckState() {
    const std::string where = Where();
    ManagerSnapshot s[2];
    for (int k = 0; k < 2; ++k) m[k]->Snapshot(&s[k]);
    CHECK_EQ(s[0].pools.size(), s[1].pools.size()) << where;
    for (size_t i = 0; i < s[0].pools.size() && i < s[1].pools.size(); ++i) CheckPool(s[0].pools[i], s[1].pools[i], where);
    CheckPool(s[0].direct, s[1].direct, where);
    CHECK_EQ(s[0].handles, s[1].handles) << where;
    CHECK_EQ(s[0].bytes_in_use, s[1].bytes_in_use) << where;
    CHECK_EQ(s[0].requested_bytes, s[1].requested_bytes) << where;
    CHECK_EQ(s[0].reserved_bytes, s[1].reserved_bytes) << where;
    CHECK_EQ(s[0].allocations, s[1].allocations) << where;
    CHECK_EQ(s[0].deallocations, s[1].deallocations) << where;
    CHECK_EQ(s[0].refusals, s[1].refusals) << where;
    CHECK_EQ(s[0].live_slot_bytes, s[1].live_slot_bytes) << where;
    CHECK_EQ(s[0].retained_free_bytes, s[1].retained_free_bytes) << where;
    CHECK_EQ(s[0].parked_handles, s[1].parked_handles) << where;
    CHECK_EQ(s[0].thread_exit_reclaims, s[1].thread_exit_reclaims) << where;
    CHECK_EQ(s[0].allocate_latency.count, s[1].allocate_latency.count) << where;
    CHECK_EQ(s[0].deallocate_latency.count, s[1].deallocate_latency.count) << where;
    if (track_live) {
      CHECK_EQ(s[0].handles, static_cast<uint64_t>(live.size())) << where << " live handles";
    }
    for (int c = 0; c < kChannels; ++c) {
      CheckUsage(m[0]->ChannelUsage(ch[c]), m[1]->ChannelUsage(ch[c]), where + " channel " + kNames[c]);
      for (int32_t t : {0, counter_type}) {
        CheckUsage(m[0]->TypeUsage(t, ch[c]), m[1]->TypeUsage(t, ch[c]), where + " channel-type " + kNames[c]);
      }
      uint64_t h[2], b[2];
      for (int k = 0; k < 2; ++k) m[k]->RecountChannel(ch[c], &h[k], &b[k]);
      CHECK_EQ(h[0], h[1]) << where << " recount " << kNames[c];
      CHECK_EQ(b[0], b[1]) << where << " recount " << kNames[c];
      const LedgerUsage u = m[1]->ChannelUsage(ch[c]);
      CHECK_EQ(h[1], u.handles) << where << " recount vs ledger " << kNames[c];
      CHECK_EQ(b[1], u.bytes) << where << " recount vs ledger " << kNames[c];
      CHECK(u.peak_bytes >= u.bytes) << where;
    }
    for (int32_t t : {0, counter_type}) {
      CheckUsage(m[0]->TypeUsage(t, kTypeTotal), m[1]->TypeUsage(t, kTypeTotal), where + " type total");
    }
  }

  /// After a successful allocation of `type` in `channel`: its three scopes are within their
  /// hard limits (its charge passed each check, and nothing ran since: limits are exact).
  void CheckLimitsHold(int32_t type, int32_t channel) {
    for (int k = 0; k < 2; ++k) {
      const std::pair<LedgerUsage, Limits> scopes[3] = {
          {m[k]->TypeUsage(type, kTypeTotal), m[k]->ScopeLimits(type, kTypeTotal)},
          {m[k]->ChannelUsage(channel), m[k]->ScopeLimits(kAllTypes, channel)},
          {m[k]->TypeUsage(type, channel), m[k]->ScopeLimits(type, channel)}};
      for (const auto& sc : scopes) {
        CHECK(sc.first.bytes <= sc.second.max_bytes) << Where() << " manager " << k << " bytes above the limit";
        CHECK(sc.first.handles <= sc.second.max_handles) << Where() << " manager " << k << " handles above the limit";
        CHECK(sc.first.peak_bytes >= sc.first.bytes) << Where() << " manager " << k << " peak";
      }
    }
  }
};

void RunSeed(uint64_t seed, uint64_t ops) {
  Twin tw;
  testing::Rng rng(seed);
  for (tw.step = 0; tw.step < ops; ++tw.step) {
    const uint64_t r = rng.Below(1000);
    if (r < 380) {
      tw.Allocate(rng);
    } else if (r < 700) {
      tw.Free(rng);
    } else if (r < 760) {
      tw.BadFree(rng);
    } else if (r < 860) {
      tw.Validate(rng);
    } else if (r < 900) {
      tw.TransferAndAdopt(rng);
    } else if (r < 940) {
      tw.ReleaseBuffer(rng);
    } else if (r < 955) {
      tw.Revocations();
    } else if (r < 970) {
      const uint32_t n = 1 + static_cast<uint32_t>(rng.Below(2));
      for (Manager* x : tw.m) x->InjectAllocationFailures(n);
      tw.Allocate(rng);
    } else if (r < 985) {
      tw.ChangeLimits(rng);
    } else if (r < 993) {
      tw.CloseAndReopen(rng);
    } else if (r < 996) {
      tw.Reclaim(rng.Below(2) == 0 ? kEnvA : kEnvB, rng.Below(2) == 0 ? FreeReason::kLeak : FreeReason::kManagerClose);
    } else {
      // Many allocations in the limited channel: hits its byte/handle limits, refusals roll back.
      for (int i = 0; i < 30; ++i) {
        Allocation a[2];
        Status s[2];
        for (int k = 0; k < 2; ++k) s[k] = tw.m[k]->Allocate(0, 4096, tw.ch[1], &a[k]);
        CHECK(s[0] == s[1]) << tw.Where() << " burst " << i << ": " << static_cast<int>(s[0]) << " vs "
                            << static_cast<int>(s[1]) << " scope " << static_cast<int>(a[0].refused_scope) << "/"
                            << static_cast<int>(a[1].refused_scope);
        CHECK(a[0].refused_scope == a[1].refused_scope) << tw.Where();
        CHECK_EQ(a[0].refused_in_use, a[1].refused_in_use) << tw.Where();
        if (s[0] == Status::kOk && s[1] == Status::kOk) {
          tw.live.push_back(Handle{{a[0].id, a[1].id}, tw.ch[1], 0, 4096, 0, false});
        }
      }
    }
    if (tw.step % 64 == 0) tw.CheckState();
  }
  tw.CheckState();
  std::cout << "  seed " << seed << ": allocate ok " << tw.seen[0] << ", limit refusals "
            << tw.seen[static_cast<int>(Status::kResourceLimit)] << ", pool exhausted "
            << tw.seen[static_cast<int>(Status::kPoolExhausted)] << ", parked frees " << tw.parked_frees
            << ", cross-channel frees " << tw.isolation << std::endl;
  CHECK(tw.seen[0] > ops / 10) << "allocations succeed";
  CHECK(tw.seen[static_cast<int>(Status::kResourceLimit)] > 0) << "limit refusals are exercised";
  CHECK(tw.seen[static_cast<int>(Status::kPoolExhausted)] > 0) << "mapping failures are exercised";
  CHECK(tw.parked_frees > 0) << "parked memory is exercised";
  CHECK(tw.isolation > 0) << "cross-channel frees are exercised";
  // Drain: free everything (parked memory too) and check both managers are back to zero.
  while (!tw.live.empty()) {
    Handle& h = tw.live.back();
    HandleInfo info;
    if (tw.m[0]->Lookup(h.id[0], &info) == Status::kOk && info.in_transit) {
      for (int k = 0; k < 2; ++k) CHECK(tw.m[k]->Adopt(h.id[k], CallContext{kEnvA, 0, false}, false, &info) == Status::kOk);
    }
    tw.FreeAt(tw.live.size() - 1, h.channel, CallContext{kEnvA, 0, false});
  }
  tw.Reclaim(kEnvA, FreeReason::kLeak);
  tw.Reclaim(kEnvB, FreeReason::kLeak);
  tw.CheckState();
  for (int k = 0; k < 2; ++k) {
    ManagerSnapshot s;
    tw.m[k]->Snapshot(&s);
    CHECK_EQ(s.handles, uint64_t{0}) << "manager " << k;
    CHECK_EQ(s.bytes_in_use, uint64_t{0}) << "manager " << k;
    CHECK_EQ(s.parked_handles, uint64_t{0}) << "manager " << k;
    CHECK_EQ(s.live_slot_bytes, uint64_t{0}) << "manager " << k;
  }
}

}  // namespace

TEST(SameResultsAsTheDefaultManager) {
  const uint64_t ops = testing::EnvU64("ISOPOOL_SINGLE_OWNER_OPS", 150000);
  const uint64_t seeds = testing::EnvU64("ISOPOOL_SINGLE_OWNER_SEEDS", 3);
  std::cout << "  " << seeds << " seeds x " << ops << " ops (ISOPOOL_SINGLE_OWNER_OPS, ISOPOOL_SINGLE_OWNER_SEEDS)"
            << std::endl;
  for (uint64_t s = 0; s < seeds; ++s) RunSeed(0x51e6 + 7919 * s, ops);
}

TEST(LimitsRefusalsAndRollbacks) {
  // The same deterministic sequence on both kinds of manager, step by step: exact limits,
  // refusals that change nothing but counters, and a mapping failure after the charge.
  Twin tw;
  tw.track_live = false;
  Manager* const* m = tw.m;
  const int32_t c = tw.ch[1];
  std::vector<uint64_t> ids[2];
  for (int k = 0; k < 2; ++k) {
    for (int i = 0; i < 24; ++i) {
      Allocation a;
      CHECK(m[k]->Allocate(0, 4096, c, &a) == Status::kOk) << "allocation " << i;
      ids[k].push_back(a.id);
    }
    Allocation a;
    CHECK(m[k]->Allocate(0, 1, c, &a) == Status::kResourceLimit) << "25th handle";
    CHECK(a.refused_scope == LimitScope::kChannel && a.refused_handles);
    CHECK_EQ(a.refused_in_use, uint64_t{24});
    const LedgerUsage u = m[k]->ChannelUsage(c);
    CHECK_EQ(u.handles, uint64_t{24});
    CHECK_EQ(u.bytes, uint64_t{24 * 4096});
    CHECK_EQ(u.limit_rejections, uint64_t{1});
    CHECK_EQ(m[k]->TypeUsage(0, kTypeTotal).handles, uint64_t{24}) << "the refusal rolled back the type total";
    CHECK_EQ(m[k]->TypeUsage(0, kTypeTotal).limit_rejections, uint64_t{1});
    // Size cap of the channel-type scope, before any charge.
    CHECK(m[k]->Free(ids[k].back(), c, FreeReason::kDeallocate, nullptr, nullptr) == Status::kOk);
    ids[k].pop_back();
    CHECK(m[k]->Allocate(0, 200001, c, &a) == Status::kResourceLimit);
    CHECK(a.refused_size && a.refused_scope == LimitScope::kChannelType);
    // Byte limit (40 * 4096): a 64 KiB slot fits beside 23 small ones (159744 bytes), a second
    // one beside 22 does not (155648 + 65536).
    CHECK(m[k]->Allocate(0, 5000, c, &a) == Status::kOk);
    ids[k].push_back(a.id);
    CHECK_EQ(m[k]->ChannelUsage(c).peak_bytes, uint64_t{23 * 4096 + 65536});
    CHECK(m[k]->Free(ids[k].front(), c, FreeReason::kDeallocate, nullptr, nullptr) == Status::kOk);
    ids[k].erase(ids[k].begin());
    CHECK(m[k]->Allocate(0, 5000, c, &a) == Status::kResourceLimit);
    CHECK(a.refused_scope == LimitScope::kChannel && !a.refused_handles);
    CHECK_EQ(a.refused_limit, uint64_t{40 * 4096});
    CHECK_EQ(a.refused_in_use, uint64_t{22 * 4096 + 65536});
    CHECK_EQ(m[k]->ChannelUsage(c).bytes, uint64_t{22 * 4096 + 65536}) << "the refusal rolled back";
    CHECK_EQ(m[k]->ChannelUsage(c).handles, uint64_t{23});
    CHECK_EQ(m[k]->ChannelUsage(c).peak_bytes, uint64_t{23 * 4096 + 65536}) << "peak unchanged by a refusal";
    CHECK_EQ(m[k]->ChannelUsage(c).limit_rejections, uint64_t{3});
    // A mapping failure after charge + reserve (unlimited channel): everything rolls back.
    const int32_t p = tw.ch[4];
    ManagerSnapshot before, after;
    m[k]->Snapshot(&before);
    const LedgerUsage ub = m[k]->ChannelUsage(p);
    const LedgerUsage tb = m[k]->TypeUsage(0, kTypeTotal);
    m[k]->InjectAllocationFailures(1);
    CHECK(m[k]->Allocate(0, 100000, p, &a) == Status::kPoolExhausted) << "a 1 MiB slab must be mapped";
    m[k]->Snapshot(&after);
    const LedgerUsage ua = m[k]->ChannelUsage(p);
    const LedgerUsage ta = m[k]->TypeUsage(0, kTypeTotal);
    CHECK_EQ(ua.bytes, ub.bytes);
    CHECK_EQ(ua.handles, ub.handles);
    CHECK_EQ(ua.peak_bytes, ub.peak_bytes);
    CHECK_EQ(ta.bytes, tb.bytes);
    CHECK_EQ(ta.handles, tb.handles);
    CHECK_EQ(ta.peak_bytes, tb.peak_bytes);
    CHECK_EQ(after.handles, before.handles);
    CHECK_EQ(after.reserved_bytes, before.reserved_bytes);
    CHECK_EQ(after.refusals, before.refusals + 1);
    CHECK_EQ(after.pools[2].failures, before.pools[2].failures + 1);
    // The index reserved by the failed call went back: the next allocation succeeds.
    CHECK(m[k]->Allocate(0, 100000, p, &a) == Status::kOk);
    CHECK(m[k]->Free(a.id, p, FreeReason::kDeallocate, nullptr, nullptr) == Status::kOk);
    CHECK_EQ(m[k]->ChannelUsage(p).peak_bytes, uint64_t{1} << 20) << "peak after the 1 MiB slot";
    CHECK_EQ(m[k]->ChannelUsage(p).bytes, uint64_t{0});
  }
  tw.CheckState();
  for (int k = 0; k < 2; ++k) {
    for (uint64_t id : ids[k]) CHECK(m[k]->Free(id, c, FreeReason::kDeallocate, nullptr, nullptr) == Status::kOk);
  }
  tw.CheckState();
}

TEST(HandoffBetweenThreads) {
  // One thread at a time, each handoff ordered by a join: allowed (and clean under TSan).
  ManagerConfig cfg = Config(true);
  Manager* m = nullptr;
  CHECK(Manager::Create(cfg, &m) == Status::kOk);
  int32_t c = -1;
  bool created = false;
  CHECK(m->OpenChannel("handoff", ChannelOptions{}, &c, &created) == Status::kOk);
  std::vector<uint64_t> ids;
  for (int round = 0; round < 8; ++round) {
    std::thread t([&] {
      for (int i = 0; i < 200; ++i) {
        Allocation a;
        CHECK(m->Allocate(0, 1 + (i * 37) % 70000, c, &a) == Status::kOk);
        ids.push_back(a.id);
      }
      for (size_t i = 0; i < ids.size(); i += 2) {
        CHECK(m->Free(ids[i], c, FreeReason::kDeallocate, nullptr, nullptr) == Status::kOk);
      }
      std::vector<uint64_t> rest;
      for (size_t i = 1; i < ids.size(); i += 2) rest.push_back(ids[i]);
      ids.swap(rest);
    });
    t.join();
  }
  ManagerSnapshot s;
  m->Snapshot(&s);
  CHECK_EQ(s.handles, static_cast<uint64_t>(ids.size()));
  CHECK_EQ(m->ChannelUsage(c).handles, static_cast<uint64_t>(ids.size()));
  for (uint64_t id : ids) CHECK(m->Free(id, c, FreeReason::kDeallocate, nullptr, nullptr) == Status::kOk);
  m->Snapshot(&s);
  CHECK_EQ(s.handles, uint64_t{0});
  CHECK_EQ(s.bytes_in_use, uint64_t{0});
  m->Unref();
}

TEST_MAIN()
