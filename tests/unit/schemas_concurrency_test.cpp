// Every schema validated from 16 threads at once gives the answers it gives on one thread.
// RapidJSON 1.1's regex keeps its match state in the schema document: a shared document
// crashed `cauce serve` under 32 clients and refused valid ids under 64 (issue 11). Run it
// under the tsan preset too (ctest label `concurrency`).

#include <thread>

#include <gtest/gtest.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cauce/commands/schemas.hpp>

namespace cauce::commands {
namespace {

// A value the property's schema accepts (`valid`), or one its pattern refuses.
void sample(const rapidjson::Value& property, bool valid,
            rapidjson::Writer<rapidjson::StringBuffer>& w) {
  const std::string type = property.HasMember("type") && property["type"].IsString()
                               ? property["type"].GetString()
                               : "string";
  if (property.HasMember("enum")) {
    property["enum"][0].Accept(w);
  } else if (type == "integer" || type == "number") {
    w.Int64(property.HasMember("minimum") ? property["minimum"].GetInt64() : 1);
  } else if (type == "array") {
    w.StartArray();
    w.EndArray();
  } else if (type == "object") {
    w.StartObject();
    w.EndObject();
  } else if (type == "boolean") {
    w.Bool(true);
  } else {
    const std::string pattern =
        property.HasMember("pattern") ? property["pattern"].GetString() : "";
    std::string s = "text";
    if (pattern.find("{8}-") != std::string::npos) s = "0190a5a0-0000-7000-8000-00000000000a";
    if (pattern.find("\\+[1-9]") != std::string::npos) s = "+442079460958";
    if (pattern.find("T[0-9]{2}") != std::string::npos) s = "2026-12-04T10:00:00.000000Z";
    if (pattern.find("https?") != std::string::npos) s = "https://example.org/r.csv";
    if (pattern.find("[a-z]+\\.") != std::string::npos) s = "contact.registered";
    if (!valid && !pattern.empty()) s = "not what the pattern wants";
    w.String(s.c_str());
  }
}

// For each schema, a document with every property set validly and one with every
// pattern-constrained property set wrongly.
std::vector<std::pair<std::string, std::string>> documents() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& file : embedded_schema_files()) {
    rapidjson::Document schema;
    schema.Parse(file.text.c_str());
    const auto name = file.file_name.substr(0, file.file_name.size() - 5);
    for (const bool valid : {true, false}) {
      rapidjson::StringBuffer buffer;
      rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
      w.StartObject();
      if (schema.HasMember("properties")) {
        for (const auto& p : schema["properties"].GetObject()) {
          w.Key(p.name.GetString());
          sample(p.value, valid, w);
        }
      }
      w.EndObject();
      out.emplace_back(name, buffer.GetString());
    }
  }
  return out;
}

std::string outcome(const SchemaRegistry& registry, const std::string& schema,
                    const std::string& json) {
  const auto v = registry.validate_json(schema, json);
  return v ? v->field + ": " + v->message : "valid";
}

TEST(SchemasConcurrencyTest, SixteenThreadsValidatingEverySchemaAgreeWithOne) {
  const auto& registry = SchemaRegistry::instance();
  const auto docs = documents();
  ASSERT_EQ(docs.size(), 2 * registry.names().size());
  std::vector<std::string> expected;
  std::size_t valid = 0;
  for (const auto& [schema, json] : docs) {
    expected.push_back(outcome(registry, schema, json));
    valid += expected.back() == "valid";
  }
  EXPECT_GE(valid, registry.names().size()) << "every schema has a document it accepts";

  constexpr int kThreads = 16;
  constexpr int kRounds = 150;
  std::vector<std::vector<std::string>> wrong(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        for (std::size_t i = 0; i < docs.size(); ++i) {
          const auto& [schema, json] = docs[(i + static_cast<std::size_t>(t)) % docs.size()];
          const auto got = outcome(registry, schema, json);
          if (got != expected[(i + static_cast<std::size_t>(t)) % docs.size()]) {
            wrong[static_cast<std::size_t>(t)].push_back(schema + " " + json + " -> " + got);
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& w : wrong) EXPECT_TRUE(w.empty()) << w.size() << " wrong, e.g. " << w.front();
}

}  // namespace
}  // namespace cauce::commands
