// infra/ (the production stack) checked without a container engine, which this project's
// machines do not have: the images are never built or run here. What is checked instead:
// a real `cauce serve` (all roles) takes a command and a query, and its /metrics passes
// `promtool check metrics` and holds every metric family a panel of
// infra/grafana/dashboards/cauce.json reads; `promtool check config` passes on
// infra/prometheus/prometheus.yml and `promtool check rules` parses every panel's PromQL;
// every metric an alert of infra/prometheus/alerts.yml reads is on the live /metrics too;
// infra/compose.yaml parses (PyYAML) with the services, ports, healthchecks, secrets and roles
// of the stack, and cauce accepts each cauce service's CAUCE_* environment; infra/Dockerfile
// builds the release preset from paths that exist and runs as a non-root user.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <sys/wait.h>

#include "fixtures.hpp"

namespace cauce::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const fs::path kSource = CAUCE_SOURCE_DIR;
const fs::path kInfra = kSource / "infra";
const fs::path kDashboard = kInfra / "grafana" / "dashboards" / "cauce.json";
const fs::path kPrometheusConfig = kInfra / "prometheus" / "prometheus.yml";
// Debian's python3-yaml serves Debian's interpreter, whatever else is first on PATH.
const char* const kPython = "/usr/bin/python3";

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// A missing tool fails the test with the package to install; it never skips.
::testing::AssertionResult promtool_installed() {
  if (run_tool("command -v promtool").exit_code == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "promtool not found: it comes with the Debian package `prometheus`, which "
            "scripts/lib/common.sh installs (apt-get install prometheus)";
}

::testing::AssertionResult pyyaml_installed() {
  const auto probe = run_tool(std::string(kPython) + " -c 'import yaml'");
  if (probe.exit_code == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "PyYAML not importable by " << kPython << " (Debian package `python3-yaml`, which "
         << "scripts/lib/common.sh installs): " << probe.output;
}

// The YAML files as one JSON array, in order, through PyYAML (safe_load, merge keys resolved).
rapidjson::Document yaml_as_json(const std::vector<fs::path>& files) {
  std::string command = std::string(kPython) + " -c " +
                        shell_quote(
                            "import json, sys, yaml\n"
                            "print(json.dumps([yaml.safe_load(open(p, encoding=\"utf-8\")) "
                            "for p in sys.argv[1:]]))");
  for (const auto& file : files) command += " " + shell_quote(file.string());
  const auto result = run_tool(command);
  rapidjson::Document doc;
  doc.Parse(result.output.c_str());
  if (result.exit_code != 0 || doc.HasParseError() || !doc.IsArray() ||
      doc.Size() != files.size()) {
    throw std::runtime_error("PyYAML could not read the files: " + result.output);
  }
  return doc;
}

rapidjson::Document parse_json_file(const fs::path& path) {
  const auto text = read_file(path);
  rapidjson::Document doc;
  doc.Parse(text.c_str(), text.size());
  if (doc.HasParseError()) {
    throw std::runtime_error(path.string() + " is not JSON (offset " +
                             std::to_string(doc.GetErrorOffset()) + ")");
  }
  return doc;
}

const rapidjson::Value* member(const rapidjson::Value* v, const char* name) {
  if (v == nullptr || !v->IsObject()) return nullptr;
  const auto it = v->FindMember(name);
  return it == v->MemberEnd() ? nullptr : &it->value;
}

// A scalar as YAML meant it (8080 and "8080" alike); "" for anything else.
std::string scalar(const rapidjson::Value* v) {
  if (v == nullptr) return "";
  if (v->IsString()) return v->GetString();
  if (v->IsInt64()) return std::to_string(v->GetInt64());
  if (v->IsBool()) return v->GetBool() ? "true" : "false";
  return "";
}

// A string, or a list of strings joined with spaces (a compose command or healthcheck test).
std::string words(const rapidjson::Value* v) {
  if (v == nullptr) return "";
  if (!v->IsArray()) return scalar(v);
  std::string out;
  for (const auto& w : v->GetArray()) out += (out.empty() ? "" : " ") + scalar(&w);
  return out;
}

std::vector<std::string> strings(const rapidjson::Value* v) {
  std::vector<std::string> out;
  if (v != nullptr && v->IsArray()) {
    for (const auto& item : v->GetArray()) out.push_back(scalar(&item));
  }
  return out;
}

// A compose service's environment, from either the map or the KEY=VALUE list form.
std::map<std::string, std::string> environment(const rapidjson::Value& service) {
  std::map<std::string, std::string> env;
  const auto* e = member(&service, "environment");
  if (e != nullptr && e->IsObject()) {
    for (const auto& m : e->GetObject()) env[m.name.GetString()] = scalar(&m.value);
  } else {
    for (const auto& item : strings(e)) {
      const auto eq = item.find('=');
      env[item.substr(0, eq)] = eq == std::string::npos ? "" : item.substr(eq + 1);
    }
  }
  return env;
}

// The container ports a service publishes ("127.0.0.1:9090:9090", "8080:8080/tcp", long form).
std::set<std::string> container_ports(const rapidjson::Value& service) {
  std::set<std::string> out;
  const auto* ports = member(&service, "ports");
  if (ports == nullptr || !ports->IsArray()) return out;
  for (const auto& p : ports->GetArray()) {
    std::string port = p.IsObject() ? scalar(member(&p, "target")) : scalar(&p);
    port = port.substr(port.rfind(':') + 1);
    out.insert(port.substr(0, port.find('/')));
  }
  return out;
}

// The Prometheus text format's families: name -> type, from the `# TYPE` lines.
std::map<std::string, std::string> metric_families(const std::string& exposition) {
  std::map<std::string, std::string> families;
  std::istringstream lines(exposition);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words_of(line);
    std::string hash;
    std::string keyword;
    std::string name;
    std::string type;
    if (words_of >> hash >> keyword >> name >> type && hash == "#" && keyword == "TYPE") {
      families[name] = type;
    }
  }
  return families;
}

struct PanelQuery {
  std::string panel;
  std::string expr;
  std::string datasource_uid;
};

// Every target of every panel, rows' nested panels included.
void collect_queries(const rapidjson::Value& panels, std::vector<PanelQuery>& out) {
  if (!panels.IsArray()) return;
  for (const auto& panel : panels.GetArray()) {
    const auto title = scalar(member(&panel, "title"));
    const auto* targets = member(&panel, "targets");
    if (targets != nullptr && targets->IsArray()) {
      for (const auto& t : targets->GetArray()) {
        const auto* ds = member(&t, "datasource");
        if (ds == nullptr) ds = member(&panel, "datasource");
        out.push_back({title, scalar(member(&t, "expr")), scalar(member(ds, "uid"))});
      }
    }
    if (const auto* nested = member(&panel, "panels")) collect_queries(*nested, out);
  }
}

std::vector<PanelQuery> dashboard_queries() {
  const auto dashboard = parse_json_file(kDashboard);
  std::vector<PanelQuery> queries;
  if (const auto* panels = member(&dashboard, "panels")) collect_queries(*panels, queries);
  return queries;
}

// The cauce metric names a query reads (cauce_x_bucket, cauce_y_total, ...).
std::set<std::string> cauce_metric_names(const std::string& expr) {
  static const std::regex kName("cauce_[A-Za-z0-9_]+");
  std::set<std::string> names;
  for (auto it = std::sregex_iterator(expr.begin(), expr.end(), kName);
       it != std::sregex_iterator(); ++it) {
    names.insert(it->str());
  }
  return names;
}

// The family a sample name belongs to: itself, or a histogram's/summary's series.
std::optional<std::string> family_of(const std::string& name,
                                     const std::map<std::string, std::string>& families) {
  if (families.contains(name)) return name;
  for (const std::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (!name.ends_with(suffix)) continue;
    auto base = name.substr(0, name.size() - suffix.size());
    const auto it = families.find(base);
    if (it != families.end() && (it->second == "histogram" || it->second == "summary")) {
      return base;
    }
  }
  return std::nullopt;
}

TEST(InfraTest, LiveMetricsPassPromtoolAndHoldEveryMetricOfTheDashboard) {
  ASSERT_TRUE(promtool_installed());
  TempDatabase db;
  TempDir data;
  const auto kafka = test_kafka(2);
  auto env = cauce_env(db.config(), kafka);
  env["CAUCE_DATA_DIR"] = data.path().string();
  env["CAUCE_COMMANDS_PROCESSOR_GROUP"] = unique_name("processor");
  env["CAUCE_PROJECTIONS_GROUP"] = unique_name("projector");
  env["CAUCE_WORKERS_GROUP"] = unique_name("workers");
  ASSERT_EQ(run_cauce({"topics", "create"}, env).first, 0);
  CauceProcess serve({"serve"}, env);
  const auto listening = serve.wait_for_line(R"("msg":"listening")");
  ASSERT_TRUE(listening) << serve.output();
  const auto port = listening_port(*listening);
  ASSERT_TRUE(
      eventually([&] { return http_request(port, http::verb::get, "/readyz").status == 200; }, 60s))
      << http_request(port, http::verb::get, "/readyz").body;
  std::string key;
  std::getline(std::ifstream(data.path() / "admin.key"), key);
  const std::pair<std::string, std::string> auth{"Authorization", "Bearer " + key};

  const auto created = http_request(port, http::verb::post, "/v1/contacts",
                                    R"({"name":"Ana Lima","phone":"+351 912 345 678"})",
                                    {auth, {"Idempotency-Key", "infra-test-contact"}}, 15s);
  ASSERT_EQ(created.status, 201u) << created.body;
  ASSERT_TRUE(created.headers.contains("cauce-position"));
  const auto listed =
      http_request(port, http::verb::get, "/v1/contacts?q=lima", "",
                   {auth, {"Cauce-Min-Position", created.headers.at("cauce-position")}}, 15s);
  EXPECT_EQ(listed.status, 200u) << listed.body;
  EXPECT_THAT(listed.body, HasSubstr("Ana Lima"));
  EXPECT_EQ(http_request(port, http::verb::get, "/v1/contacts").status, 401u);

  const auto metrics = http_request(port, http::verb::get, "/metrics");
  ASSERT_EQ(metrics.status, 200u);
  TempDir work;
  write_file(work.path() / "metrics.txt", metrics.body);
  const auto lint =
      run_tool("promtool check metrics < " + shell_quote((work.path() / "metrics.txt").string()));
  EXPECT_EQ(lint.exit_code, 0) << "promtool check metrics on the live /metrics:\n" << lint.output;

  const auto families = metric_families(metrics.body);
  std::set<std::string> missing;
  std::size_t checked = 0;
  for (const auto& query : dashboard_queries()) {
    for (const auto& name : cauce_metric_names(query.expr)) {
      ++checked;
      if (!family_of(name, families)) missing.insert(name + " (panel \"" + query.panel + "\")");
    }
  }
  EXPECT_GT(checked, 10u) << "the dashboard reads cauce's metrics";
  std::string list;
  for (const auto& m : missing) list += "\n  " + m;
  EXPECT_TRUE(missing.empty()) << "metrics the dashboard reads but /metrics has no `# TYPE` for:"
                               << list;

  // The same for the alert rules: an alert on a metric cauce does not export never fires.
  const auto alerts = yaml_as_json({kInfra / "prometheus" / "alerts.yml"});
  std::set<std::string> unexported;
  std::size_t alert_metrics = 0;
  for (const auto& group : alerts[0]["groups"].GetArray()) {
    for (const auto& rule : group["rules"].GetArray()) {
      for (const auto& name : cauce_metric_names(rule["expr"].GetString())) {
        ++alert_metrics;
        // Exported by an HTTPS listener only (this server speaks HTTP); TlsTest reads them.
        if (name.starts_with("cauce_http_tls_")) continue;
        if (!family_of(name, families)) {
          unexported.insert(name + " (alert " + rule["alert"].GetString() + ")");
        }
      }
    }
  }
  EXPECT_GT(alert_metrics, 8u) << "the alerts read cauce's metrics";
  list.clear();
  for (const auto& m : unexported) list += "\n  " + m;
  EXPECT_TRUE(unexported.empty()) << "metrics an alert reads but /metrics has no `# TYPE` for:"
                                  << list;

  serve.signal(SIGTERM);
  EXPECT_EQ(serve.wait_exit(), 0) << serve.output();
}

TEST(InfraTest, PrometheusConfigPassesPromtoolAndScrapesBothCauceServices) {
  ASSERT_TRUE(promtool_installed());
  const auto check = run_tool("promtool check config " + shell_quote(kPrometheusConfig.string()));
  EXPECT_EQ(check.exit_code, 0) << check.output;

  ASSERT_TRUE(pyyaml_installed());
  const auto docs = yaml_as_json({kInfra / "compose.yaml", kPrometheusConfig});
  const auto* jobs = member(&docs[1u], "scrape_configs");
  ASSERT_TRUE(jobs != nullptr && jobs->IsArray());
  std::set<std::string> targets;
  for (const auto& job : jobs->GetArray()) {
    const auto path = scalar(member(&job, "metrics_path"));
    const auto* groups = member(&job, "static_configs");
    if (groups == nullptr || !groups->IsArray()) continue;
    for (const auto& group : groups->GetArray()) {
      for (const auto& target : strings(member(&group, "targets"))) {
        targets.insert(target + (path.empty() ? "/metrics" : path));
      }
    }
  }
  const auto* services_of = member(&docs[0u], "services");
  ASSERT_NE(services_of, nullptr);
  const auto& services = *services_of;
  for (const char* name : {"cauce-api", "cauce-projector"}) {
    ASSERT_NE(member(&services, name), nullptr) << name;
    const auto port = environment(*member(&services, name))["CAUCE_HTTP_PORT"];
    EXPECT_TRUE(targets.contains(std::string(name) + ":" + port + "/metrics"))
        << name << " is not scraped at its HTTP port " << port;
  }
}

TEST(InfraTest, DashboardQueriesParseAndUseTheProvisionedDatasource) {
  ASSERT_TRUE(promtool_installed());
  ASSERT_TRUE(pyyaml_installed());
  const auto queries = dashboard_queries();
  ASSERT_FALSE(queries.empty());
  const auto provisioning =
      yaml_as_json({kInfra / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"});
  const auto* datasources = member(&provisioning[0u], "datasources");
  ASSERT_TRUE(datasources != nullptr && datasources->IsArray() && !datasources->Empty());
  const auto& datasource = (*datasources)[0u];
  const auto uid = scalar(member(&datasource, "uid"));
  EXPECT_EQ(scalar(member(&datasource, "type")), "prometheus");

  // Each query as a recording rule, Grafana's variables given values, for promtool to parse.
  std::string rules = "groups:\n  - name: dashboard\n    rules:\n";
  std::set<std::string> names_read;
  int n = 0;
  for (const auto& q : queries) {
    EXPECT_FALSE(q.expr.empty()) << "a target of panel \"" << q.panel << "\" has no expr";
    EXPECT_EQ(q.datasource_uid, uid) << "panel \"" << q.panel << "\"";
    auto expr = std::regex_replace(q.expr, std::regex(R"(\$__(rate_interval|interval))"), "1m");
    expr = std::regex_replace(expr, std::regex(R"(\$__range)"), "1h");
    rapidjson::StringBuffer quoted;  // a JSON string is a YAML double-quoted scalar
    rapidjson::Writer<rapidjson::StringBuffer> writer(quoted);
    writer.String(expr.c_str(), static_cast<rapidjson::SizeType>(expr.size()));
    rules += "      - record: dashboard:query_" + std::to_string(++n) +
             "\n        expr: " + quoted.GetString() + "\n";
    for (const auto& name : cauce_metric_names(q.expr)) names_read.insert(name);
  }
  TempDir work;
  write_file(work.path() / "rules.yml", rules);
  const auto check =
      run_tool("promtool check rules " + shell_quote((work.path() / "rules.yml").string()));
  EXPECT_EQ(check.exit_code, 0) << check.output << "\n" << rules;

  // What the issue asks the dashboard to show.
  for (const char* name : {"cauce_commands_total", "cauce_http_request_duration_seconds_bucket",
                           "cauce_projection_lag_events", "cauce_parked_events", "cauce_jobs_total",
                           "cauce_http_requests_total", "cauce_stream_clients"}) {
    EXPECT_TRUE(names_read.contains(name)) << "no panel reads " << name;
  }
  EXPECT_TRUE(std::any_of(queries.begin(), queries.end(), [](const PanelQuery& q) {
    return q.expr.find("histogram_quantile(0.99") != std::string::npos;
  })) << "no p99 panel";
}

TEST(InfraTest, ComposeDescribesTheStack) {
  ASSERT_TRUE(pyyaml_installed());
  const auto docs = yaml_as_json({kInfra / "compose.yaml"});
  const auto& compose = docs[0u];
  const auto* services = member(&compose, "services");
  ASSERT_NE(services, nullptr);
  for (const char* name : {"kafka", "postgres", "prometheus", "grafana"}) {
    EXPECT_NE(member(services, name), nullptr) << "no service " << name;
  }
  EXPECT_EQ(scalar(member(member(services, "kafka"), "image")).rfind("apache/kafka:3.9.", 0), 0u);
  EXPECT_EQ(scalar(member(member(services, "postgres"), "image")).rfind("postgres:15", 0), 0u);

  // One-shot services are the ones others wait for to complete; every other one is long-running.
  std::set<std::string> one_shot;
  for (const auto& s : services->GetObject()) {
    const auto* depends = member(&s.value, "depends_on");
    if (depends == nullptr || !depends->IsObject()) continue;
    for (const auto& d : depends->GetObject()) {
      if (scalar(member(&d.value, "condition")) == "service_completed_successfully") {
        one_shot.insert(d.name.GetString());
      }
    }
  }
  std::map<std::string, std::string> roles_by_service;
  std::string setup;
  for (const auto& s : services->GetObject()) {
    const std::string name = s.name.GetString();
    const auto command = words(member(&s.value, "command"));
    if (one_shot.contains(name)) {
      EXPECT_THAT(command, HasSubstr("cauce migrate")) << name;
      EXPECT_THAT(command, HasSubstr("cauce topics create")) << name;
      setup = name;
      continue;
    }
    const auto* health = member(&s.value, "healthcheck");
    EXPECT_FALSE(words(member(health, "test")).empty()) << name << " has no healthcheck";
    EXPECT_NE(scalar(member(health, "disable")), "true") << name;
    if (command == "serve") roles_by_service[name] = environment(s.value)["CAUCE_ROLES"];
  }
  ASSERT_FALSE(setup.empty()) << "no one-shot service migrates and creates the topics";

  // cauce: two long-running services splitting the roles, both waiting for healthy
  // dependencies and the setup, both with the data volume (the API serves the PDFs the workers
  // write), the password from a secret file, /healthz as the healthcheck.
  std::multiset<std::string> roles;
  for (const auto& [name, r] : roles_by_service) roles.insert(r);
  EXPECT_EQ(roles, (std::multiset<std::string>{"api,processor", "projector,workers"}))
      << "the cauce services and their CAUCE_ROLES";
  std::set<std::string> data_volumes;
  for (const auto& [name, r] : roles_by_service) {
    const auto& service = *member(services, name.c_str());
    auto env = environment(service);
    EXPECT_EQ(env["CAUCE_HTTP_HOST"], "0.0.0.0") << name << " must listen beyond loopback";
    EXPECT_FALSE(env.contains("CAUCE_POSTGRES_PASSWORD")) << name;
    EXPECT_EQ(env["CAUCE_POSTGRES_PASSWORD_FILE"].rfind("/run/secrets/", 0), 0u) << name;
    EXPECT_THAT(words(member(member(&service, "healthcheck"), "test")), HasSubstr("/healthz"))
        << name;
    const auto* depends = member(&service, "depends_on");
    EXPECT_EQ(scalar(member(member(depends, "kafka"), "condition")), "service_healthy") << name;
    EXPECT_EQ(scalar(member(member(depends, "postgres"), "condition")), "service_healthy") << name;
    EXPECT_EQ(scalar(member(member(depends, setup.c_str()), "condition")),
              "service_completed_successfully")
        << name;
    for (const auto& volume : strings(member(&service, "volumes"))) {
      const auto colon = volume.find(':');
      if (volume.substr(colon + 1, volume.find(':', colon + 1) - colon - 1) ==
          env["CAUCE_DATA_DIR"]) {
        data_volumes.insert(volume.substr(0, colon));
      }
    }
    const auto* build = member(&service, "build");
    EXPECT_TRUE(
        fs::exists(kInfra / scalar(member(build, "context")) / scalar(member(build, "dockerfile"))))
        << name << " builds from a Dockerfile that does not exist";
  }
  ASSERT_EQ(data_volumes.size(), 1u) << "both cauce services mount one volume at the data dir";
  EXPECT_NE(member(member(&compose, "volumes"), data_volumes.begin()->c_str()), nullptr)
      << "the data dir is a named volume";

  const auto api = std::find_if(roles_by_service.begin(), roles_by_service.end(),
                                [](const auto& e) { return e.second == "api,processor"; });
  ASSERT_NE(api, roles_by_service.end());
  EXPECT_TRUE(container_ports(*member(services, api->first.c_str())).contains("8080"));
  EXPECT_TRUE(container_ports(*member(services, "prometheus")).contains("9090"));
  EXPECT_TRUE(container_ports(*member(services, "grafana")).contains("3000"));

  // Secrets come from files; no service has a password in its environment.
  const auto* secrets = member(&compose, "secrets");
  ASSERT_NE(secrets, nullptr) << "no secrets: passwords would be inline";
  for (const auto& s : secrets->GetObject()) {
    EXPECT_FALSE(scalar(member(&s.value, "file")).empty())
        << "secret " << s.name.GetString() << " is not a file";
  }
  for (const auto& s : services->GetObject()) {
    for (const auto& [key, value] : environment(s.value)) {
      if (key.find("PASSWORD") == std::string::npos) continue;
      EXPECT_TRUE(key.ends_with("_FILE")) << s.name.GetString() << ": " << key << " inline";
    }
    // Files the stack mounts from infra/ exist (./prometheus/prometheus.yml, ./grafana/...).
    for (const auto& volume : strings(member(&s.value, "volumes"))) {
      if (!volume.starts_with("./")) continue;
      EXPECT_TRUE(fs::exists(kInfra / volume.substr(0, volume.find(':'))))
          << s.name.GetString() << " mounts " << volume;
    }
  }
}

TEST(InfraTest, CauceAcceptsTheEnvironmentOfEveryCauceService) {
  ASSERT_TRUE(pyyaml_installed());
  const auto docs = yaml_as_json({kInfra / "compose.yaml"});
  // The image's own ENV lines come first; compose's environment overrides them.
  std::map<std::string, std::string> image_env;
  static const std::regex kEnvLine(R"((CAUCE_[A-Z0-9_]+)=(\S+))");
  const auto dockerfile = read_file(kInfra / "Dockerfile");
  for (auto it = std::sregex_iterator(dockerfile.begin(), dockerfile.end(), kEnvLine);
       it != std::sregex_iterator(); ++it) {
    image_env[(*it)[1]] = (*it)[2];
  }
  EXPECT_TRUE(image_env.contains("CAUCE_DATA_DIR"));
  TempDir work;
  write_file(work.path() / "postgres_password", "not-the-real-one\n");
  int cauce_services = 0;
  const auto* services = member(&docs[0u], "services");
  ASSERT_NE(services, nullptr);
  for (const auto& s : services->GetObject()) {
    if (scalar(member(&s.value, "image")) != "cauce:local") continue;
    ++cauce_services;
    auto env = image_env;
    for (const auto& [key, value] : environment(s.value)) env[key] = value;
    env["CAUCE_POSTGRES_PASSWORD_FILE"] = (work.path() / "postgres_password").string();
    const auto [rc, out] = run_cauce({"config", "--print"}, env);
    EXPECT_EQ(rc, 0) << s.name.GetString() << ": " << out;
    if (env.contains("CAUCE_ROLES")) {
      EXPECT_THAT(out, HasSubstr("roles = " + env["CAUCE_ROLES"] + "\n")) << s.name.GetString();
    }
  }
  EXPECT_EQ(cauce_services, 3) << "setup, api+processor and projector+workers";
}

TEST(InfraTest, DockerfileBuildsTheReleasePresetAndRunsAsNonRoot) {
  const auto dockerfile = read_file(kInfra / "Dockerfile");
  EXPECT_THAT(dockerfile, HasSubstr("debian:bookworm"));
  EXPECT_THAT(dockerfile, HasSubstr("cmake --preset release"));
  const auto presets = parse_json_file(kSource / "CMakePresets.json");
  const auto* configure = member(&presets, "configurePresets");
  ASSERT_TRUE(configure != nullptr && configure->IsArray());
  EXPECT_TRUE(std::any_of(configure->Begin(), configure->End(), [](const rapidjson::Value& p) {
    return scalar(member(&p, "name")) == "release";
  })) << "CMakePresets.json has no `release` preset";

  // The build stage's sources exist, and the dockerignore next to the Dockerfile lets them in.
  const auto ignore = read_file(kInfra / "Dockerfile.dockerignore");
  std::istringstream lines(dockerfile);
  std::string final_stage;  // from the last FROM on
  int stages = 0;
  for (std::string line; std::getline(lines, line);) {
    std::istringstream in(line);
    std::string instruction;
    in >> instruction;
    if (instruction == "FROM") {
      ++stages;
      final_stage.clear();
    }
    final_stage += line + "\n";
    if (instruction != "COPY" || line.find("--from=") != std::string::npos) continue;
    std::vector<std::string> args;
    for (std::string word; in >> word;) {
      if (!word.starts_with("--")) args.push_back(word);
    }
    if (args.size() < 2) {
      ADD_FAILURE() << "cannot read " << line;
      continue;
    }
    args.pop_back();  // the destination
    for (const auto& source : args) {
      EXPECT_TRUE(fs::exists(kSource / source)) << "COPY " << source << ": not in the repository";
      EXPECT_THAT(ignore, HasSubstr("!" + source + "\n")) << source << " is ignored";
    }
  }
  EXPECT_GE(stages, 2) << "multi-stage";
  static const std::regex kUser(R"((^|\n)USER +(\S+))");
  std::smatch user;
  ASSERT_TRUE(std::regex_search(final_stage, user, kUser)) << "the final stage sets no USER";
  EXPECT_FALSE(user[2].str().starts_with("root") || user[2].str().starts_with("0:") ||
               user[2].str() == "0")
      << user[2].str();
  const auto healthcheck = final_stage.find("\nHEALTHCHECK ");
  ASSERT_NE(healthcheck, std::string::npos) << "the final stage has no HEALTHCHECK";
  EXPECT_NE(final_stage.find("/healthz", healthcheck), std::string::npos);
}

}  // namespace
}  // namespace cauce::testing
