# native/sources.cmake — the one definition of "core" vs "binding" sources, included by the
# addon build (CMakeLists.txt), the native tests (test/native) and the native benchmark
# (bench/native). Set ISOPOOL_ROOT (the repository root) before including it.
#
#   ISOPOOL_CORE_SOURCES     native/core/*.cc (no Node-API)
#   ISOPOOL_CORE_INCLUDE     native/core, the core's headers
#   ISOPOOL_BINDING_SOURCES  native/binding/*.cc (the only files that include napi.h)
file(GLOB ISOPOOL_CORE_SOURCES CONFIGURE_DEPENDS "${ISOPOOL_ROOT}/native/core/*.cc")
file(GLOB ISOPOOL_BINDING_SOURCES CONFIGURE_DEPENDS "${ISOPOOL_ROOT}/native/binding/*.cc")
set(ISOPOOL_CORE_INCLUDE "${ISOPOOL_ROOT}/native/core")
if(NOT ISOPOOL_CORE_SOURCES)
  message(FATAL_ERROR "isopool: no core sources in ${ISOPOOL_ROOT}/native/core")
endif()
