#include <prometheus/text_serializer.h>

#include <cauce/api/json.hpp>
#include <cauce/api/problem.hpp>
#include <cauce/api/routes.hpp>

namespace cauce::api {

void add_operations_routes(Router& router, const ReadinessProbe& probe,
                           const prometheus::Registry& registry,
                           std::function<void()> before_scrape) {
  router.add(http::verb::get, "/healthz", std::nullopt, [](Request& request) {
    return json_response(request, http::status::ok, R"({"status":"ok"})");
  });

  router.add(http::verb::get, "/readyz", std::nullopt, [&probe](Request& request) {
    const auto report = probe.report();
    rapidjson::StringBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    if (!report.ready) {
      write_string(w, "type", "urn:cauce:problem:not-ready");
      write_string(w, "title", "Service Unavailable");
      w.Key("status");
      w.Uint(503);
      std::string failing;
      for (const auto& c : report.checks) {
        if (!c.ok) failing += (failing.empty() ? "" : ", ") + c.name;
      }
      write_string(
          w, "detail",
          report.stopping ? "not ready: stopping (shutting down)" : "not ready: " + failing);
      if (report.stopping) {
        w.Key("stopping");
        w.Bool(true);
      }
      write_string(w, "request_id", request.request_id);
    } else {
      write_string(w, "status", report.degraded ? "degraded" : "ready");
    }
    w.Key("checks");
    w.StartObject();
    for (const auto& c : report.checks) {
      w.Key(c.name.c_str());
      w.StartObject();
      w.Key("ok");
      w.Bool(c.ok);
      if (c.degraded) {
        w.Key("degraded");
        w.Bool(true);
      }
      write_string(w, "detail", c.detail);
      w.Key("age_s");
      w.Double(c.age_s);
      w.EndObject();
    }
    w.EndObject();
    w.EndObject();
    auto response =
        json_response(request, report.ready ? http::status::ok : http::status::service_unavailable,
                      std::string(buffer.GetString(), buffer.GetSize()));
    if (!report.ready) {
      response.set(http::field::content_type, "application/problem+json");
      response.set(http::field::retry_after, "1");
    }
    return response;
  });

  router.add(http::verb::get, "/metrics", std::nullopt,
             [&registry, before_scrape = std::move(before_scrape)](Request& request) {
               if (before_scrape) before_scrape();
               Response response(http::status::ok, request.message.version());
               response.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
               response.body() = prometheus::TextSerializer().Serialize(registry.Collect());
               response.prepare_payload();
               return response;
             });
}

}  // namespace cauce::api
