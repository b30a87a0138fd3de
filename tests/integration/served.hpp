#pragma once

// The fixture of tests that drive one real `cauce serve` over HTTP: its own database, topics and
// data directory, the server started once the test has chosen its settings, the admin key.

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "fixtures.hpp"

namespace cauce::testing {

// A member of a JSON object as text: a string as it is, an integer in decimal, "null"; "" when
// the text is not an object or has no such member (or it is something else).
inline std::string json_member(const std::string& json, const char* name) {
  rapidjson::Document doc;
  doc.Parse(json.c_str());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember(name)) return "";
  const auto& v = doc[name];
  if (v.IsString()) return v.GetString();
  if (v.IsInt64()) return std::to_string(v.GetInt64());
  if (v.IsNull()) return "null";
  return "";
}

class ServedTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(run_cauce({"topics", "create"}, env()).first, 0); }

  // The server's CAUCE_* environment: this test's database, topics and data directory, then
  // `settings`.
  std::map<std::string, std::string> env() const {
    auto e = cauce_env(db_.config(), kafka_);
    e["CAUCE_DATA_DIR"] = data_.path().string();
    for (const auto& [name, value] : settings) e[name] = value;
    return e;
  }

  // Starts `cauce serve` (every role) with env() and waits until it is ready.
  void serve() {
    auto served = serve_ready(env(), data_.path());
    serve_ = std::move(served.process);
    port_ = served.port;
    admin_ = served.admin_key;
    ASSERT_NE(port_, 0) << served.failure;
  }

  // A request with `key` (the admin key when empty); a body is sent as application/json.
  HttpResult call(http::verb method, const std::string& target, const std::string& body = "",
                  const std::string& key = "",
                  std::vector<std::pair<std::string, std::string>> headers = {}) const {
    headers.emplace_back("Authorization", "Bearer " + (key.empty() ? admin_ : key));
    if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
    return http_request(port_, method, target, body, headers, std::chrono::seconds(30));
  }

  // A GET with the admin key; with `position` (a Cauce-Position a command answered), once the
  // read model has passed it.
  HttpResult get(const std::string& target, const std::string& position = "") const {
    if (position.empty()) return call(http::verb::get, target);
    return call(http::verb::get, target, "", "", {{"Cauce-Min-Position", position}});
  }

  std::map<std::string, std::string> settings;  // CAUCE_* of this test's server
  TempDatabase db_;
  TempDir data_;
  core::KafkaConfig kafka_ = test_kafka();
  std::unique_ptr<CauceProcess> serve_;
  std::uint16_t port_ = 0;
  std::string admin_;
};

}  // namespace cauce::testing
