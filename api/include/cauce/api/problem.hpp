#pragma once

#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include <cauce/api/http.hpp>

namespace cauce::api {

struct FieldError {
  std::string field;
  std::string message;
};

// An error a handler reports to the client as RFC 9457 problem+json. `slug` becomes the
// problem type `urn:cauce:problem:<slug>`.
class ApiError : public std::exception {
 public:
  ApiError(http::status status, std::string slug, std::string detail,
           std::vector<FieldError> errors = {})
      : status_(status),
        slug_(std::move(slug)),
        detail_(std::move(detail)),
        errors_(std::move(errors)) {}

  const char* what() const noexcept override { return detail_.c_str(); }
  http::status status() const noexcept { return status_; }
  const std::string& slug() const noexcept { return slug_; }
  const std::string& detail() const noexcept { return detail_; }
  const std::vector<FieldError>& errors() const noexcept { return errors_; }

  std::optional<int> retry_after_s;
  std::vector<std::pair<std::string, std::string>> headers;  // e.g. Allow for a 405
  // Extension members of the problem (RFC 9457 §3.2), e.g. current_version for a 412.
  std::vector<std::pair<std::string, std::int64_t>> extensions;

 private:
  http::status status_;
  std::string slug_;
  std::string detail_;
  std::vector<FieldError> errors_;
};

// 400 invalid input naming the field.
ApiError invalid_field(std::string field, std::string message);

// The one place where a failure becomes a response: ApiError as given, a retryable
// core::DependencyError as 503 + Retry-After, anything else as a 500 that reveals nothing
// (the exception is logged with the request id).
Response problem_response(const Request& request, std::exception_ptr error);

// Renders an ApiError (also used by the server for 413/431/400 before a Request exists).
Response render_problem(const ApiError& error, std::string_view request_id, unsigned version,
                        bool keep_alive);

}  // namespace cauce::api
