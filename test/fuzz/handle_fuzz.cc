// handle_fuzz.cc — libFuzzer target: HandleTable id decoding and state machine against a
// shadow model (no Node). Built and run by scripts/fuzz.sh with ASan + UBSan.
//
// The input is a program of byte-coded operations on one table (fixed secret, so a crash
// input replays exactly). After each operation the model's invariants must hold; any
// disagreement calls __builtin_trap() (a crash libFuzzer reports and saves):
//   * Probe(id) is kLive / kTransit / kFreeing  =>  id is live (issued, not freed) in the model
//   * Probe(id) is kStale                        =>  id was issued and freed
//   * id never issued                            =>  Probe(id) is kForged
//   * a stale id's closed_by_channel is set exactly when it was the last id of its index
//     freed by a channel close
//   * two live ids never share an index; ids are safe integers; id 0 is never issued
// Arbitrary 64-bit ids taken from the input, and bit flips / arithmetic neighbours of
// issued ids, exercise the decoder (forgery must never be accepted).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <unordered_map>
#include <vector>

#include "handle_table.h"
#include "fuzz_util.h"

using namespace isopool;

namespace {

struct Input {
  const uint8_t* p;
  size_t n;
  uint8_t Byte() { return n > 0 ? (--n, *p++) : 0; }
  uint64_t U64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | Byte();
    return v;
  }
  bool Done() const { return n == 0; }
};

struct Model {
  std::map<uint64_t, uint32_t> live;          // id -> index
  std::set<uint64_t> transit;                 // subset of live
  std::unordered_map<uint64_t, bool> freed;   // id -> freed by channel close
  std::unordered_map<uint32_t, uint64_t> last_close;  // index -> last id freed by a channel close
  std::vector<uint64_t> issued;               // every id, in order

  bool Issued(uint64_t id) const { return live.count(id) || freed.count(id); }
};

void CheckProbe(const HandleTable& t, const Model& m, uint64_t id) {
  const IdProbe p = t.Probe(id);
  switch (p.kind) {
    case IdProbe::kLive:
      REQUIRE(m.live.count(id) == 1 && m.transit.count(id) == 0);
      break;
    case IdProbe::kTransit:
      REQUIRE(m.transit.count(id) == 1);
      break;
    case IdProbe::kFreeing:
      __builtin_trap();  // single-threaded: nothing is ever left mid-free
    case IdProbe::kStale: {
      auto it = m.freed.find(id);
      REQUIRE(it != m.freed.end());
      auto last = m.last_close.find(static_cast<uint32_t>(id >> 32));
      const bool want = it->second && last != m.last_close.end() && last->second == id;
      REQUIRE(p.closed_by_channel == want);
      break;
    }
    case IdProbe::kForged:
      REQUIRE(!m.Issued(id));
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in{data, size};
  // First byte: quarantine length (0 = pure LIFO reuse, so indices recycle quickly).
  const uint32_t quarantine = in.Byte() % 4 == 0 ? 0 : 1u + in.Byte() % 16;
  HandleTable t(0x0123456789abcdefull, quarantine);
  Model m;
  int ops = 0;
  while (!in.Done() && ops++ < 4096) {
    const uint8_t op = in.Byte() % 8;
    switch (op) {
      case 0:
      case 1: {  // allocate
        uint32_t index = 0;
        if (t.Reserve(&index) != Status::kOk) break;
        REQUIRE(index != 0);
        if (in.Byte() % 8 == 0) {  // rollback path
          t.Unreserve(index);
          break;
        }
        HandleRecord rec;
        rec.size = in.Byte();
        const uint64_t id = t.Publish(index, rec);
        REQUIRE(id != 0 && id < (1ull << 53));
        REQUIRE(static_cast<uint32_t>(id >> 32) == index);
        for (const auto& kv : m.live) REQUIRE(kv.second != index);  // one live id per index
        REQUIRE(!m.Issued(id));  // never re-issued (the fuzzer cannot reach 2^20 reuses)
        m.live.emplace(id, index);
        m.issued.push_back(id);
        break;
      }
      case 2: {  // free a live (or in-transit) id with a reason
        if (m.live.empty()) break;
        auto it = m.live.begin();
        std::advance(it, in.Byte() % m.live.size());
        const uint64_t id = it->first;
        const IdProbe p = t.Probe(id);
        REQUIRE(p.kind == IdProbe::kLive || p.kind == IdProbe::kTransit);
        REQUIRE(t.TryTransition(p.index, p.state, EntryState::kFreeing));
        REQUIRE(!t.TryTransition(p.index, p.state, EntryState::kFreeing));  // one winner
        const FreeReason reason = static_cast<FreeReason>(in.Byte() % 4);
        t.FinishFree(p.index, reason);
        const bool by_close = reason == FreeReason::kChannelClose;
        m.freed[id] = by_close;
        if (by_close) m.last_close[p.index] = id;
        m.transit.erase(id);
        m.live.erase(it);
        break;
      }
      case 3: {  // transit / adopt
        if (m.live.empty()) break;
        auto it = m.live.begin();
        std::advance(it, in.Byte() % m.live.size());
        const IdProbe p = t.Probe(it->first);
        if (m.transit.count(it->first)) {
          REQUIRE(p.kind == IdProbe::kTransit);
          REQUIRE(t.TryTransition(p.index, p.state, EntryState::kLive));
          m.transit.erase(it->first);
        } else {
          REQUIRE(p.kind == IdProbe::kLive);
          REQUIRE(t.TryTransition(p.index, p.state, EntryState::kTransit));
          m.transit.insert(it->first);
        }
        break;
      }
      case 4:  // an arbitrary id from the input
        CheckProbe(t, m, in.U64());
        break;
      case 5: {  // a neighbour of an issued id: bit flip, ±1, ±2^12, ±2^32, generation ±1
        if (m.issued.empty()) break;
        const uint64_t base = m.issued[in.Byte() % m.issued.size()];
        const uint8_t how = in.Byte();
        static const int64_t kDeltas[] = {1, -1, 1 << 12, -(1 << 12), 1ll << 32, -(1ll << 32), 4095, -4095};
        const uint64_t id = how < 128 ? base ^ (1ull << (how % 64)) : base + kDeltas[how % 8];
        CheckProbe(t, m, id);
        break;
      }
      case 6:  // every issued id
        for (uint64_t id : m.issued) CheckProbe(t, m, id);
        break;
      case 7: {  // a record round trip on a live id
        if (m.live.empty()) break;
        auto it = m.live.begin();
        std::advance(it, in.Byte() % m.live.size());
        const IdProbe p = t.Probe(it->first);
        HandleRecord rec;
        REQUIRE(t.ReadRecord(p.index, p.state, &rec));
        break;
      }
    }
  }
  for (uint64_t id : m.issued) CheckProbe(t, m, id);
  return 0;
}
