// native/toolchains/musl-shims.cc — linked into the musl prebuilds only (native/toolchains/linux.cmake).
//
// GCC 12's libstdc++.a and libgcc_eh.a, linked statically, were compiled against glibc 2.36 and
// call three glibc functions that musl does not have. musl binds every symbol when a library
// loads, so one missing name would refuse the whole addon. Each is given a hidden definition
// here, built only from what musl does have:
//   _dl_find_object           the unwinder's lookup of the .eh_frame_hdr that covers a return
//                             address (every C++ throw): dl_iterate_phdr, as older unwinders did;
//   __cxa_thread_atexit_impl  destructors of thread_local objects (the statistics shards' exit
//                             hook): a pthread key whose destructor runs them at thread exit;
//   __getauxval               libgcc's check for arm64 LSE atomics: musl's getauxval.
// test/native runs the core's tests against these (scripts/prebuild.js --musl-tests).
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/auxv.h>

namespace {

/// glibc 2.35's `struct dl_find_object` (DLFO_STRUCT_HAS_EH_DBASE is 0 on x86_64 and aarch64).
struct DlFindObject {
  unsigned long long flags;
  void* map_start;
  void* map_end;
  void* link_map;
  void* eh_frame;
  unsigned long long reserved[7];
};

struct FindRequest {
  uintptr_t pc;
  DlFindObject* out;
  bool found;
};

int FindCallback(struct dl_phdr_info* info, size_t, void* data) {
  auto* request = static_cast<FindRequest*>(data);
  uintptr_t low = UINTPTR_MAX;
  uintptr_t high = 0;
  bool covers = false;
  const ElfW(Phdr)* eh_frame_hdr = nullptr;
  for (ElfW(Half) i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_GNU_EH_FRAME) eh_frame_hdr = &ph;
    if (ph.p_type != PT_LOAD) continue;
    const uintptr_t start = info->dlpi_addr + ph.p_vaddr;
    const uintptr_t end = start + ph.p_memsz;
    if (start < low) low = start;
    if (end > high) high = end;
    if (request->pc >= start && request->pc < end) covers = true;
  }
  if (!covers) return 0;
  request->out->flags = 0;
  request->out->map_start = reinterpret_cast<void*>(low);
  request->out->map_end = reinterpret_cast<void*>(high);
  request->out->link_map = nullptr;
  request->out->eh_frame =
      eh_frame_hdr == nullptr ? nullptr : reinterpret_cast<void*>(info->dlpi_addr + eh_frame_hdr->p_vaddr);
  request->found = true;
  return 1;
}

struct ThreadDtor {
  void (*dtor)(void*);
  void* object;
  ThreadDtor* next;
};

pthread_key_t dtor_key;
pthread_once_t dtor_key_once = PTHREAD_ONCE_INIT;

void RunThreadDtors(void* head) {
  // Registered last, destroyed first, as the C++ standard orders thread_local destructors. A
  // destructor may register more: the key is set again and they run on the next pass.
  auto* node = static_cast<ThreadDtor*>(head);
  while (node != nullptr) {
    ThreadDtor* next = node->next;
    node->dtor(node->object);
    free(node);
    node = next;
    if (node == nullptr) {
      node = static_cast<ThreadDtor*>(pthread_getspecific(dtor_key));
      pthread_setspecific(dtor_key, nullptr);
    }
  }
}

void MakeDtorKey() { pthread_key_create(&dtor_key, RunThreadDtors); }

}  // namespace

extern "C" {

__attribute__((visibility("hidden"))) int _dl_find_object(void* pc, DlFindObject* result) {
  FindRequest request{reinterpret_cast<uintptr_t>(pc), result, false};
  dl_iterate_phdr(FindCallback, &request);
  return request.found ? 0 : -1;
}

__attribute__((visibility("hidden"))) int __cxa_thread_atexit_impl(void (*dtor)(void*), void* object, void*) {
  pthread_once(&dtor_key_once, MakeDtorKey);
  auto* node = static_cast<ThreadDtor*>(malloc(sizeof(ThreadDtor)));
  if (node == nullptr) return -1;
  node->dtor = dtor;
  node->object = object;
  node->next = static_cast<ThreadDtor*>(pthread_getspecific(dtor_key));
  if (pthread_setspecific(dtor_key, node) != 0) {
    free(node);
    return -1;
  }
  return 0;
}

__attribute__((visibility("hidden"))) unsigned long __getauxval(unsigned long type) { return getauxval(type); }

}  // extern "C"
