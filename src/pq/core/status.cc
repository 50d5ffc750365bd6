#include "pq/core/status.h"

namespace pq {

std::string Status::ToString() const {
  if (ok()) return "OK";
  const char* name = "error";
  switch (code_) {
    case StatusCode::kOk:
      name = "ok";
      break;
    case StatusCode::kInvalidArgument:
      name = "invalid argument";
      break;
    case StatusCode::kNotFound:
      name = "not found";
      break;
    case StatusCode::kDataLoss:
      name = "corrupt input";
      break;
    case StatusCode::kIoError:
      name = "I/O error";
      break;
    case StatusCode::kUnimplemented:
      name = "unimplemented";
      break;
    case StatusCode::kInternal:
      name = "internal error";
      break;
  }
  return std::string(name) + ": " + message_;
}

}  // namespace pq
