// The one exception type of the C++ core. Bindings map ErrorCode to Python exceptions.
#pragma once

#include <stdexcept>
#include <string>

namespace picoface {

enum class ErrorCode {
  kInvalidArgument,  // caller passed something outside the documented contract
  kNotFound,         // a file or named item does not exist
  kUnsupported,      // valid request this build or CPU cannot serve
  kInternal,         // a broken invariant inside picoface
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

// Throws Error(kInvalidArgument, message) unless `condition` holds.
inline void require(bool condition, const std::string& message) {
  if (!condition) throw Error(ErrorCode::kInvalidArgument, message);
}

}  // namespace picoface
