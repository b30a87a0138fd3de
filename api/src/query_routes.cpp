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
#include <cauce/commands/recurrence.hpp>
#include <cauce/core/crypto.hpp>
#include <cauce/core/errors.hpp>
#include <cauce/core/json.hpp>
#include <cauce/core/log.hpp>
#include <cauce/core/time_zone.hpp>
#include <cauce/projections/notification_hub.hpp>
#include <cauce/projections/queries.hpp>

#include "pg_pipeline.hpp"
#include "query_params.hpp"
#include "version_cache.hpp"

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

// A 304 when the request's If-None-Match names `etag` (or is *); a weak one (W/"3", as a
// gzipped answer carries) names it too: If-None-Match compares weakly.
std::optional<Response> not_modified(const Request& request, const std::string& etag) {
  const auto it = request.message.find(http::field::if_none_match);
  if (it == request.message.end()) return std::nullopt;
  const auto have = it->value();
  if (have != "*" && have.find(etag) == std::string_view::npos) return std::nullopt;
  Response answer{http::status::not_modified, request.message.version()};
  answer.set(http::field::etag, etag);
  answer.set(http::field::cache_control, "no-cache");
  return answer;
}

std::string version_etag(std::int64_t version) { return "\"" + std::to_string(version) + "\""; }

// 304 when the client already has this representation, else 200 with the body and its ETag.
Response with_etag(const Request& request, std::string body, const std::string& etag) {
  if (auto answer = not_modified(request, etag)) return std::move(*answer);
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
  return with_etag(request, *json, version_etag(version));
}

Response resource(const Request& request, std::optional<projections::Versioned> row,
                  const std::string& what) {
  if (!row) throw ApiError(http::status::not_found, "not-found", "there is no " + what);
  return with_etag(request, std::move(row->json), version_etag(row->version));
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

// A time parameter: RFC 3339 with a zone (Z or ±hh:mm) and up to 6 fraction digits, a real
// date; as UTC with microseconds (what the read models compare). Else a 400 naming `name`.
std::string time_param(const std::map<std::string, std::string>& params, const std::string& name) {
  const auto it = params.find(name);
  if (it == params.end()) return "";
  const std::string_view t = it->second;
  const auto fail = [&] {
    return invalid_field(name, "must be an RFC 3339 time such as 2026-03-29T07:00:00Z");
  };
  const auto digits = [&](std::size_t at, std::size_t n) -> int {
    if (at + n > t.size()) throw fail();
    int v = 0;
    for (std::size_t i = at; i < at + n; ++i) {
      if (t[i] < '0' || t[i] > '9') throw fail();
      v = v * 10 + (t[i] - '0');
    }
    return v;
  };
  if (t.size() < 20 || t.size() > 35 || t[4] != '-' || t[7] != '-' ||
      (t[10] != 'T' && t[10] != 't') || t[13] != ':' || t[16] != ':') {
    throw fail();
  }
  const int year = digits(0, 4), month = digits(5, 2), day = digits(8, 2);
  const int hour = digits(11, 2), minute = digits(14, 2), second = digits(17, 2);
  if (month < 1 || month > 12 || day < 1 || day > core::days_in_month(year, month) || hour > 23 ||
      minute > 59 || second > 59) {
    throw fail();
  }
  std::size_t at = 19;
  std::int64_t micros = 0;
  if (at < t.size() && t[at] == '.') {
    std::size_t n = 0;
    for (++at; at < t.size() && t[at] >= '0' && t[at] <= '9'; ++at, ++n) {
      if (n >= 6) throw fail();
      micros = micros * 10 + (t[at] - '0');
    }
    if (n == 0) throw fail();
    for (; n < 6; ++n) micros *= 10;
  }
  std::int64_t offset_s = 0;
  if (at < t.size() && (t[at] == 'Z' || t[at] == 'z')) {
    ++at;
  } else if (at < t.size() && (t[at] == '+' || t[at] == '-')) {
    const int sign = t[at] == '-' ? -1 : 1;
    if (at + 6 != t.size() || t[at + 3] != ':') throw fail();
    const int oh = digits(at + 1, 2), om = digits(at + 4, 2);
    if (oh > 23 || om > 59) throw fail();
    offset_s = sign * (oh * 3600 + om * 60);
    at += 6;
  } else {
    throw fail();
  }
  if (at != t.size()) throw fail();
  const auto seconds = core::days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 +
                       second - offset_s;
  // In UTC too, a time of years 1 to 9999 (what PostgreSQL reads back as written).
  if (seconds < core::days_from_civil(1, 1, 1) * 86400 ||
      seconds >= core::days_from_civil(10000, 1, 1) * 86400) {
    throw fail();
  }
  return core::format_utc_micros(seconds * 1'000'000 + micros);
}

// A UUID query parameter in its canonical (lower-case) form; "" when absent.
std::string uuid_param(const std::map<std::string, std::string>& params, const std::string& name) {
  const auto it = params.find(name);
  if (it == params.end()) return "";
  std::string id = it->second;
  for (auto& c : id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!commands::is_uuid(id)) throw invalid_field(name, "must be a UUID");
  return id;
}

std::string report_status(const std::map<std::string, std::string>& params) {
  return one_of(params, "status",
                {"requested", "downloading", "downloaded", "retrying", "ready", "failed"});
}

// A schedule with its next slot: the first after the later of slots_from and last_slot_at while
// active (null when paused, or when its zone is gone from this server). Computed from versioned
// fields only, so the version stays a valid ETag.
void add_next_slot(rapidjson::Value& schedule, rapidjson::Document::AllocatorType& allocator,
                   const std::filesystem::path& zoneinfo_dir) {
  const auto text = [&](const char* name) -> std::string {
    const auto it = schedule.FindMember(name);
    return it != schedule.MemberEnd() && it->value.IsString() ? it->value.GetString() : "";
  };
  std::optional<std::int64_t> next;
  try {
    if (text("status") == "active") {
      auto from = core::parse_utc_micros(text("slots_from"));
      if (const auto last = text("last_slot_at"); !last.empty()) {
        from = std::max(from, core::parse_utc_micros(last));
      }
      std::optional<commands::Recurrence> recurrence;
      if (const auto every = commands::parse_every(text("every"))) {
        recurrence = commands::Recurrence::every(*every);
      } else {
        auto cron = commands::CronExpression::parse(text("cron"));
        if (auto* c = std::get_if<commands::CronExpression>(&cron)) {
          recurrence =
              commands::Recurrence::cron(*c, core::load_time_zone(text("timezone"), zoneinfo_dir));
        }
      }
      if (recurrence) next = recurrence->next_after(core::floor_div(from, 1'000'000));
    }
  } catch (const std::invalid_argument&) {
    next.reset();  // a zone this server does not have: no next slot to show
  }
  rapidjson::Value value;
  if (next) {
    const auto at = core::format_utc_micros(*next * 1'000'000);
    value.SetString(at.c_str(), static_cast<rapidjson::SizeType>(at.size()), allocator);
  }
  schedule.AddMember("next_slot_at", value, allocator);
}

std::string json_text(const rapidjson::Value& value) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  value.Accept(w);
  return {buffer.GetString(), buffer.GetSize()};
}

std::optional<std::string> with_next_slot(const std::optional<std::string>& schedule,
                                          const std::filesystem::path& zoneinfo_dir) {
  if (!schedule) return std::nullopt;
  rapidjson::Document d;
  d.Parse(schedule->c_str());
  add_next_slot(d, d.GetAllocator(), zoneinfo_dir);
  return json_text(d);
}

Page with_next_slots(Page page, const std::filesystem::path& zoneinfo_dir) {
  rapidjson::Document d;
  d.Parse(page.items.c_str());
  for (auto& item : d.GetArray()) add_next_slot(item, d.GetAllocator(), zoneinfo_dir);
  page.items = json_text(d);
  return page;
}

// A place among the reads waiting for PostgreSQL (pool or pipeline), or false after answering a
// 503: past the bound a read is refused at once rather than given a place in a queue that only
// grows while PostgreSQL is slow. Whoever gets a place gives it back when PostgreSQL answers.
bool take_place(const std::shared_ptr<const QueryDeps>& deps,
                const std::shared_ptr<std::atomic<int>>& queued, const Request& request,
                const Responder& respond) {
  if (queued->fetch_add(1) < deps->max_queued_queries) return true;
  --*queued;
  ApiError busy(http::status::service_unavailable, "busy",
                "too many queries are waiting for PostgreSQL; try again shortly");
  busy.retry_after_s = 1;
  respond(problem_response(request, std::make_exception_ptr(busy)));
  return false;
}

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
    if (!take_place(deps, queued, *request, respond)) return;
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

// The pipelined statements (QueryDeps::pipelines): the very SQL of the blocking path.
constexpr const char* kContactStatement = "read_contact";

}  // namespace

std::vector<PgStatement> pipelined_statements() {
  return {{kContactStatement, projections::ReadModels::contact_sql()}};
}

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

  // A conditional GET naming the version the cache holds is a 304 at once, on the I/O thread;
  // any other reads PostgreSQL (pipelined on the I/O threads when it can, else on the blocking
  // executor), and the version it read goes to the cache.
  router.add_async(
      http::verb::get, "/v1/contacts/{id}", Role::kReader,
      [deps, queued](const std::shared_ptr<Request>& r, Responder respond) {
        query_params(r->message.target(), {});
        auto id = path_uuid(*r);
        const bool now = !r->message.count("Cauce-Min-Position");
        if (deps->versions != nullptr && now) {
          if (const auto version = deps->versions->find(id)) {
            if (auto answer = not_modified(*r, version_etag(*version))) {
              respond(std::move(*answer));
              return;
            }
          }
        }
        const auto answer = [r, deps, id](std::optional<projections::Versioned> row) {
          if (row && deps->versions != nullptr) deps->versions->raise(id, row->version);
          return resource(*r, std::move(row), "contact " + id);
        };
        // The blocking path, built only when it is taken (a pipelined answer needs
        // none).
        const auto blocking = [deps, id, answer]() -> Query {
          return [deps, id, answer] { return answer(deps->models.contact(id)); };
        };
        if (deps->pipelines == nullptr || !now) {
          serve(deps, queued, r, respond, blocking());
          return;
        }
        if (!take_place(deps, queued, *r, respond)) return;
        deps->pipelines->query(
            kContactStatement, {id},
            [deps, queued, r, respond, answer, blocking](std::optional<PgRows> rows) {
              --*queued;
              // A statement timeout is PostgreSQL's answer: running the read again
              // would only double its load. Anything else the pipeline could not
              // answer goes the blocking way.
              constexpr std::string_view kQueryCanceled = "57014";
              if (!rows || (!rows->ok() && rows->sqlstate() != kQueryCanceled)) {
                serve(deps, queued, r, respond, blocking());
                return;
              }
              try {
                if (!rows->ok()) {
                  throw core::DependencyError(
                      "postgres", "a query ran past postgres.statement_timeout_ms", true);
                }
                std::optional<projections::Versioned> row;
                if (rows->size() > 0) {
                  row = projections::Versioned{std::string(rows->text(0, 0)),
                                               std::stoll(std::string(rows->text(0, 1)))};
                }
                respond(answer(std::move(row)));
              } catch (...) {
                respond(problem_response(*r, std::current_exception()));
              }
            });
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

  // Scheduled reports (issue 16, part 3). /v1/reports/latest before /v1/reports/{id}: the first
  // route that matches a path takes it.
  add("/v1/reports", Role::kReader, [&models](const std::shared_ptr<Request>& r) -> Query {
    const auto params =
        query_params(r->message.target(), {"schedule_id", "status", "since", "limit", "cursor"});
    projections::ReportFilter filter;
    filter.schedule_id = uuid_param(params, "schedule_id");
    filter.status = report_status(params);
    filter.since = time_param(params, "since");
    const auto page = page_request(params, "reports", projections::valid_calls_key);
    return [r, &models, filter, page] { return list(*r, models.reports(filter, page), "reports"); };
  });

  add("/v1/reports/latest", Role::kReader, [&models](const std::shared_ptr<Request>& r) -> Query {
    const auto params = query_params(r->message.target(), {"schedule_id", "status", "since"});
    projections::ReportFilter filter;
    filter.schedule_id = uuid_param(params, "schedule_id");
    filter.status = report_status(params);
    filter.since = time_param(params, "since");
    return [r, &models, filter] {
      const auto latest = models.latest_report(filter);
      if (!latest) {
        throw ApiError(http::status::not_found, "not-found",
                       "no report matches" + (filter.schedule_id.empty()
                                                  ? std::string()
                                                  : " of schedule " + filter.schedule_id));
      }
      // Which report is the latest changes without its version changing: a digest, not it.
      return digested(*r, *latest);
    };
  });

  const auto zoneinfo_dir = deps->zoneinfo_dir;
  add("/v1/report-schedules", Role::kReader,
      [&models, zoneinfo_dir](const std::shared_ptr<Request>& r) -> Query {
        const auto params = query_params(r->message.target(), {"status", "limit", "cursor"});
        projections::ScheduleFilter filter;
        filter.status = one_of(params, "status", {"active", "paused"});
        const auto page = page_request(params, "report-schedules", projections::valid_id_key);
        return [r, &models, filter, page, zoneinfo_dir] {
          return list(*r, with_next_slots(models.report_schedules(filter, page), zoneinfo_dir),
                      "report-schedules");
        };
      });

  add("/v1/report-schedules/{id}", Role::kReader,
      [&models, zoneinfo_dir](const std::shared_ptr<Request>& r) -> Query {
        query_params(r->message.target(), {});
        return [r, &models, id = path_uuid(*r), zoneinfo_dir] {
          return resource(*r, with_next_slot(models.report_schedule(id), zoneinfo_dir),
                          "report schedule " + id);
        };
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

  add("/v1/imports/{id}", Role::kReader, [&models](const std::shared_ptr<Request>& r) -> Query {
    query_params(r->message.target(), {});
    return [r, &models, id = path_uuid(*r)] {
      return resource(*r, models.import(id), "import " + id);
    };
  });

  add("/v1/imports/{id}/errors", Role::kReader,
      [&models](const std::shared_ptr<Request>& r) -> Query {
        const auto params = query_params(r->message.target(), {"limit", "cursor"});
        const auto page = page_request(params, "import_errors", projections::valid_row_key);
        return [r, &models, id = path_uuid(*r), page] {
          const auto errors = models.import_errors(id, page);
          if (!errors) {
            throw ApiError(http::status::not_found, "not-found", "there is no import " + id);
          }
          return list(*r, *errors, "import_errors");
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
