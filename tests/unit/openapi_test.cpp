// api/openapi.yaml and the routes the server registers describe the same API.
#include <fstream>
#include <regex>
#include <set>

#include <gtest/gtest.h>

#include <cauce/api/routes.hpp>

#include "memory_key_store.hpp"

namespace cauce::api {
namespace {

std::set<std::string> documented_operations() {
  std::ifstream in(CAUCE_OPENAPI_PATH);
  std::set<std::string> out;
  std::string path;
  bool in_paths = false;
  const std::regex path_line(R"(^  (/[^:]*):\s*$)");
  const std::regex method_line(R"(^    (get|put|post|patch|delete):\s*$)");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("paths:", 0) == 0) {
      in_paths = true;
      continue;
    }
    if (in_paths && !line.empty() && line[0] != ' ' && line[0] != '#') in_paths = false;
    if (!in_paths) continue;
    std::smatch m;
    if (std::regex_match(line, m, path_line)) {
      path = m[1];
    } else if (std::regex_match(line, m, method_line)) {
      std::string method = m[1];
      for (auto& c : method) c = static_cast<char>(std::toupper(c));
      out.insert(method + " " + path);
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
