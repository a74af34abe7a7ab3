// native/toolchains/musl.h — force-included (-include) by native/toolchains/linux.cmake for the
// musl prebuilds, after old-libc.h. GCC 12's libstdc++ headers were configured for glibc; these
// are the few glibc names they use that musl spells differently or lacks.
#ifndef ISOPOOL_TOOLCHAINS_MUSL_H_
#define ISOPOOL_TOOLCHAINS_MUSL_H_

#include <locale.h>

// os_defines.h tests glibc versions: musl is none of them.
#ifndef __GLIBC_PREREQ
#define __GLIBC_PREREQ(major, minor) 0
#endif

// c++locale.h's "gnu" locale model names glibc's internal spelling of locale_t.
typedef locale_t __locale_t;

#endif  // ISOPOOL_TOOLCHAINS_MUSL_H_
