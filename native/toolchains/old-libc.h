// native/toolchains/old-libc.h — force-included (-include) by native/toolchains/linux.cmake when the
// addon is built against an older C library than the one GCC 12's libstdc++ was configured for
// (glibc 2.17 for the glibc prebuilds, musl for the musl ones).
//
// libstdc++'s headers name a few pthread functions that glibc 2.30 added in inline members of
// classes isopool does not use (std::timed_mutex, std::shared_timed_mutex, condition_variable's
// steady-clock waits). Those members must still parse, so they are declared here. A binary that
// came to call one would import a symbol the old C library lacks: scripts/prebuild.js rejects
// that binary, so a declaration here can never turn into a load failure on a user's machine.
#ifndef ISOPOOL_TOOLCHAINS_OLD_LIBC_H_
#define ISOPOOL_TOOLCHAINS_OLD_LIBC_H_

#include <pthread.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif
int pthread_mutex_clocklock(pthread_mutex_t* mutex, clockid_t clock, const struct timespec* abstime);
int pthread_cond_clockwait(pthread_cond_t* cond, pthread_mutex_t* mutex, clockid_t clock,
                           const struct timespec* abstime);
int pthread_rwlock_clockrdlock(pthread_rwlock_t* rwlock, clockid_t clock, const struct timespec* abstime);
int pthread_rwlock_clockwrlock(pthread_rwlock_t* rwlock, clockid_t clock, const struct timespec* abstime);
#ifdef __cplusplus
}
#endif

#endif  // ISOPOOL_TOOLCHAINS_OLD_LIBC_H_
