#include "gzip.hpp"

#include <memory>
#include <stdexcept>

#include <zlib.h>

namespace cauce::api {
namespace {

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool ieq(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// Whether a coding's parameters (after its ';') hold q=0 (or 0.0, 0.00, 0.000): refused.
bool refused(std::string_view parameters) {
  while (!parameters.empty()) {
    const auto semicolon = parameters.find(';');
    const auto parameter = parameters.substr(0, semicolon);
    if (const auto eq = parameter.find('='); eq != std::string_view::npos) {
      const auto value = trimmed(parameter.substr(eq + 1));
      if (ieq(trimmed(parameter.substr(0, eq)), "q")) {
        return !value.empty() && value[0] == '0' &&
               value.find_first_not_of("0.") == std::string_view::npos;
      }
    }
    if (semicolon == std::string_view::npos) break;
    parameters.remove_prefix(semicolon + 1);
  }
  return false;
}

struct DeflateEnd {
  void operator()(z_stream* z) const { deflateEnd(z); }
};

}  // namespace

bool accepts_gzip(std::string_view accept_encoding) {
  bool gzip_listed = false;
  bool gzip_ok = false;
  bool any_ok = false;
  while (!accept_encoding.empty()) {
    const auto comma = accept_encoding.find(',');
    const auto item = trimmed(accept_encoding.substr(0, comma));
    const auto semicolon = item.find(';');
    const auto coding = trimmed(item.substr(0, semicolon));
    const bool ok = semicolon == std::string_view::npos || !refused(item.substr(semicolon + 1));
    if (ieq(coding, "gzip") || ieq(coding, "x-gzip")) {
      gzip_listed = true;
      gzip_ok = gzip_ok || ok;
    } else if (coding == "*") {
      any_ok = ok;
    }
    if (comma == std::string_view::npos) break;
    accept_encoding.remove_prefix(comma + 1);
  }
  return gzip_listed ? gzip_ok : any_ok;
}

std::string gzip(std::string_view body, int level) {
  z_stream z{};
  // windowBits 15 + 16: a gzip header and trailer rather than zlib's.
  if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::runtime_error("deflateInit2 failed");
  }
  const std::unique_ptr<z_stream, DeflateEnd> end(&z);
  std::string out(deflateBound(&z, static_cast<uLong>(body.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(body.data()));
  z.avail_in = static_cast<uInt>(body.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) throw std::runtime_error("deflate did not finish");
  out.resize(z.total_out);
  return out;
}

}  // namespace cauce::api
