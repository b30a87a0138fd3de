// Bulk import (issue 16, part 4) on the real `cauce serve`, real Kafka and PostgreSQL, over real
// sockets: CSV and NDJSON, re-importing adds nothing, row errors listed by row, quoting, embedded
// line breaks, a BOM and CRLF, chunked bodies, the per-key cap (429), the size limit (413, and
// nothing behind), a client that goes away mid-upload (a failed import, the server up), files
// refused whole, progress on the stream, and every event fitting its schema.
#include <csignal>
#include <fstream>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "event_log.hpp"
#include "served.hpp"
#include "sse_client.hpp"

namespace cauce::testing {
namespace {

namespace asio = boost::asio;
namespace beast_http = boost::beast::http;
using ::testing::HasSubstr;

// An upload over a socket of its own, sent in parts the test times: with Content-Length
// (declared up front) or chunked (`length` nullopt), ended, or dropped half-way.
class Upload {
 public:
  Upload(std::uint16_t port, const std::string& key, const std::string& content_type,
         std::optional<std::size_t> length, const std::string& target = "/v1/imports")
      : socket_(ioc_), chunked_(!length) {
    socket_.connect({asio::ip::make_address("127.0.0.1"), port});
    std::string head = "POST " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " +
                       key + "\r\nContent-Type: " + content_type + "\r\n";
    head += length ? "Content-Length: " + std::to_string(*length) + "\r\n"
                   : std::string("Transfer-Encoding: chunked\r\n");
    asio::write(socket_, asio::buffer(head + "\r\n"));
  }

  void send(const std::string& bytes) {
    if (bytes.empty()) return;
    std::string out = bytes;
    if (chunked_) {
      char size[32];
      std::snprintf(size, sizeof size, "%zx\r\n", bytes.size());
      out = size + bytes + "\r\n";
    }
    boost::system::error_code ignored;  // the server may have answered and stopped reading
    asio::write(socket_, asio::buffer(out), ignored);
  }
  void end() {
    boost::system::error_code ignored;
    if (chunked_) asio::write(socket_, asio::buffer(std::string("0\r\n\r\n")), ignored);
  }
  void drop() {
    boost::system::error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  // The answer (the server closes the connection after an upload's answer).
  HttpResult answer() {
    std::string raw;
    boost::system::error_code ec;
    char chunk[8192];
    for (;;) {
      const auto n = socket_.read_some(asio::buffer(chunk), ec);
      raw.append(chunk, n);
      if (ec) break;
    }
    HttpResult r;
    const auto head_end = raw.find("\r\n\r\n");
    if (raw.size() < 12 || head_end == std::string::npos) return r;
    r.status = static_cast<unsigned>(std::stoi(raw.substr(9, 3)));
    std::size_t at = raw.find("\r\n") + 2;
    while (at < head_end) {
      const auto line_end = raw.find("\r\n", at);
      const auto line = raw.substr(at, line_end - at);
      const auto colon = line.find(':');
      std::string name = line.substr(0, colon);
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      auto value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      r.headers[name] = value;
      at = line_end + 2;
    }
    r.body = raw.substr(head_end + 4);
    return r;
  }

 private:
  asio::io_context ioc_;
  asio::ip::tcp::socket socket_;
  bool chunked_;
};

// The items of an errors page as "row field: message" lines.
std::string error_lines(const std::string& page) {
  rapidjson::Document d;
  d.Parse(page.c_str());
  std::string out;
  if (!d.IsObject() || !d.HasMember("items")) return "<not a page> " + page;
  for (const auto& e : d["items"].GetArray()) {
    out += std::to_string(e["row"].GetInt64()) + " " + e["field"].GetString() + ": " +
           e["message"].GetString() + "\n";
  }
  return out;
}

// The rows of a CSV file of `n` valid contacts (names from `tag`), without the header.
std::string csv_rows(int n, const std::string& tag, int first = 0) {
  std::string out;
  for (int i = first; i < first + n; ++i) {
    out += tag + " " + std::to_string(i) + ",+351 912 " + std::to_string(100000 + i) + "\r\n";
  }
  return out;
}

class ImportsTest : public ServedTest {
 protected:
  void SetUp() override {
    settings["CAUCE_HTTP_RATE_LIMIT_OPERATOR"] = "0";
    settings["CAUCE_HTTP_RATE_LIMIT_ADMIN"] = "0";
    settings["CAUCE_IMPORTS_MAX_BYTES"] = std::to_string(kMaxBytes);
    ServedTest::SetUp();
    serve();
  }

  void TearDown() override {
    // What the server said, when a test failed (its errors are logged with the request id).
    if (HasFailure() && serve_) {
      const auto out = serve_->output();
      std::cerr << out.substr(out.size() > 6000 ? out.size() - 6000 : 0) << "\n";
    }
  }

  HttpResult import(const std::string& body, const std::string& content_type = "text/csv",
                    const std::string& key = "") const {
    std::vector<std::pair<std::string, std::string>> headers = {
        {"Authorization", "Bearer " + (key.empty() ? admin_ : key)},
        {"Content-Type", content_type}};
    return http_request(port_, beast_http::verb::post, "/v1/imports", body, headers,
                        std::chrono::seconds(60));
  }

  std::string key(const std::string& name, const std::string& role) const {
    const auto r = call(beast_http::verb::post, "/v1/keys",
                        R"({"name":")" + name + R"(","role":")" + role + R"("})");
    EXPECT_EQ(r.status, 201u) << r.body;
    return json_member(r.body, "key");
  }

  // Contacts in the read model whose name starts with `prefix`.
  std::string contacts_named(const std::string& prefix) const {
    return db_.query_value("SELECT count(*) FROM contacts WHERE name LIKE '" + prefix + "%'");
  }

  // Every import event and contact registration in the log, all fitting their schemas.
  std::vector<LoggedEvent> events_of(const std::string& aggregate_type) const {
    const auto log = read_event_log(kafka_);
    EXPECT_THAT(schema_problems(log), ::testing::IsEmpty());
    std::vector<LoggedEvent> out;
    for (const auto& e : log) {
      if (e.envelope.aggregate_type == aggregate_type) out.push_back(e);
    }
    return out;
  }

  static constexpr std::int64_t kMaxBytes = 64 * 1024;
};

TEST_F(ImportsTest, ReimportingACsvAddsNothingAndItsErrorsAreListedByRow) {
  // A BOM, CRLF, quoted commas, doubled quotes, a line break inside a field, a blank line, tags.
  const std::string file =
      "\xEF\xBB\xBF"
      "name,phone,email,tags,notes\r\n"
      "\"Lima, Ana\",+351 912 345 678,ana@example.org,vip;north,\"said \"\"call back\"\"\"\r\n"
      "Bo Reis,12345,,,\r\n"
      "\"Cy\r\nSousa\",+44 20 7946 0958,,,\"two\nlines\"\r\n"
      "\r\n"
      "Di Melo,+1 415 555 0100,not-an-email,,\r\n"
      "Ed Paiva,+33 1 23 45 67 89,,,,extra\r\n"
      "Fa Costa,+34 912 345 678,,,";
  const auto first = import(file);
  ASSERT_EQ(first.status, 201u) << first.body;
  EXPECT_EQ(json_member(first.body, "status"), "completed");
  EXPECT_EQ(json_member(first.body, "rows_total"), "6");
  EXPECT_EQ(json_member(first.body, "accepted"), "3");
  EXPECT_EQ(json_member(first.body, "rejected"), "3");
  EXPECT_EQ(json_member(first.body, "duplicates"), "0");
  const auto id = json_member(first.body, "id");
  EXPECT_EQ(first.headers.at("location"), "/v1/imports/" + id);
  const auto position = first.headers.at("cauce-position");

  const auto state = get("/v1/imports/" + id, position);
  ASSERT_EQ(state.status, 200u) << state.body;
  EXPECT_EQ(json_member(state.body, "status"), "completed");
  EXPECT_EQ(json_member(state.body, "accepted"), "3");
  EXPECT_EQ(json_member(state.body, "format"), "csv");
  const auto errors = get("/v1/imports/" + id + "/errors");
  ASSERT_EQ(errors.status, 200u) << errors.body;
  // Rows as a spreadsheet numbers them: the header is 1, the quoted line break stays in row 4.
  const auto lines = error_lines(errors.body);
  EXPECT_THAT(lines, HasSubstr("3 phone: "));
  EXPECT_THAT(lines, HasSubstr("6 email: "));
  EXPECT_THAT(lines, HasSubstr("7 row: has 6 columns; the header has 5\n"));
  EXPECT_EQ(std::count(lines.begin(), lines.end(), '\n'), 3) << lines;
  const auto page = get("/v1/imports/" + id + "/errors?limit=2");
  ASSERT_EQ(page.status, 200u);
  const auto rest =
      get("/v1/imports/" + id + "/errors?limit=2&cursor=" + json_member(page.body, "next_cursor"));
  EXPECT_THAT(error_lines(rest.body), HasSubstr("7 row: "));
  EXPECT_EQ(json_member(rest.body, "next_cursor"), "null");

  EXPECT_EQ(db_.query_value("SELECT notes FROM contacts WHERE name = 'Lima, Ana'"),
            "said \"call back\"");
  EXPECT_EQ(
      db_.query_value("SELECT array_to_string(tags, '|') FROM contacts WHERE name = 'Lima, Ana'"),
      "vip|north");
  EXPECT_EQ(db_.query_value("SELECT notes FROM contacts WHERE name = E'Cy\\r\\nSousa'"),
            "two\nlines");

  // The same file again: every valid row is a duplicate, the same rows are rejected.
  const auto again = import(file);
  ASSERT_EQ(again.status, 201u) << again.body;
  EXPECT_EQ(json_member(again.body, "accepted"), "0");
  EXPECT_EQ(json_member(again.body, "duplicates"), "3");
  EXPECT_EQ(json_member(again.body, "rejected"), "3");
  ASSERT_EQ(get("/v1/imports/" + json_member(again.body, "id"), again.headers.at("cauce-position"))
                .status,
            200u);
  EXPECT_EQ(db_.query_value("SELECT count(*) FROM contacts"), "3");
  EXPECT_EQ(events_of("contact").size(), 3u) << "the second import appended no contact event";
}

TEST_F(ImportsTest, NdjsonRowsWithTheirOwnIdsAndAnIdTakenAlready) {
  const auto taken =
      call(beast_http::verb::post, "/v1/contacts",
           R"({"id":"0195a0c4-0000-7000-8000-0000000000a1","name":"Old","phone":"+351912345678"})");
  ASSERT_EQ(taken.status, 201u) << taken.body;
  const std::string file =
      R"({"id":"0195a0c4-0000-7000-8000-0000000000a1","name":"Taken","phone":"+351912345678"})"
      "\n"
      R"({"id":"0195a0c4-0000-7000-8000-0000000000a2","name":"Nova","phone":"+351912345679","tags":["x"]})"
      "\n\n"
      R"({"name":"Sem Id","phone":"+351912345670","colour":"red"})"
      "\n"
      "not json\n"
      R"({"name":"Sem Id","phone":"+351912345670"})";
  const auto r = import(file, "application/x-ndjson");
  ASSERT_EQ(r.status, 201u) << r.body;
  EXPECT_EQ(json_member(r.body, "format"), "ndjson");
  EXPECT_EQ(json_member(r.body, "rows_total"), "5");
  EXPECT_EQ(json_member(r.body, "accepted"), "2");
  EXPECT_EQ(json_member(r.body, "duplicates"), "1") << "an id taken already adds nothing";
  EXPECT_EQ(json_member(r.body, "rejected"), "2");
  const auto errors =
      get("/v1/imports/" + json_member(r.body, "id") + "/errors", r.headers.at("cauce-position"));
  EXPECT_THAT(error_lines(errors.body), HasSubstr("4 colour: "));
  EXPECT_THAT(error_lines(errors.body), HasSubstr("5 row: "));
  const auto nova = get("/v1/contacts/0195a0c4-0000-7000-8000-0000000000a2");
  EXPECT_EQ(json_member(nova.body, "name"), "Nova");
  EXPECT_EQ(json_member(get("/v1/contacts/0195a0c4-0000-7000-8000-0000000000a1").body, "name"),
            "Old");
  // The import's events say who sent it and carry its id as correlation.
  for (const auto& e : events_of("import")) {
    EXPECT_EQ(e.envelope.correlation_id, json_member(r.body, "id"));
  }
}

TEST_F(ImportsTest, AMemberWithAnEmptyNameRejectsItsRowAndNothingElse) {
  // {"": 1} parses (JSON allows the empty name) and is no field of a contact: the row is
  // rejected naming the row, and the import completes with the others.
  const std::string file = R"({"":1,"name":"Blank Key","phone":"+351912345678"})"
                           "\n"
                           R"({"name":"Fine","phone":"+351912345679"})";
  const auto r = import(file, "application/x-ndjson");
  ASSERT_EQ(r.status, 201u) << r.body;
  EXPECT_EQ(json_member(r.body, "status"), "completed");
  EXPECT_EQ(json_member(r.body, "accepted"), "1");
  EXPECT_EQ(json_member(r.body, "rejected"), "1");
  const auto errors =
      get("/v1/imports/" + json_member(r.body, "id") + "/errors", r.headers.at("cauce-position"));
  EXPECT_THAT(error_lines(errors.body), HasSubstr("1 row: a member with an empty name"));
}

TEST_F(ImportsTest, AFileOfRejectedRowsIsListedInFullAndAnsweredInItsOwnTime) {
  // Thousands of rows that fail the schema (no phone) cost no command each, but their listings
  // do: the import reads at the pace of its own steps, lists every one and completes.
  constexpr int kBad = 3000;
  std::string file = "name,phone\n";
  for (int i = 0; i < kBad; ++i) file += "x,\n";
  file += "Good,+351 912 345 678\n";
  const auto r = import(file);
  ASSERT_EQ(r.status, 201u) << r.body;
  EXPECT_EQ(json_member(r.body, "rejected"), std::to_string(kBad));
  EXPECT_EQ(json_member(r.body, "accepted"), "1");
  const auto id = json_member(r.body, "id");
  ASSERT_EQ(get("/v1/imports/" + id, r.headers.at("cauce-position")).status, 200u);
  EXPECT_EQ(db_.query_value("SELECT count(*) FROM import_errors WHERE import_id = '" + id + "'"),
            std::to_string(kBad));
}

TEST_F(ImportsTest, SpoolFilesLeftByAKilledProcessAreSweptAtStartNewOnesKept) {
  serve_.reset();  // stopped; as if it had been killed mid-upload, two spool files remain
  const auto dir = data_.path() / "imports";
  std::filesystem::create_directories(dir);
  const auto stale = dir / "0195a0c4-0000-7000-8000-00000000dead.rows";
  const auto fresh = dir / "0195a0c4-0000-7000-8000-00000000f00d.rows";
  std::ofstream(stale) << "[2,\"x\",\"{}\"]\n";
  std::ofstream(fresh) << "[2,\"y\",\"{}\"]\n";
  std::filesystem::last_write_time(
      stale, std::filesystem::file_time_type::clock::now() - std::chrono::hours(2));
  serve();
  EXPECT_FALSE(std::filesystem::exists(stale)) << "untouched for two hours: removed";
  EXPECT_TRUE(std::filesystem::exists(fresh)) << "another process may be writing it";
}

TEST_F(ImportsTest, AChunkedBodyIsImported) {
  Upload upload(port_, admin_, "text/csv; charset=utf-8", std::nullopt);
  upload.send("name,phone\r\n\"Chunk");
  upload.send("ed, One\",+351 912 000 001\r\n");
  upload.send(csv_rows(50, "Chunk"));
  upload.end();
  const auto r = upload.answer();
  ASSERT_EQ(r.status, 201u) << r.body;
  EXPECT_EQ(json_member(r.body, "accepted"), "51");
  ASSERT_EQ(get("/v1/imports/" + json_member(r.body, "id"), r.headers.at("cauce-position")).status,
            200u);
  EXPECT_EQ(contacts_named("Chunk"), "51");
  EXPECT_TRUE(std::filesystem::is_empty(data_.path() / "imports")) << "the spool file is gone";
}

TEST_F(ImportsTest, AThirdConcurrentImportFromOneKeyGets429) {
  const std::string header = "name,phone\n";
  const auto rows_a = csv_rows(20, "HeldA");
  const auto rows_b = csv_rows(20, "HeldB");
  Upload one(port_, admin_, "text/csv", header.size() + rows_a.size());
  Upload two(port_, admin_, "text/csv", header.size() + rows_b.size());
  // Each sends its first row; once both are registered, both imports are surely running.
  const auto first_row = [](const std::string& rows) {
    return rows.substr(0, rows.find('\n') + 1);
  };
  one.send(header + first_row(rows_a));
  two.send(header + first_row(rows_b));
  ASSERT_TRUE(
      eventually([&] { return contacts_named("HeldA") == "1" && contacts_named("HeldB") == "1"; }));

  const auto third = import(header + csv_rows(1, "Third"));
  EXPECT_EQ(third.status, 429u) << third.body;
  EXPECT_THAT(third.body, HasSubstr("too-many-imports"));
  EXPECT_EQ(third.headers.count("retry-after") ? third.headers.at("retry-after") : "", "10");
  // Another key is not held back by this one's imports.
  const auto other = import(header + csv_rows(1, "Other"), "text/csv", key("other", "operator"));
  EXPECT_EQ(other.status, 201u) << other.body;

  one.send(rows_a.substr(first_row(rows_a).size()));
  const auto finished = one.answer();
  ASSERT_EQ(finished.status, 201u) << finished.body;
  EXPECT_EQ(json_member(finished.body, "accepted"), "20");
  two.drop();
  // A slot is free again once an import ended.
  const auto fourth = import(header + csv_rows(1, "Fourth"));
  EXPECT_EQ(fourth.status, 201u) << fourth.body;
  EXPECT_EQ(contacts_named("Third"), "0") << "the refused import registered nothing";
}

TEST_F(ImportsTest, AnUploadPastTheLimitGets413AndLeavesNothingBehind) {
  // Declared too large: refused before a byte of the body is read.
  Upload declared(port_, admin_, "text/csv", kMaxBytes + 1);
  const auto early = declared.answer();
  EXPECT_EQ(early.status, 413u) << early.body;
  EXPECT_THAT(early.body, HasSubstr(R"("field":"Content-Length")"));

  // Chunked, crossing the limit after many complete, valid rows: still nothing registered, since
  // a body of unknown length is registered only once it has all arrived within the limit.
  Upload chunked(port_, admin_, "text/csv", std::nullopt);
  chunked.send("name,phone\n");
  std::size_t sent = 0;
  for (int i = 0; sent <= static_cast<std::size_t>(kMaxBytes) + 4096; i += 100) {
    const auto part = csv_rows(100, "Over", i);
    chunked.send(part);
    sent += part.size();
  }
  chunked.end();
  const auto late = chunked.answer();
  EXPECT_EQ(late.status, 413u) << late.body;
  EXPECT_THAT(late.body, HasSubstr(R"("field":"body")"));

  // A later import's events are in the log after anything the two could have appended.
  const auto marker = import("name,phone\nMarker,+351912345678\n");
  ASSERT_EQ(marker.status, 201u) << marker.body;
  ASSERT_EQ(
      get("/v1/imports/" + json_member(marker.body, "id"), marker.headers.at("cauce-position"))
          .status,
      200u);
  const auto contacts = events_of("contact");
  ASSERT_EQ(contacts.size(), 1u) << "only the marker's contact was registered";
  for (const auto& e : events_of("import")) {
    EXPECT_EQ(e.envelope.aggregate_id, json_member(marker.body, "id"))
        << "no import but the marker's";
  }
  EXPECT_EQ(db_.query_value("SELECT count(*) FROM imports"), "1");
  EXPECT_TRUE(std::filesystem::is_empty(data_.path() / "imports")) << "the spool file is gone";
  EXPECT_EQ(get("/healthz").status, 200u);
}

TEST_F(ImportsTest, AClientThatGoesAwayMidUploadLeavesAFailedImportAndTheServerUp) {
  const std::string header = "name,phone\n";
  const auto sent = csv_rows(30, "Gone");
  Upload upload(port_, admin_, "text/csv", header.size() + sent.size() + 10000);
  upload.send(header + sent + "Half a ro");
  ASSERT_TRUE(eventually([&] { return contacts_named("Gone") == "30"; }))
      << "the complete rows are registered as they arrive";
  upload.drop();
  ASSERT_TRUE(eventually([&] {
    return db_.query_value("SELECT status FROM imports WHERE accepted = 30") == "failed";
  }));
  EXPECT_EQ(db_.query_value("SELECT rows_total FROM imports"), "30");
  EXPECT_THAT(db_.query_value("SELECT failure FROM imports"), HasSubstr("went away"));
  EXPECT_THAT(db_.query_value("SELECT failure FROM imports"),
              HasSubstr("the rows counted were registered"));
  EXPECT_EQ(contacts_named("Gone"), "30");
  // Up, and the same file again adds only what was missing.
  const auto rest = import(header + sent + csv_rows(5, "Gone", 30));
  ASSERT_EQ(rest.status, 201u) << rest.body;
  EXPECT_EQ(json_member(rest.body, "duplicates"), "30");
  EXPECT_EQ(json_member(rest.body, "accepted"), "5");
}

TEST_F(ImportsTest, AnImportLeftRunningByAKilledProcessIsRecordedFailed) {
  const std::string header = "name,phone\n";
  const auto sent = csv_rows(10, "Orphan");
  Upload upload(port_, admin_, "text/csv", header.size() + sent.size() + 10000);
  upload.send(header + sent);
  ASSERT_TRUE(eventually([&] { return contacts_named("Orphan") == "10"; }));
  ASSERT_TRUE(
      eventually([&] { return db_.query_value("SELECT status FROM imports") == "running"; }));
  serve_->signal(SIGKILL);  // no clean stop: nothing records the import's end
  ASSERT_TRUE(serve_->wait_exit().has_value());
  upload.drop();
  settings["CAUCE_IMPORTS_ABANDONED_AFTER_S"] = "1";
  serve();
  ASSERT_TRUE(
      eventually([&] { return db_.query_value("SELECT status FROM imports") == "failed"; }, 60s));
  EXPECT_THAT(db_.query_value("SELECT failure FROM imports"), HasSubstr("abandoned"));
  // The counts last recorded (progress is recorded about once a second): at most what was done.
  EXPECT_LE(std::stoi(db_.query_value("SELECT accepted FROM imports")), 10);
  for (const auto& e : events_of("import")) {
    if (e.envelope.type == "import.failed") {
      EXPECT_EQ(e.envelope.actor, "housekeeping");
    }
  }
}

TEST_F(ImportsTest, ABadFileIsRefusedWholeAndChangesNothing) {
  const auto reader = key("reader", "reader");
  struct Case {
    std::string body;
    std::string content_type;
    unsigned status;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"colour,size\nred,L\n", "text/csv", 400, "header"},
      {"name,phone,colour\nA,+351912345678,red\n", "text/csv", 400, "header"},
      {"na\xffme,phone\nA,+351912345678\n", "text/csv", 400, "header"},
      {std::string("\xFF\xFEn\0a\0m\0e\0", 10), "text/csv", 400, "body"},
      {"", "text/csv", 400, "header"},
      {"name,phone\nA,+351912345678\n", "text/plain", 415, "Content-Type"},
      {"name,phone\nA,+351912345678\n", "text/csv; charset=iso-8859-1", 415, "Content-Type"},
  };
  for (const auto& c : cases) {
    const auto r = import(c.body, c.content_type);
    EXPECT_EQ(r.status, c.status) << c.body << " " << r.body;
    EXPECT_THAT(r.body, HasSubstr(R"("field":")" + c.field + "\"")) << c.body;
  }
  EXPECT_EQ(import("name,phone\nA,+351912345678\n", "text/csv", reader).status, 403u);
  EXPECT_EQ(http_request(port_, beast_http::verb::post, "/v1/imports", "name,phone\n",
                         {{"Content-Type", "text/csv"}})
                .status,
            401u);
  // A row of 10,000 columns is a row error, not a refusal.
  const auto wide = import("name,phone\nWide,+351912345678" + std::string(10000, ',') + "\n");
  ASSERT_EQ(wide.status, 201u) << wide.body;
  EXPECT_EQ(json_member(wide.body, "rejected"), "1");
  const auto errors = get("/v1/imports/" + json_member(wide.body, "id") + "/errors",
                          wide.headers.at("cauce-position"));
  EXPECT_EQ(error_lines(errors.body), "2 row: has more than 64 columns\n");
  // Only the wide file's import exists; no contact was registered by any of them.
  EXPECT_EQ(db_.query_value("SELECT count(*) FROM imports"), "1");
  EXPECT_TRUE(events_of("contact").empty());
  EXPECT_EQ(get("/healthz").status, 200u);
}

TEST_F(ImportsTest, ProgressReachesTheStreamOnTopicImports) {
  SseClient stream(port_, admin_, "/v1/stream?topics=imports");
  ASSERT_TRUE(stream.wait_for_head());
  const auto r = import("name,phone\n" + csv_rows(10, "Streamed"));
  ASSERT_EQ(r.status, 201u) << r.body;
  // Started, perhaps progress (about once a second), completed: in that order.
  std::vector<SseEvent> events;
  ASSERT_TRUE(eventually([&] {
    for (auto& e : stream.read(1, std::chrono::milliseconds(500))) events.push_back(std::move(e));
    return !events.empty() && events.back().data.find("import.completed") != std::string::npos;
  })) << events.size();
  EXPECT_EQ(events.front().event, "imports");
  EXPECT_THAT(events.front().data, HasSubstr(R"("type":"import.started")"));
  EXPECT_THAT(events.front().data, HasSubstr(json_member(r.body, "id")));
  for (std::size_t i = 1; i + 1 < events.size(); ++i) {
    EXPECT_THAT(events[i].data, HasSubstr(R"("type":"import.progressed")"));
  }
}

}  // namespace
}  // namespace cauce::testing
