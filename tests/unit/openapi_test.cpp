// api/openapi.yaml and the routes the server registers describe the same API.
#include <fstream>
#include <set>

#include <gtest/gtest.h>

#include <cauce/api/routes.hpp>
#include <cauce/projections/notification_hub.hpp>
#include <cauce/projections/parked_events.hpp>
#include <cauce/projections/queries.hpp>

#include "memory_key_store.hpp"

namespace cauce::api {
namespace {

// "  /v1/keys:" -> "/v1/keys"; "    get:" -> "GET". Only the shapes openapi.yaml uses.
std::set<std::string> documented_operations() {
  std::ifstream in(CAUCE_OPENAPI_PATH);
  std::set<std::string> out;
  std::string path;
  bool in_paths = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("paths:", 0) == 0) {
      in_paths = true;
      continue;
    }
    if (in_paths && !line.empty() && line[0] != ' ' && line[0] != '#') in_paths = false;
    if (!in_paths || line.empty() || line.back() != ':') continue;
    if (line.rfind("  /", 0) == 0) {
      path = line.substr(2, line.size() - 3);
      continue;
    }
    for (const std::string method : {"get", "put", "post", "patch", "delete"}) {
      if (line == "    " + method + ":") {
        std::string upper = method;
        for (auto& c : upper) c = static_cast<char>(std::toupper(c));
        out.insert(upper + " " + path);
      }
    }
  }
  return out;
}

TEST(OpenApiTest, EveryRegisteredRouteIsDocumentedAndViceVersa) {
  testing::MemoryKeyStore store;
  ApiKeys keys(store);
  prometheus::Registry registry;
  ReadinessProbe probe({});
  Router router;
  add_operations_routes(router, probe, registry);
  add_key_routes(router, keys);
  commands::CommandBus bus({}, registry);  // never started: only its routes are listed
  add_command_routes(router, bus, 1000);
  add_schedule_routes(router, bus, 1000, {}, {});
  core::PgPool pool("", 1);  // never used: only the routes are listed
  projections::ReadModels models(pool);
  projections::NotificationHub hub({}, "main", "cauce.events", {});
  add_query_routes(router, QueryDeps{.models = models, .hub = hub, .run_blocking = {}});
  add_stream_routes(router, hub, {}, keys, {}, registry);
  projections::ParkedEvents parked("", "main", "cauce.events");  // never connects
  add_parked_routes(router, parked, {});
  ReplayRunner replays({});  // never started
  add_replay_routes(router, replays, {}, {});
  add_import_routes(router,
                    ImportDeps{.bus = bus, .config = {}, .spool_dir = {}, .registry = registry});
  add_webhook_routes(router, bus, 1000, pool, {}, false);
  std::set<std::string> registered;
  for (const auto& route : router.routes()) {
    registered.insert(std::string(http::to_string(route.method)) + " " + route.pattern);
  }
  const auto documented = documented_operations();
  ASSERT_FALSE(documented.empty()) << "could not read " << CAUCE_OPENAPI_PATH;
  EXPECT_EQ(registered, documented);
}

}  // namespace
}  // namespace cauce::api
