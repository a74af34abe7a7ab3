# native/toolchains/linux.cmake — a CMake toolchain file for the four Linux prebuilds, all built
# on one x86_64 Debian host (scripts/prebuild.js --all; scripts/toolchains.sh installs the tools).
#
#   -DISOPOOL_TARGET=linux-x64 | linux-arm64 | linux-x64-musl | linux-arm64-musl
#   -DISOPOOL_SYSROOT=<dir>     glibc targets only: a sysroot with an old glibc (2.17), so that
#                               the binary asks for no symbol version newer than that.
#
# Compilers: Debian's GCC 12 (g++ for x64, g++-aarch64-linux-gnu for arm64). Their C++ headers
# are used as they are; the C headers and the C library come from the sysroot (glibc) or from
# Debian's musl-dev (musl). libstdc++ and libgcc are linked statically into the addon in every
# target, so the binary needs no libstdc++ of any particular age on the user's machine, and a musl
# binary needs none at all.
#
# For musl the C library is swapped under GCC by hand (-nostdinc / -nostdlib and the musl
# headers, start files and libc.so). libstdc++.a was built against glibc: scripts/prebuild.js
# checks that every symbol the finished binary imports (other than Node-API's) is one that
# musl's libc.so defines, and that it needs no library but musl's.
if(NOT ISOPOOL_TARGET)
  message(FATAL_ERROR "isopool toolchain: set -DISOPOOL_TARGET (linux-x64, linux-arm64, linux-x64-musl, linux-arm64-musl)")
endif()
# try_compile projects get these too.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES ISOPOOL_TARGET ISOPOOL_SYSROOT)

set(CMAKE_SYSTEM_NAME Linux)
if(ISOPOOL_TARGET MATCHES "^linux-x64")
  set(CMAKE_SYSTEM_PROCESSOR x86_64)
  set(_triple x86_64-linux-gnu)
  set(CMAKE_C_COMPILER gcc)
  set(CMAKE_CXX_COMPILER g++)
  set(_gcc_lib /usr/lib/gcc/x86_64-linux-gnu/12)
  set(_cxx_inc /usr/include/c++/12 /usr/include/x86_64-linux-gnu/c++/12)
elseif(ISOPOOL_TARGET MATCHES "^linux-arm64")
  set(CMAKE_SYSTEM_PROCESSOR aarch64)
  set(_triple aarch64-linux-gnu)
  set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
  set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
  set(_gcc_lib /usr/lib/gcc-cross/aarch64-linux-gnu/12)
  set(_cxx_inc /usr/aarch64-linux-gnu/include/c++/12 /usr/aarch64-linux-gnu/include/c++/12/aarch64-linux-gnu)
else()
  message(FATAL_ERROR "isopool toolchain: unknown ISOPOOL_TARGET '${ISOPOOL_TARGET}'")
endif()

set(_static_runtime "-static-libstdc++ -static-libgcc")
set(_compat "-include ${CMAKE_CURRENT_LIST_DIR}/old-libc.h")

if(ISOPOOL_TARGET MATCHES "-musl$")
  string(REPLACE "-gnu" "-musl" _musl_triple "${_triple}")
  set(_musl_inc /usr/include/${_musl_triple})
  set(_musl_lib /usr/lib/${_musl_triple})
  if(NOT EXISTS "${_musl_lib}/libc.so")
    message(FATAL_ERROR "isopool toolchain: ${_musl_lib}/libc.so is missing (Debian musl-dev for ${CMAKE_SYSTEM_PROCESSOR}; scripts/toolchains.sh)")
  endif()
  set(_inc "")
  foreach(dir IN LISTS _cxx_inc)
    string(APPEND _inc " -isystem ${dir}")
  endforeach()
  string(APPEND _inc " -isystem ${_gcc_lib}/include -isystem ${_musl_inc}")
  set(CMAKE_C_FLAGS_INIT "-nostdinc${_inc}")
  set(CMAKE_CXX_FLAGS_INIT "-nostdinc${_inc} ${_compat} -include ${CMAKE_CURRENT_LIST_DIR}/musl.h")
  # Start files: musl's crti/crtn around GCC's crtbeginS/crtendS, as GCC itself orders them.
  set(CMAKE_SHARED_LINKER_FLAGS_INIT
      "-nostdlib ${_musl_lib}/crti.o ${_gcc_lib}/crtbeginS.o -L${_musl_lib} -Wl,--hash-style=both")
  set(CMAKE_MODULE_LINKER_FLAGS_INIT "${CMAKE_SHARED_LINKER_FLAGS_INIT}")
  set(CMAKE_EXE_LINKER_FLAGS_INIT
      "-nostdlib ${_musl_lib}/Scrt1.o ${_musl_lib}/crti.o ${_gcc_lib}/crtbeginS.o -L${_musl_lib} -Wl,-dynamic-linker,/lib/ld-musl-${CMAKE_SYSTEM_PROCESSOR}.so.1")
  set(CMAKE_CXX_STANDARD_LIBRARIES
      "${_gcc_lib}/libstdc++.a ${_gcc_lib}/libgcc_eh.a ${_gcc_lib}/libgcc.a -lc ${_gcc_lib}/libgcc.a ${_gcc_lib}/crtendS.o ${_musl_lib}/crtn.o")
  set(CMAKE_C_STANDARD_LIBRARIES "${CMAKE_CXX_STANDARD_LIBRARIES}")
  set(CMAKE_FIND_ROOT_PATH "${_musl_lib}")
else()
  if(NOT ISOPOOL_SYSROOT OR NOT EXISTS "${ISOPOOL_SYSROOT}/usr/include/stdio.h")
    message(FATAL_ERROR "isopool toolchain: -DISOPOOL_SYSROOT must name a glibc sysroot (scripts/toolchains.sh fetches one)")
  endif()
  set(CMAKE_SYSROOT "${ISOPOOL_SYSROOT}")
  # GCC also searches its own install's library directories, which hold the host's glibc: the
  # sysroot's directories go first, for the libraries and the start files (-B).
  set(_libdirs "")
  foreach(dir usr/lib64 lib64 usr/lib lib)
    if(IS_DIRECTORY "${ISOPOOL_SYSROOT}/${dir}")
      string(APPEND _libdirs " -B${ISOPOOL_SYSROOT}/${dir} -L${ISOPOOL_SYSROOT}/${dir}")
    endif()
  endforeach()
  # GCC 12's libstdc++.a (C++17), not the sysroot's older one; libgcc stays shared (libgcc_s.so.1,
  # which every glibc system has): GCC 12's static unwinder calls _dl_find_object (glibc 2.35).
  set(_static_runtime "-static-libstdc++ -L${_gcc_lib}${_libdirs}")
  set(_inc "")
  foreach(dir IN LISTS _cxx_inc)
    string(APPEND _inc " -isystem ${dir}")
  endforeach()
  set(CMAKE_CXX_FLAGS_INIT "${_inc} ${_compat}")
  set(CMAKE_SHARED_LINKER_FLAGS_INIT "${_static_runtime}")
  set(CMAKE_MODULE_LINKER_FLAGS_INIT "${_static_runtime}")
  set(CMAKE_EXE_LINKER_FLAGS_INIT "${_static_runtime}")
  set(CMAKE_FIND_ROOT_PATH "${ISOPOOL_SYSROOT}")
endif()

# Read by CMakeLists.txt: sources only the prebuilds link.
set(ISOPOOL_PREBUILD_SOURCES "${CMAKE_CURRENT_LIST_DIR}/old-libc-shims.cc")
if(ISOPOOL_TARGET MATCHES "-musl$")
  list(APPEND ISOPOOL_PREBUILD_SOURCES "${CMAKE_CURRENT_LIST_DIR}/musl-shims.cc")
endif()
# The static runtime stays private to the addon: none of libstdc++'s symbols are exported.
string(APPEND CMAKE_SHARED_LINKER_FLAGS_INIT " -Wl,--exclude-libs,ALL")
string(APPEND CMAKE_MODULE_LINKER_FLAGS_INIT " -Wl,--exclude-libs,ALL")

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
