// Errors are values: every fallible step returns Result<T>, carrying a
// one-line, human-readable reason that names the syscall, path or key.
#pragma once

#include <string>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace airlock {

struct Error {
  std::string message;
};

// Builds an Error with fmt-style formatting.
template <typename... Args>
Error err(fmt::format_string<Args...> f, Args&&... args) {
  return Error{fmt::format(f, std::forward<Args>(args)...)};
}

// Error for a failed syscall: "what: strerror(errno)".
Error sys_err(const std::string& what, int errnum);
// Same, reading errno now.
Error sys_err(const std::string& what);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit on purpose
  Result(Error error) : v_(std::move(error)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& value() const& { return std::get<0>(v_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

// Propagate an error from an expression returning Result<...>.
#define AIRLOCK_TRY(expr)                          \
  do {                                             \
    auto airlock_try_r_ = (expr);                  \
    if (!airlock_try_r_) return airlock_try_r_.error(); \
  } while (0)

}  // namespace airlock
