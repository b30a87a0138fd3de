// /v1/admin/parked: the projection's parked events (DESIGN §4), for operators. PostgreSQL work
// runs on the blocking executor, never on an I/O thread.

#include <charconv>

#include <cauce/api/json.hpp>
#include <cauce/api/problem.hpp>
#include <cauce/api/routes.hpp>
#include <cauce/projections/parked_events.hpp>

#include "query_params.hpp"

namespace cauce::api {
namespace {

using projections::ParkedEvent;
using projections::RetryResult;

void write_optional(JsonWriter& w, std::string_view key, const std::optional<std::string>& v) {
  w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
  if (v) {
    w.String(v->c_str(), static_cast<rapidjson::SizeType>(v->size()));
  } else {
    w.Null();
  }
}

void write_parked(JsonWriter& w, const ParkedEvent& e) {
  w.StartObject();
  w.Key("id");
  w.Int64(e.id);
  write_string(w, "projection", e.projection);
  w.Key("partition");
  w.Int(e.partition);
  w.Key("offset");
  w.Int64(e.offset);
  write_optional(w, "event_id", e.event_id);
  write_optional(w, "type", e.type);
  write_optional(w, "aggregate_type", e.aggregate_type);
  write_optional(w, "aggregate_id", e.aggregate_id);
  write_string(w, "error", e.error);
  write_optional(w, "sqlstate", e.sqlstate);
  w.Key("attempts");
  w.Int(e.attempts);
  write_string(w, "parked_at", e.parked_at);
  write_string(w, "last_attempt_at", e.last_attempt_at);
  write_string(w, "status", e.resolution.value_or("parked"));
  write_optional(w, "resolved_at", e.resolved_at);
  write_optional(w, "resolved_by", e.resolved_by);
  w.EndObject();
}

std::string text(const rapidjson::StringBuffer& buffer) {
  return {buffer.GetString(), buffer.GetSize()};
}

bool valid_parked_key(const std::string& key) {
  std::int64_t id = 0;
  const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
  return !key.empty() && ec == std::errc{} && end == key.data() + key.size() && id > 0;
}

std::int64_t parked_id(const Request& request) {
  const std::string id(request.path_param("id"));
  if (!valid_parked_key(id)) throw invalid_field("id", "must be a parked event id (an integer)");
  return std::stoll(id);
}

ApiError not_found(std::int64_t id) {
  return ApiError(http::status::not_found, "not-found",
                  "there is no parked event " + std::to_string(id));
}

// Runs `work` on the blocking executor and answers with what it returns or throws.
void off_io(const BlockingExecutor& run_blocking, const std::shared_ptr<Request>& request,
            Responder respond, std::function<Response()> work) {
  run_blocking([request, respond = std::move(respond), work = std::move(work)] {
    try {
      respond(work());
    } catch (...) {
      respond(problem_response(*request, std::current_exception()));
    }
  });
}

}  // namespace

void add_parked_routes(Router& router, projections::ParkedEvents& parked,
                       BlockingExecutor run_blocking) {
  router.add_async(
      http::verb::get, "/v1/admin/parked", Role::kAdmin,
      [&parked, run_blocking](const std::shared_ptr<Request>& r, Responder respond) {
        const auto params = query_params(r->message.target(), {"status", "limit", "cursor"});
        const auto status = params.contains("status") ? params.at("status") : "parked";
        if (status != "parked" && status != "all") {
          throw invalid_field("status", "must be parked (the default) or all");
        }
        const auto limit = page_limit(params);
        const std::int64_t after =
            params.contains("cursor")
                ? std::stoll(decode_cursor(params.at("cursor"), "parked", valid_parked_key))
                : 0;
        off_io(run_blocking, r, std::move(respond), [&parked, r, status, limit, after] {
          auto rows = parked.list(status == "all", after, limit + 1);
          const bool more = rows.size() > static_cast<std::size_t>(limit);
          if (more) rows.pop_back();
          rapidjson::StringBuffer buffer;
          JsonWriter w(buffer);
          w.StartObject();
          w.Key("items");
          w.StartArray();
          for (const auto& e : rows) write_parked(w, e);
          w.EndArray();
          w.Key("next_cursor");
          if (more) {
            const auto cursor = encode_cursor("parked", std::to_string(rows.back().id));
            w.String(cursor.c_str());
          } else {
            w.Null();
          }
          w.EndObject();
          return json_response(*r, http::status::ok, text(buffer));
        });
      });

  router.add_async(http::verb::get, "/v1/admin/parked/{id}", Role::kAdmin,
                   [&parked, run_blocking](const std::shared_ptr<Request>& r, Responder respond) {
                     query_params(r->message.target(), {});
                     const auto id = parked_id(*r);
                     off_io(run_blocking, r, std::move(respond), [&parked, r, id] {
                       const auto e = parked.get(id);
                       if (!e) throw not_found(id);
                       rapidjson::StringBuffer buffer;
                       JsonWriter w(buffer);
                       write_parked(w, *e);
                       return json_response(*r, http::status::ok, text(buffer));
                     });
                   });

  router.add_async(
      http::verb::post, "/v1/admin/parked/{id}/retry", Role::kAdmin,
      [&parked, run_blocking](const std::shared_ptr<Request>& r, Responder respond) {
        const auto id = parked_id(*r);
        off_io(run_blocking, r, std::move(respond), [&parked, r, id] {
          const auto result = parked.retry(id, r->principal->actor);
          using O = RetryResult::Outcome;
          switch (result.outcome) {
            case O::kNotFound:
              throw not_found(id);
            case O::kResolved:
              throw ApiError(http::status::conflict, "already-resolved",
                             "parked event " + std::to_string(id) + " was retried or skipped");
            case O::kBehindAnother: {
              ApiError e(http::status::conflict, "parked-behind-another",
                         "an earlier event of the same aggregate is parked: retry " +
                             std::to_string(result.blocking_id) + " first");
              e.extensions.emplace_back("blocking_id", result.blocking_id);
              throw e;
            }
            case O::kFailed: {
              ApiError e(
                  http::status::conflict, "still-fails",
                  "parked event " + std::to_string(id) + " still does not apply: " + result.error);
              throw e;
            }
            case O::kApplied:
              break;
          }
          rapidjson::StringBuffer buffer;
          JsonWriter w(buffer);
          w.StartObject();
          w.Key("id");
          w.Int64(id);
          write_string(w, "status", "retried");
          w.Key("applied");
          w.Uint64(result.applied);
          w.EndObject();
          return json_response(*r, http::status::ok, text(buffer));
        });
      });

  router.add_async(
      http::verb::post, "/v1/admin/parked/{id}/skip", Role::kAdmin,
      [&parked, run_blocking](const std::shared_ptr<Request>& r, Responder respond) {
        const auto id = parked_id(*r);
        off_io(run_blocking, r, std::move(respond), [&parked, r, id] {
          if (!parked.skip(id, r->principal->actor)) {
            if (parked.get(id)) {
              throw ApiError(http::status::conflict, "already-resolved",
                             "parked event " + std::to_string(id) + " was retried or skipped");
            }
            throw not_found(id);
          }
          return json_response(*r, http::status::ok,
                               R"({"id":)" + std::to_string(id) + R"(,"status":"skipped"})");
        });
      });
}

}  // namespace cauce::api
