// ledger_fuzz.cc — libFuzzer target: ChannelLedger check-and-charge, refunds, limits and
// channel open/close/reopen against a shadow model (no Node). Built and run by
// scripts/fuzz.sh with ASan + UBSan.
//
// The input is a program of byte-coded operations over 4 types and 4 channel names (plus
// the unscoped channel 0). The model predicts every TryCharge outcome exactly:
//   ok  <=>  for each of the three scopes (type total, channel total, channel-type):
//            size <= max_allocation_size, bytes + n <= max_bytes, handles + 1 <= max_handles
// and after each operation every scope's bytes and handles must equal the model's, never
// exceed a limit that was in force when the charge was made, and the sum invariants of
// channel_ledger.h must hold. Any disagreement calls __builtin_trap().
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "channel_ledger.h"
#include "fuzz_util.h"

using namespace isopool;

namespace {

constexpr int kTypes = 4;
constexpr int kNames = 4;

struct Input {
  const uint8_t* p;
  size_t n;
  uint8_t Byte() { return n > 0 ? (--n, *p++) : 0; }
  bool Done() const { return n == 0; }
};

struct Usage {
  uint64_t bytes = 0, handles = 0;
};
struct ScopeModel {
  Usage use;
  Limits limits;
};
struct Charge {
  int type;
  int32_t channel;  // ledger index
  uint32_t owner;   // incarnation
  uint64_t n;
};
struct ChannelModel {
  int32_t index = -1;  // -1: not open
  uint32_t incarnation = 0;
  ScopeModel total;
  ScopeModel types[kTypes];
};

uint64_t LimitFrom(uint8_t b) {
  // Mostly small limits so refusals happen; 1 in 4 unlimited.
  return b % 4 == 0 ? kUnlimited : static_cast<uint64_t>(b % 64) * 16;
}

bool Fits(const ScopeModel& s, uint64_t size, uint64_t n) {
  return size <= s.limits.max_allocation_size && n <= s.limits.max_bytes &&
         s.use.bytes <= s.limits.max_bytes - n && s.use.handles < s.limits.max_handles;
}

void Add(ScopeModel& s, uint64_t n, int sign) {
  if (sign > 0) {
    s.use.bytes += n;
    s.use.handles += 1;
  } else {
    s.use.bytes -= n;
    s.use.handles -= 1;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in{data, size};
  ChannelLedger ledger;
  REQUIRE(ledger.Init());
  ScopeModel type_totals[kTypes];
  ChannelModel names[kNames + 1];  // [0] is the unscoped channel (always open)
  names[0].index = 0;
  std::vector<Charge> charges;
  uint32_t incarnations = 1;

  auto model_of = [&](int32_t index) -> ChannelModel* {
    for (auto& c : names)
      if (c.index == index) return &c;
    return nullptr;
  };
  auto check = [&]() {
    for (int t = 0; t < kTypes; ++t) {
      const LedgerUsage u = ledger.TypeUsage(t, kTypeTotal);
      REQUIRE(u.bytes == type_totals[t].use.bytes && u.handles == type_totals[t].use.handles);
    }
    for (auto& c : names) {
      if (c.index < 0) continue;
      const LedgerUsage u = ledger.ChannelUsage(c.index);
      REQUIRE(u.bytes == c.total.use.bytes && u.handles == c.total.use.handles);
      uint64_t sum = 0;
      for (int t = 0; t < kTypes; ++t) {
        const LedgerUsage ut = ledger.TypeUsage(t, c.index);
        REQUIRE(ut.bytes == c.types[t].use.bytes && ut.handles == c.types[t].use.handles);
        sum += ut.bytes;
      }
      REQUIRE(sum == u.bytes);  // channel_total == sum of channel-type
      REQUIRE(u.peak_bytes >= u.bytes);
    }
  };

  int ops = 0;
  while (!in.Done() && ops++ < 2048) {
    switch (in.Byte() % 6) {
      case 0: {  // open (or reopen) a name
        const int k = 1 + in.Byte() % kNames;
        const std::string name = "ch" + std::to_string(k);
        int32_t index = -1;
        bool created = false;
        REQUIRE(ledger.Open(name, ChannelOptions{}, &index, &created) == Status::kOk);
        ChannelModel& c = names[k];
        REQUIRE(created == (c.index < 0));
        if (created) {
          c = ChannelModel{};  // a fresh ledger: no usage, no channel limits
          c.index = index;
          c.incarnation = ++incarnations;
        } else {
          REQUIRE(index == c.index);
        }
        REQUIRE(ledger.IsOpen(index));
        break;
      }
      case 1: {  // close a name: refund what it holds (as CloseChannel does), then close
        const int k = 1 + in.Byte() % kNames;
        ChannelModel& c = names[k];
        if (c.index < 0) break;
        REQUIRE(ledger.BeginClose(c.index) == Status::kOk);
        ChannelState* st = ledger.Get(c.index);
        for (size_t i = 0; i < charges.size();) {
          const Charge& ch = charges[i];
          if (ch.channel == c.index && ch.owner == c.incarnation) {
            ledger.Refund(ch.type, st, ch.n);
            Add(type_totals[ch.type], ch.n, -1);
            charges[i] = charges.back();
            charges.pop_back();
          } else {
            ++i;
          }
        }
        ledger.FinishClose(c.index);
        REQUIRE(!ledger.IsOpen(c.index));
        REQUIRE(ledger.Find("ch" + std::to_string(k)) == -2);  // remembered as closed
        c.index = -1;
        break;
      }
      case 2: {  // set limits on one scope
        const uint8_t which = in.Byte() % 3;  // 0 type total, 1 channel total, 2 channel-type
        const int t = in.Byte() % kTypes;
        ChannelModel& c = names[in.Byte() % (kNames + 1)];
        Limits l;
        l.max_bytes = LimitFrom(in.Byte());
        l.max_handles = LimitFrom(in.Byte()) == kUnlimited ? kUnlimited : in.Byte() % 8;
        l.max_allocation_size = LimitFrom(in.Byte());
        l.soft_bytes = LimitFrom(in.Byte());
        if (which == 0) {
          REQUIRE(ledger.SetLimits(t, kTypeTotal, l) == Status::kOk);
          type_totals[t].limits = l;
        } else if (c.index >= 0) {
          REQUIRE(ledger.SetLimits(which == 1 ? kAllTypes : t, c.index, l) == Status::kOk);
          (which == 1 ? c.total : c.types[t]).limits = l;
        }
        break;
      }
      case 3:
      case 4: {  // charge
        const int t = in.Byte() % kTypes;
        ChannelModel& c = names[in.Byte() % (kNames + 1)];
        const uint64_t n = static_cast<uint64_t>(in.Byte()) * 4;
        const uint64_t sz = in.Byte();
        if (c.index < 0) break;  // a closed name: Enter refuses (covered by case 1's checks)
        ChannelState* st = nullptr;
        REQUIRE(ledger.Enter(c.index, &st) == Status::kOk);
        const bool want = Fits(type_totals[t], sz, n) && Fits(c.total, sz, n) && Fits(c.types[t], sz, n);
        ChargeTicket ticket;
        Allocation out;
        const Status s = ledger.TryCharge(t, st, sz, n, &ticket, &out);
        REQUIRE((s == Status::kOk) == want);
        REQUIRE(s == Status::kOk || s == Status::kResourceLimit);
        if (s == Status::kOk) {
          ledger.Commit(t, st, &ticket);
          Add(type_totals[t], n, +1);
          Add(c.total, n, +1);
          Add(c.types[t], n, +1);
          charges.push_back(Charge{t, c.index, c.incarnation, n});
        }
        ChannelLedger::Exit(st);
        break;
      }
      case 5: {  // refund one outstanding charge
        if (charges.empty()) break;
        const size_t i = in.Byte() % charges.size();
        const Charge ch = charges[i];
        ChannelModel* c = model_of(ch.channel);
        REQUIRE(c != nullptr && c->incarnation == ch.owner);
        ledger.Refund(ch.type, ledger.Get(ch.channel), ch.n);
        Add(type_totals[ch.type], ch.n, -1);
        Add(c->total, ch.n, -1);
        Add(c->types[ch.type], ch.n, -1);
        charges[i] = charges.back();
        charges.pop_back();
        break;
      }
    }
    check();
  }
  return 0;
}
