// The command routes of API.md. Each one validates its body against schemas/, turns the request
// into a CommandEnvelope (ids, expected version, time, actor, request hash), sends it through
// the CommandBus and answers from the processor's reply without holding an I/O thread.

#include <algorithm>
#include <chrono>

#include <cauce/api/json.hpp>
#include <cauce/api/problem.hpp>
#include <cauce/api/routes.hpp>
#include <cauce/commands/recurrence.hpp>
#include <cauce/commands/schemas.hpp>
#include <cauce/core/crypto.hpp>
#include <cauce/core/log.hpp>
#include <cauce/core/time_zone.hpp>
#include <cauce/workers/source_auth.hpp>

#include "query_params.hpp"

namespace cauce::api {
namespace {

using commands::CommandEnvelope;
using commands::Reply;
using commands::ReplyOutcome;

constexpr std::size_t kMaxCorrelationId = 200;

const core::Logger& log() {
  static const core::Logger logger("http");
  return logger;
}

// What the success response of a command looks like.
enum class Answer {
  kIdVersion,        // {id, version}
  kIdCallIdVersion,  // {id, call_id, version}
  kJobAccepted,      // {id, status: "requested", version}
  kClaim,            // {id, claimed_by, claimed_until, version}
};

struct CommandRoute {
  http::verb method;
  const char* pattern;
  Role role;
  const char* type;            // "contact.register"; its body schema is "<type>.v1"
  const char* aggregate_type;  // "contact"
  const char* collection;      // "/v1/contacts": Location of a created aggregate
  http::status success;
  Answer answer;
  bool creates;  // the aggregate id is chosen here (or by the client's "id"), not in the path
};

const std::vector<CommandRoute>& command_routes() {
  using enum http::verb;
  using S = http::status;
  static const std::vector<CommandRoute> routes = {
      {post, "/v1/contacts", Role::kOperator, "contact.register", "contact", "/v1/contacts",
       S::created, Answer::kIdVersion, true},
      {patch, "/v1/contacts/{id}", Role::kOperator, "contact.update", "contact", nullptr, S::ok,
       Answer::kIdVersion, false},
      {post, "/v1/contacts/{id}/calls", Role::kOperator, "contact.log_call", "contact", nullptr,
       S::created, Answer::kIdCallIdVersion, false},
      {post, "/v1/contacts/{id}/assign", Role::kOperator, "contact.assign", "contact", nullptr,
       S::ok, Answer::kIdVersion, false},
      {post, "/v1/contacts/{id}/archive", Role::kOperator, "contact.archive", "contact", nullptr,
       S::ok, Answer::kIdVersion, false},
      {post, "/v1/contacts/{id}/claim", Role::kOperator, "contact.claim", "contact", nullptr, S::ok,
       Answer::kClaim, false},
      {post, "/v1/contacts/{id}/release", Role::kOperator, "contact.release", "contact", nullptr,
       S::ok, Answer::kIdVersion, false},
      {post, "/v1/alerts", Role::kOperator, "alert.raise", "alert", "/v1/alerts", S::created,
       Answer::kIdVersion, true},
      {post, "/v1/alerts/{id}/acknowledge", Role::kOperator, "alert.acknowledge", "alert", nullptr,
       S::ok, Answer::kIdVersion, false},
      {post, "/v1/alerts/{id}/escalate", Role::kOperator, "alert.escalate", "alert", nullptr, S::ok,
       Answer::kIdVersion, false},
      {post, "/v1/alerts/{id}/close", Role::kOperator, "alert.close", "alert", nullptr, S::ok,
       Answer::kIdVersion, false},
      {post, "/v1/reports", Role::kOperator, "report.request", "report", "/v1/reports", S::accepted,
       Answer::kJobAccepted, true},
      {post, "/v1/reports/{id}/retry", Role::kOperator, "report.retry", "report", nullptr,
       S::accepted, Answer::kJobAccepted, false},
      {post, "/v1/backups", Role::kAdmin, "backup.request", "backup", nullptr, S::accepted,
       Answer::kJobAccepted, true},
      {post, "/v1/backups/{id}/retry", Role::kAdmin, "backup.retry", "backup", nullptr, S::accepted,
       Answer::kJobAccepted, false},
      {post, "/v1/webhooks/{id}/enable", Role::kAdmin, "webhook.enable", "webhook", nullptr, S::ok,
       Answer::kIdVersion, false},
  };
  return routes;
}

// Scheduled reports (issue 16, part 3): the schedules' command routes. What only the server
// knows is checked before the command is sent (add_schedule_routes): the time zone exists, the
// secret is configured, `every` is not below reports.schedule_min_every_s.
const std::vector<CommandRoute>& schedule_routes() {
  using enum http::verb;
  using S = http::status;
  static const std::vector<CommandRoute> routes = {
      {post, "/v1/report-schedules", Role::kOperator, "report_schedule.create", "report_schedule",
       "/v1/report-schedules", S::created, Answer::kIdVersion, true},
      {patch, "/v1/report-schedules/{id}", Role::kOperator, "report_schedule.update",
       "report_schedule", nullptr, S::ok, Answer::kIdVersion, false},
      {delete_, "/v1/report-schedules/{id}", Role::kOperator, "report_schedule.delete",
       "report_schedule", nullptr, S::ok, Answer::kIdVersion, false},
  };
  return routes;
}

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string json_text(const rapidjson::Value& value) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  value.Accept(w);
  return {buffer.GetString(), buffer.GetSize()};
}

// The body as a JSON object; an empty body counts as {} (e.g. POST .../archive).
rapidjson::Document body_of(const Request& request) {
  if (request.message.body().empty()) {
    rapidjson::Document empty;
    empty.SetObject();
    return empty;
  }
  return parse_json_object(request);
}

std::string correlation_id(const Request& request) {
  const auto it = request.message.find("X-Correlation-Id");
  if (it != request.message.end()) {
    const std::string_view value = it->value();
    const bool printable =
        std::all_of(value.begin(), value.end(), [](char c) { return c > 0x20 && c < 0x7f; });
    if (value.empty() || value.size() > kMaxCorrelationId || !printable) {
      throw invalid_field("X-Correlation-Id", "must be 1 to 200 printable ASCII characters");
    }
    return std::string(value);
  }
  return commands::uuid_v7(now_us() / 1000);
}

CommandEnvelope envelope_for(const CommandRoute& route, const Request& request) {
  auto body = body_of(request);
  const std::string type = route.type;
  if (const auto violation = commands::SchemaRegistry::instance().validate(type + ".v1", body)) {
    throw invalid_field(violation->field, violation->message);
  }
  const auto& principal = *request.principal;
  CommandEnvelope c;
  c.type = type;
  c.aggregate_type = route.aggregate_type;
  c.expected_version = expected_version(request);
  c.issued_at_us = now_us();
  c.actor = principal.actor;
  c.correlation_id = correlation_id(request);
  c.trace_parent = request.trace;
  const auto key = idempotency_key(request);
  // The same key from the same API key is the same command, forever (the processor keeps
  // every applied command id).
  c.command_id = key ? commands::uuid_from_name("idempotency\n" + principal.key_id + "\n" + *key)
                     : commands::uuid_v7(c.issued_at_us / 1000);
  // The target as the route reads it: ids in any case are the same id (path_uuid).
  std::string target(request.message.target());
  std::transform(target.begin(), target.end(), target.begin(),
                 [](char ch) { return ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch + 32) : ch; });
  c.request_hash =
      core::sha256_hex(std::string(http::to_string(request.message.method())) + " " + target +
                       "\n" + (c.expected_version ? std::to_string(*c.expected_version) : "") +
                       "\n" + request.message.body());
  if (route.creates) {
    if (const auto it = body.FindMember("id"); it != body.MemberEnd()) {
      c.aggregate_id.assign(it->value.GetString(), it->value.GetStringLength());
      body.RemoveMember(it);
    } else if (key) {
      // A retry with the same key must target the same aggregate.
      c.aggregate_id =
          commands::uuid_from_name(std::string(route.aggregate_type) + "\n" + c.command_id);
    } else {
      c.aggregate_id = commands::uuid_v7(c.issued_at_us / 1000);  // time-ordered
    }
  } else {
    c.aggregate_id = path_uuid(request);
  }
  if (c.type == "contact.log_call") {
    const auto call_id = commands::uuid_from_name("call\n" + c.command_id);
    body.AddMember("call_id", rapidjson::Value(call_id.c_str(), body.GetAllocator()),
                   body.GetAllocator());
  }
  c.data = json_text(body);
  return c;
}

ApiError rejection_error(const Reply& reply) {
  if (reply.outcome == ReplyOutcome::kKeyReused) {
    return ApiError(http::status::unprocessable_entity, "idempotency-key-reused",
                    "this Idempotency-Key was used for a different request",
                    {{"Idempotency-Key", "was used for a different request"}});
  }
  const auto& r = reply.rejection.value_or(commands::Rejection{"invalid", "body", "rejected"});
  if (r.code == "not_found") {
    return ApiError(http::status::not_found, "not-found", r.message, {{r.field, r.message}});
  }
  if (r.code == "already_exists" || r.code == "conflict") {
    return ApiError(http::status::conflict, r.code == "conflict" ? "conflict" : "already-exists",
                    r.message, {{r.field, r.message}});
  }
  if (r.code == "unknown_command") {
    // A newer API sent a command this processor's build does not know (a rolling upgrade).
    ApiError error(http::status::service_unavailable, "unknown-command", r.message,
                   {{r.field, r.message}});
    error.retry_after_s = 5;
    return error;
  }
  if (r.code == "unreadable_history") {
    // A newer build wrote part of this aggregate's history (a rolling upgrade): decided once
    // every processor runs it. Not remembered, so the same request succeeds then.
    ApiError error(http::status::service_unavailable, "unreadable-history", r.message,
                   {{r.field, r.message}});
    error.retry_after_s = 5;
    error.extensions.emplace_back("current_version", reply.version);
    return error;
  }
  if (r.code == "version_mismatch") {
    ApiError error(http::status::precondition_failed, "version-mismatch", r.message,
                   {{"If-Match", r.message}});
    error.extensions.emplace_back("current_version", reply.version);
    error.headers.emplace_back("ETag", "\"" + std::to_string(reply.version) + "\"");
    return error;
  }
  return invalid_field(r.field, r.message);
}

Response success(const CommandRoute& route, const Request& request, const Reply& reply) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  write_string(w, "id", reply.aggregate_id);
  if (route.answer == Answer::kIdCallIdVersion && reply.call_id) {
    write_string(w, "call_id", *reply.call_id);
  }
  if (route.answer == Answer::kJobAccepted) write_string(w, "status", "requested");
  if (route.answer == Answer::kClaim) {
    // The holder is always the caller; a repeated claim whose holder has released it since
    // answers null for both.
    if (reply.claimed_until) {
      write_string(w, "claimed_by", request.principal->actor);
      write_string(w, "claimed_until", *reply.claimed_until);
    } else {
      w.Key("claimed_by");
      w.Null();
      w.Key("claimed_until");
      w.Null();
    }
  }
  w.Key("version");
  w.Int64(reply.version);
  w.EndObject();
  auto response =
      json_response(request, route.success, std::string(buffer.GetString(), buffer.GetSize()));
  response.set(http::field::etag, "\"" + std::to_string(reply.version) + "\"");
  if (!reply.position.empty()) response.set("Cauce-Position", reply.position);
  if (route.collection != nullptr) {
    response.set(http::field::location, std::string(route.collection) + "/" + reply.aggregate_id);
  }
  if (reply.outcome == ReplyOutcome::kDuplicate) response.set("Idempotent-Replayed", "true");
  return response;
}

Response answer(const CommandRoute& route, const Request& request,
                const commands::SendResult& result, std::uint32_t timeout_ms) {
  if (const auto* error = std::get_if<commands::SendError>(&result)) {
    ApiError problem(
        http::status::service_unavailable,
        *error == commands::SendError::kTimeout ? "command-timeout" : "dependency-unavailable",
        *error == commands::SendError::kTimeout
            ? "no outcome within " + std::to_string(timeout_ms) +
                  " ms; the command is applied once or not at all: retry with the "
                  "same Idempotency-Key to learn which"
            : "kafka is unavailable; the command was not accepted");
    problem.retry_after_s = 1;
    throw problem;
  }
  const auto& reply = std::get<Reply>(result);
  if (reply.outcome == ReplyOutcome::kApplied || reply.outcome == ReplyOutcome::kDuplicate) {
    return success(route, request, reply);
  }
  auto error = rejection_error(reply);
  if (reply.replayed) error.headers.emplace_back("Idempotent-Replayed", "true");
  throw error;
}

void check_schedule(const CommandEnvelope& command, const core::ReportsConfig& reports) {
  rapidjson::Document d;
  d.Parse(command.data.c_str(), command.data.size());
  const auto text = [&d](const char* name) -> std::optional<std::string> {
    const auto it = d.FindMember(name);
    if (it == d.MemberEnd() || !it->value.IsString()) return std::nullopt;
    return std::string(it->value.GetString(), it->value.GetStringLength());
  };
  const auto every = text("every");
  const auto cron = text("cron");
  if (every && cron) throw invalid_field("every", "give either every or cron, not both");
  if (command.type == "report_schedule.create" && !every && !cron) {
    throw invalid_field("every", "give every or cron");
  }
  if (every) {
    const auto seconds = commands::parse_every(*every);
    if (!seconds) {
      throw invalid_field("every",
                          "must be a whole number and a unit, s, m, h or d (\"15m\", \"6h\", "
                          "\"1d\"), at most 366 days");
    }
    if (*seconds < reports.schedule_min_every_s) {
      throw invalid_field("every", "must be at least " +
                                       std::to_string(reports.schedule_min_every_s) +
                                       " s (reports.schedule_min_every_s)");
    }
  }
  if (cron) {
    const auto parsed = commands::CronExpression::parse(*cron);
    if (const auto* why = std::get_if<std::string>(&parsed)) {
      throw invalid_field("cron", "not a cron expression: " + *why);
    }
    // The floor holds for cron too: its slots (wall-clock minutes) may come no closer than
    // reports.schedule_min_every_s anywhere in the next years' calendar.
    if (const auto gap = commands::shortest_gap_s(std::get<commands::CronExpression>(parsed));
        gap < reports.schedule_min_every_s) {
      throw invalid_field("cron", "fires " + std::to_string(gap) +
                                      " s after a previous slot; slots must be at least " +
                                      std::to_string(reports.schedule_min_every_s) +
                                      " s apart (reports.schedule_min_every_s)");
    }
  }
  if (const auto zone = text("timezone")) {
    try {
      core::load_time_zone(*zone, reports.zoneinfo_dir);
    } catch (const std::invalid_argument& e) {
      throw invalid_field("timezone", e.what());
    }
  }
  // A secret goes only to the origins its file lists: checked on the URL given with it (a PATCH
  // that changes either names both, the aggregate says so) and again by the download.
  if (const auto secret = text("source_auth")) {
    workers::SourceCredential credential;
    try {
      credential = workers::load_source_credential(reports.source_auth_dir, *secret);
    } catch (const workers::SourceAuthError& e) {
      throw invalid_field("source_auth", e.what());
    }
    const auto url = text("source_url");
    if (!url) {
      throw invalid_field("source_url",
                          "give source_url with source_auth, so that the server checks the "
                          "secret may be sent there");
    }
    try {
      workers::check_source_origin(credential, *secret, *url);
    } catch (const workers::SourceAuthError& e) {
      throw invalid_field("source_url", e.what());
    }
  }
}

// Sends `command` and answers the request from its outcome (or the problem it makes), with the
// command's correlation id; without holding a thread while the command is decided.
void send_and_answer(commands::CommandBus& bus, const CommandRoute& route,
                     const std::shared_ptr<Request>& request,
                     const commands::CommandEnvelope& command, const Responder& respond,
                     std::uint32_t reply_timeout_ms) {
  bus.send(command,
           [&route, request, respond, reply_timeout_ms, correlation = command.correlation_id,
            command_id = command.command_id](commands::SendResult result) {
             Response response;
             try {
               response = answer(route, *request, result, reply_timeout_ms);
             } catch (...) {
               response = problem_response(*request, std::current_exception());
             }
             log().debug(response.result_int() < 300 ? "command accepted" : "command refused",
                         {{"command_id", command_id},
                          {"type", route.type},
                          {"status", response.result_int()},
                          {"request_id", request->request_id},
                          {"client", request->client},
                          {"trace_id", request->trace.trace_id()},
                          {"span_id", request->trace.span_id()}});
             response.set("X-Correlation-Id", correlation);
             respond(std::move(response));
           });
}

}  // namespace

void add_schedule_routes(Router& router, commands::CommandBus& bus, std::uint32_t reply_timeout_ms,
                         const core::ReportsConfig& reports, BlockingExecutor run_blocking) {
  for (const auto& route : schedule_routes()) {
    router.add_async(route.method, route.pattern, route.role,
                     [&bus, &route, reply_timeout_ms, reports, run_blocking](
                         const std::shared_ptr<Request>& request, Responder respond) {
                       auto command = envelope_for(route, *request);
                       // The zone file and the secret's file are read here: off the I/O thread.
                       run_blocking([&bus, &route, reply_timeout_ms, reports, request,
                                     respond = std::move(respond), command = std::move(command)] {
                         try {
                           check_schedule(command, reports);
                         } catch (...) {
                           respond(problem_response(*request, std::current_exception()));
                           return;
                         }
                         send_and_answer(bus, route, request, command, respond, reply_timeout_ms);
                       });
                     });
  }
}

commands::CommandEnvelope command_envelope(const Request& request, const char* type,
                                           const char* aggregate_type, bool creates) {
  const CommandRoute route{request.message.method(),
                           "",
                           Role::kOperator,
                           type,
                           aggregate_type,
                           nullptr,
                           http::status::ok,
                           Answer::kIdVersion,
                           creates};
  return envelope_for(route, request);
}

void throw_unless_taken(const commands::SendResult& result, std::uint32_t timeout_ms) {
  static const CommandRoute route{
      http::verb::post,   "",   Role::kOperator, "", "", nullptr, http::status::ok,
      Answer::kIdVersion, false};
  const Request none;
  if (const auto* reply = std::get_if<Reply>(&result);
      reply != nullptr &&
      (reply->outcome == ReplyOutcome::kApplied || reply->outcome == ReplyOutcome::kDuplicate)) {
    return;
  }
  answer(route, none, result, timeout_ms);  // throws for anything but a taken command
}

void add_command_routes(Router& router, commands::CommandBus& bus, std::uint32_t reply_timeout_ms) {
  for (const auto& route : command_routes()) {
    router.add_async(route.method, route.pattern, route.role,
                     [&bus, &route, reply_timeout_ms](const std::shared_ptr<Request>& request,
                                                      Responder respond) {
                       send_and_answer(bus, route, request, envelope_for(route, *request), respond,
                                       reply_timeout_ms);
                     });
  }
}

}  // namespace cauce::api
