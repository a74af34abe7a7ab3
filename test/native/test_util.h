// test_util.h — a tiny header-only test runner for the native core (no gtest).
//
//   TEST(name) { CHECK(cond) << "message"; CHECK_EQ(a, b) << "message"; }
//
// Every CHECK failure prints file:line, the expression, both values (CHECK_EQ)
// and the streamed message; the test continues, the binary exits 1. CHECKs are
// thread-safe (failure counter is atomic, printing takes a mutex).
// EnvU64("NAME", default) reads op counts from the environment.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace testing {

struct Registry {
  std::vector<std::pair<std::string, std::function<void()>>> tests;
  std::atomic<int> failures{0};
  std::mutex print_mu;
  static Registry& Get() {
    static Registry r;
    return r;
  }
};

struct Registrar {
  Registrar(const char* name, std::function<void()> fn) {
    Registry::Get().tests.emplace_back(name, std::move(fn));
  }
};

/// Collects the streamed message and reports on destruction (only when failed).
class Failure {
 public:
  Failure(const char* file, int line, std::string what) : file_(file), line_(line), what_(std::move(what)) {}
  ~Failure() {
    Registry& r = Registry::Get();
    r.failures.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(r.print_mu);
    std::cerr << file_ << ":" << line_ << ": CHECK failed: " << what_;
    const std::string msg = msg_.str();
    if (!msg.empty()) std::cerr << " -- " << msg;
    std::cerr << std::endl;
  }
  template <typename T>
  Failure& operator<<(const T& v) {
    msg_ << v;
    return *this;
  }

 private:
  const char* file_;
  int line_;
  std::string what_;
  std::ostringstream msg_;
};

template <typename A, typename B>
std::string Describe(const char* ea, const char* eb, const A& a, const B& b) {
  std::ostringstream os;
  os << ea << " == " << eb << " (" << +a << " vs " << +b << ")";
  return os.str();
}

inline uint64_t EnvU64(const char* name, uint64_t def) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == 0) return def;
  return std::strtoull(v, nullptr, 10);
}

inline double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// splitmix64: a fast deterministic PRNG for tests.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t Next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint64_t Below(uint64_t n) { return Next() % n; }
};

inline int RunAll() {
  Registry& r = Registry::Get();
  for (auto& t : r.tests) {
    const int before = r.failures.load();
    const auto t0 = std::chrono::steady_clock::now();
    std::cout << "[ RUN  ] " << t.first << std::endl;
    t.second();
    const bool ok = r.failures.load() == before;
    std::cout << (ok ? "[  OK  ] " : "[ FAIL ] ") << t.first << " (" << SecondsSince(t0) << " s)"
              << std::endl;
  }
  const int f = r.failures.load();
  std::cout << (f == 0 ? "ALL PASSED" : "FAILURES: ") << (f == 0 ? "" : std::to_string(f)) << std::endl;
  return f == 0 ? 0 : 1;
}

}  // namespace testing

#define TEST(name)                                                  \
  static void name();                                               \
  static ::testing::Registrar registrar_##name(#name, name);        \
  static void name()

#define CHECK(cond) \
  if (cond) {       \
  } else            \
    ::testing::Failure(__FILE__, __LINE__, #cond)

#define CHECK_EQ(a, b)                                                                      \
  if (auto check_pair_ = std::make_pair((a), (b)); check_pair_.first == check_pair_.second) { \
  } else                                                                                    \
    ::testing::Failure(__FILE__, __LINE__,                                                  \
                       ::testing::Describe(#a, #b, check_pair_.first, check_pair_.second))

#define TEST_MAIN() \
  int main() { return ::testing::RunAll(); }
