// /v1/admin/replays: blue/green rebuilds of the read models (projections/replay.hpp), for
// operators. A replay asked for here runs on a thread of this process and reports through its
// row in `replays`, which GET reads (so any process answers for it).

#include <cauce/api/json.hpp>
#include <cauce/api/problem.hpp>
#include <cauce/api/routes.hpp>
#include <cauce/core/log.hpp>

namespace cauce::api {
namespace {

const core::Logger& log() {
  static const core::Logger logger("replay");
  return logger;
}

std::optional<std::string> optional_string(const rapidjson::Value& body, const char* field) {
  if (!body.HasMember(field) || body[field].IsNull()) return std::nullopt;
  if (!body[field].IsString()) throw invalid_field(field, "must be a string");
  return std::string(body[field].GetString(), body[field].GetStringLength());
}

projections::ReplayRequest request_of(const Request& r) {
  projections::ReplayRequest request;
  request.projection = "all";
  request.requested_by = "api";
  if (r.principal) request.requested_by = "api:" + r.principal->actor;
  if (r.message.body().empty()) return request;
  const auto body = parse_json_object(r);
  reject_unknown_fields(body, {"projection", "from_offset", "from_time"});
  if (const auto projection = optional_string(body, "projection")) {
    request.projection = *projection;
  }
  const auto from_offset = optional_string(body, "from_offset");
  const auto from_time = optional_string(body, "from_time");
  if (from_offset && from_time) {
    throw invalid_field("from_time", "give from_offset or from_time, not both");
  }
  try {
    if (from_offset) {
      request.from.kind = projections::ReplayFrom::Kind::kOffsets;
      request.from.offsets = projections::parse_partition_offsets(*from_offset);
    } else if (from_time) {
      request.from.kind = projections::ReplayFrom::Kind::kTime;
      request.from.time = projections::parse_rfc3339(*from_time, "from_time");
    }
  } catch (const std::invalid_argument& e) {
    throw invalid_field(from_offset ? "from_offset" : "from_time", e.what());
  }
  return request;
}

Response replay_response(const Request& r, http::status status,
                         const projections::ReplayProgress& p) {
  auto response = json_response(r, status, projections::to_json(p));
  response.set(http::field::location, "/v1/admin/replays/" + p.id);
  return response;
}

}  // namespace

ReplayRunner::ReplayRunner(projections::ReplayOptions options) : options_(std::move(options)) {}

ReplayRunner::~ReplayRunner() {
  stop_ = true;
  if (worker_.joinable()) worker_.join();
}

projections::ReplayProgress ReplayRunner::start(projections::ReplayRequest request) {
  const std::lock_guard lock(mutex_);
  if (running_) throw projections::ReplayConflict("a replay is running in this process");
  if (worker_.joinable()) worker_.join();  // the last one finished
  auto replay = std::make_shared<projections::Replay>(options_, std::move(request));
  auto prepared = replay->prepared();
  running_ = true;
  worker_ = std::thread([this, replay] {
    try {
      replay->run([](const projections::ReplayProgress&) {}, stop_);
    } catch (const std::exception& e) {
      log().error("replay failed", {{"replay", replay->prepared().id}, {"error", e.what()}});
    }
    const std::lock_guard done(mutex_);
    running_ = false;
  });
  return prepared;
}

void add_replay_routes(Router& router, ReplayRunner& runner, const core::PostgresConfig& postgres,
                       BlockingExecutor run_blocking) {
  router.add_async(
      http::verb::post, "/v1/admin/replays", Role::kAdmin,
      [&runner, run_blocking](const std::shared_ptr<Request>& r, Responder respond) {
        auto request = request_of(*r);
        run_blocking([&runner, r, request = std::move(request), respond = std::move(respond)] {
          try {
            const auto prepared = runner.start(request);
            respond(replay_response(*r, http::status::accepted, prepared));
          } catch (const projections::ReplayConflict& e) {
            respond(problem_response(*r, std::make_exception_ptr(ApiError(
                                             http::status::conflict, "replay-running", e.what()))));
          } catch (const std::invalid_argument& e) {
            // The message starts with what it is about ("from-offset: …", "projection: …").
            const std::string what = e.what();
            const auto* field = what.starts_with("from-offset") ? "from_offset"
                                : what.starts_with("from-time") ? "from_time"
                                                                : "projection";
            respond(problem_response(*r, std::make_exception_ptr(invalid_field(field, what))));
          } catch (...) {
            respond(problem_response(*r, std::current_exception()));
          }
        });
      });

  router.add_async(http::verb::get, "/v1/admin/replays/{id}", Role::kAdmin,
                   [&postgres, run_blocking](const std::shared_ptr<Request>& r, Responder respond) {
                     const std::string id(r->path_param("id"));
                     run_blocking([&postgres, r, id, respond = std::move(respond)] {
                       try {
                         const auto p = projections::load_replay(postgres, id);
                         if (!p) {
                           throw ApiError(http::status::not_found, "not-found",
                                          "there is no replay " + id);
                         }
                         respond(replay_response(*r, http::status::ok, *p));
                       } catch (...) {
                         respond(problem_response(*r, std::current_exception()));
                       }
                     });
                   });
}

}  // namespace cauce::api
