#include <cauce/api/json.hpp>
#include <cauce/api/problem.hpp>
#include <cauce/core/errors.hpp>
#include <cauce/core/log.hpp>

namespace cauce::api {

ApiError invalid_field(std::string field, std::string message) {
  std::string detail = field + ": " + message;
  return ApiError(http::status::bad_request, "invalid-input", std::move(detail),
                  {{std::move(field), std::move(message)}});
}

Response render_problem(const ApiError& error, std::string_view request_id, unsigned version,
                        bool keep_alive) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  write_string(w, "type", "urn:cauce:problem:" + error.slug());
  write_string(w, "title", http::obsolete_reason(error.status()));
  w.Key("status");
  w.Uint(static_cast<unsigned>(error.status()));
  write_string(w, "detail", error.detail());
  write_string(w, "request_id", request_id);
  if (!error.errors().empty()) {
    w.Key("errors");
    w.StartArray();
    for (const auto& e : error.errors()) {
      w.StartObject();
      write_string(w, "field", e.field);
      write_string(w, "message", e.message);
      w.EndObject();
    }
    w.EndArray();
  }
  for (const auto& [name, value] : error.extensions) {
    w.Key(name.c_str());
    w.Int64(value);
  }
  w.EndObject();

  Response response(error.status(), version);
  response.set(http::field::content_type, "application/problem+json");
  response.set(http::field::cache_control, "no-store");
  response.set("X-Content-Type-Options", "nosniff");
  if (error.retry_after_s)
    response.set(http::field::retry_after, std::to_string(*error.retry_after_s));
  for (const auto& [name, value] : error.headers) response.set(name, value);
  response.keep_alive(keep_alive);
  response.body().assign(buffer.GetString(), buffer.GetSize());
  response.prepare_payload();
  return response;
}

Response problem_response(const Request& request, std::exception_ptr error) {
  static const core::Logger log("http");
  const auto version = request.message.version();
  const bool keep_alive = request.message.keep_alive();
  try {
    std::rethrow_exception(error);
  } catch (const ApiError& e) {
    return render_problem(e, request.request_id, version, keep_alive);
  } catch (const core::DependencyError& e) {
    log.warn("dependency unavailable", {{"request_id", request.request_id},
                                        {"client", request.client},
                                        {"dependency", e.dependency()},
                                        {"error", e.what()},
                                        {"trace_id", request.trace.trace_id()},
                                        {"span_id", request.trace.span_id()}});
    ApiError problem(http::status::service_unavailable, "dependency-unavailable",
                     e.dependency() + " is unavailable; try again shortly");
    problem.retry_after_s = e.is_retryable() ? 1 : 30;
    return render_problem(problem, request.request_id, version, keep_alive);
  } catch (const std::exception& e) {
    log.error("unhandled error", {{"request_id", request.request_id},
                                  {"client", request.client},
                                  {"error", e.what()},
                                  {"trace_id", request.trace.trace_id()},
                                  {"span_id", request.trace.span_id()}});
  } catch (...) {
    log.error("unhandled non-standard exception", {{"request_id", request.request_id},
                                                   {"client", request.client},
                                                   {"trace_id", request.trace.trace_id()},
                                                   {"span_id", request.trace.span_id()}});
  }
  return render_problem(ApiError(http::status::internal_server_error, "internal",
                                 "the server failed to handle this request; it was logged with "
                                 "the request id"),
                        request.request_id, version, keep_alive);
}

}  // namespace cauce::api
