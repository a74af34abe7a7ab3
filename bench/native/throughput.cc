// throughput.cc — native core throughput: 2 threads vs 1 thread, same process, same Manager.
//
//   throughput [--ops N] [--reps N] [--variant SUBSTRING]
//   env: ISOPOOL_BENCH_OPS (ops per thread per run, default 2000000),
//        ISOPOOL_BENCH_REPS (repetitions, default 5); argv wins over env.
//
// One isopool::Manager with the default pools (small 4 KiB x500, medium
// 64 KiB x250, large 1 MiB x125). Workloads, each run with every thread on its
// own channel ("per-thread") and with all threads on one channel ("shared":
// the same ledger scope is charged and refunded by every thread):
//
//   alloc-free   Allocate 4 KiB (revocable) then Free it, repeatedly.
//   window       each thread keeps 64 live handles; every step frees a random
//                one and allocates a replacement of 4 KiB or 64 KiB (50/50).
//   validate     each thread keeps 64 live 4 KiB handles; every step is 8
//                Validate calls on random live handles, then one Free and one
//                Allocate replacing a random handle (80% Validate).
//   counters     no core call: each op is the 10 locked adds a channel's ledger takes per
//                Allocate or Free (its in-flight count, and bytes, handles and their
//                reservations in the channel and channel-type scopes), on 3 cache lines.
//                Per-thread: each thread has its own lines; shared: one set for all (what
//                every thread on one channel does to keep its counts exact). Its shared
//                ratio is the most a shared channel can scale with exact counters.
//   calibration  no core call: each op is 96 splitmix64 steps in registers (about
//                the time of one core call). Its 2T/1T ratio is what a second
//                thread can add on this machine during this run: the ceiling
//                for the rows below (2.0 on two idle cores, lower when other
//                processes take CPU time).
//
// Single owner: the alloc-free and window workloads also run on 1 thread against a second
// Manager created with ManagerConfig::single_owner (what the binding uses for a non-shared
// JS manager), interleaved with 1-thread runs of the default Manager (default, single,
// default, single, ...). The report gives both medians as ns per allocate+free pair (2 ops)
// and their ratio. Variant names: "alloc-free/single-owner", "window/single-owner". Each
// run's worker is a fresh thread, started after the previous one was joined: one thread at a
// time, ordered by the join, as single_owner requires.
//
// An "op" is one core call (Allocate, Free or Validate). Each run gives every
// thread the same fixed op count; the window fill and drain happen outside the
// timed region. Throughput of a run = all threads' ops / wall time from the
// start signal to the last thread's finish. For each workload the runs are
// interleaved 1 thread, 2 threads, 1, 2, ... so drift on a noisy machine hits
// both sides alike; the report gives the median of the repetitions and the
// ratio median(2-thread total ops/s) / median(1-thread ops/s).
//
// The machine may be shared: each run also records the CPU time its threads
// got (CLOCK_THREAD_CPUTIME_ID) over the timed region. CPU/wall tells how much
// of the cores the run actually had (2.0 = both cores, all the time), and
// ops per CPU-second 2T/1T isolates the per-call cost of contention (1.0 = a
// call costs the same with a second thread working) from scheduling noise.
//
// Every run is checked: every call returned kOk / no violation, Validate
// described the id presented, and afterwards the snapshot shows handles == 0,
// bytes_in_use == 0, no refusals, allocation/deallocation counters moved by
// exactly the calls made, and the channels' ledgers are back to zero. A failed
// check makes the exit status 1.
//
// The report (markdown) goes to stdout, progress to stderr.
#include <sched.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "manager.h"

#ifndef ISOPOOL_BENCH_COMPILER
#define ISOPOOL_BENCH_COMPILER "unknown"
#endif
#ifndef ISOPOOL_BENCH_FLAGS
#define ISOPOOL_BENCH_FLAGS "unknown"
#endif

using namespace isopool;

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kMaxThreads = 2;
constexpr int kWindow = 64;
constexpr uint64_t k4K = 4096;
constexpr uint64_t k64K = 65536;
constexpr int kValidatesPerStep = 8;
constexpr int kCalibrateRounds = 96;  ///< splitmix64 steps per calibration op (about one core call)
constexpr int kCounterAdds = 10;      ///< locked adds per counters op (a channel ledger's, per call)

/// Three cache lines of counters, like one channel's ledger lines.
struct alignas(64) CounterLines {
  std::atomic<uint64_t> words[24] = {};
};

/// splitmix64: small, fast, good enough to pick window slots and sizes.
struct Rng {
  uint64_t state;
  uint64_t Next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint32_t Below(uint32_t n) { return static_cast<uint32_t>(((Next() >> 32) * n) >> 32); }
};

enum class Workload { kCalibrate, kCounters, kAllocFree, kWindow, kValidate };
enum class Sharing { kPerThread, kShared };

struct Variant {
  std::string name;
  Workload work;
  Sharing sharing;
};

const char* WorkloadName(Workload w) {
  switch (w) {
    case Workload::kCalibrate: return "calibration";
    case Workload::kCounters: return "counters";
    case Workload::kAllocFree: return "alloc-free";
    case Workload::kWindow: return "window";
    case Workload::kValidate: return "validate";
  }
  return "?";
}

const char* SharingName(Sharing s) { return s == Sharing::kShared ? "shared" : "per-thread"; }

/// CPU time consumed by the calling thread, in seconds.
double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct StartGate {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
};

struct alignas(64) ThreadResult {
  uint64_t ops = 0;        ///< timed core calls
  uint64_t allocs = 0;     ///< successful Allocate calls, timed or not
  uint64_t frees = 0;      ///< successful Free calls, timed or not
  uint64_t errors = 0;
  std::string first_error;
  Clock::time_point end;
  double cpu_s = 0;        ///< thread CPU time spent in the timed region
  uint64_t sink = 0;       ///< calibration result, kept so the loop is not optimised away
};

class Worker {
 public:
  Worker(Manager* m, int32_t channel, ThreadResult* r, CounterLines* lines)
      : m_(m), ch_(channel), r_(r), lines_(lines) {}

  void Run(Workload w, uint64_t ops, uint64_t seed, StartGate* gate) {
    rng_.state = seed;
    if (w == Workload::kWindow || w == Workload::kValidate) Fill(w == Workload::kWindow);
    gate->ready.fetch_add(1, std::memory_order_acq_rel);
    while (!gate->go.load(std::memory_order_acquire)) std::this_thread::yield();
    const double cpu0 = ThreadCpuSeconds();

    uint64_t done = 0;
    switch (w) {
      case Workload::kCalibrate: {
        // No core call and no shared memory: what a second thread can add on this machine now.
        uint64_t sink = 0;
        for (; done < ops; ++done) {
          for (int k = 0; k < kCalibrateRounds; ++k) sink += rng_.Next();
        }
        r_->sink = sink;
        break;
      }
      case Workload::kCounters:
        for (; done < ops; ++done) {
          // One word per add, spread over the 3 lines (8 words each), as a ledger's are.
          for (int k = 0; k < kCounterAdds; ++k) lines_->words[(k * 5) % 24].fetch_add(1, std::memory_order_seq_cst);
        }
        break;
      case Workload::kAllocFree:
        for (; done + 2 <= ops; done += 2) {
          uint64_t id = 0;
          if (Alloc(k4K, &id)) Free(id);
        }
        break;
      case Workload::kWindow:
        for (; done + 2 <= ops; done += 2) {
          const uint32_t j = rng_.Below(kWindow);
          Free(live_[j]);
          Alloc((rng_.Next() & 1) ? k4K : k64K, &live_[j]);
        }
        break;
      case Workload::kValidate:
        for (; done + kValidatesPerStep + 2 <= ops; done += kValidatesPerStep + 2) {
          for (int k = 0; k < kValidatesPerStep; ++k) Validate(live_[rng_.Below(kWindow)]);
          const uint32_t j = rng_.Below(kWindow);
          Free(live_[j]);
          Alloc(k4K, &live_[j]);
        }
        break;
    }
    r_->end = Clock::now();
    r_->cpu_s = ThreadCpuSeconds() - cpu0;
    r_->ops = done;
    Drain();
  }

 private:
  void Fail(const char* what, uint64_t id, int code) {
    if (r_->errors++ == 0) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "%s id=%llu channel=%d code=%d", what,
                    static_cast<unsigned long long>(id), ch_, code);
      r_->first_error = buf;
    }
  }

  bool Alloc(uint64_t size, uint64_t* id) {
    Allocation a;
    const Status s = m_->Allocate(0, size, ch_, &a);
    if (s != Status::kOk) {
      Fail("Allocate", 0, static_cast<int>(s));
      *id = 0;
      return false;
    }
    ++r_->allocs;
    *id = a.id;
    return true;
  }

  void Free(uint64_t id) {
    if (id == 0) return;  // its Allocate failed (already reported)
    HandleInfo info;
    uint32_t violations = 0;
    const Status s = m_->Free(id, ch_, FreeReason::kDeallocate, &info, &violations);
    if (s != Status::kOk) {
      Fail("Free", id, static_cast<int>(s));
      return;
    }
    ++r_->frees;
  }

  void Validate(uint64_t id) {
    HandleInfo info;
    const uint32_t mask = m_->Validate(id, ch_, &info);
    if (mask != 0 || info.id != id || info.channel != ch_) Fail("Validate", id, static_cast<int>(mask));
  }

  void Fill(bool mixed) {
    for (int i = 0; i < kWindow; ++i) Alloc(mixed && (rng_.Next() & 1) ? k64K : k4K, &live_[i]);
  }

  void Drain() {
    for (uint64_t& id : live_) {
      Free(id);
      id = 0;
    }
  }

  Manager* m_;
  int32_t ch_;
  ThreadResult* r_;
  CounterLines* lines_;
  Rng rng_{0};
  uint64_t live_[kWindow] = {};
};

struct RunResult {
  int threads = 0;
  uint64_t ops = 0;
  double seconds = 0;
  double ops_per_s = 0;
  double cpu_s = 0;  ///< CPU seconds all threads spent in the timed region
  bool ok = true;
};

struct Bench {
  Manager* m = nullptr;
  int32_t thread_channels[kMaxThreads] = {};
  int32_t shared_channel = 0;
  CounterLines thread_lines[kMaxThreads];  ///< counters workload, per-thread
  CounterLines shared_lines;               ///< counters workload, shared
  uint64_t seed = 0x15090017ull;
  int failures = 0;

  RunResult Run(const Variant& v, int threads, uint64_t ops_per_thread) {
    ManagerSnapshot before;
    m->Snapshot(&before);

    StartGate gate;
    std::vector<ThreadResult> results(threads);
    std::vector<std::thread> pool;
    std::vector<int32_t> used;
    for (int t = 0; t < threads; ++t) {
      const int32_t ch = v.sharing == Sharing::kShared ? shared_channel : thread_channels[t];
      if (std::find(used.begin(), used.end(), ch) == used.end()) used.push_back(ch);
      const uint64_t s = seed++;
      pool.emplace_back([this, &v, &gate, &results, ch, t, s, ops_per_thread] {
        CounterLines* lines = v.sharing == Sharing::kShared ? &shared_lines : &thread_lines[t];
        Worker(m, ch, &results[t], lines).Run(v.work, ops_per_thread, s, &gate);
      });
    }
    while (gate.ready.load(std::memory_order_acquire) < threads) std::this_thread::yield();
    const Clock::time_point start = Clock::now();
    gate.go.store(true, std::memory_order_release);
    for (auto& th : pool) th.join();

    RunResult out;
    out.threads = threads;
    Clock::time_point end = start;
    uint64_t allocs = 0, frees = 0;
    for (const ThreadResult& r : results) {
      end = std::max(end, r.end);
      out.ops += r.ops;
      out.cpu_s += r.cpu_s;
      allocs += r.allocs;
      frees += r.frees;
      if (r.errors > 0) Check(false, v, threads, "%llu failed calls, first: %s",
                              static_cast<unsigned long long>(r.errors), r.first_error.c_str());
    }
    out.seconds = std::chrono::duration<double>(end - start).count();
    out.ops_per_s = out.seconds > 0 ? static_cast<double>(out.ops) / out.seconds : 0;

    ManagerSnapshot after;
    m->Snapshot(&after);
    Check(after.handles == 0, v, threads, "snapshot handles == %llu", U(after.handles));
    Check(after.bytes_in_use == 0, v, threads, "snapshot bytes_in_use == %llu", U(after.bytes_in_use));
    Check(after.allocations - before.allocations == allocs, v, threads,
          "allocations moved by %llu, threads made %llu", U(after.allocations - before.allocations), U(allocs));
    Check(after.deallocations - before.deallocations == frees, v, threads,
          "deallocations moved by %llu, threads made %llu", U(after.deallocations - before.deallocations), U(frees));
    Check(after.refusals == before.refusals, v, threads, "%llu refusals", U(after.refusals - before.refusals));
    for (int32_t ch : used) {
      const LedgerUsage u = m->ChannelUsage(ch);
      Check(u.bytes == 0 && u.handles == 0, v, threads, "channel %d ledger: %llu bytes, %llu handles", ch,
            U(u.bytes), U(u.handles));
    }
    out.ok = ok_;
    ok_ = true;
    return out;
  }

 private:
  static unsigned long long U(uint64_t x) { return static_cast<unsigned long long>(x); }

  template <typename... Args>
  void Check(bool cond, const Variant& v, int threads, const char* fmt, Args... args) {
    if (cond) return;
    ok_ = false;
    ++failures;
    std::fprintf(stderr, "CHECK FAILED [%s, %d thread(s)]: ", v.name.c_str(), threads);
    std::fprintf(stderr, fmt, args...);
    std::fputc('\n', stderr);
  }

  bool ok_ = true;
};

// --- report helpers ---------------------------------------------------------------------------

double Median(std::vector<double> xs) {
  if (xs.empty()) return 0;
  std::sort(xs.begin(), xs.end());
  const size_t n = xs.size();
  return n % 2 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2;
}

std::string Mops(double ops_per_s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", ops_per_s / 1e6);
  return buf;
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        size_t b = colon + 1;
        while (b < line.size() && line[b] == ' ') ++b;
        return line.substr(b);
      }
    }
  }
  return "unknown";
}

/// What writing one byte to each 4 KiB page of 1 MiB costs, per page, median of 7: memory just
/// mapped (what a pool pays for a new slab), and memory already mapped and written (a reused
/// slot). On bare metal the first is a page fault and a zeroed page, a few hundred ns; a VM
/// whose host backs guest memory lazily pays much more. It is the floor of a pool that must
/// return memory to the system past queueSize (docs/DECISIONS.md, "Deferred reuse").
struct PageCost {
  double fresh_us = 0;
  double reused_us = 0;
};

PageCost MeasurePages() {
  constexpr size_t kBytes = size_t{1} << 20, kPage = 4096, kPages = kBytes / kPage;
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  auto now = [] { return std::chrono::steady_clock::now(); };
  std::vector<double> fresh, reused;
  void* kept = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (kept == MAP_FAILED) return {};
  std::memset(kept, 1, kBytes);
  for (int r = 0; r < 7; ++r) {
    auto t0 = now();
    for (int i = 0; i < 8; ++i) {
      void* m = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m == MAP_FAILED) return {};
      volatile uint8_t* p = static_cast<uint8_t*>(m);
      for (size_t k = 0; k < kPages; ++k) p[k * kPage] = 1;
      munmap(m, kBytes);
    }
    fresh.push_back(std::chrono::duration<double, std::micro>(now() - t0).count() / (8 * kPages));
    t0 = now();
    for (int i = 0; i < 8; ++i) {
      volatile uint8_t* p = static_cast<uint8_t*>(kept);
      for (size_t k = 0; k < kPages; ++k) p[k * kPage] = static_cast<uint8_t>(i);
    }
    reused.push_back(std::chrono::duration<double, std::micro>(now() - t0).count() / (8 * kPages));
  }
  munmap(kept, kBytes);
  return {median(fresh), median(reused)};
}

std::string FirstLine(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line.empty() ? "unknown" : line;
}

uint64_t ParseU64(const char* what, const char* s) {
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s, &end, 10);
  if (end == s || *end != '\0' || v == 0) {
    std::fprintf(stderr, "throughput: bad %s '%s' (want a positive integer)\n", what, s);
    std::exit(2);
  }
  return v;
}

uint64_t EnvU64(const char* name, uint64_t fallback) {
  const char* s = std::getenv(name);
  return (s && *s) ? ParseU64(name, s) : fallback;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t ops = EnvU64("ISOPOOL_BENCH_OPS", 2000000);
  uint64_t reps = EnvU64("ISOPOOL_BENCH_REPS", 5);
  std::string filter;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--ops" || a == "--reps" || a == "--variant") && i + 1 < argc) {
      const char* val = argv[++i];
      if (a == "--ops") ops = ParseU64("--ops", val);
      else if (a == "--reps") reps = ParseU64("--reps", val);
      else filter = val;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--ops N] [--reps N] [--variant SUBSTRING]\n"
                   "  --ops N      core calls per thread per run (env ISOPOOL_BENCH_OPS, default 2000000)\n"
                   "  --reps N     1-thread/2-thread run pairs per variant (env ISOPOOL_BENCH_REPS, default 5)\n"
                   "  --variant S  only variants whose name contains S (e.g. validate, shared)\n",
                   argv[0]);
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }

  std::vector<Variant> variants;
  if (filter.empty() || std::string("calibration").find(filter) != std::string::npos) {
    variants.push_back(Variant{"calibration/private", Workload::kCalibrate, Sharing::kPerThread});
  }
  for (Workload w : {Workload::kCounters, Workload::kAllocFree, Workload::kWindow, Workload::kValidate}) {
    for (Sharing s : {Sharing::kPerThread, Sharing::kShared}) {
      Variant v{std::string(WorkloadName(w)) + "/" + SharingName(s), w, s};
      if (filter.empty() || v.name.find(filter) != std::string::npos) variants.push_back(v);
    }
  }
  std::vector<Variant> single_variants;  // 1 thread: default vs single-owner Manager
  for (Workload w : {Workload::kAllocFree, Workload::kWindow}) {
    Variant v{std::string(WorkloadName(w)) + "/single-owner", w, Sharing::kPerThread};
    if (filter.empty() || v.name.find(filter) != std::string::npos) single_variants.push_back(v);
  }
  if (variants.empty() && single_variants.empty()) {
    std::fprintf(stderr, "throughput: no variant matches '%s'\n", filter.c_str());
    return 2;
  }

  ManagerConfig config;
  config.pools = {{"small", 4096, 500}, {"medium", 65536, 250}, {"large", 1 << 20, 125}};
  Bench bench;
  if (Manager::Create(config, &bench.m) != Status::kOk) {
    std::fprintf(stderr, "throughput: Manager::Create failed\n");
    return 1;
  }
  ManagerConfig single_config = config;
  single_config.single_owner = true;
  Bench single;
  if (Manager::Create(single_config, &single.m) != Status::kOk) {
    std::fprintf(stderr, "throughput: Manager::Create (single owner) failed\n");
    return 1;
  }
  {
    bool created = false;
    if (single.m->OpenChannel("bench-single", ChannelOptions{}, &single.thread_channels[0], &created) != Status::kOk) {
      std::fprintf(stderr, "throughput: OpenChannel failed\n");
      return 1;
    }
  }
  for (int t = 0; t < kMaxThreads; ++t) {
    bool created = false;
    const std::string name = "bench-thread-" + std::to_string(t);
    if (bench.m->OpenChannel(name, ChannelOptions{}, &bench.thread_channels[t], &created) != Status::kOk) {
      std::fprintf(stderr, "throughput: OpenChannel failed\n");
      return 1;
    }
  }
  bool created = false;
  if (bench.m->OpenChannel("bench-shared", ChannelOptions{}, &bench.shared_channel, &created) != Status::kOk) {
    std::fprintf(stderr, "throughput: OpenChannel failed\n");
    return 1;
  }

  // --- machine ---
  cpu_set_t set;
  CPU_ZERO(&set);
  const int affinity = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : -1;
  struct utsname un {};
  uname(&un);
  const std::string load_before = FirstLine("/proc/loadavg");

  std::printf("### Machine\n\n");
  std::printf("| | |\n|---|---|\n");
  std::printf("| CPU | %s |\n", CpuModel().c_str());
  std::printf("| online CPUs (nproc) | %ld (affinity mask: %d) |\n", sysconf(_SC_NPROCESSORS_ONLN), affinity);
  std::printf("| kernel | %s %s %s |\n", un.sysname, un.release, un.machine);
  std::printf("| compiler | %s (`%s`) |\n", ISOPOOL_BENCH_COMPILER, __VERSION__);
  std::printf("| flags | %s |\n", ISOPOOL_BENCH_FLAGS);
  std::printf("| /proc/loadavg at start | %s |\n", load_before.c_str());
  const PageCost pages = MeasurePages();
  std::printf("| write to a fresh 4 KiB page (mmap, write, munmap), per page | %.2f µs |\n", pages.fresh_us);
  std::printf("| write to a mapped, written page, per page | %.3f µs |\n", pages.reused_us);
  std::printf("| ops per thread per run | %llu |\n", static_cast<unsigned long long>(ops));
  std::printf("| repetitions (1T,2T pairs) | %llu |\n\n", static_cast<unsigned long long>(reps));
  std::fflush(stdout);

  struct Rows {
    std::vector<RunResult> one, two;
  };
  std::vector<Rows> rows(variants.size());
  const auto t_all = Clock::now();

  for (size_t vi = 0; vi < variants.size(); ++vi) {
    const Variant& v = variants[vi];
    // Warm-up (not reported): maps the slabs, fills the pools' free queues, faults pages in.
    bench.Run(v, 1, std::max<uint64_t>(ops / 10, 1000));
    bench.Run(v, 2, std::max<uint64_t>(ops / 10, 1000));
    for (uint64_t r = 0; r < reps; ++r) {
      for (int threads : {1, 2}) {
        const RunResult res = bench.Run(v, threads, ops);
        (threads == 1 ? rows[vi].one : rows[vi].two).push_back(res);
        std::fprintf(stderr, "%-22s rep %llu/%llu  %d thread(s): %8.2f M ops/s  (%.3f s, CPU/wall %.2f)%s\n",
                     v.name.c_str(), static_cast<unsigned long long>(r + 1), static_cast<unsigned long long>(reps),
                     threads, res.ops_per_s / 1e6, res.seconds, res.seconds > 0 ? res.cpu_s / res.seconds : 0,
                     res.ok ? "" : "  CHECK FAILED");
      }
    }
  }
  // Single owner: 1-thread runs of the default manager and of the single-owner one, interleaved.
  std::vector<Rows> single_rows(single_variants.size());  // one = default, two = single owner
  for (size_t vi = 0; vi < single_variants.size(); ++vi) {
    const Variant& v = single_variants[vi];
    bench.Run(v, 1, std::max<uint64_t>(ops / 10, 1000));  // warm-up, as above
    single.Run(v, 1, std::max<uint64_t>(ops / 10, 1000));
    for (uint64_t r = 0; r < reps; ++r) {
      for (Bench* b : {&bench, &single}) {
        const RunResult res = b->Run(v, 1, ops);
        (b == &bench ? single_rows[vi].one : single_rows[vi].two).push_back(res);
        std::fprintf(stderr, "%-24s rep %llu/%llu  %-12s: %8.2f M ops/s  (%.3f s)%s\n", v.name.c_str(),
                     static_cast<unsigned long long>(r + 1), static_cast<unsigned long long>(reps),
                     b == &bench ? "default" : "single owner", res.ops_per_s / 1e6, res.seconds,
                     res.ok ? "" : "  CHECK FAILED");
      }
    }
  }
  const double total_s = std::chrono::duration<double>(Clock::now() - t_all).count();

  // --- summary ---
  std::printf("### Results (M ops/s = millions of core calls per second, all threads together)\n\n");
  std::printf("| variant | channels | 1 thread, median | 2 threads, median | **ratio 2T/1T** | 1T min..max | "
              "2T min..max | ratio per pair min..max | CPU/wall 1T, 2T | ops per CPU-s, 2T/1T | checks |\n");
  std::printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
  for (size_t vi = 0; vi < variants.size(); ++vi) {
    const Variant& v = variants[vi];
    std::vector<double> one, two, pair, util1, util2, eff1, eff2;
    bool ok = true;
    for (size_t i = 0; i < rows[vi].one.size(); ++i) {
      const RunResult& a = rows[vi].one[i];
      const RunResult& b = rows[vi].two[i];
      one.push_back(a.ops_per_s);
      two.push_back(b.ops_per_s);
      pair.push_back(two.back() / one.back());
      util1.push_back(a.seconds > 0 ? a.cpu_s / a.seconds : 0);
      util2.push_back(b.seconds > 0 ? b.cpu_s / b.seconds : 0);
      eff1.push_back(a.cpu_s > 0 ? static_cast<double>(a.ops) / a.cpu_s : 0);
      eff2.push_back(b.cpu_s > 0 ? static_cast<double>(b.ops) / b.cpu_s : 0);
      ok = ok && rows[vi].one[i].ok && rows[vi].two[i].ok;
    }
    const double m1 = Median(one), m2 = Median(two);
    char ratio[32], prange[48], util[48], eff[32];
    std::snprintf(ratio, sizeof ratio, "%.2f", m1 > 0 ? m2 / m1 : 0);
    std::snprintf(util, sizeof util, "%.2f, %.2f", Median(util1), Median(util2));
    std::snprintf(eff, sizeof eff, "%.2f", Median(eff1) > 0 ? Median(eff2) / Median(eff1) : 0);
    std::snprintf(prange, sizeof prange, "%.2f..%.2f", *std::min_element(pair.begin(), pair.end()),
                  *std::max_element(pair.begin(), pair.end()));
    std::printf("| %s | %s | %s | %s | **%s** | %s..%s | %s..%s | %s | %s | %s | %s |\n", WorkloadName(v.work),
                SharingName(v.sharing), Mops(m1).c_str(), Mops(m2).c_str(), ratio,
                Mops(*std::min_element(one.begin(), one.end())).c_str(),
                Mops(*std::max_element(one.begin(), one.end())).c_str(),
                Mops(*std::min_element(two.begin(), two.end())).c_str(),
                Mops(*std::max_element(two.begin(), two.end())).c_str(), prange, util, eff,
                ok ? "ok" : "**FAILED**");
  }

  // --- single owner ---
  if (!single_variants.empty()) {
    std::printf("\n### Single-owner manager (1 thread)\n\n");
    std::printf("The same 1-thread workloads on a Manager created with `ManagerConfig::single_owner` (what the\n"
                "binding uses for a non-shared JS manager: hot-path atomics updated with plain loads and stores\n"
                "instead of locked read-modify-writes), interleaved with 1-thread runs of the default Manager.\n"
                "A pair is one Allocate + one Free (2 ops); ns per pair = 2 / (ops/s), medians.\n\n");
    std::printf("| variant | default, M ops/s | single owner, M ops/s | **default, ns per pair** | "
                "**single owner, ns per pair** | single/default time | default min..max ns | "
                "single min..max ns | checks |\n");
    std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (size_t vi = 0; vi < single_variants.size(); ++vi) {
      std::vector<double> d, o;
      bool ok = true;
      for (size_t i = 0; i < single_rows[vi].one.size(); ++i) {
        d.push_back(single_rows[vi].one[i].ops_per_s);
        o.push_back(single_rows[vi].two[i].ops_per_s);
        ok = ok && single_rows[vi].one[i].ok && single_rows[vi].two[i].ok;
      }
      auto ns = [](double ops_per_s) { return ops_per_s > 0 ? 2e9 / ops_per_s : 0; };
      const double md = Median(d), mo = Median(o);
      std::printf("| %s | %s | %s | **%.0f** | **%.0f** | %.2f | %.0f..%.0f | %.0f..%.0f | %s |\n",
                  single_variants[vi].name.c_str(), Mops(md).c_str(), Mops(mo).c_str(), ns(md), ns(mo),
                  md > 0 && mo > 0 ? ns(mo) / ns(md) : 0, ns(*std::max_element(d.begin(), d.end())),
                  ns(*std::min_element(d.begin(), d.end())), ns(*std::max_element(o.begin(), o.end())),
                  ns(*std::min_element(o.begin(), o.end())), ok ? "ok" : "**FAILED**");
    }
  }

  // --- raw runs ---
  std::printf("\n<details><summary>All runs (in execution order per variant)</summary>\n\n");
  std::printf("| variant | rep | threads | ops | wall s | CPU s | CPU/wall | M ops/s |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (size_t vi = 0; vi < variants.size(); ++vi) {
    for (size_t i = 0; i < rows[vi].one.size(); ++i) {
      for (const RunResult* r : {&rows[vi].one[i], &rows[vi].two[i]}) {
        std::printf("| %s | %zu | %d | %llu | %.3f | %.3f | %.2f | %s |\n", variants[vi].name.c_str(), i + 1,
                    r->threads, static_cast<unsigned long long>(r->ops), r->seconds, r->cpu_s,
                    r->seconds > 0 ? r->cpu_s / r->seconds : 0, Mops(r->ops_per_s).c_str());
      }
    }
  }
  for (size_t vi = 0; vi < single_variants.size(); ++vi) {
    for (size_t i = 0; i < single_rows[vi].one.size(); ++i) {
      for (const RunResult* r : {&single_rows[vi].one[i], &single_rows[vi].two[i]}) {
        std::printf("| %s (%s) | %zu | %d | %llu | %.3f | %.3f | %.2f | %s |\n", single_variants[vi].name.c_str(),
                    r == &single_rows[vi].one[i] ? "default" : "single owner", i + 1, r->threads,
                    static_cast<unsigned long long>(r->ops), r->seconds, r->cpu_s,
                    r->seconds > 0 ? r->cpu_s / r->seconds : 0, Mops(r->ops_per_s).c_str());
      }
    }
  }
  std::printf("\n</details>\n\n");
  const int failures = bench.failures + single.failures;
  std::printf("Measured in %.1f s; /proc/loadavg at end: %s. Correctness checks: %s.\n", total_s,
              FirstLine("/proc/loadavg").c_str(), failures == 0 ? "all passed" : "FAILED (see stderr)");

  bench.m->Unref();
  single.m->Unref();
  return failures == 0 ? 0 : 1;
}
