// POST /v1/webhooks (issue 16 part 7; api/README.md "Webhooks"). Unlike a plain command route it
// checks where the URL's host resolves (DNS: off the I/O thread) and stores the webhook's signing
// secret in PostgreSQL before the command is sent, so that nothing about the secret ever enters
// the event log, and answers with the secret (this once; GET never shows it).

#include <pqxx/pqxx>
#include <rapidjson/document.h>

#include <cauce/api/json.hpp>
#include <cauce/api/problem.hpp>
#include <cauce/api/routes.hpp>
#include <cauce/commands/webhook.hpp>
#include <cauce/workers/webhooks.hpp>

namespace cauce::api {
namespace {

// The secret stays the first one stored for the webhook's id: a retry with the same
// Idempotency-Key (the same id) answers the same secret. start_after: where its deliveries start.
const char* const kStoreSecret = R"(
  INSERT INTO webhook_secrets (webhook_id, secret, start_after)
  VALUES ($1::uuid, $2, (SELECT coalesce(max(id), 0) FROM notifications))
  ON CONFLICT (webhook_id) DO NOTHING)";
const char* const kSecret = "SELECT secret FROM webhook_secrets WHERE webhook_id = $1::uuid";

std::string json_text(const rapidjson::Value& value) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  value.Accept(w);
  return {buffer.GetString(), buffer.GetSize()};
}

// The registration as the command carries it: the body, with "filters" always an object.
struct Registration {
  commands::CommandEnvelope command;
  std::string url;
  std::string topics;   // JSON array
  std::string filters;  // JSON object
};

Registration registration(const Request& request) {
  Registration r;
  r.command = command_envelope(request, "webhook.register", "webhook", true);
  const auto parsed = commands::webhook::register_from_json(r.command.data);
  if (const auto refused = commands::webhook::check_registration(parsed)) {
    throw invalid_field(refused->field, refused->message);
  }
  rapidjson::Document body;
  body.Parse(r.command.data.c_str(), r.command.data.size());
  r.url = parsed.url;
  r.topics = json_text(body["topics"]);
  r.filters = body.HasMember("filters") ? json_text(body["filters"]) : "{}";
  return r;
}

void check_host(const std::string& url, bool allow_private) {
  const auto host = workers::check_webhook_host(url, allow_private);
  switch (host.kind) {
    case workers::HostCheck::kAllowed:
      return;
    case workers::HostCheck::kUnavailable: {
      ApiError error(http::status::service_unavailable, "dependency-unavailable",
                     "url: " + host.detail + "; nothing was registered, try again");
      error.retry_after_s = 5;
      throw error;
    }
    case workers::HostCheck::kRefused:
    case workers::HostCheck::kUnknown:
      throw invalid_field("url", host.detail);
  }
}

std::string stored_secret(core::PgPool& pool, const std::string& webhook_id) {
  return pool.with_connection([&](pqxx::connection& c) {
    pqxx::work txn(c);
    txn.exec_params(kStoreSecret, webhook_id, workers::new_webhook_secret());
    const auto secret = txn.exec_params1(kSecret, webhook_id)[0].as<std::string>();
    txn.commit();
    return secret;
  });
}

Response registered(const Request& request, const Registration& r, const commands::Reply& reply,
                    const std::string& secret) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  write_string(w, "id", reply.aggregate_id);
  write_string(w, "url", r.url);
  w.Key("topics");
  w.RawValue(r.topics.c_str(), r.topics.size(), rapidjson::kArrayType);
  w.Key("filters");
  w.RawValue(r.filters.c_str(), r.filters.size(), rapidjson::kObjectType);
  write_string(w, "status", "active");
  write_string(w, "secret", secret);  // shown this once; events, logs and GET never hold it
  w.Key("version");
  w.Int64(reply.version);
  w.EndObject();
  auto response = json_response(request, http::status::created,
                                std::string(buffer.GetString(), buffer.GetSize()));
  response.set(http::field::etag, "\"" + std::to_string(reply.version) + "\"");
  if (!reply.position.empty()) response.set("Cauce-Position", reply.position);
  response.set(http::field::location, "/v1/webhooks/" + reply.aggregate_id);
  if (reply.outcome == commands::ReplyOutcome::kDuplicate) {
    response.set("Idempotent-Replayed", "true");
  }
  return response;
}

}  // namespace

void add_webhook_routes(Router& router, commands::CommandBus& bus, std::uint32_t reply_timeout_ms,
                        core::PgPool& pool, BlockingExecutor run_blocking, bool allow_private) {
  router.add_async(
      http::verb::post, "/v1/webhooks", Role::kAdmin,
      [&bus, &pool, run_blocking, reply_timeout_ms, allow_private](
          const std::shared_ptr<Request>& request, Responder respond) {
        // Every rule the body can break is checked here, on the I/O thread (400 naming the
        // field) ...
        auto r = std::make_shared<Registration>(registration(*request));
        // ... the host's addresses and the secret off it (DNS and PostgreSQL block); nothing is
        // stored before the URL is known to be allowed.
        run_blocking([&bus, &pool, request, respond, r, reply_timeout_ms, allow_private] {
          std::string secret;
          try {
            check_host(r->url, allow_private);
            secret = stored_secret(pool, r->command.aggregate_id);
          } catch (...) {
            respond(problem_response(*request, std::current_exception()));
            return;
          }
          bus.send(r->command, [request, respond, r, secret = std::move(secret),
                                reply_timeout_ms](commands::SendResult result) {
            Response response;
            try {
              throw_unless_taken(result, reply_timeout_ms);
              response = registered(*request, *r, std::get<commands::Reply>(result), secret);
            } catch (...) {
              response = problem_response(*request, std::current_exception());
            }
            response.set("X-Correlation-Id", r->command.correlation_id);
            respond(std::move(response));
          });
        });
      });
}

}  // namespace cauce::api
