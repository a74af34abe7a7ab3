// channel_ledger_test.cc — channel table (names, recycling, owners) and the
// check-and-charge protocol: exact refusals, rollback, soft limits, and a
// threaded run that never sees usage above a hard limit.
#include "channel_ledger.h"

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

TEST_MAIN()
