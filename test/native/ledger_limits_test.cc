// ledger_limits_test.cc — what a reader sees of a scope under concurrent charges: for every
// combination of hard limits on the three scopes (type total, channel total, channel-type),
// writer threads hammer one channel past its limit while a reader thread samples the usage,
// handle count and peak of every scope. None may ever read above the limit, whichever scope
// holds it: a charge another scope refuses must never be visible, and a peak must only ever
// record committed usage.
//
// One channel and one type are used, so every scope covers the same allocations and the hard
// limit effective for each of them is the one limit set (see channel_ledger.h, "Hard limits as
// readers see them").
//
// ISOPOOL_LEDGER_LIMIT_MS: how long the writers run for each combination (default 150 ms).
#include "channel_ledger.h"

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

using namespace isopool;

namespace {

constexpr uint64_t kSlot = 4096;
constexpr uint64_t kMaxSlots = 8;
constexpr int kWriters = 3;
constexpr uint64_t kAnchored = 5;       ///< slots held through the run
constexpr uint64_t kHeldPerWriter = 4;  ///< each writer wants 4 of the 3 left: constant refusals

enum ScopeBit : uint32_t { kTypeTotalBit = 1, kChannelBit = 2, kChannelTypeBit = 4 };

std::string Describe(uint32_t mask, bool by_handles) {
  std::string s = by_handles ? "maxHandles 8 on" : "maxBytes 8 x 4 KiB on";
  if (mask & kTypeTotalBit) s += " type-total";
  if (mask & kChannelBit) s += " channel-total";
  if (mask & kChannelTypeBit) s += " channel-type";
  return s;
}

struct Seen {
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> handles{0};
  std::atomic<uint64_t> peak{0};
  void Max(std::atomic<uint64_t>& a, uint64_t v) {
    if (v > a.load(std::memory_order_relaxed)) a.store(v, std::memory_order_relaxed);
  }
  void Sample(const LedgerUsage& u) {
    Max(bytes, u.bytes);
    Max(handles, u.handles);
    Max(peak, u.peak_bytes);
  }
};

void RunCombination(uint32_t mask, bool by_handles, uint64_t ms) {
  const std::string what = Describe(mask, by_handles);
  ChannelLedger ledger;
  CHECK(ledger.Init());
  int32_t c = -1;
  bool created = false;
  CHECK(ledger.Open("hammered", ChannelOptions{}, &c, &created) == Status::kOk);
  Limits l;
  if (by_handles) {
    l.max_handles = kMaxSlots;
  } else {
    l.max_bytes = kMaxSlots * kSlot;
  }
  if (mask & kTypeTotalBit) {
    CHECK(ledger.SetLimits(0, kTypeTotal, l) == Status::kOk);
  }
  if (mask & kChannelBit) {
    CHECK(ledger.SetLimits(kAllTypes, c, l) == Status::kOk);
  }
  if (mask & kChannelTypeBit) {
    CHECK(ledger.SetLimits(0, c, l) == Status::kOk);
  }

  std::atomic<bool> stop{false};
  Seen scopes[3];  // [0] type total, [1] channel total, [2] channel-type
  std::atomic<uint64_t> samples{0};
  std::thread reader([&] {
    uint64_t n = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      scopes[0].Sample(ledger.TypeUsage(0, kTypeTotal));
      scopes[1].Sample(ledger.ChannelUsage(c));
      scopes[2].Sample(ledger.TypeUsage(0, c));
      ++n;
    }
    samples.store(n, std::memory_order_relaxed);
  });
  // Five slots held by another allocation for the whole run leave three to the writers: every
  // writer alone runs into the limit, and together they are refused all the time.
  ChannelState* anchor = nullptr;
  CHECK(ledger.Enter(c, &anchor) == Status::kOk);
  for (uint64_t i = 0; i < kAnchored; ++i) {
    ChargeTicket t;
    Allocation out;
    CHECK(ledger.TryCharge(0, anchor, kSlot, kSlot, &t, &out) == Status::kOk) << what << ": anchor " << i;
    ledger.Commit(0, anchor, &t);
  }
  std::atomic<uint64_t> refusals{0}, total_ops{0};
  std::atomic<int> ready{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&] {
      ChannelState* st = nullptr;
      CHECK(ledger.Enter(c, &st) == Status::kOk);
      ready.fetch_add(1, std::memory_order_relaxed);
      while (ready.load(std::memory_order_relaxed) < kWriters) std::this_thread::yield();
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
      uint64_t held = 0, refused = 0, i = 0;
      for (;; ++i) {
        if ((i & 255) == 0 && std::chrono::steady_clock::now() >= deadline) break;
        if (held < kHeldPerWriter) {
          ChargeTicket t;
          Allocation out;
          if (ledger.TryCharge(0, st, kSlot, kSlot, &t, &out) == Status::kOk) {
            ledger.Commit(0, st, &t);
            ++held;
            continue;
          }
          ++refused;
          if (held == 0) continue;
        }
        ledger.Refund(0, st, kSlot);  // full, or refused: make room
        --held;
      }
      for (; held > 0; --held) ledger.Refund(0, st, kSlot);
      ChannelLedger::Exit(st);
      refusals.fetch_add(refused, std::memory_order_relaxed);
      total_ops.fetch_add(i, std::memory_order_relaxed);
    });
  }
  for (auto& t : writers) t.join();
  stop.store(true, std::memory_order_relaxed);
  reader.join();
  for (uint64_t i = 0; i < kAnchored; ++i) ledger.Refund(0, anchor, kSlot);
  ChannelLedger::Exit(anchor);

  const char* names[3] = {"type total", "channel total", "channel-type"};
  for (int i = 0; i < 3; ++i) {
    // Every charge is one 4 KiB handle, so either limit bounds both figures.
    CHECK(scopes[i].handles.load() <= kMaxSlots)
        << what << ": " << names[i] << " showed " << scopes[i].handles.load() << " handles, limit 8";
    CHECK(scopes[i].bytes.load() <= kMaxSlots * kSlot)
        << what << ": " << names[i] << " showed " << scopes[i].bytes.load() << " bytes, limit 32768";
    CHECK(scopes[i].peak.load() <= kMaxSlots * kSlot)
        << what << ": " << names[i] << " peak " << scopes[i].peak.load() << " bytes, limit 32768";
  }
  CHECK(refusals.load() > 0) << what << ": the writers hit the limit";
  CHECK_EQ(ledger.ChannelUsage(c).bytes, uint64_t{0}) << what << ": all refunded";
  CHECK_EQ(ledger.TypeUsage(0, kTypeTotal).handles, uint64_t{0}) << what << ": all refunded";
  CHECK_EQ(ledger.TypeUsage(0, c).peak_bytes, kMaxSlots * kSlot) << what << ": the channel-type peak is the limit";
  std::cout << "  " << what << ": " << kWriters << " writers, " << total_ops.load() << " ops in " << ms
            << " ms, " << refusals.load()
            << " refusals, " << samples.load() << " samples; highest read bytes/handles/peak: type "
            << scopes[0].bytes.load() << "/" << scopes[0].handles.load() << "/" << scopes[0].peak.load()
            << ", channel " << scopes[1].bytes.load() << "/" << scopes[1].handles.load() << "/"
            << scopes[1].peak.load() << ", channel-type " << scopes[2].bytes.load() << "/"
            << scopes[2].handles.load() << "/" << scopes[2].peak.load() << std::endl;
}

}  // namespace

TEST(NoReaderSeesAScopeAboveItsHardLimit) {
  const uint64_t ms = testing::EnvU64("ISOPOOL_LEDGER_LIMIT_MS", 150);
  for (uint32_t mask = 1; mask <= 7; ++mask) {
    RunCombination(mask, /*by_handles=*/false, ms);
    RunCombination(mask, /*by_handles=*/true, ms);
  }
}

TEST(PeakRecordsOnlyCommittedUsage) {
  // Single-threaded and exact: a charge that is refused, or refunded before Commit (the
  // handle table or the pool failed afterwards), never reaches any scope's peak or usage.
  ChannelLedger ledger;
  CHECK(ledger.Init());
  int32_t c = -1;
  bool created = false;
  CHECK(ledger.Open("c", ChannelOptions{}, &c, &created) == Status::kOk);
  Limits l;
  l.max_bytes = 2 * kSlot;
  CHECK(ledger.SetLimits(0, c, l) == Status::kOk);
  ChannelState* st = nullptr;
  CHECK(ledger.Enter(c, &st) == Status::kOk);
  ChargeTicket t1, t2, t3;
  Allocation out;
  CHECK(ledger.TryCharge(0, st, kSlot, kSlot, &t1, &out) == Status::kOk);
  ledger.Commit(0, st, &t1);
  CHECK(ledger.TryCharge(0, st, kSlot, kSlot, &t2, &out) == Status::kOk);
  CHECK_EQ(ledger.ChannelUsage(c).bytes, kSlot) << "a charge is not usage until Commit";
  CHECK_EQ(ledger.ChannelUsage(c).handles, uint64_t{1}) << "a charge is not a handle until Commit";
  CHECK(ledger.TryCharge(0, st, kSlot, kSlot, &t3, &out) == Status::kResourceLimit) << "3 x 4 KiB > 8 KiB";
  ledger.Cancel(0, st, &t2);  // t2: the allocation failed after its charge
  for (const LedgerUsage& u : {ledger.ChannelUsage(c), ledger.TypeUsage(0, c), ledger.TypeUsage(0, kTypeTotal)}) {
    CHECK_EQ(u.bytes, kSlot) << "only the committed charge";
    CHECK_EQ(u.peak_bytes, kSlot) << "the uncommitted charge never reached the peak";
  }
  ledger.Refund(0, st, kSlot);
  ChannelLedger::Exit(st);
  CHECK_EQ(ledger.ChannelUsage(c).bytes, uint64_t{0});
}

TEST_MAIN()
