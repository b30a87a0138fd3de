// The read side's GET routes (API.md "Read side"). Every route validates its inputs on the I/O
// thread (400 naming the parameter), waits — without holding a thread — for Cauce-Min-Position
// when given, then runs its PostgreSQL query on the blocking executor.
#include <algorithm>
#include <atomic>
#include <fstream>
#include <sstream>

#include <rapidjson/document.h>

#include <cauce/api/json.hpp>
#include <cauce/api/problem.hpp>
#include <cauce/api/routes.hpp>
#include <cauce/commands/envelope.hpp>
#include <cauce/core/crypto.hpp>
#include <cauce/core/json.hpp>
#include <cauce/projections/notification_hub.hpp>
#include <cauce/projections/queries.hpp>

#include "query_params.hpp"

namespace cauce::api {
namespace {

using projections::Page;
using projections::PageRequest;
using Query = std::function<Response()>;  // the blocking part of a request
using Prepare = std::function<Query(const std::shared_ptr<Request>&)>;

// One of `allowed` (400 naming the parameter otherwise); "" when absent.
std::string one_of(const std::map<std::string, std::string>& params, const std::string& name,
                   std::initializer_list<std::string_view> allowed) {
  const auto it = params.find(name);
  if (it == params.end()) return "";
  for (const auto a : allowed) {
    if (it->second == a) return it->second;
  }
  std::string list;
  for (const auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
  throw invalid_field(name, "must be one of " + list);
}

// A free-text parameter of 1..max_length bytes; "" when absent.
std::string text_param(const std::map<std::string, std::string>& params, const std::string& name,
                       std::size_t max_length) {
  const auto it = params.find(name);
  if (it == params.end()) return "";
  if (it->second.empty() || core::utf8_length(it->second) > max_length) {
    throw invalid_field(name, "must be 1 to " + std::to_string(max_length) + " characters");
  }
  return it->second;
}

PageRequest page_request(const std::map<std::string, std::string>& params, std::string_view list,
                         bool (*valid)(const std::string&)) {
  PageRequest page;
  page.limit = page_limit(params);
  if (const auto it = params.find("cursor"); it != params.end()) {
    page.after = decode_cursor(it->second, list, valid);
  }
  return page;
}

// 304 when the client already has this representation, else 200 with the body and its ETag.
Response with_etag(const Request& request, std::string body, const std::string& etag) {
  if (const auto it = request.message.find(http::field::if_none_match);
      it != request.message.end()) {
    const auto have = it->value();
    if (have == "*" || have.find(etag) != std::string_view::npos) {
      Response not_modified{http::status::not_modified, request.message.version()};
      not_modified.set(http::field::etag, etag);
      not_modified.set(http::field::cache_control, "no-cache");
      return not_modified;
    }
  }
  auto response = json_response(request, http::status::ok, std::move(body));
  response.set(http::field::etag, etag);
  response.set(http::field::cache_control, "no-cache");
  return response;
}

// A resource's ETag is its version, like a command's (If-Match takes the same value).
Response resource(const Request& request, const std::optional<std::string>& json,
                  const std::string& what) {
  if (!json) throw ApiError(http::status::not_found, "not-found", "there is no " + what);
  rapidjson::Document d;
  d.Parse(json->c_str());
  const auto version = d.IsObject() && d.HasMember("version") && d["version"].IsInt64()
                           ? d["version"].GetInt64()
                           : 0;
  return with_etag(request, *json, "\"" + std::to_string(version) + "\"");
}

// A representation without a version (a page, the figures): its ETag is a digest of the body.
Response digested(const Request& request, std::string body) {
  const auto etag = "\"" + core::sha256_hex(body).substr(0, 32) + "\"";
  return with_etag(request, std::move(body), etag);
}

// {"items": [...], "next_cursor": "..." | null}.
Response list(const Request& request, const Page& page, std::string_view list_name) {
  std::string body = "{\"items\":" + page.items + ",\"next_cursor\":";
  body += page.next_key ? "\"" + encode_cursor(list_name, *page.next_key) + "\"" : "null";
  body += "}";
  return digested(request, std::move(body));
}

// Queries waiting for a PostgreSQL thread, across all query routes: past this a query is a 503
// at once rather than a place in a queue that only grows while PostgreSQL is slow.
constexpr int kMaxQueuedQueries = 1024;

// Runs a validated query: at once, or once the projection has passed the request's
// Cauce-Min-Position (503 at the deadline). Either way on the blocking executor.
void serve(const std::shared_ptr<const QueryDeps>& deps,
           const std::shared_ptr<std::atomic<int>>& queued, const std::shared_ptr<Request>& request,
           const Responder& respond, Query query) {
  const auto position = min_position(*request);  // a malformed token is a 400 right here
  if (position && deps->event_partitions > 0 && position->partition >= deps->event_partitions) {
    throw invalid_field("Cauce-Min-Position", "names partition " +
                                                  std::to_string(position->partition) +
                                                  "; the event log has partitions 0 to " +
                                                  std::to_string(deps->event_partitions - 1));
  }
  auto run = [deps, queued, request, respond, query = std::move(query)] {
    if (queued->fetch_add(1) >= kMaxQueuedQueries) {
      --*queued;
      ApiError busy(http::status::service_unavailable, "busy",
                    "too many queries are waiting for PostgreSQL; try again shortly");
      busy.retry_after_s = 1;
      respond(problem_response(*request, std::make_exception_ptr(busy)));
      return;
    }
    deps->run_blocking([queued, request, respond, query] {
      --*queued;
      try {
        respond(query());
      } catch (...) {
        respond(problem_response(*request, std::current_exception()));
      }
    });
  };
  if (!position) {
    run();
    return;
  }
  const auto wait_ms = deps->min_position_wait.count();
  deps->hub.when_applied(
      position->partition, position->offset,
      std::chrono::steady_clock::now() + deps->min_position_wait,
      [request, respond, run = std::move(run), wait_ms](bool applied) {
        if (applied) {
          run();
          return;
        }
        ApiError error(http::status::service_unavailable, "position-not-reached",
                       "the read model has not reached the requested Cauce-Min-Position within " +
                           std::to_string(wait_ms) + " ms; retry later");
        error.retry_after_s = 1;
        respond(problem_response(*request, std::make_exception_ptr(error)));
      });
}

}  // namespace

void add_query_routes(Router& router, QueryDeps query_deps) {
  // Shared by the handlers: it lives as long as the router holds them.
  const auto deps = std::make_shared<const QueryDeps>(std::move(query_deps));
  const auto queued = std::make_shared<std::atomic<int>>(0);
  auto add = [&router, deps, queued](std::string pattern, Role role, Prepare prepare) {
    router.add_async(http::verb::get, std::move(pattern), role,
                     [deps, queued, prepare = std::move(prepare)](
                         const std::shared_ptr<Request>& request, Responder respond) {
                       serve(deps, queued, request, respond, prepare(request));
                     });
  };
  auto& models = deps->models;

  add("/v1/contacts/{id}", Role::kReader, [&models](const std::shared_ptr<Request>& r) -> Query {
    query_params(r->message.target(), {});
    return [r, &models, id = path_uuid(*r)] {
      return resource(*r, models.contact(id), "contact " + id);
    };
  });

  add("/v1/contacts", Role::kReader, [&models](const std::shared_ptr<Request>& r) -> Query {
    const auto params = query_params(
        r->message.target(), {"status", "assigned_to", "tag", "q", "claimable", "limit", "cursor"});
    projections::ContactFilter filter;
    filter.status = one_of(params, "status", {"active", "archived"});
    filter.assigned_to = text_param(params, "assigned_to", 100);
    filter.tag = text_param(params, "tag", 50);
    filter.q = text_param(params, "q", 200);
    filter.claimable = one_of(params, "claimable", {"true", "false"}) == "true";
    // The trigram index needs three characters; a shorter q would read every contact.
    if (!filter.q.empty() && core::utf8_length(filter.q) < 3) {
      throw invalid_field("q",
                          "must be at least 3 characters (it matches within names, "
                          "phones and emails)");
    }
    const auto page = page_request(params, "contacts", projections::valid_id_key);
    return
        [r, &models, filter, page] { return list(*r, models.contacts(filter, page), "contacts"); };
  });

  add("/v1/contacts/{id}/calls", Role::kReader,
      [&models](const std::shared_ptr<Request>& r) -> Query {
        const auto params = query_params(r->message.target(), {"limit", "cursor"});
        const auto page = page_request(params, "calls", projections::valid_calls_key);
        return [r, &models, id = path_uuid(*r), page] {
          const auto calls = models.calls(id, page);
          if (!calls)
            throw ApiError(http::status::not_found, "not-found", "there is no contact " + id);
          return list(*r, *calls, "calls");
        };
      });

  add("/v1/contacts/{id}/events", Role::kReader,
      [&models](const std::shared_ptr<Request>& r) -> Query {
        const auto params = query_params(r->message.target(), {"limit", "cursor"});
        const auto page = page_request(params, "events", projections::valid_history_key);
        return [r, &models, id = path_uuid(*r), page] {
          const auto events = models.history(id, page);
          if (!events) {
            throw ApiError(http::status::not_found, "not-found", "there is no contact " + id);
          }
          return list(*r, *events, "events");
        };
      });

  add("/v1/alerts", Role::kReader, [&models](const std::shared_ptr<Request>& r) -> Query {
    const auto params = query_params(r->message.target(), {"state", "level", "limit", "cursor"});
    projections::AlertFilter filter;
    filter.state = one_of(params, "state", {"open", "acknowledged", "closed"});
    filter.level = one_of(params, "level", {"info", "warning", "critical"});
    const auto page = page_request(params, "alerts", projections::valid_id_key);
    return [r, &models, filter, page] { return list(*r, models.alerts(filter, page), "alerts"); };
  });

  add("/v1/alerts/{id}", Role::kReader, [&models](const std::shared_ptr<Request>& r) -> Query {
    query_params(r->message.target(), {});
    return
        [r, &models, id = path_uuid(*r)] { return resource(*r, models.alert(id), "alert " + id); };
  });

  add("/v1/reports/{id}", Role::kReader, [&models](const std::shared_ptr<Request>& r) -> Query {
    query_params(r->message.target(), {});
    return [r, &models, id = path_uuid(*r)] {
      return resource(*r, models.report(id), "report " + id);
    };
  });

  const auto reports_dir = deps->data_dir / "reports";
  add("/v1/reports/{id}/pdf", Role::kReader,
      [&models, reports_dir](const std::shared_ptr<Request>& r) -> Query {
        query_params(r->message.target(), {});
        return [r, &models, reports_dir, id = path_uuid(*r)] {
          const auto report = models.report(id);
          if (!report)
            throw ApiError(http::status::not_found, "not-found", "there is no report " + id);
          rapidjson::Document d;
          d.Parse(report->c_str());
          const std::string status = d["status"].GetString();
          std::ifstream file(reports_dir / (id + ".pdf"), std::ios::binary);
          if (status != "ready" || !d["pdf"].IsObject() || !file) {
            throw ApiError(http::status::not_found, "not-ready",
                           "report " + id + " is " + status + "; its PDF exists once it is ready");
          }
          std::ostringstream bytes;
          bytes << file.rdbuf();
          Response response{http::status::ok, r->message.version()};
          response.set(http::field::content_type, "application/pdf");
          // The PDF's own checksum: the same bytes, the same tag, whatever else the report did.
          response.set(http::field::etag,
                       "\"" + std::string(d["pdf"]["sha256"].GetString()) + "\"");
          response.body() = bytes.str();
          response.prepare_payload();
          return response;
        };
      });

  add("/v1/stats", Role::kReader, [&models](const std::shared_ptr<Request>& r) -> Query {
    query_params(r->message.target(), {});
    return [r, &models] { return digested(*r, models.stats()); };
  });
  add("/v1/backups", Role::kAdmin, [&models](const std::shared_ptr<Request>& r) -> Query {
    const auto params = query_params(r->message.target(), {"limit", "cursor"});
    const auto page = page_request(params, "backups", projections::valid_id_key);
    return [r, &models, page] { return list(*r, models.backups(page), "backups"); };
  });

  // Webhooks (admin; api/README.md "Webhooks"): never the signing secret.
  add("/v1/webhooks", Role::kAdmin, [&models](const std::shared_ptr<Request>& r) -> Query {
    const auto params = query_params(r->message.target(), {"limit", "cursor"});
    const auto page = page_request(params, "webhooks", projections::valid_id_key);
    return [r, &models, page] { return list(*r, models.webhooks(page), "webhooks"); };
  });
  add("/v1/webhooks/{id}", Role::kAdmin, [&models](const std::shared_ptr<Request>& r) -> Query {
    query_params(r->message.target(), {});
    return [r, &models, id = path_uuid(*r)] {
      return resource(*r, models.webhook(id), "webhook " + id);
    };
  });
  add("/v1/webhooks/{id}/deliveries", Role::kAdmin,
      [&models](const std::shared_ptr<Request>& r) -> Query {
        const auto params = query_params(r->message.target(), {"limit", "cursor"});
        const auto page = page_request(params, "deliveries", projections::valid_delivery_key);
        return [r, &models, id = path_uuid(*r), page] {
          const auto deliveries = models.webhook_deliveries(id, page);
          if (!deliveries) {
            throw ApiError(http::status::not_found, "not-found", "there is no webhook " + id);
          }
          return list(*r, *deliveries, "deliveries");
        };
      });
}

}  // namespace cauce::api
