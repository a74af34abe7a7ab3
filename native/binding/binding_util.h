// binding_util.h — shared by the Node-API binding files (native/binding/).
//
// Only the binding includes napi.h. These helpers do two things and nothing
// more: read JS primitives without throwing (the hot methods answer a wrong
// type with a status number), and turn a core `Status` into a JS error that
// carries the SPEC.md §4 `code`.
//
// Built with NAPI_CPP_EXCEPTIONS: a thrown Napi::Error becomes a JS exception
// at the method boundary (ObjectWrap catches it).
#pragma once

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "status.h"

namespace isopool {
namespace binding {

// --- one InitX per concept; addon.cc calls each once per environment ---------
/// Adds the NativeManager class to `exports` (manager_binding.cc).
void InitManager(Napi::Env env, Napi::Object exports);

// --- statuses ------------------------------------------------------------------
/// The SPEC.md §4 code of a status ("ERR_OK" for kOk).
inline const char* StatusCode(Status status) noexcept {
  switch (status) {
    case Status::kOk: return "ERR_OK";
    case Status::kInvalidArgument: return "ERR_INVALID_ARGUMENT";
    case Status::kInvalidSize: return "ERR_INVALID_SIZE";
    case Status::kUnknownType: return "ERR_UNKNOWN_RESOURCE_TYPE";
    case Status::kUnknownChannel: return "ERR_UNKNOWN_CHANNEL";
    case Status::kChannelClosed: return "ERR_CHANNEL_CLOSED";
    case Status::kResourceLimit: return "ERR_RESOURCE_LIMIT";
    case Status::kPoolExhausted: return "ERR_POOL_EXHAUSTED";
    case Status::kInvalidHandle: return "ERR_INVALID_HANDLE";
    case Status::kStaleHandle: return "ERR_STALE_HANDLE";
    case Status::kIsolationViolation: return "ERR_ISOLATION_VIOLATION";
    case Status::kManagerClosed: return "ERR_MANAGER_CLOSED";
    case Status::kHandleTableFull: return "ERR_HANDLE_TABLE_FULL";
    // Internal: the engine syncs its lane and asks again. A refusal by a limit if it surfaced.
    case Status::kParkedCharges: return "ERR_RESOURCE_LIMIT";
  }
  return "ERR_INVALID_ARGUMENT";
}

/// A JS Error for `status` with `code` set; throw it.
inline Napi::Error StatusError(Napi::Env env, Status status, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, StatusCode(status)));
  return error;
}

/// A JS TypeError with code ERR_INVALID_ARGUMENT (a binding misuse); throw it.
inline Napi::Error ArgumentTypeError(Napi::Env env, const std::string& message) {
  Napi::Error error = Napi::TypeError::New(env, message);
  error.Set("code", Napi::String::New(env, StatusCode(Status::kInvalidArgument)));
  return error;
}

/// Numeric value of a status as it crosses into JS (lib/native/binding.ts NativeStatus).
inline double StatusNumber(Status status) noexcept {
  return static_cast<double>(static_cast<int32_t>(status));
}

// --- primitives ------------------------------------------------------------------
constexpr double kMaxSafeInteger = 9007199254740991.0;  ///< 2^53 - 1

/// Reads a JS number. False (and no pending exception) if `value` is not one.
inline bool ReadDouble(napi_env env, napi_value value, double* out) noexcept {
  return napi_get_value_double(env, value, out) == napi_ok;
}

/// True if `d` is an integer in [lo, hi].
inline bool IsIntegerIn(double d, double lo, double hi) noexcept {
  return d >= lo && d <= hi && std::trunc(d) == d;
}

/// Reads an int32 index (type, channel, presenter, enum value). False if
/// `value` is not a number or not an integer in int32 range.
inline bool ReadInt32(napi_env env, napi_value value, int32_t* out) noexcept {
  double d;
  if (!ReadDouble(env, value, &d) || !IsIntegerIn(d, -2147483648.0, 2147483647.0)) return false;
  *out = static_cast<int32_t>(d);
  return true;
}

/// Reads a JS boolean; `false` for anything that is not `true`.
inline bool ReadFlag(napi_env env, napi_value value) noexcept {
  bool b = false;
  return napi_get_value_bool(env, value, &b) == napi_ok && b;
}

}  // namespace binding
}  // namespace isopool
