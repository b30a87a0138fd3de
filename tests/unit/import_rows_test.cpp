// Reading an import's body row by row: RFC 4180 quoting (commas, quotes and line breaks inside
// fields), CRLF and LF, a UTF-8 byte order mark, NDJSON lines; bytes in pieces of any size give
// the same rows; bad rows are row errors naming the field, bad files are 400s naming the header.
#include "import_rows.hpp"

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <cauce/api/problem.hpp>

namespace cauce::api {
namespace {

// All rows of `body`, fed `piece` bytes at a time.
std::vector<ImportRow> read_all(ImportFormat format, const std::string& body,
                                std::size_t piece = 1 << 20, RowLimits limits = {}) {
  RowReader reader(format, limits);
  std::vector<ImportRow> rows;
  for (std::size_t at = 0; at < body.size(); at += piece) {
    reader.feed(std::string_view(body).substr(at, piece), rows);
  }
  reader.finish(rows);
  return rows;
}

std::string member(const ImportRow& row, const char* name) {
  rapidjson::Document d;
  d.Parse(row.data.c_str());
  if (!d.IsObject() || !d.HasMember(name)) return "<absent>";
  if (d[name].IsString()) return d[name].GetString();
  std::string out;
  for (const auto& t : d[name].GetArray())
    out += std::string(out.empty() ? "" : "|") + t.GetString();
  return out;
}

// The field a file-level refusal names ("<ok>" when the file is taken).
std::string refused_field(ImportFormat format, const std::string& body) {
  try {
    read_all(format, body);
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status(), http::status::bad_request);
    return e.errors().at(0).field;
  }
  return "<ok>";
}

const std::string kTricky =
    "\xEF\xBB\xBF"
    "Name,Phone,Email,Tags,Notes\r\n"
    "\"Lima, Ana\",+351 912 345 678,ana@example.org,vip; north,\"said \"\"call back\"\"\"\r\n"
    "Bo,+44 20 7946 0958,,,\"two\r\nlines, and a comma\"\r\n"
    "\r\n"
    "Cy,+1 415 555 0100,,,\n"
    "Di,+33 1 23 45 67 89";

TEST(ImportRowsTest, CsvQuotingLineEndsAndTheByteOrderMark) {
  for (const std::size_t piece :
       {std::size_t{1}, std::size_t{2}, std::size_t{7}, std::size_t{1 << 20}}) {
    const auto rows = read_all(ImportFormat::kCsv, kTricky, piece);
    ASSERT_EQ(rows.size(), 4u) << "piece " << piece;
    for (const auto& r : rows) EXPECT_FALSE(r.error) << r.number << " " << r.error->message;
    EXPECT_EQ(member(rows[0], "name"), "Lima, Ana");
    EXPECT_EQ(member(rows[0], "tags"), "vip|north");
    EXPECT_EQ(member(rows[0], "notes"), "said \"call back\"");
    EXPECT_EQ(member(rows[1], "notes"), "two\r\nlines, and a comma");
    EXPECT_EQ(member(rows[1], "email"), "<absent>") << "an empty cell is an absent field";
    EXPECT_EQ(member(rows[3], "name"), "Di") << "the last row needs no line end";
    // Records are numbered as a spreadsheet shows them: the header is 1, a blank line counts.
    EXPECT_EQ(rows[0].number, 2);
    EXPECT_EQ(rows[1].number, 3);
    EXPECT_EQ(rows[2].number, 5);
    EXPECT_EQ(rows[3].number, 6);
  }
}

TEST(ImportRowsTest, TheSameFileGivesTheSameContactIds) {
  const auto a = read_all(ImportFormat::kCsv, kTricky, 3);
  const auto b = read_all(ImportFormat::kCsv, kTricky, 1000);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].contact_id, b[i].contact_id);
  EXPECT_NE(a[0].contact_id, a[1].contact_id);
  // A row's own id is its contact's.
  const auto own =
      read_all(ImportFormat::kCsv,
               "id,name,phone\n0195a0c4-0000-7000-8000-00000000abcd,Ana,+351912345678\n");
  ASSERT_EQ(own.size(), 1u);
  EXPECT_EQ(own[0].contact_id, "0195a0c4-0000-7000-8000-00000000abcd");
  EXPECT_EQ(member(own[0], "id"), "<absent>") << "the id is the aggregate's, not the data's";
}

TEST(ImportRowsTest, BadRowsAreRowErrorsNamingTheField) {
  const std::string wide = "name,phone\nA,+351912345678" + std::string(10000, ',') + "\n";
  const auto rows = read_all(ImportFormat::kCsv,
                             "name,phone,email\n"
                             "Ana,12345,\n"  // 2: not a phone with its country code
                             "Bo,+351912345678,not-an-email\n"   // 3
                             "Cy,+351912345678,a@b.org,extra\n"  // 4: more columns than the header
                             "\xff\xfe,+351912345678,\n"         // 5: not UTF-8
                             "\"Di\"x,+351912345678,\n"          // 6: text after a closing quote
                             "Ed,+351912345678,\n");             // 7: fine
  ASSERT_EQ(rows.size(), 6u);
  EXPECT_EQ(rows[0].error->field, "phone");
  EXPECT_EQ(rows[1].error->field, "email");
  EXPECT_EQ(rows[2].error->field, "row");
  EXPECT_EQ(rows[3].error->field, "name");
  EXPECT_EQ(rows[4].error->field, "name");
  EXPECT_FALSE(rows[5].error);
  for (std::size_t i = 0; i < 5; ++i)
    EXPECT_EQ(rows[i].error->row, static_cast<std::int64_t>(i) + 2);
  const auto many = read_all(ImportFormat::kCsv, wide);
  ASSERT_EQ(many.size(), 1u);
  EXPECT_EQ(many[0].error->field, "row");
  EXPECT_NE(many[0].error->message.find("64 columns"), std::string::npos) << many[0].error->message;
  // A row longer than the cap is one error, and the next row is read normally.
  const auto longer = read_all(
      ImportFormat::kCsv, "name,phone\n\"" + std::string(200, 'x') + "\n\",+1\nOk,+351912345678\n",
      5, {.max_row_bytes = 100});
  ASSERT_EQ(longer.size(), 2u);
  EXPECT_NE(longer[0].error->message.find("longer than 100 bytes"), std::string::npos);
  EXPECT_FALSE(longer[1].error);
}

TEST(ImportRowsTest, ABadFileIsRefusedWholeNamingTheHeader) {
  EXPECT_EQ(refused_field(ImportFormat::kCsv, "colour,size\nred,L\n"), "header");
  EXPECT_EQ(refused_field(ImportFormat::kCsv, "name,phone,colour\nA,+351912345678,red\n"),
            "header");
  EXPECT_EQ(refused_field(ImportFormat::kCsv, "name,email\nA,a@b.org\n"), "header");
  EXPECT_EQ(refused_field(ImportFormat::kCsv, "name,phone,Name\n"), "header");
  EXPECT_EQ(refused_field(ImportFormat::kCsv, "na\xffme,phone\n"), "header");
  EXPECT_EQ(refused_field(ImportFormat::kCsv, ""), "header");
  EXPECT_EQ(refused_field(ImportFormat::kCsv, "\xFF\xFEn\0a\0"), "body") << "UTF-16";
  EXPECT_EQ(refused_field(ImportFormat::kCsv, "name,phone\n"), "<ok>") << "no rows is no error";
  EXPECT_EQ(refused_field(ImportFormat::kNdjson, ""), "<ok>");
}

TEST(ImportRowsTest, NdjsonOneObjectPerLine) {
  const std::string body =
      "{\"name\":\"Ana\",\"phone\":\"+351912345678\",\"tags\":[\"vip\"]}\r\n"
      "\n"
      "{\"name\":\"Bo\"}\n"
      "[1,2]\n"
      "{\"name\":\"Cy\",\"name\":\"Cy\",\"phone\":\"+351912345678\"}\n"
      "{not json\n"
      "{\"name\":\"Di\",\"phone\":\"+351912345678\",\"colour\":\"red\"}\n"
      "{\"id\":\"0195a0c4-0000-7000-8000-00000000abcd\",\"name\":\"Ed\",\"phone\":\"+"
      "351912345678\"}";
  for (const std::size_t piece : {std::size_t{1}, std::size_t{5}, std::size_t{1 << 20}}) {
    const auto rows = read_all(ImportFormat::kNdjson, body, piece);
    ASSERT_EQ(rows.size(), 7u);
    EXPECT_FALSE(rows[0].error);
    EXPECT_EQ(member(rows[0], "tags"), "vip");
    EXPECT_EQ(rows[1].number, 3) << "lines are counted, blank ones included";
    EXPECT_EQ(rows[1].error->field, "phone");
    EXPECT_EQ(rows[2].error->field, "row");
    EXPECT_EQ(rows[3].error->field, "name") << "a duplicate key";
    EXPECT_EQ(rows[4].error->field, "row");
    EXPECT_EQ(rows[5].error->field, "colour");
    EXPECT_FALSE(rows[6].error);
    EXPECT_EQ(rows[6].contact_id, "0195a0c4-0000-7000-8000-00000000abcd");
  }
}

}  // namespace
}  // namespace cauce::api
