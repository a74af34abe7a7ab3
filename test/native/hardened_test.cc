// hardened_test.cc — hardened mode (hardening.h) through the Manager: pool choice with
// the canary tail, CANARY_CORRUPTED on Validate/Free/CloseChannel, poisoning on free,
// guard pages (forked children that overrun or underrun a mapping must fault), and a
// threaded validate/free/reallocate race on the pinned canary read (run it under TSan).
#include "hardening.h"
#include "manager.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "test_util.h"

using namespace isopool;

namespace {

constexpr uint32_t kCanaryBit = 1u << static_cast<uint32_t>(Violation::kCanaryCorrupted);

ManagerConfig Hardened(bool on = true) {
  ManagerConfig c;
  c.pools = {{"small", 4096, 8}, {"medium", 65536, 4}, {"large", 1 << 20, 2}};
  c.hardened = on;
  return c;
}

struct Mgr {
  Manager* m = nullptr;
  explicit Mgr(const ManagerConfig& c) { CHECK(Manager::Create(c, &m) == Status::kOk); }
  ~Mgr() { m->Unref(); }
  Manager* operator->() { return m; }
};

int32_t Open(Manager* m, const char* name, AccessMode access = AccessMode::kRevocable) {
  int32_t idx = -1;
  bool created = false;
  ChannelOptions o;
  o.access = access;
  CHECK(m->OpenChannel(name, o, &idx, &created) == Status::kOk);
  return idx;
}

/// Runs `body` in a forked child whose SIGSEGV/SIGBUS handler exits 42. Returns the child's
/// exit code (42: it faulted; 0: body returned), or -signal if it died another way.
int InChild(void (*body)(uint8_t*), uint8_t* arg) {
  std::cout.flush();
  const pid_t pid = fork();
  if (pid == 0) {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof(sa));
    sa.sa_handler = [](int) { _exit(42); };
    sigaction(SIGSEGV, &sa, nullptr);
    sigaction(SIGBUS, &sa, nullptr);
    body(arg);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return WIFSIGNALED(status) ? -WTERMSIG(status) : -1000;
}

}  // namespace

TEST(PoolChoiceLeavesRoomForTheCanary) {
  Mgr h(Hardened());
  Mgr d(Hardened(false));
  struct Case {
    uint64_t size;
    int32_t pool;      // hardened
    uint64_t charged;  // hardened
    int32_t plain_pool;
  } cases[] = {
      {4096 - kCanaryBytes, 0, 4096, 0},
      {4096 - kCanaryBytes + 1, 1, 65536, 0},
      {4096, 1, 65536, 0},
      {(1 << 20) - kCanaryBytes, 2, 1 << 20, 2},
      {(1 << 20) - kCanaryBytes + 1, kPoolDirect, (1 << 20) + 4096, 2},
      {3 << 20, kPoolDirect, (3 << 20) + 4096, kPoolDirect},
  };
  for (const Case& c : cases) {
    Allocation a, b;
    CHECK(h->Allocate(0, c.size, 0, &a) == Status::kOk);
    CHECK_EQ(a.pool, c.pool) << "hardened pool for " << c.size;
    CHECK_EQ(a.charged, c.charged) << "hardened charge for " << c.size;
    CHECK(d->Allocate(0, c.size, 0, &b) == Status::kOk);
    CHECK_EQ(b.pool, c.plain_pool) << "default pool for " << c.size;
    HandleInfo info;
    uint32_t v = 0;
    CHECK(h->Free(a.id, -1, FreeReason::kDeallocate, &info, &v) == Status::kOk);
    CHECK_EQ(v, 0u) << "intact canary";
    CHECK(d->Free(b.id, -1, FreeReason::kDeallocate, &info, &v) == Status::kOk);
  }
}

TEST(CanaryCorruptionIsFoundByValidateAndFree) {
  Mgr m(Hardened());
  const int32_t a = Open(m.m, "a");
  const int32_t b = Open(m.m, "b");
  Allocation x, y;
  CHECK(m->Allocate(0, 100, a, &x) == Status::kOk);
  CHECK(m->Allocate(0, 100, a, &y) == Status::kOk);
  HandleInfo info;
  CHECK_EQ(m->Validate(x.id, -1, &info), 0u) << "intact";
  x.data[100 + kCanaryBytes - 1] ^= 0x80;  // the last canary byte
  CHECK_EQ(m->Validate(x.id, -1, &info), kCanaryBit) << "manager validate";
  CHECK_EQ(m->Validate(x.id, a, &info), kCanaryBit) << "owner validate";
  CHECK_EQ(m->Validate(x.id, b, &info), 1u << static_cast<uint32_t>(Violation::kCrossChannel))
      << "a foreign presenter learns only CROSS_CHANNEL";
  CHECK_EQ(m->Validate(y.id, -1, &info), 0u) << "neighbour intact";
  y.data[99] = 0xff;  // the last requested byte: not an overrun
  CHECK_EQ(m->Validate(y.id, -1, &info), 0u) << "writes inside the extent are fine";
  uint32_t v = 0;
  CHECK(m->Free(x.id, -1, FreeReason::kDeallocate, &info, &v) == Status::kOk) << "still freed";
  CHECK_EQ(v, kCanaryBit) << "free reports it";
  CHECK(m->IsReleased(x.id));
  CHECK_EQ(m->ChannelUsage(a).violations[5], uint64_t{3}) << "validate x2 + free, on the owner";
  CHECK_EQ(m->ChannelUsage(b).violations[5], uint64_t{0});
  CHECK_EQ(m->ChannelUsage(a).handles, uint64_t{1});

  // CloseChannel checks too; counted against the unscoped domain.
  y.data[100] ^= 1;
  std::vector<HandleInfo> freed;
  CHECK(m->CloseChannel(a, &freed) == Status::kOk);
  CHECK_EQ(freed.size(), size_t{1});
  CHECK_EQ(m->ChannelUsage(kUnscopedChannel).violations[5], uint64_t{1});
}

TEST(DirectAndCounterHandles) {
  Mgr m(Hardened());
  int32_t unit = -1;
  CHECK(m->DefineType("unit", TypeKind::kCounter, &unit) == Status::kOk);
  Allocation c, d;
  CHECK(m->Allocate(unit, 5, 0, &c) == Status::kOk);
  CHECK_EQ(c.charged, uint64_t{5}) << "counters carry no tail";
  HandleInfo info;
  CHECK_EQ(m->Validate(c.id, -1, &info), 0u);
  CHECK(m->Allocate(0, (2 << 20) + 1, 0, &d) == Status::kOk);
  CHECK_EQ(m->Validate(d.id, -1, &info), 0u);
  d.data[(2 << 20) + 1] ^= 1;
  CHECK_EQ(m->Validate(d.id, -1, &info), kCanaryBit) << "direct mappings have a canary too";
  uint32_t v = 0;
  CHECK(m->Free(d.id, -1, FreeReason::kDeallocate, &info, &v) == Status::kOk);
  CHECK_EQ(v, kCanaryBit);
}

TEST(FreedSlotsArePoisoned) {
  Mgr m(Hardened());
  const int32_t a = Open(m.m, "a");
  const int32_t v = Open(m.m, "v", AccessMode::kView);
  Allocation x, y;
  CHECK(m->Allocate(0, 100, a, &x) == Status::kOk);
  CHECK(m->Allocate(0, 100, v, &y) == Status::kOk);
  std::memset(x.data, 0x11, 100);
  std::memset(y.data, 0x11, 4096);  // view users may write the whole slot
  HandleInfo info;
  uint32_t viol = 0;
  CHECK(m->Free(x.id, -1, FreeReason::kDeallocate, &info, &viol) == Status::kOk);
  CHECK(m->Free(y.id, -1, FreeReason::kDeallocate, &info, &viol) == Status::kOk);
  // Both slots sit in their set's ring: still mapped, readable here.
  uint64_t poisoned_x = 0, poisoned_y = 0;
  for (uint64_t i = 0; i < 4096; ++i) {
    poisoned_x += x.data[i] == kPoisonByte;
    poisoned_y += y.data[i] == kPoisonByte;
  }
  CHECK_EQ(poisoned_x, 100 + kCanaryBytes) << "revocable: the dirty extent (size + canary)";
  CHECK_EQ(poisoned_y, uint64_t{4096}) << "view: the whole slot";
  // Another owner gets zeros; the same owner gets poison, never the old bytes.
  Allocation z;
  const int32_t b = Open(m.m, "b");
  CHECK(m->Allocate(0, 200, b, &z) == Status::kOk);
  CHECK(z.data == x.data) << "the same slot";
  bool zero = true;
  for (uint64_t i = 0; i < 200; ++i) zero = zero && z.data[i] == 0;
  CHECK(zero) << "zeroed for another owner";
}

TEST(DefaultModeDoesNotPoison) {
  Mgr m(Hardened(false));
  Allocation x;
  CHECK(m->Allocate(0, 100, 0, &x) == Status::kOk);
  std::memset(x.data, 0x11, 100);
  HandleInfo info;
  uint32_t v = 0;
  CHECK(m->Free(x.id, -1, FreeReason::kDeallocate, &info, &v) == Status::kOk);
  CHECK_EQ(x.data[0], 0x11) << "default mode leaves the bytes (zeroed later, per zero mode)";
}

TEST(GuardPagesFault) {
  Mgr m(Hardened());
  Allocation big, direct;
  CHECK(m->Allocate(0, 70000, 0, &big) == Status::kOk);       // large: a 1 MiB slot is its own slab
  CHECK(m->Allocate(0, (2 << 20) + 1, 0, &direct) == Status::kOk);  // 2 MiB + 4 KiB mapping
  HandleInfo info;
  CHECK(m->Lookup(big.id, &info) == Status::kOk);
  uint8_t* slab_start = big.data - big.slab_offset;
  const uint64_t slab_bytes = 1 << 20;
  CHECK_EQ(big.pool, 2);
  CHECK_EQ(big.slab_offset, uint64_t{0});
  uint8_t* direct_end = direct.data + (2 << 20) + 4096;

  static uint8_t* target;
  target = slab_start - 1;
  CHECK_EQ(InChild([](uint8_t*) { *reinterpret_cast<volatile uint8_t*>(target) = 1; }, nullptr), 42)
      << "one byte before a slab faults";
  target = slab_start + slab_bytes;
  CHECK_EQ(InChild([](uint8_t*) { *reinterpret_cast<volatile uint8_t*>(target) = 1; }, nullptr), 42)
      << "one byte past a slab faults";
  target = slab_start + slab_bytes - 1;
  CHECK_EQ(InChild([](uint8_t*) { *reinterpret_cast<volatile uint8_t*>(target) = 1; }, nullptr), 0)
      << "the last byte of a slab is writable";
  target = direct_end;
  CHECK_EQ(InChild([](uint8_t*) { *reinterpret_cast<volatile uint8_t*>(target) = 1; }, nullptr), 42)
      << "one byte past a direct mapping faults";
  target = direct.data - 1;
  CHECK_EQ(InChild([](uint8_t*) { *reinterpret_cast<volatile uint8_t*>(target) = 1; }, nullptr), 42)
      << "one byte before a direct mapping faults";
  target = direct_end - 1;
  CHECK_EQ(InChild([](uint8_t*) { *reinterpret_cast<volatile uint8_t*>(target) = 1; }, nullptr), 0)
      << "the last byte of a direct mapping is writable";
  (void)info;
}

TEST(ReservedBytesExcludeGuardPages) {
  Mgr h(Hardened());
  Mgr d(Hardened(false));
  Allocation a;
  CHECK(h->Allocate(0, 3 << 20, 0, &a) == Status::kOk);
  CHECK(d->Allocate(0, (3 << 20) + 4096, 0, &a) == Status::kOk);
  ManagerSnapshot sh, sd;
  h->Snapshot(&sh);
  d->Snapshot(&sd);
  CHECK_EQ(sh.direct.reserved_bytes, uint64_t{(3 << 20) + 4096}) << "usable bytes only";
  CHECK_EQ(sh.reserved_bytes, sd.reserved_bytes) << "same figure as an unguarded mapping of that size";
}

TEST(ConcurrentValidateFreeReallocate) {
  // Readers validate ids that writers free and reallocate (same slots, new canaries): the
  // pinned canary read must never report a corruption that did not happen, never fault,
  // and (under TSan) never race with the poison or the next owner's canary.
  Mgr m(Hardened());
  const uint64_t rounds = testing::EnvU64("ISOPOOL_HARDENED_ROUNDS", 20000);
  constexpr int kSlots = 16;
  std::atomic<uint64_t> ids[kSlots];
  for (auto& id : ids) {
    Allocation a;
    CHECK(m->Allocate(0, 48, 0, &a) == Status::kOk);
    id.store(a.id, std::memory_order_relaxed);
  }
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> false_alarms{0}, validations{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&, t] {
      testing::Rng rng(t + 1);
      while (!stop.load(std::memory_order_relaxed)) {
        HandleInfo info;
        const uint32_t mask = m->Validate(ids[rng.Below(kSlots)].load(std::memory_order_relaxed), -1, &info);
        if (mask & kCanaryBit) false_alarms.fetch_add(1, std::memory_order_relaxed);
        validations.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  testing::Rng rng(99);
  for (uint64_t i = 0; i < rounds; ++i) {
    const int k = static_cast<int>(rng.Below(kSlots));
    HandleInfo info;
    uint32_t v = 0;
    CHECK(m->Free(ids[k].load(std::memory_order_relaxed), -1, FreeReason::kDeallocate, &info, &v) == Status::kOk);
    CHECK_EQ(v, 0u);
    Allocation a;
    CHECK(m->Allocate(0, 1 + rng.Below(4000), 0, &a) == Status::kOk);
    ids[k].store(a.id, std::memory_order_relaxed);
  }
  stop.store(true);
  for (auto& r : readers) r.join();
  CHECK_EQ(false_alarms.load(), uint64_t{0}) << "no canary false alarm";
  CHECK_EQ(m->ChannelUsage(kUnscopedChannel).violations[5], uint64_t{0});
  std::cout << "  " << rounds << " free+allocate rounds, " << validations.load() << " concurrent validations" << std::endl;
}

TEST_MAIN()
