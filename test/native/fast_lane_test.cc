// fast_lane_test.cc — ReserveIds / Reissue / Burn (the binding's fast lane) leave a
// single-owner manager exactly as the plain Free/Allocate calls they stand for.
//
// FastLaneEquivalence: one thread drives two single-owner managers with the same
// configuration through the same logical workload (ISOPOOL_FAST_LANE_OPS per seed, default
// 100,000; ISOPOOL_FAST_LANE_SEEDS seeds, default 3). Manager A makes the plain calls. Manager
// B behaves like the JS fast lane: a deallocated view handle's slot is parked instead of
// freed, a later allocation of the same channel/type/pool reuses a parked slot under an id
// from ReserveIds, and what happened is replayed (a journal of Reissue / Burn / Free) before
// every other call into B. Reuses are journaled eagerly (Reissue at reuse) or lazily (the
// chain collapses at the flush: intermediate ids are burned). After every flush point the
// observable state of both must match: snapshot totals and per-pool figures, every ledger
// scope (usage, peaks, rejections, violations), the census recount, ChannelIds counts, and
// Lookup of every live handle. A's Allocate decides whether a reuse is allowed (the JS side
// must make the same decision; here it is the oracle).
// Pools have queues larger than the workload's live slots, so a plain Free never returns a
// slab to the system (see the report: under retention pressure a Free can release a slab
// that the fast lane keeps, and reserved bytes then differ).
//
// The direct tests check ids (old and burned ids stale, never forged; reissued ids live),
// every refused precondition (nothing changes), and the generation wrap of NextId and
// PublishFreed on a HandleTable with no quarantine.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "handle_table.h"
#include "manager.h"
#include "test_util.h"

using namespace isopool;

namespace {

ManagerConfig Config(bool single_owner = true, bool hardened = false) {
  ManagerConfig c;
  c.pools = {{"small", 4096, 500}, {"medium", 65536, 250}, {"large", 1 << 20, 64}};
  c.max_allocation_size = 4ull << 20;
  c.single_owner = single_owner;
  c.hardened = hardened;
  return c;
}

constexpr int kChannels = 6;  // 0 unscoped, 1 view, 2 view limited, 3 view zero-always, 4 revocable, 5 view
const char* const kNames[kChannels] = {"", "v1", "vlimited", "vzero", "rev", "v2"};
bool IsView(int c) { return c == 1 || c == 2 || c == 3 || c == 5; }

/// Every figure the fast lane must keep exact (latency histograms aside: the fast lane
/// records no samples).
std::vector<uint64_t> State(Manager* m, const std::vector<int32_t>& channels, int32_t types) {
  std::vector<uint64_t> v;
  ManagerSnapshot s;
  m->Snapshot(&s);
  for (uint64_t x : {s.handles, s.bytes_in_use, s.requested_bytes, s.reserved_bytes, s.allocations,
                     s.deallocations, s.refusals, s.live_slot_bytes, s.retained_free_bytes, s.parked_handles}) {
    v.push_back(x);
  }
  for (const PoolStats& p : s.pools) {
    for (uint64_t x : {p.reserved_bytes, p.live_slots, p.live_bytes, p.retained_free_slots, p.hits, p.misses,
                       p.released_to_system, p.failures}) {
      v.push_back(x);
    }
  }
  for (uint64_t x : {s.direct.reserved_bytes, s.direct.live_slots, s.direct.live_bytes, s.direct.misses}) v.push_back(x);
  auto usage = [&v](const LedgerUsage& u) {
    for (uint64_t x : {u.bytes, u.handles, u.peak_bytes, u.limit_rejections}) v.push_back(x);
    for (uint64_t x : u.violations) v.push_back(x);
  };
  for (int32_t c : channels) {
    usage(m->ChannelUsage(c));
    for (int32_t t = 0; t < types; ++t) usage(m->TypeUsage(t, c));
    uint64_t handles = 0, charged = 0;
    m->RecountChannel(c, &handles, &charged);
    v.push_back(handles);
    v.push_back(charged);
    std::vector<uint64_t> ids;
    m->ChannelIds(c, &ids);
    v.push_back(ids.size());
  }
  for (int32_t t = 0; t < types; ++t) usage(m->TypeUsage(t, kTypeTotal));
  return v;
}

/// Index of the first difference, or -1.
long FirstDiff(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b) {
  if (a.size() != b.size()) return 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return static_cast<long>(i);
  }
  return -1;
}

// --- equivalence ------------------------------------------------------------------------------

struct Op {
  enum Kind { kReissue, kFree, kBurn } kind;
  uint64_t a, b, c;
};

struct Logical {
  uint64_t a;          ///< id in A
  uint64_t b;          ///< id in B (natively live, or a pending fast id)
  int c;               ///< channel number (kNames)
  int32_t type;
  uint64_t size;
  int32_t pool;        ///< A's pool
  bool pending;        ///< lazy reuse: b not published yet; `anchor` holds the slot natively
  uint64_t anchor;
};

struct Parked {
  uint64_t anchor;  ///< natively live id in B holding the slot
  int c;
  int32_t type;
  int32_t pool;
};

struct Twin {
  Manager* m[2] = {nullptr, nullptr};
  int32_t ch[kChannels] = {};
  int32_t counter_type = -1;
  int32_t view_type = -1;  ///< a second memory type
  std::vector<Logical> live;
  std::vector<Parked> parked;
  std::vector<Op> journal;
  std::vector<uint64_t> reserved;  ///< B's unconsumed fast ids
  uint64_t step = 0;
  uint64_t reissues = 0, burns = 0, journal_frees = 0, plain_frees = 0, reuses_refused = 0, flushes = 0;

  Twin() {
    for (int k = 0; k < 2; ++k) {
      CHECK(Manager::Create(Config(), &m[k]) == Status::kOk);
      int32_t t = -1;
      CHECK(m[k]->DefineType("units", TypeKind::kCounter, &t) == Status::kOk);
      counter_type = t;
      CHECK(m[k]->DefineType("frames", TypeKind::kMemory, &t) == Status::kOk);
      view_type = t;
    }
    for (int c = 0; c < kChannels; ++c) OpenBoth(c);
    TopUp();
  }
  ~Twin() {
    for (Manager* x : m) x->Unref();
  }

  std::string Where() const { return "step " + std::to_string(step); }

  void OpenBoth(int c) {
    ChannelOptions o;
    if (IsView(c)) o.access = AccessMode::kView;
    if (c == 3) o.zero = ZeroMode::kAlways;
    int32_t idx[2] = {-1, -1};
    for (int k = 0; k < 2; ++k) {
      bool created = false;
      CHECK(m[k]->OpenChannel(kNames[c], o, &idx[k], &created) == Status::kOk);
    }
    CHECK_EQ(idx[0], idx[1]) << Where();
    ch[c] = idx[0];
    if (c == 2) {
      Limits total;
      total.max_bytes = 30 * 4096;
      total.max_handles = 20;
      total.soft_bytes = 10 * 4096;
      SetBoth(kAllTypes, ch[2], total);
      Limits mem;
      mem.max_allocation_size = 3000;  // below the small slot: reuses of larger sizes are refused
      SetBoth(0, ch[2], mem);
    }
  }

  void SetBoth(int32_t type, int32_t channel, const Limits& l) {
    Flush();
    const Status a = m[0]->SetLimits(type, channel, l);
    const Status b = m[1]->SetLimits(type, channel, l);
    CHECK(a == b && a == Status::kOk) << Where() << " SetLimits";
  }

  void TopUp() {
    if (reserved.size() >= 16) return;
    uint64_t ids[64];
    uint32_t got = 0;
    CHECK(m[1]->ReserveIds(64, ids, &got) == Status::kOk) << Where();
    CHECK_EQ(got, 64u) << Where();
    reserved.insert(reserved.end(), ids, ids + got);
  }

  /// The journal, as the JS side flushes it before any other call into B.
  void Flush() {
    for (Logical& h : live) {
      if (!h.pending) continue;
      journal.push_back(Op{Op::kReissue, h.anchor, h.b, h.size});
      h.pending = false;
    }
    for (const Parked& p : parked) journal.push_back(Op{Op::kFree, p.anchor, 0, 0});
    parked.clear();
    for (const Op& op : journal) {
      Status s = Status::kOk;
      switch (op.kind) {
        case Op::kReissue:
          s = m[1]->Reissue(op.a, op.b, op.c);
          ++reissues;
          break;
        case Op::kBurn:
          s = m[1]->Burn(op.a, op.b, op.c);
          ++burns;
          break;
        case Op::kFree: {
          HandleInfo info;
          uint32_t v = 0;
          s = m[1]->Free(op.a, -1, FreeReason::kDeallocate, &info, &v);
          CHECK_EQ(v, 0u) << Where();
          ++journal_frees;
          break;
        }
      }
      CHECK(s == Status::kOk) << Where() << " journal op " << static_cast<int>(op.kind) << " status "
                              << static_cast<int>(s);
    }
    if (!journal.empty()) ++flushes;
    journal.clear();
    TopUp();
  }

  void Allocate(testing::Rng& rng, bool hot) {
    static constexpr int kViewChannels[4] = {1, 2, 3, 5};
    const int c = hot ? kViewChannels[rng.Below(4)] : static_cast<int>(rng.Below(kChannels));
    const uint64_t r = rng.Below(100);
    const int32_t type = !hot && r < 8 ? counter_type : r < 30 ? view_type : 0;
    uint64_t size;
    const uint64_t z = hot ? rng.Below(890) : rng.Below(1000);  // hot: mostly small, some medium
    if (type == counter_type) {
      size = 1 + rng.Below(3000);
    } else if (z < 800) {
      size = 1 + rng.Below(4096);
    } else if (z < 970) {
      size = 4097 + rng.Below(65536 - 4096);
    } else if (z < 990) {
      size = 65537 + rng.Below((1 << 20) - 65536);
    } else {
      size = (1 << 20) + 1 + rng.Below(1 << 20);  // direct
    }
    if (live.size() >= 150) return;  // keep live slots below every queue (see the file comment)
    Allocation a;
    const Status sa = m[0]->Allocate(type, size, ch[c], &a);
    // The fast lane: a parked slot of the same channel, type and pool, if A accepted.
    if (sa == Status::kOk && a.pool >= 0 && IsView(c) && !reserved.empty()) {
      std::vector<size_t> match;
      for (size_t j = 0; j < parked.size(); ++j) {
        if (parked[j].c == c && parked[j].type == type && parked[j].pool == a.pool) match.push_back(j);
      }
      if (!match.empty() && rng.Below(8) != 0) {
        const size_t j = match[rng.Below(match.size())];
        const Parked p = parked[j];
        parked.erase(parked.begin() + static_cast<std::ptrdiff_t>(j));
        const uint64_t x = reserved.back();
        reserved.pop_back();
        Logical h{a.id, x, c, type, size, a.pool, false, 0};
        if (rng.Below(2) == 0) {
          journal.push_back(Op{Op::kReissue, p.anchor, x, size});  // eager
        } else {
          h.pending = true;  // lazy: collapsed at the flush
          h.anchor = p.anchor;
        }
        live.push_back(h);
        return;
      }
    }
    if (sa != Status::kOk && a.pool >= 0 && IsView(c)) ++reuses_refused;
    Flush();
    Allocation b;
    const Status sb = m[1]->Allocate(type, size, ch[c], &b);
    CHECK(sa == sb) << Where() << " Allocate " << static_cast<int>(sa) << " vs " << static_cast<int>(sb);
    CHECK_EQ(a.charged, b.charged) << Where();
    CHECK_EQ(a.pool, b.pool) << Where();
    CHECK(a.refused_scope == b.refused_scope) << Where();
    if (sa != Status::kOk || sb != Status::kOk) return;
    live.push_back(Logical{a.id, b.id, c, type, size, a.pool, false, 0});
  }

  void Free(testing::Rng& rng, bool hot) {
    if (live.empty()) return;
    size_t j = rng.Below(live.size());
    for (int tries = 0; hot && tries < 8 && !(IsView(live[j].c) && live[j].pool >= 0); ++tries) {
      j = rng.Below(live.size());  // hot phase: mostly fast-lane frees
    }
    const Logical h = live[j];
    live.erase(live.begin() + static_cast<std::ptrdiff_t>(j));
    HandleInfo info[2];
    uint32_t v = 0;
    CHECK(m[0]->Free(h.a, ch[h.c], FreeReason::kDeallocate, &info[0], &v) == Status::kOk) << Where();
    if (h.pending) {
      // Issued and freed entirely in JS: burned; the slot stays parked under its anchor.
      journal.push_back(Op{Op::kBurn, h.b, h.anchor, h.size});
      parked.push_back(Parked{h.anchor, h.c, h.type, h.pool});
      return;
    }
    if (IsView(h.c) && h.pool >= 0 && h.type != counter_type && rng.Below(4) != 0) {
      parked.push_back(Parked{h.b, h.c, h.type, h.pool});
      return;
    }
    Flush();
    CHECK(m[1]->Free(h.b, ch[h.c], FreeReason::kDeallocate, &info[1], &v) == Status::kOk) << Where();
    CHECK_EQ(info[0].size, info[1].size) << Where();
    CHECK_EQ(info[0].charged, info[1].charged) << Where();
    ++plain_frees;
  }

  void CloseAndReopen(testing::Rng& rng) {
    Flush();
    const int c = 1 + static_cast<int>(rng.Below(kChannels - 1));
    std::vector<HandleInfo> freed[2];
    for (int k = 0; k < 2; ++k) CHECK(m[k]->CloseChannel(ch[c], &freed[k]) == Status::kOk) << Where();
    CHECK_EQ(freed[0].size(), freed[1].size()) << Where() << " close";
    live.erase(std::remove_if(live.begin(), live.end(), [&](const Logical& h) { return h.c == c; }), live.end());
    OpenBoth(c);
  }

  void ChangeLimits(testing::Rng& rng) {
    Limits l;  // half of the time: none (so tight limits come and go)
    if (rng.Below(2) == 0) {
      if (rng.Below(2) == 0) l.max_handles = 4 + rng.Below(30);
      if (rng.Below(2) == 0) l.max_bytes = (4 + rng.Below(60)) * 4096;
      if (rng.Below(3) == 0) l.max_allocation_size = 1000 + rng.Below(8000);
    }
    const int c = static_cast<int>(rng.Below(kChannels));
    if (rng.Below(2) == 0) {
      SetBoth(kAllTypes, ch[c] == 0 ? ch[1] : ch[c], l);
    } else {
      SetBoth(rng.Below(2) == 0 ? 0 : view_type, ch[c], l);
    }
  }

  void CheckState() {
    Flush();
    std::vector<int32_t> channels(ch, ch + kChannels);
    const int32_t types = 3;
    const std::vector<uint64_t> a = State(m[0], channels, types);
    const std::vector<uint64_t> b = State(m[1], channels, types);
    const long d = FirstDiff(a, b);
    CHECK_EQ(d, -1L) << Where() << " state differs at figure " << d << ": "
                     << (d >= 0 && static_cast<size_t>(d) < a.size() ? a[d] : 0) << " vs "
                     << (d >= 0 && static_cast<size_t>(d) < b.size() ? b[d] : 0);
    for (const Logical& h : live) {
      HandleInfo x, y;
      CHECK(m[0]->Lookup(h.a, &x) == Status::kOk) << Where();
      CHECK(m[1]->Lookup(h.b, &y) == Status::kOk) << Where() << " live id " << h.b;
      CHECK_EQ(x.channel, y.channel) << Where();
      CHECK_EQ(x.type, y.type) << Where();
      CHECK_EQ(x.size, y.size) << Where();
      CHECK_EQ(x.pool, y.pool) << Where();
      CHECK_EQ(x.charged, y.charged) << Where();
      CHECK_EQ(x.slot_bytes, y.slot_bytes) << Where();
      CHECK_EQ(x.owner, y.owner) << Where();
    }
    ManagerSnapshot s;
    m[1]->Snapshot(&s);
    CHECK_EQ(s.handles, static_cast<uint64_t>(live.size())) << Where();
  }
};

TEST(FastLaneEquivalence) {
  const uint64_t ops = testing::EnvU64("ISOPOOL_FAST_LANE_OPS", 100000);
  const uint64_t seeds = testing::EnvU64("ISOPOOL_FAST_LANE_SEEDS", 3);
  uint64_t reissues = 0, burns = 0, frees = 0, refused = 0;
  for (uint64_t seed = 1; seed <= seeds; ++seed) {
    Twin t;
    testing::Rng rng(seed * 0x51ed27);
    bool hot = false;  // phases: mostly fast-lane work, or anything
    for (t.step = 0; t.step < ops; ++t.step) {
      if (rng.Below(200) == 0) hot = !hot;
      const uint64_t r = rng.Below(1000);
      if (r < 480) {
        t.Allocate(rng, hot);
      } else if (r < 960) {
        t.Free(rng, hot);
      } else if (r < (hot ? 962 : 985)) {
        t.CheckState();
      } else if (r < 995) {
        t.ChangeLimits(rng);
      } else {
        t.CloseAndReopen(rng);
      }
    }
    t.CheckState();
    CHECK(t.reissues > 1000) << "seed " << seed << ": reissues exercised: " << t.reissues;
    CHECK(t.burns > 100) << "seed " << seed << ": burns exercised: " << t.burns;
    CHECK(t.journal_frees > 100) << "seed " << seed << ": journal frees exercised: " << t.journal_frees;
    reissues += t.reissues;
    burns += t.burns;
    frees += t.journal_frees;
    refused += t.reuses_refused;
  }
  std::cout << "  " << ops << " ops x " << seeds << " seeds: " << reissues << " reissues, " << burns << " burns, "
            << frees << " journal frees, " << refused << " reuses refused by A" << std::endl;
}

// --- direct tests --------------------------------------------------------------------------------

struct One {
  Manager* m = nullptr;
  int32_t view = -1, rev = -1, capped = -1, counter = -1;
  explicit One(ManagerConfig c = Config()) {
    CHECK(Manager::Create(c, &m) == Status::kOk);
    ChannelOptions o;
    o.access = AccessMode::kView;
    bool created = false;
    CHECK(m->OpenChannel("view", o, &view, &created) == Status::kOk);
    CHECK(m->OpenChannel("capped", o, &capped, &created) == Status::kOk);
    CHECK(m->OpenChannel("rev", ChannelOptions{}, &rev, &created) == Status::kOk);
    Limits l;
    l.max_allocation_size = 100;
    CHECK(m->SetLimits(0, capped, l) == Status::kOk);
    CHECK(m->DefineType("units", TypeKind::kCounter, &counter) == Status::kOk);
  }
  ~One() { m->Unref(); }
  uint64_t Alloc(int32_t channel, uint64_t size, int32_t type = 0) {
    Allocation a;
    CHECK(m->Allocate(type, size, channel, &a) == Status::kOk);
    return a.id;
  }
  std::vector<uint64_t> Fingerprint() { return State(m, {0, view, capped, rev}, 2); }
};

TEST(ReissuedIdLiveOldAndBurnedStale) {
  One o;
  const uint64_t a = o.Alloc(o.view, 100);
  uint64_t ids[4];
  uint32_t got = 0;
  CHECK(o.m->ReserveIds(4, ids, &got) == Status::kOk);
  CHECK_EQ(got, 4u);
  // Not yet consumed: never issued.
  HandleInfo info;
  CHECK_EQ(o.m->Validate(ids[0], -1, &info), ViolationBit(Violation::kForgedHandle));
  CHECK(o.m->Lookup(ids[0], &info) == Status::kInvalidHandle);

  ManagerSnapshot before;
  o.m->Snapshot(&before);
  CHECK(o.m->Reissue(a, ids[0], 3000) == Status::kOk);
  ManagerSnapshot after;
  o.m->Snapshot(&after);
  CHECK_EQ(after.allocations, before.allocations + 1);
  CHECK_EQ(after.deallocations, before.deallocations + 1);
  CHECK_EQ(after.pools[0].hits, before.pools[0].hits + 1);
  CHECK_EQ(after.pools[0].live_bytes, before.pools[0].live_bytes + 2900);
  CHECK_EQ(after.pools[0].live_slots, before.pools[0].live_slots);
  CHECK_EQ(after.handles, before.handles);
  CHECK_EQ(after.allocate_latency.count, before.allocate_latency.count) << "no latency sample";
  CHECK_EQ(after.deallocate_latency.count, before.deallocate_latency.count) << "no latency sample";

  // The old id is stale (not forged), the new one live with the old record and the new size.
  CHECK_EQ(o.m->Validate(a, -1, &info), ViolationBit(Violation::kStaleHandle));
  CHECK(o.m->Lookup(a, &info) == Status::kStaleHandle);
  CHECK(o.m->IsReleased(a));
  uint32_t v = 0;
  CHECK(o.m->Free(a, o.view, FreeReason::kDeallocate, &info, &v) == Status::kStaleHandle);
  CHECK_EQ(v, ViolationBit(Violation::kStaleHandle));
  CHECK_EQ(o.m->Validate(ids[0], o.view, &info), 0u);
  CHECK_EQ(info.channel, o.view);
  CHECK_EQ(info.size, 3000u);
  CHECK_EQ(info.charged, 4096u);
  CHECK_EQ(info.pool, 0);
  CHECK(!o.m->IsReleased(ids[0]));
  std::vector<uint64_t> listed;
  o.m->ChannelIds(o.view, &listed);
  CHECK(listed.size() == 1 && listed[0] == ids[0]) << "ChannelIds names exactly the reserved id";
  uint64_t handles = 0, charged = 0;
  o.m->RecountChannel(o.view, &handles, &charged);
  CHECK_EQ(handles, 1u);
  CHECK_EQ(charged, 4096u);

  // A chain: the reissued id is reissued again, then freed normally.
  CHECK(o.m->Reissue(ids[0], ids[1], 1) == Status::kOk);
  CHECK(o.m->Lookup(ids[0], &info) == Status::kStaleHandle);
  CHECK(o.m->Free(ids[1], o.view, FreeReason::kDeallocate, &info, &v) == Status::kOk);
  CHECK_EQ(info.size, 1u);
  CHECK(o.m->IsReleased(ids[1]));
  CHECK_EQ(o.m->ChannelUsage(o.view).handles, 0u);
  CHECK_EQ(o.m->ChannelUsage(o.view).bytes, 0u);

  // Burn: issued and freed in JS over the slot of a live handle. Stale, never forged or live;
  // released; a stale presentation counts against the source's channel, as after a plain free.
  const uint64_t medium = o.Alloc(o.view, 5000);
  o.m->Snapshot(&before);
  CHECK(o.m->Burn(ids[2], medium, 6000) == Status::kOk);
  o.m->Snapshot(&after);
  CHECK_EQ(after.allocations, before.allocations + 1);
  CHECK_EQ(after.deallocations, before.deallocations + 1);
  CHECK_EQ(after.pools[1].hits, before.pools[1].hits + 1);
  CHECK_EQ(after.pools[0].hits, before.pools[0].hits);
  CHECK_EQ(after.handles, before.handles);
  CHECK_EQ(after.pools[1].live_bytes, before.pools[1].live_bytes);
  CHECK_EQ(o.m->Validate(ids[2], -1, &info), ViolationBit(Violation::kStaleHandle));
  CHECK(o.m->Lookup(ids[2], &info) == Status::kStaleHandle);
  const uint64_t stale_before = o.m->ChannelUsage(o.view).violations[static_cast<int>(Violation::kStaleHandle)];
  CHECK(o.m->Free(ids[2], -1, FreeReason::kDeallocate, &info, &v) == Status::kStaleHandle);
  CHECK_EQ(o.m->ChannelUsage(o.view).violations[static_cast<int>(Violation::kStaleHandle)], stale_before + 1)
      << "counted against the source's channel";
  CHECK(o.m->IsReleased(ids[2]));
  CHECK(o.m->Lookup(medium, &info) == Status::kOk && info.size == 5000) << "the source is untouched";
  // Consumed ids are no longer reserved.
  const uint64_t b = o.Alloc(o.view, 10);
  CHECK(o.m->Reissue(b, ids[0], 10) == Status::kInvalidArgument);
  CHECK(o.m->Reissue(b, ids[2], 10) == Status::kInvalidArgument);
  CHECK(o.m->Burn(ids[1], b, 10) == Status::kInvalidArgument);
  CHECK(o.m->Burn(ids[2], b, 10) == Status::kInvalidArgument);
  // The last reserved id still works, and old indices are recycled like a plain free's.
  CHECK(o.m->Reissue(b, ids[3], 20) == Status::kOk);
  CHECK(o.m->Lookup(ids[3], &info) == Status::kOk);
}

TEST(ReserveIdsArePublishIds) {
  // Index by index, the reserved id is what Publish returns: Reissue and Burn check it, and
  // Lookup of the reserved id then finds the handle. Through the quarantine's reuse too.
  One o;
  for (int round = 0; round < 40; ++round) {
    uint64_t ids[64];
    uint32_t got = 0;
    CHECK(o.m->ReserveIds(64, ids, &got) == Status::kOk);
    CHECK_EQ(got, 64u);
    for (uint32_t i = 0; i < got; ++i) {
      const uint64_t a = o.Alloc(o.view, 1 + i);
      if (i % 3 == 0) {
        CHECK(o.m->Burn(ids[i], a, 3 + i) == Status::kOk);
        CHECK(o.m->Free(a, o.view, FreeReason::kDeallocate, nullptr, nullptr) == Status::kOk);
        continue;
      }
      CHECK(o.m->Reissue(a, ids[i], 2 + i) == Status::kOk) << "round " << round << " id " << i;
      HandleInfo info;
      CHECK(o.m->Lookup(ids[i], &info) == Status::kOk) << "round " << round;
      CHECK_EQ(info.size, 2u + i);
      CHECK(o.m->Free(ids[i], o.view, FreeReason::kDeallocate, &info, nullptr) == Status::kOk);
    }
  }
  CHECK_EQ(o.m->ChannelUsage(o.view).handles, 0u);
  ManagerSnapshot s;
  o.m->Snapshot(&s);
  CHECK_EQ(s.allocations, s.deallocations);
  CHECK_EQ(s.allocations, 40u * 64 * 2);
}

TEST(RefusedPreconditionsChangeNothing) {
  One o;
  const uint64_t view_small = o.Alloc(o.view, 100);
  const uint64_t view_medium = o.Alloc(o.view, 5000);
  const uint64_t rev = o.Alloc(o.rev, 100);
  const uint64_t direct = o.Alloc(o.view, (1 << 20) + 1);
  const uint64_t units = o.Alloc(o.view, 10, o.counter);
  const uint64_t capped = o.Alloc(o.capped, 50);
  const uint64_t transit = o.Alloc(o.view, 200);
  HandleInfo info;
  CHECK(o.m->BeginTransfer(transit, &info) == Status::kOk);
  const uint64_t stale = o.Alloc(o.view, 300);
  CHECK(o.m->Free(stale, o.view, FreeReason::kDeallocate, &info, nullptr) == Status::kOk);
  uint64_t ids[3];
  uint32_t got = 0;
  CHECK(o.m->ReserveIds(3, ids, &got) == Status::kOk);
  CHECK_EQ(got, 3u);
  CHECK(o.m->Burn(ids[2], view_small, 100) == Status::kOk);  // consumed
  const uint64_t fresh = ids[0];

  const std::vector<uint64_t> base = o.Fingerprint();
  struct Case {
    const char* what;
    Status got;
    Status want;
  };
  const Case cases[] = {
      {"counter type", o.m->Reissue(units, fresh, 10), Status::kInvalidArgument},
      {"direct allocation", o.m->Reissue(direct, fresh, (1 << 20) + 1), Status::kInvalidArgument},
      {"bigger pool size", o.m->Reissue(view_small, fresh, 4097), Status::kInvalidArgument},
      {"smaller pool size", o.m->Reissue(view_medium, fresh, 4096), Status::kInvalidArgument},
      {"size 0", o.m->Reissue(view_small, fresh, 0), Status::kInvalidArgument},
      {"in-transit old id", o.m->Reissue(transit, fresh, 200), Status::kInvalidArgument},
      {"stale old id", o.m->Reissue(stale, fresh, 300), Status::kInvalidArgument},
      {"forged old id", o.m->Reissue(view_small ^ 1, fresh, 100), Status::kInvalidArgument},
      {"old id as new id", o.m->Reissue(view_small, view_small, 100), Status::kInvalidArgument},
      {"live id as new id", o.m->Reissue(view_small, view_medium, 100), Status::kInvalidArgument},
      {"consumed new id", o.m->Reissue(view_small, ids[2], 100), Status::kInvalidArgument},
      {"forged new id", o.m->Reissue(view_small, fresh ^ 1, 100), Status::kInvalidArgument},
      {"new id of another generation", o.m->Reissue(view_small, fresh + (1u << 12), 100), Status::kInvalidArgument},
      {"unsafe new id", o.m->Reissue(view_small, fresh | (1ull << 60), 100), Status::kInvalidArgument},
      {"size above a channel cap", o.m->Reissue(capped, fresh, 101), Status::kResourceLimit},
      {"burn: counter source", o.m->Burn(fresh, units, 10), Status::kInvalidArgument},
      {"burn: direct source", o.m->Burn(fresh, direct, 100), Status::kInvalidArgument},
      {"burn: size of another pool", o.m->Burn(fresh, view_small, 4097), Status::kInvalidArgument},
      {"burn: size 0", o.m->Burn(fresh, view_small, 0), Status::kInvalidArgument},
      {"burn: in-transit source", o.m->Burn(fresh, transit, 200), Status::kInvalidArgument},
      {"burn: stale source", o.m->Burn(fresh, stale, 300), Status::kInvalidArgument},
      {"burn: capped source, size of another pool", o.m->Burn(fresh, capped, 5000), Status::kInvalidArgument},
      {"burn: live id", o.m->Burn(view_small, view_medium, 5000), Status::kInvalidArgument},
      {"burn: consumed id", o.m->Burn(ids[2], view_small, 100), Status::kInvalidArgument},
      {"burn: forged id", o.m->Burn(fresh ^ 2, view_small, 100), Status::kInvalidArgument},
  };
  for (const Case& c : cases) CHECK(c.got == c.want) << c.what << ": status " << static_cast<int>(c.got);
  CHECK_EQ(FirstDiff(base, o.Fingerprint()), -1L) << "a refused call changed the state";
  CHECK(o.m->Lookup(view_small, &info) == Status::kOk && info.size == 100) << "old id untouched";
  CHECK(o.m->Lookup(transit, &info) == Status::kOk && info.in_transit);
  // The reserved ids survived every refusal.
  CHECK(o.m->Reissue(capped, fresh, 100) == Status::kOk);
  CHECK(o.m->Reissue(view_medium, ids[1], 65536) == Status::kOk);

  // Not single owner, or hardened: everything refused.
  for (int k = 0; k < 2; ++k) {
    One x(k == 0 ? Config(/*single_owner=*/false) : Config(true, /*hardened=*/true));
    const uint64_t a = x.Alloc(x.view, 100);
    const std::vector<uint64_t> before = x.Fingerprint();
    uint64_t r[4] = {};
    uint32_t n = 7;
    CHECK(x.m->ReserveIds(4, r, &n) == Status::kInvalidArgument) << (k == 0 ? "shared" : "hardened");
    CHECK_EQ(n, 0u);
    // An id of the next index, as ReserveIds would have made it, is refused too.
    CHECK(x.m->Reissue(a, a + (uint64_t{1} << 32), 100) == Status::kInvalidArgument);
    CHECK(x.m->Burn(a + (uint64_t{1} << 32), a, 100) == Status::kInvalidArgument);
    CHECK_EQ(FirstDiff(before, x.Fingerprint()), -1L);
  }
}

TEST(RevocableReissueCarriesTheHolder) {
  // The lane of revocable channels ('transfer' revocation) moves a slot's backing store from one
  // handle's ArrayBuffer to the next: the new id's holder is the old one's, still attached
  // exactly when the old id's buffer had not been released (so a free that cannot vouch for
  // the buffer parks the memory only while some buffer may still reach it).
  One o;
  uint64_t ids[3];
  uint32_t got = 0;
  CHECK(o.m->ReserveIds(3, ids, &got) == Status::kOk);
  CHECK_EQ(got, 3u);
  HandleInfo info;
  uint32_t v = 0;
  Allocation a;
  CHECK(o.m->Allocate(0, 100, o.rev, CallContext{1, 0}, &a) == Status::kOk);
  CHECK(o.m->Burn(ids[2], a.id, 100) == Status::kOk) << "a revocable source may be burned over";
  CHECK(o.m->Reissue(a.id, ids[0], 100) == Status::kOk) << "and reissued";
  CHECK(o.m->Lookup(a.id, &info) == Status::kStaleHandle);
  CHECK(o.m->Lookup(ids[0], &info) == Status::kOk && info.channel == o.rev && info.size == 100);
  CHECK(o.m->Free(ids[0], -1, FreeReason::kDeallocate, CallContext{1, 0, true}, &info, &v) == Status::kOk);
  CHECK(info.parked) << "the moved store may still reach the memory";
  ManagerSnapshot s;
  o.m->Snapshot(&s);
  CHECK_EQ(s.parked_handles, 1u);
  o.m->OnBufferReleased(ids[0], 1);
  o.m->Snapshot(&s);
  CHECK_EQ(s.parked_handles, 0u) << "released under the new id";

  Allocation b;
  CHECK(o.m->Allocate(0, 100, o.rev, CallContext{1, 0}, &b) == Status::kOk);
  o.m->OnBufferReleased(b.id, 1);  // the store died (moved away by user code, then collected)
  CHECK(o.m->Reissue(b.id, ids[1], 100) == Status::kOk);
  CHECK(o.m->Free(ids[1], -1, FreeReason::kDeallocate, CallContext{1, 0, true}, &info, &v) == Status::kOk);
  CHECK(!info.parked) << "no buffer reaches the memory any more: nothing to wait for";
  o.m->Snapshot(&s);
  CHECK_EQ(s.parked_handles, 0u);
  CHECK_EQ(o.m->ChannelUsage(o.rev).handles, 0u);
  CHECK_EQ(s.allocations, s.deallocations);
}

TEST(ReserveIdsSmallCounts) {
  One o;
  uint64_t ids[2] = {0, 0};
  uint32_t got = 9;
  CHECK(o.m->ReserveIds(0, ids, &got) == Status::kOk);
  CHECK_EQ(got, 0u);
  CHECK(o.m->ReserveIds(2, ids, &got) == Status::kOk);
  CHECK_EQ(got, 2u);
  CHECK(ids[0] != ids[1]);
  CHECK((ids[0] >> 32) != (ids[1] >> 32)) << "two indices";
}

TEST(GenerationWrap) {
  // No quarantine: the same index is reused every time, so 2^20 publishes wrap it.
  HandleTable t(HandleTable::RandomSecret(), 0, true);
  HandleRecord rec;
  rec.channel = 0;
  uint32_t index = 0;
  const uint64_t wrap = uint64_t{1} << HandleTable::kGenBits;
  uint64_t last_id = 0, wrapped_id = 0;
  bool mismatch = false;
  for (uint64_t n = 1; n <= wrap + 2; ++n) {
    uint32_t i = 0;
    CHECK(t.Reserve(&i) == Status::kOk);
    if (index == 0) index = i;
    if (i != index) {
      CHECK(false) << "LIFO reuse expected";
      break;
    }
    const uint64_t next = t.NextId(i);
    uint64_t id;
    if (n == wrap - 5 || n == wrap) {
      // A burn at the wrap, and before it: the id NextId announced is stale (same generation) now.
      t.PublishFreed(i, rec, FreeReason::kDeallocate);
      id = next;
      const IdProbe p = t.Probe(id);
      CHECK(p.kind == IdProbe::kStale && p.same_generation) << "burned id at n=" << n;
    } else {
      id = t.Publish(i, rec);
      CHECK(t.Probe(id).kind == IdProbe::kLive);
      CHECK(t.TryTransition(i, t.LoadState(i), EntryState::kFreeing));
      t.FinishFree(i, FreeReason::kDeallocate);
    }
    if (next != id && !mismatch) {
      mismatch = true;
      CHECK_EQ(next, id) << "NextId at publish " << n;
    }
    if (n == wrap) wrapped_id = id;
    last_id = id;
  }
  CHECK_EQ((wrapped_id >> HandleTable::kCheckBits) & (wrap - 1), 0u) << "generation 0 after the wrap";
  CHECK(t.Probe(last_id).kind == IdProbe::kStale);
  // The id of the wrap (generation 0) is stale now; an id never reached is forged on a fresh index.
  CHECK(t.Probe(wrapped_id).kind == IdProbe::kStale);
  uint32_t again = 0, other = 0;
  CHECK(t.Reserve(&again) == Status::kOk);
  CHECK_EQ(again, index);
  CHECK(t.Reserve(&other) == Status::kOk);
  CHECK(other != index);
  CHECK(t.Probe(t.NextId(other)).kind == IdProbe::kForged) << "a reserved id is not issued";
}

}  // namespace

TEST_MAIN()
