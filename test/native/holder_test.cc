// holder_test.cc — threads holding buffers (SPEC §3): a handle freed by another thread while
// its holder may still reach the memory is parked, announced to the holder, and returned only
// when the holder's buffer is released; a leaving thread's handles are reclaimed; a recycled
// channel index is never charged for a closed incarnation. Ends with a threaded stress run
// (meant for TSan) checking that no parked slot is ever handed out again before its release.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "manager.h"
#include "test_util.h"

using namespace isopool;

namespace {

ManagerConfig Small() {
  ManagerConfig c;
  c.pools = {{"small", 4096, 8}};
  return c;
}

/// Immediate reuse unless `deferred`: the caller (JS) revokes its own buffer at free, so only
/// another thread's buffer parks memory. The unscoped domain follows.
ChannelOptions Reuse(bool deferred) {
  ChannelOptions o;
  o.immediate_reuse = !deferred;
  return o;
}

struct Mgr {
  Manager* m = nullptr;
  explicit Mgr(bool deferred = false) {
    CHECK(Manager::Create(Small(), &m) == Status::kOk);
    int32_t unscoped = -1;
    bool created = false;
    CHECK(m->OpenChannel("", Reuse(deferred), &unscoped, &created) == Status::kOk);
  }
  ~Mgr() { m->Unref(); }
  Manager* operator->() { return m; }
};

int32_t Open(Manager* m, const char* name, bool deferred = false) {
  int32_t idx = -1;
  bool created = false;
  CHECK(m->OpenChannel(name, Reuse(deferred), &idx, &created) == Status::kOk);
  return idx;
}

/// Opens "a", closes it and opens "b" on the recycled index, which it returns; *closed_owner
/// is a's owner epoch.
int32_t RecycleIndex(Manager* m, uint32_t* closed_owner) {
  const int32_t first = Open(m, "a");
  *closed_owner = m->OwnerOf(first);
  std::vector<HandleInfo> freed;
  CHECK(m->CloseChannel(first, &freed) == Status::kOk);
  const int32_t second = Open(m, "b");
  CHECK_EQ(second, first) << "the index is recycled";
  return second;
}

uint64_t LiveSlots(Manager* m) {
  ManagerSnapshot s;
  m->Snapshot(&s);
  return s.pools[0].live_slots;
}

/// Ids one thread hands to another, and the end of the handing.
struct Handoff {
  std::mutex mu;
  std::deque<uint64_t> ids;
  std::atomic<bool> done{false};

  void Push(uint64_t id) {
    std::lock_guard<std::mutex> lock(mu);
    ids.push_back(id);
  }
  /// The next id, or 0 once none is left and done is set; yields while it waits.
  uint64_t Pop() {
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (!ids.empty()) {
          const uint64_t id = ids.front();
          ids.pop_front();
          return id;
        }
      }
      if (done.load(std::memory_order_acquire)) return 0;
      std::this_thread::yield();
    }
  }
};

/// Thread 2's part: frees every id handed to it as a foreign thread (holder 2), until done.
/// `strict`: each free must succeed.
void FreeHandedOff(Manager* m, Handoff* h, bool strict) {
  for (uint64_t id = h->Pop(); id != 0; id = h->Pop()) {
    HandleInfo info;
    uint32_t v = 0;
    const Status s = m->Free(id, -1, FreeReason::kDeallocate, CallContext{2, 0}, &info, &v);
    if (strict) CHECK(s == Status::kOk);
  }
}

}  // namespace

TEST(ForeignFreeParksUntilTheHolderReleasesItsBuffer) {
  Mgr m;
  const int32_t ch = Open(m.m, "c");
  Allocation a;
  CHECK(m->Allocate(0, 100, ch, CallContext{1, 0}, &a) == Status::kOk);
  HandleInfo info;
  uint32_t v = 0;
  CHECK(m->Free(a.id, -1, FreeReason::kDeallocate, CallContext{2, 0}, &info, &v) == Status::kOk);
  CHECK(info.parked) << "holder 1 still has a buffer: the memory must wait";
  CHECK_EQ(m->ChannelUsage(ch).bytes, 0u) << "the ledger is refunded at once";
  CHECK_EQ(LiveSlots(m.m), 1u) << "the slot is not back in the pool";
  CHECK(m->HasRevocations());
  std::vector<uint64_t> ids;
  m->DrainRevocations(2, &ids);
  CHECK(ids.empty()) << "nothing for thread 2";
  m->DrainRevocations(1, &ids);
  CHECK_EQ(ids.size(), 1u);
  CHECK_EQ(ids[0], a.id);
  CHECK(!m->HasRevocations());
  m->OnBufferReleased(a.id, 2);
  CHECK_EQ(LiveSlots(m.m), 1u) << "a release by another thread's buffer does not count";
  m->OnBufferReleased(a.id, 1);
  CHECK_EQ(LiveSlots(m.m), 0u) << "released with the holder's buffer";
  ManagerSnapshot s;
  m->Snapshot(&s);
  CHECK_EQ(s.parked_handles, 0u);
}

TEST(DeferredReuseParksEvenTheHoldersOwnFreeWithoutAnnouncingIt) {
  // The default for revocable channels and the unscoped domain: a free never revokes the buffer,
  // so the memory waits for that buffer, whoever frees it, and no thread is asked to detach.
  Mgr m(/*deferred=*/true);
  const int32_t ch = Open(m.m, "d", /*deferred=*/true);
  for (const int32_t channel : {ch, 0}) {
    Allocation a;
    CHECK(m->Allocate(0, 100, channel, CallContext{1, 0}, &a) == Status::kOk);
    HandleInfo info;
    uint32_t v = 0;
    CHECK(m->Free(a.id, -1, FreeReason::kDeallocate, CallContext{1, 0}, &info, &v) == Status::kOk);
    CHECK(info.parked) << "the holder's own free parks: its buffer is not revoked";
    CHECK(!m->HasRevocations()) << "nothing to detach: deferred buffers are never revoked";
    CHECK(!m->IsReleased(a.id)) << "freed, not released, while its buffer lives";
    CHECK_EQ(m->ChannelUsage(channel).bytes, 0u) << "the ledger is refunded at once";
    CHECK_EQ(LiveSlots(m.m), 1u) << "the slot is not back in the pool";
    m->OnBufferReleased(a.id, 1);
    CHECK_EQ(LiveSlots(m.m), 0u) << "released with the buffer";
    CHECK(m->IsReleased(a.id));
  }
  // Another thread's free of a deferred handle parks for the holder, unannounced as well.
  Allocation b;
  CHECK(m->Allocate(0, 100, ch, CallContext{1, 0}, &b) == Status::kOk);
  HandleInfo info;
  uint32_t v = 0;
  CHECK(m->Free(b.id, -1, FreeReason::kDeallocate, CallContext{2, 0}, &info, &v) == Status::kOk);
  CHECK(info.parked);
  CHECK(!m->HasRevocations());
  m->OnBufferReleased(b.id, 1);
  ManagerSnapshot s;
  m->Snapshot(&s);
  CHECK_EQ(s.parked_handles, 0u);
  CHECK_EQ(LiveSlots(m.m), 0u);
}

TEST(DeferredTransferPinsTheSendersBufferUntilItDies) {
  Mgr m(/*deferred=*/true);
  const int32_t ch = Open(m.m, "t", /*deferred=*/true);
  // Another thread adopts; the sender's buffer (env 1) stays attached and is pinned.
  Allocation a;
  CHECK(m->Allocate(0, 100, ch, CallContext{1, 0}, &a) == Status::kOk);
  HandleInfo info;
  CHECK(m->BeginTransfer(a.id, &info) == Status::kOk);
  CHECK(info.parked) << "the sender's buffer is pinned, not revoked";
  CHECK(m->Adopt(a.id, CallContext{2, 0}, true, &info) == Status::kOk);
  uint32_t v = 0;
  CHECK(m->Free(a.id, -1, FreeReason::kDeallocate, CallContext{2, 0}, &info, &v) == Status::kOk);
  CHECK(info.parked);
  m->OnBufferReleased(a.id, 2);
  CHECK_EQ(LiveSlots(m.m), 1u) << "the adopter's buffer is gone, the sender's pinned one is not";
  CHECK(!m->IsReleased(a.id));
  m->OnBufferReleased(a.id, 1);
  CHECK_EQ(LiveSlots(m.m), 0u) << "released once the pinned buffer died";
  CHECK(m->IsReleased(a.id));
  // Adopted back by the sender's own thread: two buffers of env 1, either may die first.
  Allocation b;
  CHECK(m->Allocate(0, 100, ch, CallContext{1, 0}, &b) == Status::kOk);
  CHECK(m->BeginTransfer(b.id, &info) == Status::kOk && info.parked);
  CHECK(m->Adopt(b.id, CallContext{1, 0}, true, &info) == Status::kOk);
  CHECK(m->Free(b.id, -1, FreeReason::kDeallocate, CallContext{1, 0}, &info, &v) == Status::kOk);
  CHECK(info.parked);
  m->OnBufferReleased(b.id, 1);
  CHECK_EQ(LiveSlots(m.m), 1u) << "one of the two buffers still lives";
  m->OnBufferReleased(b.id, 1);
  CHECK_EQ(LiveSlots(m.m), 0u);
  // Freed while in transit (never adopted): the pin alone keeps it.
  Allocation c;
  CHECK(m->Allocate(0, 100, ch, CallContext{1, 0}, &c) == Status::kOk);
  CHECK(m->BeginTransfer(c.id, &info) == Status::kOk && info.parked);
  CHECK(m->Free(c.id, -1, FreeReason::kDeallocate, CallContext{1, 0}, &info, &v) == Status::kOk);
  CHECK(info.parked) << "in transit, yet a pinned buffer reaches it";
  CHECK_EQ(LiveSlots(m.m), 1u);
  // The sender's thread leaves: its pinned buffers can no longer be used.
  CHECK_EQ(m->ReclaimEnv(1, FreeReason::kLeak), 0u);
  CHECK_EQ(LiveSlots(m.m), 0u) << "released when the pinning thread left";
  ManagerSnapshot s;
  m->Snapshot(&s);
  CHECK_EQ(s.parked_handles, 0u);
  // Immediate reuse: nothing is pinned (the caller detaches its buffer).
  Mgr i;
  const int32_t ich = Open(i.m, "i");
  Allocation d;
  CHECK(i->Allocate(0, 100, ich, CallContext{1, 0}, &d) == Status::kOk);
  CHECK(i->BeginTransfer(d.id, &info) == Status::kOk);
  CHECK(!info.parked);
}

TEST(OwnFreeAndReleasedBuffersDoNotPark) {
  Mgr m;
  const int32_t ch = Open(m.m, "c");
  Allocation a, b;
  CHECK(m->Allocate(0, 100, ch, CallContext{1, 0}, &a) == Status::kOk);
  HandleInfo info;
  uint32_t v = 0;
  CHECK(m->Free(a.id, -1, FreeReason::kDeallocate, CallContext{1, 0}, &info, &v) == Status::kOk);
  CHECK(!info.parked) << "the holder frees (and detaches) its own buffer";
  CHECK(m->Allocate(0, 100, ch, CallContext{1, 0}, &b) == Status::kOk);
  m->OnBufferReleased(b.id, 1);  // its buffer was collected while the handle is live
  CHECK(m->Free(b.id, -1, FreeReason::kDeallocate, CallContext{2, 0}, &info, &v) == Status::kOk);
  CHECK(!info.parked) << "no buffer reaches the memory any more";
  CHECK_EQ(LiveSlots(m.m), 0u);
  // A late finalizer of a freed incarnation changes nothing.
  m->OnBufferReleased(a.id, 1);
  CHECK_EQ(LiveSlots(m.m), 0u);
}

TEST(KeepUntilReleasedParksForTheCallerItself) {
  Mgr m;
  const int32_t ch = Open(m.m, "c");
  Allocation a, b;
  CHECK(m->Allocate(0, 100, ch, CallContext{1, 0}, &a) == Status::kOk);
  HandleInfo info;
  uint32_t v = 0;
  // The caller's own buffer was detached by other code: its memory may live on elsewhere.
  CHECK(m->Free(a.id, -1, FreeReason::kDeallocate, CallContext{1, 0, true}, &info, &v) == Status::kOk);
  CHECK(info.parked) << "parked although the caller is the holder";
  CHECK(!m->HasRevocations()) << "nobody else has anything to revoke";
  CHECK_EQ(LiveSlots(m.m), 1u);
  m->OnBufferReleased(a.id, 1);  // the backing store died
  CHECK_EQ(LiveSlots(m.m), 0u);
  // A buffer that is already gone when the free comes: nothing to wait for.
  CHECK(m->Allocate(0, 100, ch, CallContext{1, 0}, &b) == Status::kOk);
  m->OnBufferReleased(b.id, 1);
  CHECK(m->Free(b.id, -1, FreeReason::kLeak, CallContext{1, 0, true}, &info, &v) == Status::kOk);
  CHECK(!info.parked) << "the backing store died before the free";
  CHECK_EQ(LiveSlots(m.m), 0u);
}

TEST(TransferMovesTheHolder) {
  Mgr m;
  const int32_t ch = Open(m.m, "c");
  Allocation a;
  CHECK(m->Allocate(0, 100, ch, CallContext{1, 0}, &a) == Status::kOk);
  HandleInfo info;
  CHECK(m->BeginTransfer(a.id, &info) == Status::kOk);
  CHECK(m->Adopt(a.id, CallContext{2, 0}, true, &info) == Status::kOk);
  uint32_t v = 0;
  CHECK(m->Free(a.id, -1, FreeReason::kDeallocate, CallContext{1, 0}, &info, &v) == Status::kOk);
  CHECK(info.parked) << "thread 2 adopted it: thread 1's free must wait for thread 2's buffer";
  m->OnBufferReleased(a.id, 1);
  CHECK_EQ(LiveSlots(m.m), 1u) << "thread 1's old (detached) buffer does not release it";
  m->OnBufferReleased(a.id, 2);
  CHECK_EQ(LiveSlots(m.m), 0u);
}

TEST(ReclaimEnvFreesWhatALeavingThreadHolds) {
  Mgr m;
  const int32_t ch = Open(m.m, "c");
  Allocation a, b, c, d;
  CHECK(m->Allocate(0, 100, ch, CallContext{7, 0}, &a) == Status::kOk);
  CHECK(m->Allocate(0, 100, ch, CallContext{7, 0}, &b) == Status::kOk);
  CHECK(m->Allocate(0, 100, ch, CallContext{8, 0}, &c) == Status::kOk);
  CHECK(m->Allocate(0, 100, ch, CallContext{7, 0}, &d) == Status::kOk);
  HandleInfo info;
  CHECK(m->BeginTransfer(d.id, &info) == Status::kOk);  // in transit: nobody's
  uint32_t v = 0;
  CHECK(m->Free(b.id, -1, FreeReason::kDeallocate, CallContext{8, 0}, &info, &v) == Status::kOk);
  CHECK(info.parked);
  CHECK_EQ(m->ReclaimEnv(7, FreeReason::kLeak), 1u) << "a only: b is freed, c is 8's, d in transit";
  CHECK(m->IsReleased(a.id));
  CHECK(m->Lookup(c.id, &info) == Status::kOk);
  CHECK(m->Lookup(d.id, &info) == Status::kOk);
  ManagerSnapshot s;
  m->Snapshot(&s);
  CHECK_EQ(s.thread_exit_reclaims, 1u);
  CHECK_EQ(s.parked_handles, 0u) << "b's parked memory went back with its holder";
  CHECK_EQ(LiveSlots(m.m), 2u) << "c and d";
  std::vector<uint64_t> ids;
  m->DrainRevocations(7, &ids);
  CHECK(ids.empty()) << "the leaving thread's mailbox is dropped";
}

TEST(ReclaimEnvChecksCanaries) {
  ManagerConfig c = Small();
  c.hardened = true;
  Manager* m = nullptr;
  CHECK(Manager::Create(c, &m) == Status::kOk);
  const int32_t ch = Open(m, "c");
  Allocation a;
  CHECK(m->Allocate(0, 100, ch, CallContext{7, 0}, &a) == Status::kOk);
  a.data[100] ^= 0xFF;  // a native overrun into the canary right after the 100 bytes
  CHECK_EQ(m->ReclaimEnv(7, FreeReason::kLeak), 1u);
  CHECK_EQ(m->ChannelUsage(ch).violations[static_cast<uint32_t>(Violation::kCanaryCorrupted)], 1u)
      << "the thread-exit reclaim checks the canary and counts it against the owner";
  m->Unref();
}

TEST(ExpectedOwnerRefusesARecycledChannel) {
  Mgr m;
  uint32_t owner = 0;
  const int32_t second = RecycleIndex(m.m, &owner), first = second;
  Allocation a;
  CHECK(m->Allocate(0, 100, first, CallContext{1, owner}, &a) == Status::kChannelClosed)
      << "an allocation meant for closed 'a' must not be charged to 'b'";
  CHECK_EQ(m->ChannelUsage(second).handles, 0u);
  CHECK(m->Allocate(0, 100, second, CallContext{1, m->OwnerOf(second)}, &a) == Status::kOk);
}

TEST(ExpectedOwnerRefusesAFreePresentedByAClosedIncarnation) {
  Mgr m;
  uint32_t owner = 0;
  const int32_t second = RecycleIndex(m.m, &owner), first = second;
  Allocation a;
  CHECK(m->Allocate(0, 100, second, CallContext{1, m->OwnerOf(second)}, &a) == Status::kOk);
  HandleInfo info;
  uint32_t v = 0;
  CHECK(m->Free(a.id, first, FreeReason::kDeallocate, CallContext{1, owner}, &info, &v) == Status::kChannelClosed)
      << "a scope of closed 'a' must not free 'b''s handle through the recycled index";
  CHECK_EQ(v, 0u);
  const LedgerUsage u = m->ChannelUsage(second);
  CHECK_EQ(u.handles, 1u) << "the handle stays live";
  for (uint64_t n : u.violations) CHECK_EQ(n, 0u) << "and nothing is counted";
  CHECK(m->Free(a.id, second, FreeReason::kDeallocate, CallContext{1, m->OwnerOf(second)}, &info, &v) == Status::kOk);
  CHECK(m->Free(a.id, second, FreeReason::kDeallocate, CallContext{1, owner}, &info, &v) == Status::kChannelClosed)
      << "checked before the id: even a stale id is not counted for a closed scope";
}

TEST(RevocationWordFollowsPostsAndDrains) {
  Mgr m;
  const int32_t ch = Open(m.m, "c");
  Allocation a, b;
  CHECK(m->Allocate(0, 100, ch, CallContext{1, 0}, &a) == Status::kOk);
  CHECK(m->Allocate(0, 100, ch, CallContext{1, 0}, &b) == Status::kOk);
  HandleInfo info;
  uint32_t v = 0;
  CHECK(m->Free(a.id, -1, FreeReason::kDeallocate, CallContext{2, 0}, &info, &v) == Status::kOk);
  std::atomic<uint32_t> word{7}, other{7};
  CHECK(m->WatchRevocations(1, &word));
  CHECK(m->WatchRevocations(2, &other));
  CHECK_EQ(word.load(), 1u) << "watching starts with what is already posted";
  CHECK_EQ(other.load(), 0u);
  std::vector<uint64_t> ids;
  m->DrainRevocations(1, &ids);
  CHECK_EQ(ids.size(), 1u);
  CHECK_EQ(word.load(), 0u) << "the drain clears it";
  CHECK(m->Free(b.id, -1, FreeReason::kDeallocate, CallContext{2, 0}, &info, &v) == Status::kOk);
  CHECK_EQ(word.load(), 1u) << "a post sets it";
  CHECK_EQ(other.load(), 0u) << "only for the holder";
  CHECK(m->WatchRevocations(1, nullptr));
  ids.clear();
  m->DrainRevocations(1, &ids);
  CHECK_EQ(ids.size(), 1u);
  CHECK_EQ(word.load(), 1u) << "no longer written once unwatched";
  m->OnBufferReleased(a.id, 1);
  m->OnBufferReleased(b.id, 1);
  CHECK_EQ(m->ReclaimEnv(2, FreeReason::kLeak), 0u);
  Allocation c;
  CHECK(m->Allocate(0, 100, ch, CallContext{2, 0}, &c) == Status::kOk);
  CHECK(m->Free(c.id, -1, FreeReason::kDeallocate, CallContext{1, 0}, &info, &v) == Status::kOk);
  CHECK_EQ(other.load(), 0u) << "a leaving thread's word is forgotten (ReclaimEnv)";
  m->OnBufferReleased(c.id, 2);
  CHECK_EQ(LiveSlots(m.m), 0u);
}

// Two threads: the holder drains only when its word says so (as JS does); the other frees the
// holder's handles. No post may be missed: at the end nothing waits undrained.
TEST(RevocationWordNeverMissesAPost) {
  Mgr m;
  const int32_t ch = Open(m.m, "c");
  const uint64_t rounds = testing::EnvU64("ISOPOOL_HOLDER_OPS", 50000);
  std::atomic<uint32_t> word{0};
  CHECK(m->WatchRevocations(1, &word));
  Handoff handoff;
  uint64_t released = 0, allocated = 0;
  auto drain = [&] {
    std::vector<uint64_t> ids;
    m->DrainRevocations(1, &ids);
    for (uint64_t id : ids) m->OnBufferReleased(id, 1);
    released += ids.size();
  };
  std::thread freer([&] { FreeHandedOff(m.m, &handoff, /*strict=*/true); });
  for (uint64_t i = 0; i < rounds; ++i) {
    Allocation a;
    if (m->Allocate(0, 64, ch, CallContext{1, 0}, &a) == Status::kOk) {
      ++allocated;
      handoff.Push(a.id);
    }
    if (word.load(std::memory_order_relaxed) != 0) drain();
  }
  handoff.done.store(true, std::memory_order_release);
  freer.join();
  if (word.load(std::memory_order_relaxed) != 0) drain();
  CHECK_EQ(released, allocated) << "every post reached the holder through its word";
  CHECK(!m->HasRevocations());
  CHECK_EQ(LiveSlots(m.m), 0u);
  CHECK(m->WatchRevocations(1, nullptr));
}

// Thread 1 allocates (holder 1) and stamps slots; thread 2 frees them as a foreign thread;
// thread 1 drains its revocations, checks its stamp is intact (nobody got the slot meanwhile)
// and releases its buffers. Another allocator (holder 3) stamps whatever it gets.
TEST(ParkedSlotsAreNeverReusedBeforeRelease) {
  Mgr m;
  const int32_t ch = Open(m.m, "c");
  const uint64_t rounds = testing::EnvU64("ISOPOOL_HOLDER_OPS", 50000);
  Handoff handoff;
  std::atomic<uint64_t> bad{0};
  struct Held {
    uint64_t id;
    uint8_t* data;
    uint8_t stamp;
  };

  std::thread owner([&] {
    std::vector<Held> held;
    for (uint64_t i = 0; i < rounds; ++i) {
      Allocation a;
      if (m->Allocate(0, 64, ch, CallContext{1, 0}, &a) == Status::kOk) {
        const uint8_t stamp = static_cast<uint8_t>(i | 1);
        std::memset(a.data, stamp, 64);
        held.push_back({a.id, a.data, stamp});
        handoff.Push(a.id);
      }
      std::vector<uint64_t> revoked;
      m->DrainRevocations(1, &revoked);
      for (uint64_t id : revoked) {
        auto it = std::find_if(held.begin(), held.end(), [&](const Held& h) { return h.id == id; });
        if (it == held.end()) continue;
        for (int k = 0; k < 64; ++k) {
          if (it->data[k] != it->stamp) bad.fetch_add(1, std::memory_order_relaxed);
        }
        m->OnBufferReleased(id, 1);  // "detach": the buffer is gone
        held.erase(it);
      }
    }
    handoff.done.store(true, std::memory_order_release);
    // Buffers still held at the end are released as if the thread left.
    m->ReclaimEnv(1, FreeReason::kLeak);
    for (const Held& h : held) m->OnBufferReleased(h.id, 1);
  });
  std::thread freer([&] { FreeHandedOff(m.m, &handoff, /*strict=*/false); });
  std::thread other([&] {
    while (!handoff.done.load(std::memory_order_acquire)) {
      Allocation a;
      if (m->Allocate(0, 64, ch, CallContext{3, 0}, &a) == Status::kOk) {
        std::memset(a.data, 0, 64);  // would clobber a parked slot's stamp if it were reused
        HandleInfo info;
        uint32_t v = 0;
        m->Free(a.id, -1, FreeReason::kDeallocate, CallContext{3, 0}, &info, &v);
      }
    }
  });
  owner.join();
  freer.join();
  other.join();
  CHECK_EQ(bad.load(), 0u) << "a parked slot was handed out before its holder released it";
  ManagerSnapshot s;
  m->Snapshot(&s);
  CHECK_EQ(s.parked_handles, 0u);
  CHECK_EQ(s.handles, 0u);
  CHECK_EQ(LiveSlots(m.m), 0u) << "every slot back in the pool";
  std::printf("holder stress: %llu rounds\n", static_cast<unsigned long long>(rounds));
}

// Deferred reuse from several threads at once: each frees its own handles (parked until its
// buffer dies) and releases its buffers later, out of order, or leaves them to ReclaimEnv.
// Parked memory lives in shards by id: every release must find its entry (nothing left parked),
// and no slot may serve anyone before its buffer was released (the stamps stay intact).
TEST(DeferredReuseAcrossThreadsReleasesEverySlotOnce) {
  Mgr m(/*deferred=*/true);
  constexpr uint32_t kThreads = 4;
  const uint64_t rounds = testing::EnvU64("ISOPOOL_HOLDER_OPS", 50000) / 2;
  std::atomic<uint64_t> bad{0}, allocated{0}, unreleased{0};
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const uint32_t env = 10 + t;
      const std::string name = "t" + std::to_string(t);
      const int32_t ch = Open(m.m, name.c_str(), /*deferred=*/true);
      struct Held {
        uint64_t id;
        uint8_t* data;
        uint8_t stamp;
      };
      std::vector<Held> held;
      uint64_t next = t + 1;
      for (uint64_t i = 0; i < rounds; ++i) {
        Allocation a;
        if (m->Allocate(0, 64, ch, CallContext{env, 0}, &a) != Status::kOk) continue;
        allocated.fetch_add(1, std::memory_order_relaxed);
        const uint8_t stamp = static_cast<uint8_t>((i * kThreads + t) | 1);
        std::memset(a.data, stamp, 64);
        HandleInfo info;
        uint32_t v = 0;
        CHECK(m->Free(a.id, -1, FreeReason::kDeallocate, CallContext{env, 0}, &info, &v) == Status::kOk);
        if (!info.parked) bad.fetch_add(1, std::memory_order_relaxed);  // its buffer still lives
        held.push_back({a.id, a.data, stamp});
        if (held.size() < 6) continue;
        next = next * 6364136223846793005ull + 1442695040888963407ull;
        const size_t k = static_cast<size_t>((next >> 33) % held.size());
        for (int b = 0; b < 64; ++b) {
          if (held[k].data[b] != held[k].stamp) bad.fetch_add(1, std::memory_order_relaxed);
        }
        m->OnBufferReleased(held[k].id, env);  // its buffer died: the slot may serve again
        if (!m->IsReleased(held[k].id)) bad.fetch_add(1, std::memory_order_relaxed);
        held[k] = held.back();
        held.pop_back();
      }
      for (const Held& h : held) {
        for (int b = 0; b < 64; ++b) {
          if (h.data[b] != h.stamp) bad.fetch_add(1, std::memory_order_relaxed);
        }
      }
      if (t % 2 == 0) {
        m->ReclaimEnv(env, FreeReason::kLeak);  // the thread leaves with buffers alive
      } else {
        for (const Held& h : held) m->OnBufferReleased(h.id, env);
      }
      for (const Held& h : held) {
        if (!m->IsReleased(h.id)) unreleased.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK_EQ(bad.load(), 0u) << "a slot was reused while parked, or a release missed its entry";
  CHECK_EQ(unreleased.load(), 0u) << "memory left parked after its buffer died or its thread left";
  CHECK(allocated.load() > 0u);
  ManagerSnapshot s;
  m->Snapshot(&s);
  CHECK_EQ(s.parked_handles, 0u);
  CHECK_EQ(s.handles, 0u);
  CHECK_EQ(LiveSlots(m.m), 0u) << "every slot back in the pool";
  std::printf("deferred threads: %llu allocations\n", static_cast<unsigned long long>(allocated.load()));
}

TEST_MAIN()
