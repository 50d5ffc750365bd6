// Status and Result<T>: error values at layer boundaries (no exceptions, no exit()).
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace pq {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // bad user input (flags, shapes a format cannot hold, ...)
  kNotFound,         // missing file / tensor
  kDataLoss,         // corrupt or truncated file
  kIoError,          // OS-level read/write failure
  kUnimplemented,
  kInternal,
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

  // Returns a copy whose message is "context: message".
  Status WithContext(const std::string& context) const {
    if (ok()) return *this;
    return Status(code_, context + ": " + message_);
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) {
  return Status(StatusCode::kInvalidArgument, std::move(m));
}
inline Status NotFound(std::string m) { return Status(StatusCode::kNotFound, std::move(m)); }
inline Status DataLoss(std::string m) { return Status(StatusCode::kDataLoss, std::move(m)); }
inline Status IoError(std::string m) { return Status(StatusCode::kIoError, std::move(m)); }
inline Status Unimplemented(std::string m) {
  return Status(StatusCode::kUnimplemented, std::move(m));
}
inline Status Internal(std::string m) { return Status(StatusCode::kInternal, std::move(m)); }

// Either a value or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: implicit by design

  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace pq

#define PQ_CONCAT_INNER(a, b) a##b
#define PQ_CONCAT(a, b) PQ_CONCAT_INNER(a, b)

// Returns the status from the enclosing function if `expr` is not ok.
#define PQ_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::pq::Status pq_status_ = (expr);        \
    if (!pq_status_.ok()) return pq_status_; \
  } while (0)

// `PQ_ASSIGN_OR_RETURN(auto x, F());` unwraps a Result or returns its status.
#define PQ_ASSIGN_OR_RETURN(lhs, expr) \
  PQ_ASSIGN_OR_RETURN_IMPL(PQ_CONCAT(pq_result_, __LINE__), lhs, expr)
#define PQ_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()
