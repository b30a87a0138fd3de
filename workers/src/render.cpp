#include <algorithm>
#include <fstream>
#include <memory>
#include <unordered_map>
#include <vector>

#include <cairo-pdf.h>
#include <cairo.h>
#include <pango/pangocairo.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cauce/core/crypto.hpp>
#include <cauce/core/json.hpp>
#include <cauce/core/log.hpp>
#include <cauce/workers/render.hpp>

#include "part_file.hpp"

namespace cauce::workers {
namespace {

// --- the rows of the source ----------------------------------------------------------------

constexpr std::size_t kMaxField = 1 << 20;  // a cell larger than 1 MiB is not a report
constexpr std::size_t kMaxColumns = 64;

class Rows {
 public:
  virtual ~Rows() = default;
  const std::vector<std::string>& header() const { return header_; }
  // The next data row, as many cells as the header; false at the end.
  virtual bool next(std::vector<std::string>& row) = 0;

 protected:
  void set_header(std::vector<std::string> header) {
    if (header.empty()) throw RenderError("the source has no columns");
    if (header.size() > kMaxColumns) {
      throw RenderError("the source has " + std::to_string(header.size()) + " columns; at most " +
                        std::to_string(kMaxColumns) + " fit a page");
    }
    header_ = std::move(header);
  }

 private:
  std::vector<std::string> header_;
};

// RFC 4180, streamed: quoted fields may hold commas, doubled quotes and line breaks.
class CsvRows final : public Rows {
 public:
  explicit CsvRows(const std::filesystem::path& path) : in_(path, std::ios::binary) {
    if (!in_) throw std::runtime_error("cannot read " + path.string());
    std::vector<std::string> header;
    if (!record(header)) throw RenderError("the CSV source is empty");
    if (!header.empty() && header[0].starts_with("\xEF\xBB\xBF")) header[0].erase(0, 3);  // BOM
    set_header(std::move(header));
  }

  bool next(std::vector<std::string>& row) override {
    for (;;) {
      if (!record(row)) return false;
      if (row.size() == 1 && row[0].empty()) continue;  // a blank line
      ++line_;
      if (row.size() != header().size()) {
        throw RenderError("CSV record " + std::to_string(line_) + " has " +
                          std::to_string(row.size()) + " fields; the header has " +
                          std::to_string(header().size()));
      }
      return true;
    }
  }

 private:
  bool record(std::vector<std::string>& fields) {
    fields.clear();
    int c = in_.get();
    if (c == EOF) return false;
    std::string field;
    bool quoted = false;
    for (;; c = in_.get()) {
      if (quoted) {
        if (c == EOF) throw RenderError("a quoted CSV field does not end");
        if (c == '"') {
          if (in_.peek() == '"') {
            in_.get();
            field.push_back('"');
          } else {
            quoted = false;
          }
        } else {
          field.push_back(static_cast<char>(c));
        }
      } else if (c == '"' && field.empty()) {
        quoted = true;
      } else if (c == ',') {
        fields.push_back(std::move(field));
        field.clear();
      } else if (c == '\n' || c == EOF) {
        if (!field.empty() && field.back() == '\r') field.pop_back();
        fields.push_back(std::move(field));
        return true;
      } else {
        field.push_back(static_cast<char>(c));
      }
      if (field.size() > kMaxField) throw RenderError("a CSV field is larger than 1 MiB");
    }
  }

  std::ifstream in_;
  std::int64_t line_ = 1;
};

// A JSON array of objects; the first object's keys are the columns.
class JsonRows final : public Rows {
 public:
  explicit JsonRows(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path.string());
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (const auto error = core::parse_json(text, doc_, {.max_depth = 16})) {
      throw RenderError("the JSON source does not parse: " + error->field + " " + error->message);
    }
    if (!doc_.IsArray() || doc_.Empty() || !doc_[0].IsObject()) {
      throw RenderError("the JSON source is not an array of objects");
    }
    std::vector<std::string> header;
    for (const auto& member : doc_[0].GetObject()) header.emplace_back(member.name.GetString());
    set_header(std::move(header));
  }

  bool next(std::vector<std::string>& row) override {
    if (index_ >= doc_.Size()) return false;
    const auto& item = doc_[index_++];
    if (!item.IsObject()) {
      throw RenderError("JSON element " + std::to_string(index_) + " is not an object");
    }
    row.assign(header().size(), "");
    for (std::size_t i = 0; i < header().size(); ++i) {
      const auto it = item.FindMember(header()[i].c_str());
      if (it != item.MemberEnd()) row[i] = text_of(it->value);
    }
    return true;
  }

 private:
  static std::string text_of(const rapidjson::Value& v) {
    if (v.IsString()) return {v.GetString(), v.GetStringLength()};
    if (v.IsNull()) return "";
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
    v.Accept(writer);
    return {buffer.GetString(), buffer.GetSize()};
  }

  rapidjson::Document doc_;
  rapidjson::SizeType index_ = 0;
};

std::unique_ptr<Rows> open_rows(const std::filesystem::path& data, const std::string& type) {
  if (type == "text/csv") return std::make_unique<CsvRows>(data);
  if (type == "application/json") return std::make_unique<JsonRows>(data);
  throw RenderError("cannot render " + type + " (text/csv or application/json)");
}

bool is_number(const std::string& text) {
  if (text.empty() || text.size() > 40) return false;
  std::size_t i = text[0] == '-' || text[0] == '+' ? 1 : 0;
  bool digits = false;
  bool point = false;
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (c >= '0' && c <= '9') {
      digits = true;
    } else if ((c == '.' || c == ',') && !point) {
      point = true;
    } else {
      return false;
    }
  }
  return digits;
}

// --- cairo and pango, owned --------------------------------------------------------------

struct SurfaceFree {
  void operator()(cairo_surface_t* s) const { cairo_surface_destroy(s); }
};
struct CairoFree {
  void operator()(cairo_t* c) const { cairo_destroy(c); }
};
struct GObjectFree {
  void operator()(void* o) const { g_object_unref(o); }
};
struct FontFree {
  void operator()(PangoFontDescription* f) const { pango_font_description_free(f); }
};
using Font = std::unique_ptr<PangoFontDescription, FontFree>;

Font font(const char* description) { return Font(pango_font_description_from_string(description)); }

// A4 in points, margins, and the table's metrics.
constexpr double kWidth = 595.276;
constexpr double kHeight = 841.89;
constexpr double kMargin = 36;
constexpr double kFooter = 24;  // below the table
constexpr double kPad = 3;
constexpr int kMaxCellLines = 12;  // a longer cell is cut with an ellipsis
constexpr std::size_t kSummaryValues = 40;
constexpr std::size_t kTrackedValues = 10000;  // distinct first-column values counted

// Lays out text on one context: measures in the layout pass, draws in the drawing pass.
class Painter {
 public:
  explicit Painter(cairo_t* cr) : cr_(cr), layout_(pango_cairo_create_layout(cr)) {}

  // Height of `text` in a box `width` wide.
  double measure(const std::string& text, const PangoFontDescription* f, double width) {
    set(text, f, width, PANGO_ALIGN_LEFT);
    int w = 0;
    int h = 0;
    pango_layout_get_pixel_size(layout(), &w, &h);
    return h;
  }

  void draw(const std::string& text, const PangoFontDescription* f, double x, double y,
            double width, PangoAlignment align = PANGO_ALIGN_LEFT) {
    set(text, f, width, align);
    cairo_move_to(cr_, x, y);
    pango_cairo_show_layout(cr_, layout());
  }

 private:
  PangoLayout* layout() { return static_cast<PangoLayout*>(layout_.get()); }
  void set(const std::string& text, const PangoFontDescription* f, double width,
           PangoAlignment align) {
    pango_layout_set_font_description(layout(), f);
    pango_layout_set_width(layout(), static_cast<int>(width * PANGO_SCALE));
    pango_layout_set_wrap(layout(), PANGO_WRAP_WORD_CHAR);
    pango_layout_set_height(layout(), -kMaxCellLines);
    pango_layout_set_ellipsize(layout(), PANGO_ELLIPSIZE_END);
    pango_layout_set_alignment(layout(), align);
    // Sources are not always UTF-8 (a Latin-1 export): invalid bytes become U+FFFD here rather
    // than one pango warning per cell.
    if (g_utf8_validate(text.data(), static_cast<gssize>(text.size()), nullptr)) {
      pango_layout_set_text(layout(), text.data(), static_cast<int>(text.size()));
    } else {
      const std::unique_ptr<gchar, decltype(&g_free)> valid(
          g_utf8_make_valid(text.data(), static_cast<gssize>(text.size())), g_free);
      pango_layout_set_text(layout(), valid.get(), -1);
    }
  }

  cairo_t* cr_;
  std::unique_ptr<void, GObjectFree> layout_;
};

struct Table {
  std::vector<std::string> header;
  double column = 0;  // width of a column
  double header_height = 0;
  double top = kMargin;
  double bottom = kHeight - kMargin - kFooter;
};

double row_height(Painter& p, const Table& t, const std::vector<std::string>& row,
                  const PangoFontDescription* f) {
  double h = 0;
  for (const auto& cell : row) h = std::max(h, p.measure(cell, f, t.column - 2 * kPad));
  return h + 2 * kPad;
}

}  // namespace

Rendered render_report(const std::filesystem::path& data, const std::string& content_type,
                       const ReportDocument& document, const std::filesystem::path& pdf) {
  const auto cell_font = font("DejaVu Sans 7");
  const auto header_font = font("DejaVu Sans Bold 7");
  const auto title_font = font("DejaVu Sans Bold 22");
  const auto text_font = font("DejaVu Sans 10");
  const auto small_font = font("DejaVu Sans 8");

  // Layout pass: row heights decide the page breaks; the first column's values are counted.
  Table table;
  std::int64_t rows = 0;
  int table_pages = 1;
  std::unordered_map<std::string, std::int64_t> counts;
  std::int64_t other_values = 0;
  {
    // A PDF surface that writes nothing: the same font metrics as the drawing pass, so both
    // break the pages at the same rows.
    const std::unique_ptr<cairo_surface_t, SurfaceFree> scratch(
        cairo_pdf_surface_create(nullptr, kWidth, kHeight));
    const std::unique_ptr<cairo_t, CairoFree> cr(cairo_create(scratch.get()));
    Painter painter(cr.get());
    auto source = open_rows(data, content_type);
    table.header = source->header();
    table.column = (kWidth - 2 * kMargin) / static_cast<double>(table.header.size());
    table.header_height = row_height(painter, table, table.header, header_font.get());
    double y = table.top + table.header_height;
    std::vector<std::string> row;
    while (source->next(row)) {
      ++rows;
      const auto h = row_height(painter, table, row, cell_font.get());
      if (y + h > table.bottom) {
        ++table_pages;
        y = table.top + table.header_height;
      }
      y += h;
      if (auto it = counts.find(row[0]); it != counts.end()) {
        ++it->second;
      } else if (counts.size() < kTrackedValues) {
        counts.emplace(row[0], 1);
      } else {
        ++other_values;
      }
    }
  }
  const int pages = 1 + table_pages + 1;

  // Drawing pass: the PDF surface writes each page out when it is shown.
  PartFile part(pdf);
  {
    const std::unique_ptr<cairo_surface_t, SurfaceFree> surface(
        cairo_pdf_surface_create(part.path().c_str(), kWidth, kHeight));
    const std::unique_ptr<cairo_t, CairoFree> cr(cairo_create(surface.get()));
    cairo_pdf_surface_set_metadata(surface.get(), CAIRO_PDF_METADATA_TITLE, document.title.c_str());
    // The document's own time, not the clock's: the same source and document give the same
    // bytes (a rerun of a job renders what the first run rendered).
    const auto created = core::format_utc_micros(document.generated_at_us).substr(0, 19);
    cairo_pdf_surface_set_metadata(surface.get(), CAIRO_PDF_METADATA_CREATE_DATE, created.c_str());
    Painter painter(cr.get());
    int page = 1;
    const auto footer = [&] {
      cairo_set_source_rgb(cr.get(), 0.35, 0.35, 0.35);
      painter.draw("page " + std::to_string(page) + " of " + std::to_string(pages),
                   small_font.get(), kMargin, kHeight - kMargin - 10, kWidth - 2 * kMargin,
                   PANGO_ALIGN_CENTER);
      cairo_set_source_rgb(cr.get(), 0, 0, 0);
      cairo_show_page(cr.get());
      ++page;
    };

    // Title page.
    double y = kHeight / 3;
    painter.draw(document.title, title_font.get(), kMargin, y, kWidth - 2 * kMargin);
    y += painter.measure(document.title, title_font.get(), kWidth - 2 * kMargin) + 24;
    for (const auto& line : {"Source: " + document.source,
                             "Generated at: " + core::format_utc_micros(document.generated_at_us),
                             "Rows: " + std::to_string(rows) +
                                 "    Columns: " + std::to_string(table.header.size())}) {
      painter.draw(line, text_font.get(), kMargin, y, kWidth - 2 * kMargin);
      y += painter.measure(line, text_font.get(), kWidth - 2 * kMargin) + 8;
    }
    footer();

    // The table, its header on every page.
    const auto draw_row = [&](const std::vector<std::string>& row, double top, double height,
                              const PangoFontDescription* f, bool is_header) {
      if (is_header) {
        cairo_set_source_rgb(cr.get(), 0.88, 0.90, 0.94);
        cairo_rectangle(cr.get(), kMargin, top, kWidth - 2 * kMargin, height);
        cairo_fill(cr.get());
        cairo_set_source_rgb(cr.get(), 0, 0, 0);
      }
      for (std::size_t i = 0; i < row.size(); ++i) {
        const double x = kMargin + static_cast<double>(i) * table.column;
        painter.draw(row[i], f, x + kPad, top + kPad, table.column - 2 * kPad,
                     !is_header && is_number(row[i]) ? PANGO_ALIGN_RIGHT : PANGO_ALIGN_LEFT);
      }
      cairo_set_line_width(cr.get(), 0.3);
      cairo_move_to(cr.get(), kMargin, top + height);
      cairo_line_to(cr.get(), kWidth - kMargin, top + height);
      cairo_stroke(cr.get());
    };
    auto source = open_rows(data, content_type);
    draw_row(table.header, table.top, table.header_height, header_font.get(), true);
    y = table.top + table.header_height;
    std::vector<std::string> row;
    while (source->next(row)) {
      const auto h = row_height(painter, table, row, cell_font.get());
      if (y + h > table.bottom) {
        footer();
        draw_row(table.header, table.top, table.header_height, header_font.get(), true);
        y = table.top + table.header_height;
      }
      draw_row(row, y, h, cell_font.get(), false);
      y += h;
    }
    footer();

    // Summary: rows per value of the first column, the most frequent first.
    std::vector<std::pair<std::string, std::int64_t>> top(counts.begin(), counts.end());
    std::sort(top.begin(), top.end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    if (top.size() > kSummaryValues) top.resize(kSummaryValues);
    y = kMargin;
    const std::string heading = "Summary: rows per " + table.header[0];
    painter.draw(heading, title_font.get(), kMargin, y, kWidth - 2 * kMargin);
    y += painter.measure(heading, title_font.get(), kWidth - 2 * kMargin) + 16;
    const double half = (kWidth - 2 * kMargin) / 2;
    for (const auto& [value, count] : top) {
      painter.draw(value.empty() ? "(empty)" : value, text_font.get(), kMargin, y, half);
      painter.draw(std::to_string(count), text_font.get(), kMargin + half, y, half / 2,
                   PANGO_ALIGN_RIGHT);
      y += 16;
    }
    if (counts.size() > top.size() || other_values > 0) {
      painter.draw("… and " + std::to_string(counts.size() - top.size()) + "+ other values",
                   text_font.get(), kMargin, y, half);
    }
    footer();
    cairo_surface_finish(surface.get());
    if (cairo_surface_status(surface.get()) != CAIRO_STATUS_SUCCESS) {
      throw std::runtime_error(std::string("cannot write the PDF: ") +
                               cairo_status_to_string(cairo_surface_status(surface.get())));
    }
  }

  Rendered out;
  out.pages = pages;
  out.bytes = static_cast<std::int64_t>(std::filesystem::file_size(part.path()));
  out.sha256 = core::sha256_file_hex(part.path().string());
  part.publish();
  return out;
}

}  // namespace cauce::workers
