#pragma once

// PDF rendering of a downloaded report source (DESIGN §5, issue 13 part 4): cairo + pango with
// the system's fonts (fonts-dejavu), nothing bundled. The cairo/pango adapter; the job around
// it lives elsewhere.
//
// The source is a CSV file with a header row (RFC 4180: quoted fields may hold commas, quotes
// and line breaks) or a JSON array of objects (the first object's keys are the columns). The
// PDF (A4) has a title page (title, source, generated-at time, row count), the table with its
// header row repeated on every page, long cells wrapped and numbers right-aligned, a summary
// (rows per value of the first column, the 40 most frequent) and "page X of Y" footers. CSV
// rows are streamed twice (a layout pass that counts the pages, then the drawing pass) and
// pages are written out as they are finished, so memory does not grow with the row count.
// The PDF is written to "<pdf>.part", fsynced and renamed.

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace cauce::workers {

struct ReportDocument {
  std::string title;
  std::string source;  // where the data came from (shown on the title page)
  std::int64_t generated_at_us = 0;
};

struct Rendered {
  int pages = 0;
  std::int64_t bytes = 0;
  std::string sha256;  // of the PDF, lower-case hex
};

// The source cannot be rendered: it does not parse, or has no columns. Permanent: the same
// data fails again.
class RenderError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// `content_type` is "text/csv" or "application/json". Throws RenderError for data that does not
// parse; std::runtime_error for a file that cannot be written.
Rendered render_report(const std::filesystem::path& data, const std::string& content_type,
                       const ReportDocument& document, const std::filesystem::path& pdf);

}  // namespace cauce::workers
