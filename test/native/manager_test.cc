// manager_test.cc — the Manager facade: sizes and pools, channels and close,
// limits, free/validate outcomes, zeroing, view/revocable separation,
// injected failures, transfer/adopt, export, snapshot and recount.
#include "manager.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "test_util.h"

using namespace isopool;

namespace {

ManagerConfig Defaults() {
  ManagerConfig c;
  c.pools = {{"small", 4096, 500}, {"medium", 65536, 250}, {"large", 1 << 20, 125}};
  return c;
}

struct Mgr {
  Manager* m = nullptr;
  explicit Mgr(const ManagerConfig& c = Defaults()) {
    CHECK(Manager::Create(c, &m) == Status::kOk);
  }
  ~Mgr() { m->Unref(); }
  Manager* operator->() { return m; }
};

int32_t Open(Manager* m, const char* name, AccessMode access = AccessMode::kRevocable,
             ZeroMode zero = ZeroMode::kCrossChannel) {
  int32_t idx = -1;
  bool created = false;
  ChannelOptions o;
  o.access = access;
  o.zero = zero;
  CHECK(m->OpenChannel(name, o, &idx, &created) == Status::kOk);
  return idx;
}

bool AllZero(const uint8_t* p, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i)
    if (p[i] != 0) return false;
  return true;
}

}  // namespace

TEST(CreateRejectsBadConfig) {
  Manager* m = nullptr;
  ManagerConfig c = Defaults();
  std::swap(c.pools[0], c.pools[1]);
  CHECK(Manager::Create(c, &m) == Status::kInvalidArgument) << "unsorted pools";
  CHECK(m == nullptr);
  c = Defaults();
  c.pools[0].slot_size = 0;
  CHECK(Manager::Create(c, &m) == Status::kInvalidArgument) << "slot size 0";
  c = ManagerConfig{};
  CHECK(Manager::Create(c, &m) == Status::kOk) << "no pools is allowed";
  Allocation a;
  CHECK(m->Allocate(0, 10, 0, &a) == Status::kOk);
  CHECK_EQ(a.pool, kPoolDirect) << "without pools every allocation is direct";
  CHECK_EQ(a.charged, uint64_t{4096});
  m->Unref();
}

TEST(SizeClassesAndCharges) {
  Mgr m;
  struct Case { uint64_t size; int32_t pool; uint64_t charged; } cases[] = {
      {1, 0, 4096}, {4096, 0, 4096}, {4097, 1, 65536}, {65536, 1, 65536},
      {65537, 2, 1 << 20}, {1 << 20, 2, 1 << 20}, {(1 << 20) + 1, kPoolDirect, (1 << 20) + 4096}};
  std::vector<uint64_t> ids;
  uint64_t charged = 0, requested = 0;
  for (const auto& c : cases) {
    Allocation a;
    CHECK(m->Allocate(0, c.size, 0, &a) == Status::kOk) << "size " << c.size;
    CHECK_EQ(a.pool, c.pool) << "size " << c.size;
    CHECK_EQ(a.charged, c.charged) << "size " << c.size;
    CHECK_EQ(a.slot_bytes, c.charged);
    CHECK(a.data != nullptr && a.slab_key != 0);
    CHECK(AllZero(a.data, c.size)) << "fresh memory is zero";
    std::memset(a.data, 0xCD, c.size);
    ids.push_back(a.id);
    charged += c.charged;
    requested += c.size;
  }
  ManagerSnapshot s;
  m->Snapshot(&s);
  CHECK_EQ(s.handles, uint64_t{ids.size()});
  CHECK_EQ(s.bytes_in_use, charged);
  CHECK_EQ(s.requested_bytes, requested);
  CHECK_EQ(s.live_slot_bytes, charged);
  CHECK_EQ(s.direct.live_slots, uint64_t{1});
  CHECK_EQ(s.direct.reserved_bytes, uint64_t{(1 << 20) + 4096});
  CHECK_EQ(s.pools.size(), size_t{3});
  CHECK(s.pools[0].name == "small" && s.pools[2].name == "large");
  CHECK_EQ(s.pools[0].live_slots, uint64_t{2});
  CHECK_EQ(s.pools[0].live_bytes, uint64_t{4097});
  CHECK_EQ(s.allocations, uint64_t{ids.size()});
  CHECK_EQ(m->TypeUsage(0, kTypeTotal).bytes, charged);
  CHECK_EQ(m->ChannelUsage(0).bytes, charged);
  for (uint64_t id : ids) {
    HandleInfo info;
    uint32_t v = 99;
    CHECK(m->Free(id, -1, FreeReason::kDeallocate, &info, &v) == Status::kOk);
    CHECK_EQ(v, 0u);
    CHECK_EQ(info.id, id);
    CHECK(m->IsReleased(id)) << "released after free";
  }
  m->Snapshot(&s);
  CHECK_EQ(s.handles, uint64_t{0});
  CHECK_EQ(s.bytes_in_use, uint64_t{0});
  CHECK_EQ(s.direct.reserved_bytes, uint64_t{0}) << "direct memory unmapped on free";
  CHECK_EQ(s.deallocations, uint64_t{ids.size()});
  CHECK_EQ(s.allocate_latency.count, uint64_t{ids.size()});
  CHECK(s.allocate_latency.Quantile(0.5) > 0);
  CHECK(s.allocate_latency.Quantile(0.5) <= s.allocate_latency.Quantile(0.999));
}

TEST(ArgumentErrors) {
  Mgr m;
  Allocation a;
  CHECK(m->Allocate(0, 0, 0, &a) == Status::kInvalidSize);
  CHECK(m->Allocate(0, (64ull << 20) + 1, 0, &a) == Status::kInvalidSize) << "above maxAllocationSize";
  CHECK(m->Allocate(5, 10, 0, &a) == Status::kUnknownType);
  CHECK(m->Allocate(0, 10, 777, &a) == Status::kUnknownChannel);
  int32_t t = -1;
  CHECK(m->DefineType("conn", TypeKind::kCounter, &t) == Status::kOk);
  CHECK_EQ(t, 1);
  CHECK(m->DefineType("conn", TypeKind::kCounter, &t) == Status::kInvalidArgument) << "duplicate";
  CHECK_EQ(m->FindType("conn"), 1);
  CHECK_EQ(m->FindType("nope"), -1);
  CHECK(m->KindOf(1) == TypeKind::kCounter);
  ManagerSnapshot s;
  m->Snapshot(&s);
  CHECK_EQ(s.refusals, uint64_t{4});
  CHECK_EQ(s.handles, uint64_t{0});
}

TEST(CounterTypes) {
  Mgr m;
  int32_t t = -1;
  CHECK(m->DefineType("streams", TypeKind::kCounter, &t) == Status::kOk);
  const int32_t c = Open(m.m, "tenant");
  Limits l;
  l.max_bytes = 10;
  CHECK(m->SetLimits(t, c, l) == Status::kOk);
  Allocation a, b;
  CHECK(m->Allocate(t, 7, c, &a) == Status::kOk);
  CHECK_EQ(a.pool, kPoolCounter);
  CHECK(a.data == nullptr);
  CHECK_EQ(a.charged, uint64_t{7});
  CHECK(m->Allocate(t, 4, c, &b) == Status::kResourceLimit) << "7 + 4 units > 10";
  CHECK(b.refused_scope == LimitScope::kChannelType);
  CHECK_EQ(m->TypeUsage(t, c).bytes, uint64_t{7});
  ManagerSnapshot s;
  m->Snapshot(&s);
  CHECK_EQ(s.bytes_in_use, uint64_t{0}) << "counters are not memory";
  CHECK_EQ(s.handles, uint64_t{1});
  CHECK(m->Free(a.id, c, FreeReason::kDeallocate, nullptr, nullptr) == Status::kOk);
}

TEST(LimitsAreExactAndRefusalsChangeNothing) {
  Mgr m;
  const int32_t c = Open(m.m, "limited");
  Limits total;
  total.max_bytes = 3 * 4096;
  total.soft_bytes = 4096;
  CHECK(m->SetLimits(kAllTypes, c, total) == Status::kOk);
  Limits type_total;
  type_total.max_handles = 5;
  CHECK(m->SetLimits(0, kTypeTotal, type_total) == Status::kOk);
  Allocation a1, a2, a3, a4;
  CHECK(m->Allocate(0, 100, c, &a1) == Status::kOk);
  CHECK(a1.soft_crossed == LimitScope::kNone);
  CHECK(m->Allocate(0, 100, c, &a2) == Status::kOk);
  CHECK(a2.soft_crossed == LimitScope::kChannel) << "8192 crosses softBytes 4096";
  CHECK(m->Allocate(0, 100, c, &a3) == Status::kOk);
  ManagerSnapshot before;
  m->Snapshot(&before);
  const LedgerUsage cu = m->ChannelUsage(c);
  CHECK(m->Allocate(0, 100, c, &a4) == Status::kResourceLimit);
  CHECK(a4.refused_scope == LimitScope::kChannel);
  CHECK_EQ(a4.refused_limit, uint64_t{3 * 4096});
  CHECK_EQ(a4.refused_in_use, uint64_t{3 * 4096});
  CHECK(!a4.refused_handles);
  CHECK_EQ(a4.id, uint64_t{0});
  ManagerSnapshot after;
  m->Snapshot(&after);
  CHECK_EQ(after.handles, before.handles);
  CHECK_EQ(after.bytes_in_use, before.bytes_in_use);
  CHECK_EQ(after.reserved_bytes, before.reserved_bytes);
  CHECK_EQ(after.pools[0].live_slots, before.pools[0].live_slots);
  CHECK_EQ(after.refusals, before.refusals + 1);
  CHECK_EQ(m->ChannelUsage(c).bytes, cu.bytes);
  CHECK_EQ(m->ChannelUsage(c).limit_rejections, cu.limit_rejections + 1);
  CHECK_EQ(m->ChannelUsage(c).peak_bytes, uint64_t{3 * 4096}) << "peak <= hard limit";
  // Type-wide handle limit across channels.
  Allocation u1, u2, u3;
  CHECK(m->Allocate(0, 10, 0, &u1) == Status::kOk);
  CHECK(m->Allocate(0, 10, 0, &u2) == Status::kOk);
  CHECK(m->Allocate(0, 10, 0, &u3) == Status::kResourceLimit) << "6th handle of the type";
  CHECK(u3.refused_scope == LimitScope::kType && u3.refused_handles);
  // Per-scope allocation size cap vs the manager's.
  Limits cap;
  cap.max_allocation_size = 1000;
  CHECK(m->SetLimits(0, c, cap) == Status::kOk);
  CHECK(m->Free(a1.id, c, FreeReason::kDeallocate, nullptr, nullptr) == Status::kOk);
  Allocation big;
  CHECK(m->Allocate(0, 1001, c, &big) == Status::kResourceLimit);
  CHECK(big.refused_scope == LimitScope::kChannelType);
  CHECK_EQ(big.refused_limit, uint64_t{1000});
  const Limits eff = m->EffectiveLimits(0, c);
  CHECK_EQ(eff.max_bytes, uint64_t{3 * 4096});
  CHECK_EQ(eff.max_handles, uint64_t{5});
  CHECK_EQ(eff.max_allocation_size, uint64_t{1000});
  CHECK_EQ(eff.soft_bytes, uint64_t{4096});
  CHECK_EQ(m->EffectiveLimits(0, 0).max_allocation_size, uint64_t{64} << 20) << "manager cap applies";
  CHECK(m->SetLimits(kAllTypes, kTypeTotal, cap) == Status::kInvalidArgument);
  CHECK(m->SetLimits(9, c, cap) == Status::kUnknownType);
}

TEST(FreeOutcomesAndViolations) {
  Mgr m;
  const int32_t a = Open(m.m, "a");
  const int32_t b = Open(m.m, "b");
  Allocation x;
  CHECK(m->Allocate(0, 10, a, &x) == Status::kOk);
  uint32_t v = 0;
  HandleInfo info;
  CHECK(m->Free(x.id ^ 1, a, FreeReason::kDeallocate, &info, &v) == Status::kInvalidHandle) << "forged";
  CHECK_EQ(v, ViolationBit(Violation::kForgedHandle));
  CHECK(m->Free(x.id, b, FreeReason::kDeallocate, &info, &v) == Status::kIsolationViolation);
  CHECK_EQ(v, ViolationBit(Violation::kCrossChannel));
  CHECK(m->Lookup(x.id, &info) == Status::kOk) << "still live after a cross-channel attempt";
  CHECK_EQ(m->Validate(x.id, a, &info), 0u) << "valid for its own channel";
  CHECK_EQ(m->Validate(x.id, -1, &info), 0u) << "valid for the manager";
  CHECK_EQ(m->Validate(x.id, b, &info), ViolationBit(Violation::kCrossChannel));
  CHECK(!m->IsReleased(x.id)) << "live is not released";
  CHECK(m->Free(x.id, a, FreeReason::kDeallocate, &info, &v) == Status::kOk);
  CHECK(m->Free(x.id, a, FreeReason::kDeallocate, &info, &v) == Status::kStaleHandle) << "double free";
  CHECK_EQ(v, ViolationBit(Violation::kStaleHandle));
  CHECK(m->Lookup(x.id, &info) == Status::kStaleHandle);
  CHECK(m->Lookup(12345, &info) == Status::kInvalidHandle);
  CHECK_EQ(m->Validate(12345, -1, &info), ViolationBit(Violation::kForgedHandle));
  CHECK(!m->IsReleased(12345)) << "forged is not released";
  CHECK(m->IsReleased(x.id));
  m->CountViolation(a, Violation::kBufferDetached);
  const LedgerUsage ua = m->ChannelUsage(a);
  CHECK_EQ(ua.violations[uint32_t(Violation::kForgedHandle)], uint64_t{1});
  CHECK_EQ(ua.violations[uint32_t(Violation::kStaleHandle)], uint64_t{1});
  CHECK_EQ(ua.violations[uint32_t(Violation::kBufferDetached)], uint64_t{1});
  const LedgerUsage ub = m->ChannelUsage(b);
  CHECK_EQ(ub.violations[uint32_t(Violation::kCrossChannel)], uint64_t{2}) << "counted against the presenter";
  CHECK_EQ(m->ChannelUsage(0).violations[uint32_t(Violation::kForgedHandle)], uint64_t{1})
      << "manager-level forged ids count against the unscoped domain";
  ManagerSnapshot s;
  m->Snapshot(&s);
  CHECK_EQ(s.pools[0].live_slots, uint64_t{0}) << "refused frees never touched the pool";
  CHECK_EQ(s.deallocations, uint64_t{1});
}

TEST(CloseChannelFreesEverything) {
  Mgr m;
  const int32_t c = Open(m.m, "closing");
  std::vector<uint64_t> ids;
  for (uint64_t size : {10ull, 5000ull, 70000ull, 2000000ull}) {
    Allocation a;
    CHECK(m->Allocate(0, size, c, &a) == Status::kOk);
    ids.push_back(a.id);
  }
  Allocation other;
  CHECK(m->Allocate(0, 10, 0, &other) == Status::kOk);
  HandleInfo ti;
  CHECK(m->BeginTransfer(ids[1], &ti) == Status::kOk) << "an in-transit handle is freed by close too";
  uint64_t h = 0, charged = 0;
  m->RecountChannel(c, &h, &charged);
  CHECK_EQ(h, uint64_t{4});
  CHECK_EQ(charged, m->ChannelUsage(c).bytes) << "recount agrees with the ledger";
  std::vector<HandleInfo> freed;
  CHECK(m->CloseChannel(c, &freed) == Status::kOk);
  CHECK_EQ(freed.size(), size_t{4});
  uint64_t freed_bytes = 0;
  for (auto& f : freed) freed_bytes += f.charged;
  CHECK_EQ(freed_bytes, charged);
  CHECK_EQ(m->FindChannel("closing"), -2);
  Allocation a;
  CHECK(m->Allocate(0, 10, c, &a) == Status::kChannelClosed);
  for (uint64_t id : ids) {
    uint32_t v = 0;
    CHECK(m->Free(id, -1, FreeReason::kDeallocate, nullptr, &v) == Status::kStaleHandle);
    CHECK_EQ(v, ViolationBit(Violation::kChannelClosed)) << "stale id freed by close reports CHANNEL_CLOSED";
    CHECK(m->IsReleased(id));
  }
  CHECK(m->Lookup(other.id, nullptr) == Status::kOk) << "other channels untouched";
  // Reuse the index for many allocations; the closed ids still say CHANNEL_CLOSED.
  for (int i = 0; i < 100; ++i) {
    Allocation t;
    CHECK(m->Allocate(0, 10, 0, &t) == Status::kOk);
    m->Free(t.id, -1, FreeReason::kDeallocate, nullptr, nullptr);
  }
  CHECK_EQ(m->Validate(ids[0], -1, nullptr), ViolationBit(Violation::kChannelClosed));
  CHECK(m->CloseChannel(c, &freed) == Status::kChannelClosed);
  CHECK(m->CloseChannel(0, &freed) == Status::kInvalidArgument);
  const int32_t again = Open(m.m, "closing");
  CHECK_EQ(m->ChannelUsage(again).bytes, uint64_t{0}) << "fresh ledger";
  CHECK_EQ(m->ChannelUsage(again).limit_rejections, uint64_t{0});
  ManagerSnapshot s;
  m->Snapshot(&s);
  CHECK_EQ(s.handles, uint64_t{1});
  CHECK_EQ(s.direct.reserved_bytes, uint64_t{0});
}

TEST(CloseInStepsFreesToEveryCallerAtOnce) {
  Mgr m;
  const int32_t c = Open(m.m, "stepped");
  std::vector<uint64_t> ids;
  for (int i = 0; i < 50; ++i) {
    Allocation a;
    CHECK(m->Allocate(0, 100, c, &a) == Status::kOk);
    ids.push_back(a.id);
  }
  CHECK(m->BeginTransfer(ids[3], nullptr) == Status::kOk);
  uint64_t count = 0, bytes = 0, left = 0;
  CHECK(m->BeginChannelClose(c, CallContext{}, &count, &bytes) == Status::kOk);
  CHECK_EQ(count, uint64_t{50});
  CHECK_EQ(bytes, uint64_t{50 * 4096});
  CHECK_EQ(m->ClosingHandles(), uint64_t{50});
  CHECK_EQ(m->FindChannel("stepped"), -2) << "the name is closed at once";
  Allocation refused;
  CHECK(m->Allocate(0, 10, c, &refused) == Status::kChannelClosed);
  // Before any step every handle reads as freed by its channel, and nothing can move it.
  uint32_t v = 0;
  CHECK(m->Free(ids[0], -1, FreeReason::kDeallocate, nullptr, &v) == Status::kStaleHandle);
  CHECK_EQ(v, ViolationBit(Violation::kChannelClosed));
  CHECK_EQ(m->Validate(ids[1], -1, nullptr), ViolationBit(Violation::kChannelClosed));
  CHECK(m->Lookup(ids[2], nullptr) == Status::kStaleHandle);
  CHECK(m->BeginTransfer(ids[4], nullptr) == Status::kStaleHandle);
  CHECK(m->Adopt(ids[3], nullptr) == Status::kStaleHandle);
  CHECK(!m->IsReleased(ids[0])) << "its memory is not back yet";
  // The name reopens as a new incarnation on another index while the close goes on.
  const int32_t again = Open(m.m, "stepped");
  CHECK(again != c);
  Allocation fresh;
  CHECK(m->Allocate(0, 10, again, &fresh) == Status::kOk);
  std::vector<HandleInfo> freed;
  m->CloseChannelStep(c, CallContext{}, 20, &freed, &left);
  CHECK_EQ(freed.size(), size_t{20});
  CHECK_EQ(left, uint64_t{30});
  CHECK_EQ(m->ClosingHandles(), uint64_t{30});
  // Claim and Finish: one claim at a time.
  std::vector<HandleInfo> claimed;
  CHECK(m->CloseChannelClaim(c, 25, &claimed) == Status::kOk);
  CHECK_EQ(claimed.size(), size_t{25});
  CHECK(m->CloseChannelClaim(c, 1, &claimed) == Status::kInvalidArgument) << "finish the last claim first";
  CHECK(m->CloseChannelFinish(c, CallContext{}, nullptr, 0, &left) == Status::kOk);
  CHECK_EQ(left, uint64_t{5});
  m->CloseChannelStep(c, CallContext{}, 100, &freed, &left);
  CHECK_EQ(left, uint64_t{0});
  CHECK_EQ(freed.size(), size_t{25});
  CHECK_EQ(m->ClosingHandles(), uint64_t{0});
  CHECK(m->CloseChannelFinish(c, CallContext{}, nullptr, 0, &left) == Status::kChannelClosed) << "nothing under way";
  for (uint64_t id : ids) {
    CHECK(m->IsReleased(id));
    CHECK_EQ(m->Validate(id, -1, nullptr), ViolationBit(Violation::kChannelClosed));
  }
  CHECK(m->Lookup(fresh.id, nullptr) == Status::kOk) << "the new incarnation is untouched";
  CHECK_EQ(m->FindChannel("stepped"), again);
  ManagerSnapshot s;
  m->Snapshot(&s);
  CHECK_EQ(s.handles, uint64_t{1});
  CHECK_EQ(s.parked_handles, uint64_t{0});
}

TEST(CloseChannelOfAnEmptiedOrTransitOnlyChannel) {
  // CloseChannel and ChannelIds skip the census when the channel's ledger holds no handle.
  // Another channel keeps the table's high-water mark up, so a scan would have work to do.
  Mgr m;
  auto allocate_n = [&](int32_t channel, int n) {
    std::vector<uint64_t> ids;
    for (int i = 0; i < n; ++i) {
      Allocation a;
      CHECK(m->Allocate(0, 100, channel, &a) == Status::kOk);
      ids.push_back(a.id);
    }
    return ids;
  };
  const int32_t busy = Open(m.m, "busy");
  const std::vector<uint64_t> busy_ids = allocate_n(busy, 300);
  const int32_t emptied = Open(m.m, "emptied");
  const std::vector<uint64_t> gone = allocate_n(emptied, 50);
  for (uint64_t id : gone) CHECK(m->Free(id, -1, FreeReason::kDeallocate, nullptr, nullptr) == Status::kOk);
  CHECK_EQ(m->ChannelUsage(emptied).handles, uint64_t{0});
  std::vector<uint64_t> listed;
  m->ChannelIds(emptied, &listed);
  CHECK(listed.empty());
  std::vector<HandleInfo> freed;
  CHECK(m->CloseChannel(emptied, &freed) == Status::kOk);
  CHECK(freed.empty());
  CHECK_EQ(m->FindChannel("emptied"), -2) << "closed although nothing was scanned";
  CHECK(m->CloseChannel(emptied, &freed) == Status::kChannelClosed);

  // Only an in-transit handle left: still charged to the channel, so it is found and freed.
  const int32_t transit = Open(m.m, "transit");
  Allocation kept, dropped;
  CHECK(m->Allocate(0, 100, transit, &kept) == Status::kOk);
  CHECK(m->Allocate(0, 100, transit, &dropped) == Status::kOk);
  CHECK(m->Free(dropped.id, -1, FreeReason::kDeallocate, nullptr, nullptr) == Status::kOk);
  HandleInfo ti;
  CHECK(m->BeginTransfer(kept.id, &ti) == Status::kOk);
  CHECK_EQ(m->ChannelUsage(transit).handles, uint64_t{1});
  listed.clear();
  m->ChannelIds(transit, &listed);
  CHECK_EQ(listed.size(), size_t{1});
  CHECK_EQ(listed[0], kept.id);
  CHECK(m->CloseChannel(transit, &freed) == Status::kOk);
  CHECK_EQ(freed.size(), size_t{1});
  CHECK_EQ(freed[0].id, kept.id);
  CHECK(freed[0].in_transit);
  CHECK(m->IsReleased(kept.id));
  CHECK(m->Adopt(kept.id, &ti) == Status::kStaleHandle);

  listed.clear();
  m->ChannelIds(busy, &listed);
  CHECK_EQ(listed.size(), busy_ids.size()) << "the busy channel is untouched";
  ManagerSnapshot s;
  m->Snapshot(&s);
  CHECK_EQ(s.handles, uint64_t{300});
}

TEST(ZeroingOnOwnerChange) {
  ManagerConfig cfg;
  cfg.pools = {{"one", 4096, 1}};  // one retained slot: reuse is deterministic
  Mgr m(cfg);
  const int32_t a = Open(m.m, "a");
  const int32_t b = Open(m.m, "b");
  const int32_t z = Open(m.m, "z", AccessMode::kRevocable, ZeroMode::kAlways);
  Allocation x;
  CHECK(m->Allocate(0, 3000, a, &x) == Status::kOk);
  std::memset(x.data, 0xAB, 3000);
  uint8_t* slot = x.data;
  m->Free(x.id, a, FreeReason::kDeallocate, nullptr, nullptr);
  Allocation y;
  CHECK(m->Allocate(0, 100, a, &y) == Status::kOk);
  CHECK(y.data == slot) << "same slot back";
  CHECK_EQ(int(y.data[0]), 0xAB) << "same owner: not zeroed (allocUnsafe semantics)";
  m->Free(y.id, a, FreeReason::kDeallocate, nullptr, nullptr);
  Allocation w;
  CHECK(m->Allocate(0, 4096, b, &w) == Status::kOk);
  CHECK(w.data == slot);
  CHECK(AllZero(w.data, 4096)) << "another owner: the whole dirty extent is zeroed";
  std::memset(w.data, 0x11, 10);
  m->Free(w.id, b, FreeReason::kDeallocate, nullptr, nullptr);
  Allocation u;
  CHECK(m->Allocate(0, 50, 0, &u) == Status::kOk);
  CHECK(u.data == slot);
  CHECK(AllZero(u.data, 4096)) << "the unscoped domain is an owner of its own";
  m->Free(u.id, 0, FreeReason::kDeallocate, nullptr, nullptr);
  // Reopened channel with the same name: new owner epoch, so zeroed.
  std::vector<HandleInfo> freed;
  Allocation p;
  CHECK(m->Allocate(0, 20, a, &p) == Status::kOk);
  std::memset(p.data, 0x77, 20);
  CHECK(m->CloseChannel(a, &freed) == Status::kOk);
  const int32_t a2 = Open(m.m, "a");
  Allocation q;
  CHECK(m->Allocate(0, 20, a2, &q) == Status::kOk);
  CHECK(q.data == slot);
  CHECK(AllZero(q.data, 20)) << "a reopened channel is a new owner";
  std::memset(q.data, 0x55, 20);
  m->Free(q.id, a2, FreeReason::kDeallocate, nullptr, nullptr);
  Allocation r1;
  CHECK(m->Allocate(0, 30, z, &r1) == Status::kOk);
  std::memset(r1.data, 0x66, 30);
  m->Free(r1.id, z, FreeReason::kDeallocate, nullptr, nullptr);
  Allocation r2;
  CHECK(m->Allocate(0, 30, z, &r2) == Status::kOk);
  CHECK(r2.data == slot);
  CHECK(AllZero(r2.data, 30)) << "ZeroMode::kAlways zeroes same-owner reuse";
  m->Free(r2.id, z, FreeReason::kDeallocate, nullptr, nullptr);
}

TEST(ViewZeroingCoversTheWholeSlot) {
  ManagerConfig cfg;
  cfg.pools = {{"one", 4096, 1}};
  Mgr m(cfg);
  const int32_t va = Open(m.m, "va", AccessMode::kView);
  const int32_t vb = Open(m.m, "vb", AccessMode::kView);
  Allocation x;
  CHECK(m->Allocate(0, 10, va, &x) == Status::kOk);
  std::memset(x.data, 0xEE, 4096);  // a view user writes past its 10 bytes
  m->Free(x.id, va, FreeReason::kDeallocate, nullptr, nullptr);
  Allocation y;
  CHECK(m->Allocate(0, 10, vb, &y) == Status::kOk);
  CHECK(y.data == x.data) << "same slot back";
  CHECK(AllZero(y.data, 4096)) << "view slots are zeroed whole on owner change";
  m->Free(y.id, vb, FreeReason::kDeallocate, nullptr, nullptr);
}

TEST(LargeSlotZeroingOnOwnerChangeClearsEveryWrittenPage) {
  // 1 MiB slots are zeroed through the page map (ZeroSlotMemory): pages written anywhere in
  // the slot, by a revocable holder and by a view holder past its length, must read zero for
  // the next owner.
  ManagerConfig cfg;
  cfg.pools = {{"big", 1 << 20, 1}};
  Mgr m(cfg);
  const int32_t a = Open(m.m, "a");
  const int32_t b = Open(m.m, "b");
  const int32_t va = Open(m.m, "va", AccessMode::kView);
  const int32_t vb = Open(m.m, "vb", AccessMode::kView);
  const uint64_t slot = 1 << 20;
  for (const bool view : {false, true}) {
    const int32_t from = view ? va : a;
    const int32_t to = view ? vb : b;
    Allocation x;
    CHECK(m->Allocate(0, slot, from, &x) == Status::kOk);
    for (uint64_t page : {0u, 3u, 77u, 128u, 255u}) std::memset(x.data + page * 4096 + 17, 0xC3, 4000);
    x.data[slot - 1] = 0x42;
    uint8_t* at = x.data;
    m->Free(x.id, from, FreeReason::kDeallocate, nullptr, nullptr);
    Allocation y;
    CHECK(m->Allocate(0, view ? 10 : slot, to, &y) == Status::kOk);
    CHECK(y.data == at) << "same slot back";
    CHECK(AllZero(y.data, slot)) << (view ? "view" : "revocable") << ": another owner reads zero everywhere";
    m->Free(y.id, to, FreeReason::kDeallocate, nullptr, nullptr);
  }
}

TEST(ViewSlabsNeverServeRevocable) {
  Mgr m;
  const int32_t v = Open(m.m, "view", AccessMode::kView);
  const int32_t r = Open(m.m, "rev");
  std::set<uint64_t> view_keys, rev_keys;
  for (int round = 0; round < 4; ++round) {
    std::vector<uint64_t> ids;
    for (int i = 0; i < 600; ++i) {
      Allocation a;
      const bool is_view = i % 2 == 0;
      CHECK(m->Allocate(0, 1 + (i * 37) % 5000, is_view ? v : r, &a) == Status::kOk);
      (is_view ? view_keys : rev_keys).insert(a.slab_key);
      if (is_view) {
        std::memset(a.data, 0xEE, a.slot_bytes);  // view users may write the whole slot
      } else {
        CHECK(AllZero(a.data, 1 + (i * 37) % 5000)) << "revocable never sees view bytes";
      }
      ids.push_back(a.id);
    }
    for (uint64_t id : ids) CHECK(m->Free(id, -1, FreeReason::kDeallocate, nullptr, nullptr) == Status::kOk);
  }
  for (uint64_t k : view_keys) CHECK(rev_keys.count(k) == 0) << "slab " << k << " served both modes";
}

TEST(ExportSlabRetiresUntilReleased) {
  ManagerConfig cfg;
  cfg.pools = {{"p", 4096, 0}};
  Mgr m(cfg);
  const int32_t v = Open(m.m, "view", AccessMode::kView);
  Allocation a;
  CHECK(m->Allocate(0, 100, v, &a) == Status::kOk);
  uint8_t* base = nullptr;
  uint64_t len = 0;
  CHECK(m->ExportSlab(a.slab_key, &base, &len) == Status::kOk);
  CHECK(base + a.slab_offset == a.data);
  CHECK(m->ExportSlab(a.slab_key + 1000, &base, &len) == Status::kInvalidArgument) << "unknown key";
  m->Free(a.id, v, FreeReason::kDeallocate, nullptr, nullptr);
  ManagerSnapshot s;
  m->Snapshot(&s);
  CHECK_EQ(s.reserved_bytes, len) << "exported slab retired, still reserved";
  base[len - 1] = 1;  // still mapped
  m->ReleaseSlabExport(a.slab_key);
  m->Snapshot(&s);
  CHECK_EQ(s.reserved_bytes, uint64_t{0}) << "unmapped after the last export";
  Allocation b;
  CHECK(m->Allocate(0, 100, v, &b) == Status::kOk);
  CHECK(b.slab_key != a.slab_key) << "slab keys are never reused";
}

TEST(InjectedFailureLeavesEverythingUnchanged) {
  Mgr m;
  const int32_t c = Open(m.m, "inj");
  Allocation warm;
  CHECK(m->Allocate(0, 100, c, &warm) == Status::kOk);
  ManagerSnapshot before;
  m->Snapshot(&before);
  const LedgerUsage cu = m->ChannelUsage(c);
  const LedgerUsage tu = m->TypeUsage(0, kTypeTotal);
  m->InjectAllocationFailures(2);
  Allocation a, d;
  CHECK(m->Allocate(0, 5000, c, &a) == Status::kPoolExhausted) << "medium pool needs a new slab";
  CHECK(m->Allocate(0, 5 << 20, c, &d) == Status::kPoolExhausted) << "direct mapping refused";
  ManagerSnapshot after;
  m->Snapshot(&after);
  CHECK_EQ(after.handles, before.handles);
  CHECK_EQ(after.bytes_in_use, before.bytes_in_use);
  CHECK_EQ(after.reserved_bytes, before.reserved_bytes);
  CHECK_EQ(after.refusals, before.refusals + 2);
  CHECK_EQ(after.pools[1].failures, uint64_t{1});
  CHECK_EQ(after.direct.failures, uint64_t{1});
  CHECK_EQ(m->ChannelUsage(c).bytes, cu.bytes) << "ledger charge rolled back";
  CHECK_EQ(m->ChannelUsage(c).handles, cu.handles);
  CHECK_EQ(m->ChannelUsage(c).peak_bytes, cu.peak_bytes) << "peak not moved by a failed allocation";
  CHECK_EQ(m->TypeUsage(0, kTypeTotal).bytes, tu.bytes);
  uint64_t h = 0, ch = 0;
  m->RecountChannel(c, &h, &ch);
  CHECK_EQ(h, uint64_t{1}) << "no handle leaked into the table";
  CHECK(m->Allocate(0, 5000, c, &a) == Status::kOk) << "works once the injection is used up";
  CHECK_EQ(a.id >> 32, (warm.id >> 32) + 1) << "the reserved handle index was given back and reused";
}

TEST(TransferAndAdopt) {
  Mgr m;
  const int32_t c = Open(m.m, "t");
  Allocation a;
  CHECK(m->Allocate(0, 100, c, &a) == Status::kOk);
  HandleInfo info;
  CHECK(m->Adopt(a.id, &info) == Status::kInvalidHandle) << "live, not in transit";
  CHECK(m->BeginTransfer(a.id, &info) == Status::kOk);
  CHECK(info.in_transit);
  CHECK(m->BeginTransfer(a.id, &info) == Status::kInvalidHandle) << "already in transit";
  CHECK(m->Lookup(a.id, &info) == Status::kOk && info.in_transit);
  CHECK(!m->IsReleased(a.id));
  CHECK(m->Adopt(a.id, &info) == Status::kOk);
  CHECK(info.data == a.data && info.channel == c && info.charged == a.charged) << "ownership unchanged";
  CHECK(m->Adopt(a.id, &info) == Status::kInvalidHandle) << "adopted only once";
  CHECK(m->Adopt(a.id ^ 2, &info) == Status::kInvalidHandle) << "forged";
  // Racing adopters: exactly one wins.
  const uint64_t rounds = testing::EnvU64("ISOPOOL_ADOPT_ROUNDS", 2000);
  uint64_t wins_total = 0;
  for (uint64_t k = 0; k < rounds; ++k) {
    CHECK(m->BeginTransfer(a.id, &info) == Status::kOk);
    std::atomic<int> wins{0};
    std::thread t1([&] { HandleInfo i; if (m->Adopt(a.id, &i) == Status::kOk) wins++; });
    std::thread t2([&] { HandleInfo i; if (m->Adopt(a.id, &i) == Status::kOk) wins++; });
    t1.join();
    t2.join();
    CHECK_EQ(wins.load(), 1);
    wins_total += wins.load();
  }
  CHECK_EQ(wins_total, rounds);
  CHECK(m->Free(a.id, c, FreeReason::kDeallocate, nullptr, nullptr) == Status::kOk);
  CHECK(m->Adopt(a.id, &info) == Status::kStaleHandle) << "freed";
  CHECK(m->BeginTransfer(a.id, &info) == Status::kStaleHandle);
}

TEST(FragmentationThroughManager) {
  Mgr m;
  testing::Rng rng(42);
  for (uint64_t size : {100ull, 30000ull, 900000ull}) {
    const uint32_t queue = size < 4096 ? 500 : size < 65536 ? 250 : 125;
    std::vector<uint64_t> ids;
    for (uint32_t i = 0; i < 3 * queue; ++i) {
      Allocation a;
      CHECK(m->Allocate(0, size, 0, &a) == Status::kOk);
      ids.push_back(a.id);
    }
    for (size_t i = ids.size(); i > 1; --i) std::swap(ids[i - 1], ids[rng.Below(i)]);
    for (uint64_t id : ids) m->Free(id, -1, FreeReason::kDeallocate, nullptr, nullptr);
  }
  ManagerSnapshot s;
  m->Snapshot(&s);
  for (const auto& p : s.pools) {
    const double frag = p.reserved_bytes == 0
                            ? 0
                            : 1 - double((p.live_slots + p.retained_free_slots) * p.slot_size) / p.reserved_bytes;
    CHECK(frag < 0.05) << p.name << " fragmentation " << frag;
    CHECK_EQ(p.retained_free_slots, uint64_t{p.queue_size}) << p.name;
  }
  const double total = 1 - double(s.live_slot_bytes + s.retained_free_bytes) / double(s.reserved_bytes);
  CHECK(total < 0.05) << "manager pool fragmentation " << total;
  std::cout << "  reserved " << s.reserved_bytes << " B, retained " << s.retained_free_bytes
            << " B, fragmentation " << total * 100 << "%" << std::endl;
}

TEST(ClosedNamesAndOpenChannels) {
  Mgr m;
  Open(m.m, "x");
  Open(m.m, "y");
  std::vector<std::pair<std::string, int32_t>> open;
  m->OpenChannels(&open);
  CHECK_EQ(open.size(), size_t{2});
  CHECK_EQ(m->FindChannel(""), 0);
  CHECK_EQ(m->FindChannel("never"), -1);
  int32_t idx;
  bool created;
  CHECK(m->OpenChannel("x", ChannelOptions{}, &idx, &created) == Status::kOk && !created);
  CHECK(m->OptionsOf(idx).access == AccessMode::kRevocable);
  CHECK(m->OwnerOf(idx) != m->OwnerOf(0));
}

TEST_MAIN()
