#include <functional>
#include <set>

#include <gtest/gtest.h>

#include <cauce/commands/alert.hpp>
#include <cauce/commands/contact.hpp>
#include <cauce/commands/import.hpp>
#include <cauce/commands/jobs.hpp>
#include <cauce/commands/report_schedule.hpp>
#include <cauce/commands/schemas.hpp>
#include <cauce/commands/upcast.hpp>
#include <cauce/core/json.hpp>

namespace cauce::commands {
namespace {

const SchemaRegistry& schemas() { return SchemaRegistry::instance(); }

std::string violation_field(std::string_view schema, std::string_view json) {
  const auto v = schemas().validate_json(schema, json);
  return v ? v->field : "<valid>";
}

TEST(SchemasTest, EveryCommandAndEventHasASchema) {
  for (const auto* name : {"envelope.v1",
                           "contact.register.v1",
                           "contact.update.v1",
                           "contact.log_call.v1",
                           "contact.assign.v1",
                           "contact.archive.v1",
                           "alert.raise.v1",
                           "alert.acknowledge.v1",
                           "alert.escalate.v1",
                           "alert.close.v1",
                           "report.request.v1",
                           "backup.request.v1",
                           "contact.registered.v1",
                           "contact.updated.v1",
                           "contact.call_logged.v1",
                           "contact.assigned.v1",
                           "contact.archived.v1",
                           "alert.raised.v1",
                           "alert.acknowledged.v1",
                           "alert.escalated.v1",
                           "alert.closed.v1",
                           "report.requested.v1",
                           "backup.requested.v1",
                           "contact.call_logged.v2",
                           "contact.claim.v1",
                           "contact.release.v1",
                           "contact.claimed.v1",
                           "contact.released.v1",
                           "alert.miss_deadline.v1",
                           "alert.deadline_missed.v1",
                           "webhook.register.v1",
                           "webhook.registered.v1",
                           "webhook.disable.v1",
                           "webhook.disabled.v1",
                           "webhook.enable.v1",
                           "webhook.enabled.v1",
                           "backup.record_copy.v1",
                           "backup.copied.v1",
                           "backup.record_copy_failure.v1",
                           "backup.copy_attempt_failed.v1"}) {
    EXPECT_TRUE(schemas().contains(name)) << name;
  }
  for (const auto* name :
       {"import.start.v1", "import.started.v1", "import.record_rejections.v1",
        "import.rows_rejected.v1", "import.record_progress.v1", "import.progressed.v1",
        "import.complete.v1", "import.completed.v1", "import.fail.v1", "import.failed.v1"}) {
    EXPECT_TRUE(schemas().contains(name)) << name;
  }
}

TEST(SchemasTest, CommandBodiesAreCheckedNamingTheField) {
  EXPECT_EQ(violation_field("contact.register.v1", R"({"name":"Ada","phone":"+44 20 7946 0958"})"),
            "<valid>");
  EXPECT_EQ(violation_field("contact.register.v1", R"({"name":"Ada"})"), "phone");
  EXPECT_EQ(violation_field("contact.register.v1",
                            R"({"name":"Ada","phone":"+442079460958","colour":"red"})"),
            "colour");
  EXPECT_EQ(violation_field("contact.register.v1", R"({"name":5,"phone":"+442079460958"})"),
            "name");
  EXPECT_EQ(violation_field("contact.register.v1",
                            R"({"name":"A","phone":"+442079460958","id":"not-a-uuid"})"),
            "id");
  EXPECT_EQ(violation_field("contact.register.v1",
                            R"({"name":"A","phone":"+442079460958","tags":["a","a"]})"),
            "tags[1]");
  EXPECT_EQ(violation_field("contact.register.v1",
                            R"({"name":"A","phone":"+442079460958","tags":["a",3]})"),
            "tags[1]");
  EXPECT_EQ(violation_field("contact.log_call.v1", R"({"outcome":"answered","duration_s":"10"})"),
            "duration_s");
  EXPECT_EQ(violation_field("contact.log_call.v1", R"({"outcome":"hung_up","duration_s":10})"),
            "outcome");
  EXPECT_EQ(violation_field("alert.raise.v1", R"({"level":"panic","title":"x"})"), "level");
  // The draft-04 validator's integer is not 86399.0; the API reads such a body with
  // whole_numbers_are_integers (JsonTest checks that), which turns it into one.
  EXPECT_EQ(violation_field("contact.log_call.v1", R"({"outcome":"busy","duration_s":86399.0})"),
            "duration_s");
  rapidjson::Document whole;
  ASSERT_FALSE(core::parse_json(R"({"outcome":"busy","duration_s":86399.0})", whole,
                                {.whole_numbers_are_integers = true}));
  EXPECT_FALSE(schemas().validate("contact.log_call.v1", whole));
  rapidjson::Document fraction;
  ASSERT_FALSE(core::parse_json(R"({"outcome":"busy","duration_s":1.5})", fraction,
                                {.whole_numbers_are_integers = true}));
  EXPECT_EQ(schemas().validate("contact.log_call.v1", fraction)->field, "duration_s");
  EXPECT_EQ(violation_field("report.request.v1", R"({"title":"x","source_url":"ftp://x"})"),
            "source_url");
  EXPECT_EQ(violation_field("backup.request.v1", R"({"x":1})"), "x");
  EXPECT_EQ(violation_field("backup.request.v1", "[]"), "body");
}

// The storable-input rule of schemas/README.md: a command schema bounds everything it accepts.
TEST(SchemasTest, EveryCommandSchemaBoundsItsStringsNumbersAndArrays) {
  std::vector<std::string> unbounded;
  std::function<void(const std::string&, const rapidjson::Value&)> walk =
      [&](const std::string& path, const rapidjson::Value& p) {
        const std::string type = p.HasMember("type") ? p["type"].GetString() : "";
        const std::string pattern = p.HasMember("pattern") ? p["pattern"].GetString() : "";
        const bool anchored = pattern.starts_with('^') && pattern.ends_with('$');
        if (type == "string" && !p.HasMember("maxLength") && !p.HasMember("enum") && !anchored) {
          unbounded.push_back(path + " (string)");
        }
        if ((type == "integer" || type == "number") &&
            !(p.HasMember("minimum") && p.HasMember("maximum"))) {
          unbounded.push_back(path + " (number)");
        }
        if (type == "array") {
          if (!p.HasMember("maxItems")) unbounded.push_back(path + " (array)");
          if (p.HasMember("items")) walk(path + "[]", p["items"]);
        }
        if (p.HasMember("properties")) {
          for (const auto& m : p["properties"].GetObject()) {
            walk(path + "." + m.name.GetString(), m.value);
          }
        }
      };
  std::size_t commands = 0;
  for (const auto& file : embedded_schema_files()) {
    rapidjson::Document schema;
    schema.Parse(file.text.c_str());
    const std::string title = schema.HasMember("title") ? schema["title"].GetString() : "";
    const bool command = title.starts_with("POST") || title.starts_with("PATCH") ||
                         title.find("command)") != std::string::npos;  // the workers' commands
    if (!command) continue;
    ++commands;
    walk(file.file_name, schema);
  }
  EXPECT_EQ(commands, 38u);  // and the import's 5
  EXPECT_TRUE(unbounded.empty()) << testing::PrintToString(unbounded);
}

// Every event the aggregates can produce fits its published schema.
TEST(SchemasTest, EveryEventTheAggregatesProduceFitsItsSchema) {
  const CommandContext ctx{1'700'000'000'000'000, std::nullopt, "op1"};
  std::vector<std::pair<std::string, std::string>> produced;  // type, data
  auto collect = [&](const auto& result) {
    ASSERT_FALSE(std::holds_alternative<Rejection>(result));
    for (const auto& e : std::get<0>(result)) produced.emplace_back(event_type(e), to_json(e));
  };
  {
    using namespace contact;
    State s;
    const auto reg =
        decide(s, Register{"Ada", "+44 20 7946 0958", "ada@example.org", {"vip"}, "n"}, ctx);
    collect(reg);
    s = evolve(s, std::get<0>(reg)[0]);
    collect(decide(s, Update{.name = "Ada K", .tags = std::vector<std::string>{"a"}}, ctx));
    collect(decide(s, LogCall{"0190a5a0-0000-7000-8000-000000000001", "answered", 60, "ok", "op"},
                   ctx));
    collect(decide(s, Assign{"op2"}, ctx));
    const auto claim = decide(s, Claim{120}, ctx);
    collect(claim);
    collect(decide(evolve(s, std::get<0>(claim)[0]), Release{}, ctx));
    collect(decide(s, Archive{"gone"}, ctx));
  }
  {
    using namespace alert;
    State s;
    const auto raised = decide(s, Raise{"info", "CPU", "eu", "n1", "d"}, ctx);
    collect(raised);
    s = evolve(s, std::get<0>(raised)[0]);
    collect(decide(s, Acknowledge{"ack"}, ctx));
    collect(decide(s, Escalate{"critical"}, ctx));
    collect(decide(s, Close{"fixed"}, ctx));
    collect(decide(s, MissDeadline{"info", ctx.issued_at_us - 1}, ctx));
  }
  collect(
      report::decide(report::State{}, report::Request{"Q3", "https://example.org/q3.csv"}, ctx));
  {
    using namespace report;
    State s{.exists = true, .version = 1};
    collect(decide(s, StartDownload{1}, ctx));
    s.status = Status::kDownloading;
    s.attempt = 1;
    collect(decide(s, RecordDownload{1, 10, std::string(64, 'a'), "text/csv"}, ctx));
    collect(decide(s, RecordFailure{1, "download", "HTTP 500", true, ctx.issued_at_us + 1}, ctx));
    collect(decide(s, RecordFailure{1, "download", "HTTP 404", false, std::nullopt}, ctx));
    s.status = Status::kDownloaded;
    collect(decide(s, RecordRender{1, 3, 1000, std::string(64, 'b')}, ctx));
    s.status = Status::kFailed;
    collect(decide(s, Retry{}, ctx));
  }
  {
    using namespace backup;
    collect(decide(State{}, Request{}, ctx));
    State s{.exists = true, .version = 1};
    collect(decide(s, Start{1}, ctx));
    s.status = Status::kRunning;
    s.attempt = 1;
    collect(decide(s, RecordCompletion{1, 100, std::string(64, 'c'), {5, 0, 7}, 12}, ctx));
    collect(decide(s, RecordCompletion{1, 100, std::string(64, 'c'), {5}, 12, "/mnt/nfs/c"}, ctx));
    collect(decide(s, RecordFailure{1, "backup", "disk full", false, std::nullopt}, ctx));
    s.status = Status::kCompleted;
    collect(decide(s, Expire{}, ctx));
    s.copy = CopyStatus::kPending;
    collect(decide(s, RecordCopy{1, "/mnt/nfs/c/b", 100, std::string(64, 'c')}, ctx));
    collect(decide(s, RecordCopyFailure{1, "EACCES", ctx.issued_at_us + 1}, ctx));
    collect(decide(s, RecordCopyFailure{1, "EACCES", std::nullopt}, ctx));
    s.status = Status::kFailed;
    collect(decide(s, Retry{}, ctx));
  }
  {
    using namespace report_schedule;
    const auto created = decide(State{},
                                Create{"Calls", "https://example.org/c.csv", std::nullopt,
                                       "0 7 * * mon-fri", "Europe/Madrid", "crm"},
                                ctx);
    collect(created);
    auto s = evolve(State{}, std::get<0>(created)[0]);
    collect(decide(State{},
                   Create{"Calls", "https://example.org/c.csv", "15m", std::nullopt, std::nullopt,
                          std::nullopt},
                   ctx));
    Update change;
    change.every = "1h";
    change.paused = true;
    collect(decide(s, change, ctx));
    collect(decide(s, Trigger{ctx.issued_at_us, 1, "0190a5a0-0000-8000-8000-000000000001"}, ctx));
    collect(decide(s, Delete{}, ctx));
    s.status = Status::kPaused;
    Update resume;
    resume.paused = false;
    collect(decide(s, resume, ctx));
    collect(
        report::decide(report::State{},
                       report::Request{"Calls", "https://example.org/c.csv", "crm",
                                       "0190a5a0-0000-8000-8000-000000000002", ctx.issued_at_us},
                       ctx));
  }
  {
    using namespace import;
    collect(decide(State{}, Start{"csv"}, ctx));
    const State s{.exists = true, .version = 1};
    collect(decide(s, RecordRejections{{{2, "phone", "must be a phone number"}, {7, "row", "x"}}},
                   ctx));
    collect(decide(s, RecordProgress{{10, 5, 2, 1}}, ctx));
    collect(decide(s, Complete{{10, 7, 2, 1}, 4096}, ctx));
    collect(decide(s, Fail{{10, 5, 2, 1}, 2048, "the client disconnected"}, ctx));
  }
  // Every type once at least.
  std::set<std::string> types;
  for (const auto& [type, data] : produced) types.insert(type);
  EXPECT_EQ(types.size(), 39u) << testing::PrintToString(types);
  for (const auto& [type, data] : produced) {
    const auto v =
        schemas().validate_json(type + ".v" + std::to_string(current_schema_version(type)), data);
    EXPECT_FALSE(v) << type << " " << data << ": " << v->field << " " << v->message;
  }
}

}  // namespace
}  // namespace cauce::commands
