// PDF rendering of report sources, checked with poppler-utils (pdfinfo, pdftotext) the way a
// person opening the file would see it: the title with its accents, cells in UTF-8, the header
// on every page, "page X of Y", the summary; data that does not parse is a RenderError.
#include <cstdio>
#include <fstream>
#include <memory>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cauce/core/crypto.hpp>
#include <cauce/workers/render.hpp>

namespace cauce::workers {
namespace {

using ::testing::HasSubstr;

std::string run(const std::string& command) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  if (!pipe) return "";
  std::string out;
  char buffer[4096];
  while (const auto n = std::fread(buffer, 1, sizeof buffer, pipe.get())) out.append(buffer, n);
  return out;
}

class RenderTest : public ::testing::Test {
 protected:
  RenderTest() {
    dir_ = std::filesystem::temp_directory_path() / ("cauce-render-" + core::random_hex(6));
    std::filesystem::create_directories(dir_);
  }
  ~RenderTest() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path write(const std::string& name, const std::string& content) {
    const auto path = dir_ / name;
    std::ofstream(path, std::ios::binary) << content;
    return path;
  }

  int pdf_pages(const std::filesystem::path& pdf) {
    const auto info = run("pdfinfo '" + pdf.string() + "'");
    const auto at = info.find("Pages:");
    return at == std::string::npos ? -1 : std::stoi(info.substr(at + 6));
  }

  std::string pdf_text(const std::filesystem::path& pdf) {
    return run("pdftotext -layout '" + pdf.string() + "' -");
  }

  ReportDocument document_{"Relatório de chamadas — Março, Señales", "https://example.org/x.csv",
                           1'764'000'000'000'000};
  std::filesystem::path dir_;
};

TEST_F(RenderTest, FiveHundredCsvRowsBecomeAPdfAPersonCanRead) {
  std::string csv = "operator,city,calls,notes\n";
  const char* const kOperators[] = {"José Núñez", "Ana Lima", "Zoë Brandão", "東京オペレーター"};
  for (int i = 0; i < 500; ++i) {
    csv += std::string(kOperators[i % 4]) + ",Málaga," + std::to_string(i * 7) + ",";
    csv += i == 3 ? "\"a long note, with a comma and \"\"quotes\"\", that wraps over several lines "
                    "of its cell because it goes on and on 📞\"\n"
                  : "ok\n";
  }
  const auto pdf = dir_ / "report.pdf";
  const auto got = render_report(write("source.csv", csv), "text/csv", document_, pdf);

  EXPECT_EQ(pdf_pages(pdf), got.pages);
  EXPECT_GE(got.pages, 4) << "title, at least two table pages, summary";
  EXPECT_LE(got.pages, 30) << "500 short rows fit in a few pages";
  EXPECT_EQ(got.bytes, static_cast<std::int64_t>(std::filesystem::file_size(pdf)));
  EXPECT_FALSE(std::filesystem::exists(pdf.string() + ".part"));
  const auto text = pdf_text(pdf);
  EXPECT_THAT(text, HasSubstr("Relatório de chamadas"));  // the title wraps on its page
  EXPECT_THAT(text, HasSubstr("Março, Señales"));
  EXPECT_THAT(text, HasSubstr("Rows: 500"));
  EXPECT_THAT(text, HasSubstr("José Núñez"));
  EXPECT_THAT(text, HasSubstr("Málaga"));
  // The CJK operator and the emoji (no glyphs in DejaVu) only have to leave the layout intact.
  EXPECT_THAT(text, HasSubstr("page 1 of " + std::to_string(got.pages)));
  EXPECT_THAT(text,
              HasSubstr("page " + std::to_string(got.pages) + " of " + std::to_string(got.pages)));
  EXPECT_THAT(text, HasSubstr("Summary: rows per operator"));
  // The header row is repeated: once per table page.
  std::size_t headers = 0;
  for (auto at = text.find("notes"); at != std::string::npos; at = text.find("notes", at + 1)) {
    ++headers;
  }
  EXPECT_EQ(headers, static_cast<std::size_t>(got.pages - 2));
}

TEST_F(RenderTest, AJsonArrayOfObjectsRendersItsKeysAsColumns) {
  const auto pdf = dir_ / "report.pdf";
  const auto got = render_report(
      write("source.json",
            R"([{"region":"Norte","level":"critical","count":3},{"region":"Sul","count":12.5}])"),
      "application/json", document_, pdf);
  EXPECT_EQ(got.pages, 3);
  const auto text = pdf_text(pdf);
  EXPECT_THAT(text, HasSubstr("region"));
  EXPECT_THAT(text, HasSubstr("Norte"));
  EXPECT_THAT(text, HasSubstr("12.5"));
}

// A job that renders again (its worker was killed after rendering) publishes the same bytes.
TEST_F(RenderTest, TheSameSourceAndDocumentRenderTheSameBytes) {
  const auto source = write("same.csv", "operator,calls\nAna,3\nJosé,12\n");
  const auto first = render_report(source, "text/csv", document_, dir_ / "first.pdf");
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // another second on the clock
  const auto second = render_report(source, "text/csv", document_, dir_ / "second.pdf");
  EXPECT_EQ(first.sha256, second.sha256);
  EXPECT_EQ(first.bytes, second.bytes);
}

TEST_F(RenderTest, ALatin1SourceStillRendersWithReplacementCharacters) {
  const auto pdf = dir_ / "report.pdf";
  const auto got =
      render_report(write("latin1.csv", "operator,city\nJos\xe9,M\xe1laga\nAna,Lisboa\n"),
                    "text/csv", document_, pdf);
  EXPECT_EQ(pdf_pages(pdf), got.pages);
  const auto text = pdf_text(pdf);
  EXPECT_THAT(text, HasSubstr("Jos\xEF\xBF\xBD"));  // "Jos" and U+FFFD
  EXPECT_THAT(text, HasSubstr("Lisboa"));
}

TEST_F(RenderTest, DataThatDoesNotParseIsARenderErrorAndLeavesNoFile) {
  const auto pdf = dir_ / "report.pdf";
  for (const auto& [name, type, content] : {std::tuple<std::string, std::string, std::string>{
                                                "open.csv", "text/csv", "a,b\n\"never closed,1\n"},
                                            {"ragged.csv", "text/csv", "a,b\n1,2,3\n"},
                                            {"empty.csv", "text/csv", ""},
                                            {"object.json", "application/json", R"({"a":1})"},
                                            {"broken.json", "application/json", R"([{"a":1},)"},
                                            {"empty.json", "application/json", "[]"}}) {
    EXPECT_THROW(render_report(write(name, content), type, document_, pdf), RenderError) << name;
    EXPECT_FALSE(std::filesystem::exists(pdf)) << name;
    EXPECT_FALSE(std::filesystem::exists(pdf.string() + ".part")) << name;
  }
}

}  // namespace
}  // namespace cauce::workers
