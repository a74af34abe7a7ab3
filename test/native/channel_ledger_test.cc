// channel_ledger_test.cc — channel table (names, recycling, owners) and the
// check-and-charge protocol: exact refusals, rollback, soft limits, a threaded run that
// never sees usage above a hard limit, and summed type totals switched to charged under load.
#include "channel_ledger.h"

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

using namespace isopool;

namespace {

Limits MaxBytes(uint64_t b) {
  Limits l;
  l.max_bytes = b;
  return l;
}

}  // namespace

TEST(OpenFindCloseReopen) {
  ChannelLedger ledger;
  CHECK(ledger.Init());
  CHECK_EQ(ledger.Find(""), 0) << "the unscoped domain is channel 0";
  CHECK_EQ(ledger.Find("a"), -1) << "never opened";
  int32_t a = -1;
  bool created = false;
  CHECK(ledger.Open("a", ChannelOptions{}, &a, &created) == Status::kOk);
  CHECK(created);
  CHECK(a > 0) << "named channels are never index 0";
  const uint32_t owner1 = ledger.Get(a)->owner.load();
  CHECK(owner1 != 0 && owner1 != ledger.Get(0)->owner.load()) << "own owner epoch";
  int32_t again = -1;
  CHECK(ledger.Open("a", ChannelOptions{}, &again, &created) == Status::kOk);
  CHECK(!created) << "opening an open channel reports it, not a new one";
  CHECK_EQ(again, a);
  CHECK(ledger.BeginClose(a) == Status::kOk);
  ledger.FinishClose(a);
  CHECK_EQ(ledger.Find("a"), -2) << "closed names are remembered";
  CHECK(ledger.BeginClose(a) == Status::kChannelClosed) << "double close";
  CHECK(ledger.BeginClose(0) == Status::kInvalidArgument) << "the unscoped domain cannot close";
  CHECK(ledger.BeginClose(12345) == Status::kUnknownChannel);
  ChannelState* st = nullptr;
  CHECK(ledger.Enter(a, &st) == Status::kChannelClosed) << "allocations refused after close";
  int32_t b = -1;
  CHECK(ledger.Open("b", ChannelOptions{}, &b, &created) == Status::kOk);
  CHECK_EQ(b, a) << "index recycled";
  CHECK(ledger.Get(b)->owner.load() != owner1) << "fresh owner epoch on reuse";
  CHECK_EQ(ledger.Find("a"), -2);
  CHECK(ledger.Open("a", ChannelOptions{}, &a, &created) == Status::kOk);
  CHECK(created && a != b) << "reopened with a fresh index";
  CHECK_EQ(ledger.Find("a"), a);
  std::vector<std::pair<std::string, int32_t>> open;
  ledger.OpenChannels(&open);
  CHECK_EQ(open.size(), size_t{2}) << "a and b are open";
}

TEST(ClosedNamesAreDistinct) {
  ChannelLedger ledger;
  CHECK(ledger.Init());
  auto open_close = [&](const std::string& name) {
    int32_t index = -1;
    bool created = false;
    CHECK(ledger.Open(name, ChannelOptions{}, &index, &created) == Status::kOk && created);
    CHECK(ledger.BeginClose(index) == Status::kOk);
    ledger.FinishClose(index);
  };
  const size_t cap = ChannelLedger::kMaxClosedNames;
  open_close("kept");
  for (size_t i = 0; i < 2 * cap; i++) open_close("churn");
  CHECK_EQ(ledger.Find("kept"), -2) << "closing and reopening one id never pushes another closed id out";
  CHECK_EQ(ledger.Find("churn"), -2);
  for (size_t i = 0; i + 2 < cap; i++) open_close("n" + std::to_string(i));
  CHECK_EQ(ledger.Find("kept"), -2) << "kMaxClosedNames distinct closed names are all remembered";
  CHECK_EQ(ledger.Find("n0"), -2);
  open_close("one-more");
  CHECK_EQ(ledger.Find("kept"), -1) << "the oldest closed name is forgotten first";
  CHECK_EQ(ledger.Find("churn"), -2);
  CHECK_EQ(ledger.Find("one-more"), -2);
}

TEST(ChargeRefuseRollback) {
  ChannelLedger ledger;
  CHECK(ledger.Init());
  int32_t c = -1;
  bool created;
  CHECK(ledger.Open("c", ChannelOptions{}, &c, &created) == Status::kOk);
  CHECK(ledger.SetLimits(kAllTypes, c, MaxBytes(10000)) == Status::kOk);
  Limits th;
  th.max_handles = 3;
  CHECK(ledger.SetLimits(0, c, th) == Status::kOk);
  ChannelState* st = nullptr;
  CHECK(ledger.Enter(c, &st) == Status::kOk);
  Allocation out;
  ChargeTicket t1, t2, t3;
  CHECK(ledger.TryCharge(0, st, 4096, 4096, &t1, &out) == Status::kOk);
  ledger.Commit(0, st, &t1);
  CHECK(ledger.TryCharge(0, st, 4096, 4096, &t2, &out) == Status::kOk);
  ledger.Commit(0, st, &t2);
  CHECK(ledger.TryCharge(0, st, 4096, 4096, &t3, &out) == Status::kResourceLimit) << "12288 > 10000";
  CHECK(out.refused_scope == LimitScope::kChannel);
  CHECK_EQ(out.refused_limit, uint64_t{10000});
  CHECK_EQ(out.refused_in_use, uint64_t{8192});
  CHECK(!out.refused_handles);
  CHECK_EQ(ledger.TypeUsage(0, kTypeTotal).bytes, uint64_t{8192}) << "type scope rolled back";
  CHECK_EQ(ledger.ChannelUsage(c).bytes, uint64_t{8192});
  CHECK_EQ(ledger.ChannelUsage(c).handles, uint64_t{2});
  CHECK_EQ(ledger.ChannelUsage(c).limit_rejections, uint64_t{1});
  CHECK_EQ(ledger.TypeUsage(0, kTypeTotal).limit_rejections, uint64_t{1});
  // Handle limit on the channel-type scope.
  CHECK(ledger.TryCharge(0, st, 10, 10, &t3, &out) == Status::kOk);
  ledger.Commit(0, st, &t3);
  Allocation out2;
  CHECK(ledger.TryCharge(0, st, 10, 10, &t3, &out2) == Status::kResourceLimit) << "4th handle";
  CHECK(out2.refused_scope == LimitScope::kChannelType);
  CHECK(out2.refused_handles);
  CHECK_EQ(out2.refused_limit, uint64_t{3});
  CHECK_EQ(out2.refused_in_use, uint64_t{3});
  CHECK_EQ(ledger.ChannelUsage(c).bytes, uint64_t{8202}) << "refusal changed nothing";
  CHECK_EQ(ledger.ChannelUsage(c).handles, uint64_t{3});
  // max_allocation_size of a scope: kResourceLimit with that scope.
  Limits cap;
  cap.max_allocation_size = 100;
  CHECK(ledger.SetLimits(0, kTypeTotal, cap) == Status::kOk);
  Allocation out3;
  CHECK(ledger.TryCharge(0, st, 101, 101, &t3, &out3) == Status::kResourceLimit);
  CHECK(out3.refused_scope == LimitScope::kType);
  CHECK_EQ(out3.refused_limit, uint64_t{100});
  ledger.Refund(0, st, 4096);
  ledger.Refund(0, st, 4096);
  ledger.Refund(0, st, 10);
  CHECK_EQ(ledger.ChannelUsage(c).bytes, uint64_t{0});
  CHECK_EQ(ledger.TypeUsage(0, c).handles, uint64_t{0});
  ChannelLedger::Exit(st);
  const Limits eff = ledger.Effective(0, c);
  CHECK_EQ(eff.max_bytes, uint64_t{10000});
  CHECK_EQ(eff.max_handles, uint64_t{3});
  CHECK_EQ(eff.max_allocation_size, uint64_t{100});
  CHECK_EQ(eff.soft_bytes, kUnlimited);
}

TEST(SoftCrossingAndPeak) {
  ChannelLedger ledger;
  CHECK(ledger.Init());
  Limits soft;
  soft.soft_bytes = 5000;
  CHECK(ledger.SetLimits(0, kTypeTotal, soft) == Status::kOk);
  ChannelState* st = nullptr;
  CHECK(ledger.Enter(0, &st) == Status::kOk);
  Allocation out;
  ChargeTicket t;
  CHECK(ledger.TryCharge(0, st, 4096, 4096, &t, &out) == Status::kOk);
  ledger.Commit(0, st, &t);
  CHECK(t.soft == LimitScope::kNone) << "4096 <= 5000";
  ChargeTicket t2;
  CHECK(ledger.TryCharge(0, st, 4096, 4096, &t2, &out) == Status::kOk);
  ledger.Commit(0, st, &t2);
  CHECK(t2.soft == LimitScope::kType) << "8192 crosses 5000 upward";
  ChargeTicket t3;
  CHECK(ledger.TryCharge(0, st, 4096, 4096, &t3, &out) == Status::kOk);
  ledger.Commit(0, st, &t3);
  CHECK(t3.soft == LimitScope::kNone) << "already above: no new crossing";
  CHECK_EQ(ledger.TypeUsage(0, kTypeTotal).peak_bytes, uint64_t{12288});
  for (int i = 0; i < 3; ++i) ledger.Refund(0, st, 4096);
  CHECK_EQ(ledger.TypeUsage(0, kTypeTotal).peak_bytes, uint64_t{12288}) << "peak stays";
  ChannelLedger::Exit(st);
}

TEST(ConcurrentHardLimitNeverExceeded) {
  const uint64_t ops = testing::EnvU64("ISOPOOL_LEDGER_OPS", 1000000);
  ChannelLedger ledger;
  CHECK(ledger.Init());
  int32_t c = -1;
  bool created;
  CHECK(ledger.Open("hot", ChannelOptions{}, &c, &created) == Status::kOk);
  const uint64_t limit = 100000;
  CHECK(ledger.SetLimits(kAllTypes, c, MaxBytes(limit)) == Status::kOk);
  Limits h;
  h.max_handles = 40;
  CHECK(ledger.SetLimits(0, kTypeTotal, h) == Status::kOk);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> max_seen{0}, max_handles_seen{0}, refusals{0};
  std::thread watcher([&] {
    while (!stop.load()) {
      const uint64_t b = ledger.ChannelUsage(c).bytes;
      const uint64_t hh = ledger.TypeUsage(0, kTypeTotal).handles;
      if (b > max_seen.load()) max_seen.store(b);
      if (hh > max_handles_seen.load()) max_handles_seen.store(hh);
    }
  });
  std::vector<std::thread> threads;
  for (int th = 0; th < 4; ++th) {
    threads.emplace_back([&, th] {
      testing::Rng rng(th + 11);
      ChannelState* st = nullptr;
      ledger.Enter(c, &st);
      std::vector<uint64_t> held;
      for (uint64_t i = 0; i < ops; ++i) {
        if (held.empty() || rng.Below(3) != 0) {
          const uint64_t n = 1 + rng.Below(9000);
          Allocation out;
          ChargeTicket t;
          if (ledger.TryCharge(0, st, n, n, &t, &out) == Status::kOk) {
            ledger.Commit(0, st, &t);
            held.push_back(n);
          } else {
            refusals.fetch_add(1, std::memory_order_relaxed);
          }
        } else {
          ledger.Refund(0, st, held.back());
          held.pop_back();
        }
      }
      for (uint64_t n : held) ledger.Refund(0, st, n);
      ChannelLedger::Exit(st);
    });
  }
  for (auto& t : threads) t.join();
  stop.store(true);
  watcher.join();
  CHECK(max_seen.load() <= limit) << "observed " << max_seen.load() << " > " << limit;
  CHECK(max_handles_seen.load() <= 40) << "observed handles " << max_handles_seen.load();
  CHECK(ledger.ChannelUsage(c).peak_bytes <= limit) << "peak " << ledger.ChannelUsage(c).peak_bytes;
  CHECK_EQ(ledger.ChannelUsage(c).bytes, uint64_t{0}) << "all refunded";
  CHECK_EQ(ledger.TypeUsage(0, kTypeTotal).bytes, uint64_t{0});
  CHECK_EQ(ledger.TypeUsage(0, c).handles, uint64_t{0});
  CHECK_EQ(ledger.ChannelUsage(c).limit_rejections, refusals.load()) << "every refusal counted once";
  CHECK(refusals.load() > 0) << "the limit was actually hit";
  std::cout << "  4 threads x " << ops << " charge/refund ops, refusals " << refusals.load() << ", peak "
            << ledger.ChannelUsage(c).peak_bytes << " <= " << limit << std::endl;
}

TEST(CloseWaitsForInflight) {
  ChannelLedger ledger;
  CHECK(ledger.Init());
  int32_t c = -1;
  bool created;
  CHECK(ledger.Open("w", ChannelOptions{}, &c, &created) == Status::kOk);
  ChannelState* st = nullptr;
  CHECK(ledger.Enter(c, &st) == Status::kOk);
  std::atomic<bool> closed{false};
  std::thread closer([&] {
    CHECK(ledger.BeginClose(c) == Status::kOk);
    closed.store(true);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(!closed.load()) << "BeginClose waits for the in-flight allocation";
  ChannelLedger::Exit(st);
  closer.join();
  CHECK(closed.load());
  ChannelState* st2 = nullptr;
  CHECK(ledger.Enter(c, &st2) == Status::kChannelClosed) << "closing channel refuses new work";
  ledger.FinishClose(c);
}

TEST(TryDiscardUndoesOnlyAnUnusedIncarnation) {
  ChannelLedger ledger;
  CHECK(ledger.Init());
  int32_t c = -1;
  bool created = false;
  CHECK(ledger.Open("d", ChannelOptions{}, &c, &created) == Status::kOk && created);
  const uint32_t owner = ledger.Get(c)->owner.load();
  CHECK(ledger.TryDiscard(0, 0) == Status::kInvalidArgument) << "the unscoped domain stays";
  CHECK(ledger.TryDiscard(12345, owner) == Status::kUnknownChannel);
  CHECK(ledger.TryDiscard(c, owner + 1) == Status::kChannelClosed) << "another incarnation is left alone";
  ChannelState* st = nullptr;
  CHECK(ledger.Enter(c, &st) == Status::kOk);
  CHECK(ledger.TryDiscard(c, owner) == Status::kInvalidArgument) << "an allocation is in flight: in use, and no wait";
  Allocation out;
  ChargeTicket t;
  CHECK(ledger.TryCharge(0, st, 10, 4096, &t, &out) == Status::kOk);
  ledger.Commit(0, st, &t);
  ChannelLedger::Exit(st);
  CHECK(ledger.TryDiscard(c, owner) == Status::kInvalidArgument) << "holds a handle: in use";
  CHECK(ledger.IsOpen(c) && ledger.Find("d") == c) << "a refused discard leaves it open";
  CHECK(ledger.Enter(c, &st) == Status::kOk) << "and allocations enter";
  ledger.Refund(0, st, 4096);
  ChannelLedger::Exit(st);
  CHECK(ledger.TryDiscard(c, owner) == Status::kOk) << "unused: discarded";
  CHECK_EQ(ledger.Find("d"), -1) << "as if never opened: unknown, not closed";
  CHECK(ledger.Enter(c, &st) == Status::kChannelClosed) << "the stale index refuses work";
  CHECK(ledger.TryDiscard(c, owner) == Status::kChannelClosed) << "twice: gone";
  int32_t again = -1;
  CHECK(ledger.Open("e", ChannelOptions{}, &again, &created) == Status::kOk);
  CHECK_EQ(again, c) << "the index is recycled";
  CHECK(ledger.TryDiscard(c, owner) == Status::kChannelClosed) << "the old owner cannot discard the new incarnation";
  CHECK(ledger.IsOpen(again));
}

// A discard that finds the channel in use must be invisible to the threads using it: before
// it had its own phase, a discard borrowed BeginClose, and an allocation racing it was
// refused with kChannelClosed although nobody closed the channel (CI, threads.test.ts).
TEST(TryDiscardNeverShowsAnAllocationAClosedChannel) {
  ChannelLedger ledger;
  CHECK(ledger.Init());
  int32_t c = -1;
  bool created = false;
  CHECK(ledger.Open("busy", ChannelOptions{}, &c, &created) == Status::kOk);
  const uint32_t owner = ledger.Get(c)->owner.load();
  ChannelState* held = nullptr;
  CHECK(ledger.Enter(c, &held) == Status::kOk);
  Allocation out;
  ChargeTicket t;
  CHECK(ledger.TryCharge(0, held, 1, 1, &t, &out) == Status::kOk);  // one handle for the whole run
  ledger.Commit(0, held, &t);
  ChannelLedger::Exit(held);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> entered{0}, refused{0}, discards{0}, wrong{0};
  std::vector<std::thread> allocators;
  for (int th = 0; th < 2; ++th) {
    allocators.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        ChannelState* st = nullptr;
        if (ledger.Enter(c, &st) != Status::kOk) {
          refused.fetch_add(1);
          continue;
        }
        Allocation o;
        ChargeTicket tk;
        if (ledger.TryCharge(0, st, 1, 1, &tk, &o) == Status::kOk) {
          ledger.Commit(0, st, &tk);
          ledger.Refund(0, st, 1);
        }
        ChannelLedger::Exit(st);
        entered.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  std::thread discarder([&] {
    while ((discards.load() < 20000 || entered.load() < 20000) && refused.load() == 0) {
      if (ledger.TryDiscard(c, owner) != Status::kInvalidArgument) wrong.fetch_add(1);
      discards.fetch_add(1);
    }
    stop.store(true);
  });
  discarder.join();
  for (auto& a : allocators) a.join();
  CHECK_EQ(wrong.load(), uint64_t{0}) << "the channel always held a handle: every discard was refused";
  CHECK_EQ(refused.load(), uint64_t{0}) << "no allocation saw the channel closed";
  CHECK(ledger.IsOpen(c) && ledger.Find("busy") == c);
  CHECK_EQ(ledger.ChannelUsage(c).handles, uint64_t{1});
  std::cout << "  " << discards.load() << " refused discards against " << entered.load() << " allocations" << std::endl;
}

TEST(TypeTotalIsSummedUntilALimitNeedsIt) {
  ChannelLedger ledger;
  CHECK(ledger.Init());
  int32_t a = -1, b = -1;
  bool created = false;
  CHECK(ledger.Open("a", ChannelOptions{}, &a, &created) == Status::kOk);
  CHECK(ledger.Open("b", ChannelOptions{}, &b, &created) == Status::kOk);
  ChannelState* sa = nullptr;
  ChannelState* sb = nullptr;
  CHECK(ledger.Enter(a, &sa) == Status::kOk);
  CHECK(ledger.Enter(b, &sb) == Status::kOk);
  Allocation out;
  auto charge = [&](ChannelState* st) {
    ChargeTicket t;
    const Status s = ledger.TryCharge(0, st, 4096, 4096, &t, &out);
    if (s == Status::kOk) ledger.Commit(0, st, &t);
    return s;
  };
  for (int i = 0; i < 3; ++i) CHECK(charge(sa) == Status::kOk);
  for (int i = 0; i < 2; ++i) CHECK(charge(sb) == Status::kOk);
  CHECK(!ledger.TotalCharged(0)) << "no limit: no allocation writes the type total";
  CHECK_EQ(ledger.TypeUsage(0, kTypeTotal).bytes, uint64_t{5 * 4096}) << "its usage is the channels' sum";
  CHECK_EQ(ledger.TypeUsage(0, kTypeTotal).handles, uint64_t{5});
  Limits cap;
  cap.max_allocation_size = 8192;
  CHECK(ledger.SetLimits(0, kTypeTotal, cap) == Status::kOk);
  CHECK(!ledger.TotalCharged(0)) << "a size cap is checked without usage";
  ChargeTicket big;
  CHECK(ledger.TryCharge(0, sa, 9000, 12288, &big, &out) == Status::kResourceLimit);
  CHECK(out.refused_scope == LimitScope::kType && out.refused_size);
  CHECK_EQ(out.refused_in_use, uint64_t{5 * 4096}) << "the refusal reports the summed usage";
  Limits hard;
  hard.max_bytes = 6 * 4096;
  CHECK(ledger.SetLimits(0, kTypeTotal, hard) == Status::kOk);
  CHECK(ledger.TotalCharged(0)) << "a byte limit needs the total counted";
  CHECK_EQ(ledger.TypeUsage(0, kTypeTotal).bytes, uint64_t{5 * 4096}) << "starting from the sum";
  CHECK(charge(sb) == Status::kOk);
  CHECK(charge(sa) == Status::kResourceLimit) << "7 x 4 KiB > 6 x 4 KiB";
  CHECK(out.refused_scope == LimitScope::kType);
  // Refunds of charges made while it was summed take them out of the total too.
  for (int i = 0; i < 3; ++i) ledger.Refund(0, sa, 4096);
  for (int i = 0; i < 3; ++i) ledger.Refund(0, sb, 4096);
  CHECK_EQ(ledger.TypeUsage(0, kTypeTotal).bytes, uint64_t{0});
  CHECK_EQ(ledger.TypeUsage(0, kTypeTotal).handles, uint64_t{0});
  for (int i = 0; i < 6; ++i) CHECK(charge(i % 2 == 0 ? sa : sb) == Status::kOk) << "the whole limit is free again";
  CHECK(charge(sa) == Status::kResourceLimit);
  ChargeTicket cancelled;
  ledger.SetLimits(0, kTypeTotal, Limits{});
  CHECK(ledger.TotalCharged(0)) << "charged for good once it was";
  CHECK(ledger.TryCharge(0, sa, 4096, 4096, &cancelled, &out) == Status::kOk);
  ledger.Cancel(0, sa, &cancelled);
  for (int i = 0; i < 6; ++i) ledger.Refund(0, i % 2 == 0 ? sa : sb, 4096);
  CHECK_EQ(ledger.TypeUsage(0, kTypeTotal).bytes, uint64_t{0});
  ChannelLedger::Exit(sa);
  ChannelLedger::Exit(sb);
}

// A caller with parked charges in the type total (the JS fast lane's freed slots) hears a refusal
// by that total as kParkedCharges: nothing reserved, no rejection counted anywhere. A refusal by
// any other scope is an answer as usual.
TEST(ARefusalByTheTotalIsParkedChargesForACallerWithParkedSlots) {
  ChannelLedger ledger;
  CHECK(ledger.Init());
  int32_t c = -1;
  bool created = false;
  CHECK(ledger.Open("c", ChannelOptions{}, &c, &created) == Status::kOk);
  CHECK(ledger.SetLimits(0, kTypeTotal, MaxBytes(2 * 4096)) == Status::kOk);
  ChannelState* st = nullptr;
  CHECK(ledger.Enter(c, &st) == Status::kOk);
  Allocation out;
  auto charge = [&](uint64_t size, bool parked) {
    ChargeTicket t;
    t.total_parked = parked;
    const Status s = ledger.TryCharge(0, st, size, 4096, &t, &out);
    if (s == Status::kOk) ledger.Commit(0, st, &t);
    return s;
  };
  CHECK(charge(4096, true) == Status::kOk) << "room: parked slots change nothing";
  CHECK(charge(4096, false) == Status::kOk);
  const LedgerUsage total = ledger.TypeUsage(0, kTypeTotal);
  const LedgerUsage channel = ledger.ChannelUsage(c);
  CHECK(charge(4096, true) == Status::kParkedCharges);
  CHECK_EQ(ledger.TypeUsage(0, kTypeTotal).bytes, total.bytes) << "nothing reserved";
  CHECK_EQ(ledger.TypeUsage(0, kTypeTotal).limit_rejections, total.limit_rejections) << "not counted";
  CHECK_EQ(ledger.ChannelUsage(c).limit_rejections, channel.limit_rejections);
  CHECK_EQ(ledger.ChannelUsage(c).bytes, channel.bytes) << "the channel's reservation rolled back";
  Limits cap;
  cap.max_allocation_size = 100;
  CHECK(ledger.SetLimits(0, kTypeTotal, cap) == Status::kOk);
  CHECK(charge(200, true) == Status::kParkedCharges) << "the total's size cap too";
  CHECK(ledger.SetLimits(kAllTypes, c, MaxBytes(4096)) == Status::kOk);
  CHECK(charge(50, true) == Status::kResourceLimit) << "the channel's own limit: an answer";
  CHECK(out.refused_scope == LimitScope::kChannel);
  CHECK_EQ(ledger.ChannelUsage(c).limit_rejections, channel.limit_rejections + 1);
  CHECK(charge(50, false) == Status::kResourceLimit);
  CHECK(charge(200, false) == Status::kResourceLimit) << "without parked slots, the total answers";
  CHECK(out.refused_scope == LimitScope::kType);
  CHECK_EQ(ledger.TypeUsage(0, kTypeTotal).limit_rejections, total.limit_rejections + 3);
  ledger.Refund(0, st, 4096);
  ledger.Refund(0, st, 4096);
  ChannelLedger::Exit(st);
}

// Two threads charge and refund in their own channels while the type totals are summed; the
// main thread switches them to charged one after another, with a handle limit the threads
// then run into. No charge or refund may be lost or counted twice across a switch, and no
// reader may see a limit exceeded once it is set.
TEST(TypeTotalSwitchesToChargedUnderLoad) {
  ChannelLedger ledger;
  CHECK(ledger.Init());
  const uint64_t ms = testing::EnvU64("ISOPOOL_LEDGER_SWITCH_MS", 25);  // between switches
  constexpr int32_t kTypes = kMaxTypes;
  constexpr uint64_t kLimit = 6;  // per type; the two threads hold ~8 handles of each type
  std::atomic<uint32_t> limited{0};  // types [0, limited) have their limit
  std::atomic<bool> stop{false}, finish{false};
  std::atomic<uint64_t> over{0}, refusals{0}, ops{0};
  std::vector<std::thread> threads;
  for (int th = 0; th < 2; ++th) {
    threads.emplace_back([&, th] {
      int32_t c = -1;
      bool created = false;
      CHECK(ledger.Open(th == 0 ? "x" : "y", ChannelOptions{}, &c, &created) == Status::kOk);
      ChannelState* st = nullptr;
      CHECK(ledger.Enter(c, &st) == Status::kOk);
      testing::Rng rng(th + 5);
      std::vector<int32_t> held;  // the type of each live charge
      while (!finish.load(std::memory_order_relaxed)) {
        ops.fetch_add(1, std::memory_order_relaxed);
        const int32_t type = static_cast<int32_t>(rng.Below(kTypes));
        if (held.size() < 8 * kTypes && rng.Below(2) == 0) {
          Allocation out;
          ChargeTicket t;
          if (ledger.TryCharge(type, st, 100, 128, &t, &out) == Status::kOk) {
            for (uint64_t k = rng.Below(64); k > 0; --k) {
              // an allocation takes a slot and a handle between its charge and its commit
              std::atomic_signal_fence(std::memory_order_seq_cst);
            }
            if (rng.Below(4) == 0) std::this_thread::yield();
            if (rng.Below(8) == 0) {
              ledger.Cancel(type, st, &t);  // an allocation that failed after its charge
            } else {
              ledger.Commit(type, st, &t);
              held.push_back(type);
            }
          } else {
            refusals.fetch_add(1, std::memory_order_relaxed);
          }
        } else if (!held.empty()) {
          const size_t k = rng.Below(held.size());
          ledger.Refund(held[k], st, 128);
          held[k] = held.back();
          held.pop_back();
        }
      }
      for (int32_t type : held) ledger.Refund(type, st, 128);
      ChannelLedger::Exit(st);
    });
  }
  std::thread watcher([&] {
    while (!stop.load()) {
      const uint32_t n = limited.load(std::memory_order_acquire);
      for (uint32_t t = 0; t < n; ++t) {
        if (ledger.TypeUsage(static_cast<int32_t>(t), kTypeTotal).handles > kLimit) over.fetch_add(1);
      }
    }
  });
  Limits l;
  l.max_handles = kLimit;
  for (int32_t t = 0; t < kTypes; ++t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    // The usage may be above the limit at the switch: readers check once it is down.
    CHECK(ledger.SetLimits(t, kTypeTotal, l) == Status::kOk);
    while (ledger.TypeUsage(t, kTypeTotal).handles > kLimit) std::this_thread::yield();
    limited.store(static_cast<uint32_t>(t + 1), std::memory_order_release);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  finish.store(true);
  for (auto& t : threads) t.join();
  stop.store(true);
  watcher.join();
  CHECK_EQ(over.load(), uint64_t{0}) << "a reader saw more handles than a limit";
  CHECK(refusals.load() > 0) << "the limits were hit";
  int32_t z = -1;
  bool created = false;
  CHECK(ledger.Open("z", ChannelOptions{}, &z, &created) == Status::kOk);
  ChannelState* st = nullptr;
  CHECK(ledger.Enter(z, &st) == Status::kOk);
  Allocation out;
  for (int32_t t = 0; t < kTypes; ++t) {
    CHECK(ledger.TotalCharged(t));
    const LedgerUsage u = ledger.TypeUsage(t, kTypeTotal);
    CHECK_EQ(u.bytes, uint64_t{0}) << "type " << t << ": every charge refunded exactly once across the switch";
    CHECK_EQ(u.handles, uint64_t{0}) << "type " << t;
    // The reservations are back to zero too: exactly kLimit handles fit.
    for (uint64_t i = 0; i < kLimit; ++i) {
      ChargeTicket tk;
      CHECK(ledger.TryCharge(t, st, 1, 1, &tk, &out) == Status::kOk) << "type " << t << " handle " << i;
      ledger.Commit(t, st, &tk);
    }
    ChargeTicket tk;
    CHECK(ledger.TryCharge(t, st, 1, 1, &tk, &out) == Status::kResourceLimit) << "type " << t;
    for (uint64_t i = 0; i < kLimit; ++i) ledger.Refund(t, st, 1);
  }
  ChannelLedger::Exit(st);
  std::cout << "  2 threads, " << ops.load() << " ops across " << kTypes << " switches, refusals " << refusals.load()
            << std::endl;
}

TEST_MAIN()
