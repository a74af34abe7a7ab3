// hardening.h — hardened mode: the one place that says what it does and costs.
//
// Glossary
//   hardened   a manager created with ManagerConfig::hardened (JS: `{ hardened: true }`),
//              or every manager of a build compiled with -DISOPOOL_HARDENED=1
//              (mimalloc's MI_SECURE idea: one switch, no scattered #ifdefs).
//              Everything below is off in a default manager of a default build.
//   tail       kCanaryBytes reserved right after the requested extent, inside
//              the slot: [data + size, data + size + kCanaryBytes).
//   canary     the tail's content: two 64-bit words keyed by a per-manager
//              secret and the tail's address, so a stray write of any constant
//              pattern (zeros, 0x41...) is detected with P(miss) = 2^-128.
//   guard      one PROT_NONE system page before and after every slab and every
//              direct mapping: a sequential native overrun (or underrun) past
//              a mapping faults (SIGSEGV) instead of reaching a neighbour mapping.
//   poison     kPoisonByte written over a slot's dirty extent when it is freed,
//              so a slot's old bytes are gone the moment it leaves its handle.
//
// What hardened mode does
//   * Pool choice reserves the tail: a request of `size` bytes is served by the
//     smallest class with slot_size >= size + kCanaryBytes, else direct, mapped
//     and charged RoundUp(size + kCanaryBytes, 4 KiB). So a 4096-byte request
//     takes a 64 KiB slot with the default pools. Charges follow the slot, as
//     in default mode (SPEC §1: a channel is charged the slot bytes it occupies).
//   * Allocate writes the canary; Validate (manager and the owner's scope; a
//     foreign scope gets CROSS_CHANNEL only) and every free (Free, CloseChannel)
//     check it. A damaged canary is CANARY_CORRUPTED, counted against the
//     handle's owner channel; found by CloseChannel, against the unscoped domain
//     (the closing channel's counters end with it). Handles reclaimed at a
//     thread's exit (ReclaimEnv) are poisoned but their canary is not checked.
//   * Free of a handle whose canary is damaged STILL FREES IT (kOk, the
//     facade's deallocateResource returns true) and reports the violation in
//     the free's violation mask (a 'violation' event). Refusing would leave a
//     handle nobody can release and charge the channel forever; the slot's
//     bytes are poisoned and, for another owner, zeroed before reuse anyway.
//     The violation counter is the signal: something wrote past the requested
//     extent of that handle (a native bug, or view-mode code using buf.buffer).
//   * Guard pages around each slab and direct mapping (not between the slots
//     of one slab: the canary covers intra-slab overruns that hit the tail).
//   * Poison on free over [0, dirty) (at least size + tail; the whole slot for
//     view mode), in addition to, not instead of, the zeroing rules of the
//     channel's zero mode: a slot going to another owner is still zeroed, a
//     slot reused by the same owner in 'cross-channel' mode shows poison, not
//     the previous allocation's bytes. Direct mappings are unmapped on free,
//     so they need no poison.
//
// Costs
//   * Memory: requests within kCanaryBytes of a class size move up one class.
//   * Address space, not memory: 2 guard pages per slab / direct mapping.
//     Guard pages are PROT_NONE and never touched, so the kernel backs them
//     with no memory; reserved_bytes (metrics reservedBytes) counts only the
//     usable mapping, exactly as in default mode, and each guarded mapping
//     costs up to 2 extra VMAs (vm.max_map_count, 65,530 by default).
//   * Time: a canary write per allocation, a canary check per validate and per
//     free, a memset of the dirty extent per free. Validate reads the canary
//     under the slab registry's mutex (the "pin": no slab is unmapped meanwhile),
//     and a free poisons under the same pin, so a racing Validate's read is
//     ordered before the poison and every later owner's writes. Validation and
//     pooled frees are therefore no longer lock-free in hardened mode.
//
// What hardened mode does not do
//   * Canaries are not secret from code that can read the slot: view-mode code
//     can read them through buf.buffer. They detect accidental overruns (and
//     blind writes), not a deliberate attacker who can read the canary first.
//   * Writes past the requested extent that stay inside the tail's slot but
//     skip the tail, or land in the next slot of the same slab, are only caught
//     if they touch the tail; guard pages only catch writes that leave the slab.
#pragma once

#include <cstdint>
#include <cstring>

#include "types.h"

#ifndef ISOPOOL_HARDENED
#define ISOPOOL_HARDENED 0  ///< build level: 1 makes every manager hardened
#endif

namespace isopool {

constexpr bool kHardenedBuild = ISOPOOL_HARDENED != 0;
constexpr uint64_t kCanaryBytes = 16;     ///< tail length, bytes
constexpr uint8_t kPoisonByte = 0xDF;     ///< fill of freed slots (hardened)
constexpr uint64_t kGuardBytes = 4096;    ///< PROT_NONE bytes on each side of a mapping
static_assert(kCanaryBytes % sizeof(uint64_t) == 0, "the canary is whole 64-bit words");

/// What a manager's hardened level switches on. One instance per manager, fixed at creation.
struct Hardening {
  bool canaries = false;     ///< tail after every memory allocation, checked on validate/free
  bool guard_pages = false;  ///< PROT_NONE page on each side of every mapping
  bool poison = false;       ///< kPoisonByte over a slot's dirty extent on free
  uint64_t secret = 0;       ///< keys the canary

  /// The level for a manager created with `hardened` (or any manager of a hardened build).
  static Hardening For(bool hardened, uint64_t secret) noexcept {
    Hardening h;
    const bool on = hardened || kHardenedBuild;
    h.canaries = h.guard_pages = h.poison = on;
    h.secret = on ? secret : 0;
    return h;
  }

  /// Bytes reserved after the requested extent: kCanaryBytes or 0.
  uint64_t Tail() const noexcept { return canaries ? kCanaryBytes : 0; }

  /// The canary for a tail at `at`: two keyed 64-bit words.
  void Canary(const uint8_t* at, uint64_t words[2]) const noexcept {
    const uint64_t a = reinterpret_cast<uintptr_t>(at);
    words[0] = Mix64(a ^ secret);
    words[1] = Mix64(words[0] ^ (secret >> 17 | secret << 47));
  }

  /// Writes the canary at `at` (kCanaryBytes, any alignment). No-op without canaries.
  void WriteCanary(uint8_t* at) const noexcept {
    if (!canaries) return;
    uint64_t words[2];
    Canary(at, words);
    std::memcpy(at, words, kCanaryBytes);
  }

  /// True if the canary at `at` is intact (or canaries are off).
  bool CanaryIntact(const uint8_t* at) const noexcept {
    if (!canaries) return true;
    uint64_t want[2], have[2];
    Canary(at, want);
    std::memcpy(have, at, kCanaryBytes);
    return have[0] == want[0] && have[1] == want[1];
  }

  /// Poisons `n` bytes at `data`. No-op without poisoning.
  void Poison(uint8_t* data, uint64_t n) const noexcept {
    if (poison && n > 0) std::memset(data, kPoisonByte, n);
  }
};

}  // namespace isopool
