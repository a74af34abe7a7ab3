# native/sources.cmake — the one definition of "core" vs "binding" sources, included by the
# addon build (CMakeLists.txt), the native tests (test/native) and the native benchmark
# (bench/native). Set ISOPOOL_ROOT (the repository root) before including it.
#
#   ISOPOOL_CORE_SOURCES     every native/*.cc except addon.cc and *_binding.cc (no Node-API)
#   ISOPOOL_BINDING_SOURCES  addon.cc and *_binding.cc (the only files that include napi.h)
file(GLOB ISOPOOL_ALL_SOURCES CONFIGURE_DEPENDS "${ISOPOOL_ROOT}/native/*.cc")
set(ISOPOOL_CORE_SOURCES ${ISOPOOL_ALL_SOURCES})
list(FILTER ISOPOOL_CORE_SOURCES EXCLUDE REGEX "/native/(addon|[A-Za-z0-9_]+_binding)\\.cc$")
set(ISOPOOL_BINDING_SOURCES ${ISOPOOL_ALL_SOURCES})
list(FILTER ISOPOOL_BINDING_SOURCES INCLUDE REGEX "/native/(addon|[A-Za-z0-9_]+_binding)\\.cc$")
if(NOT ISOPOOL_CORE_SOURCES)
  message(FATAL_ERROR "isopool: no core sources in ${ISOPOOL_ROOT}/native (expected native/*.cc besides the bindings)")
endif()
