#include <fstream>
#include <sstream>

#include <cauce/commands/report_schedule.hpp>
#include <cauce/workers/source_auth.hpp>

namespace cauce::workers {
namespace {

constexpr std::uintmax_t kMaxSecretBytes = 64 * 1024;

std::string trimmed(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return "";
  const auto last = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(first, last - first + 1));
}

// A value that may go into an HTTP header: printable ASCII or UTF-8, no control characters.
bool header_safe(std::string_view v) {
  if (v.empty()) return false;
  for (const char c : v) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return false;
  }
  return true;
}

}  // namespace

SourceCredential load_source_credential(const std::filesystem::path& dir, std::string_view name) {
  const std::string what = "source_auth \"" + std::string(name) + "\"";
  if (!commands::report_schedule::valid_source_auth_name(name)) {
    throw SourceAuthError(what + " is not a secret's name");
  }
  if (dir.empty()) {
    throw SourceAuthError(what + " is not configured (reports.source_auth_dir is not set)");
  }
  const auto path = dir / std::string(name);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw SourceAuthError(what + " is not configured (no such file in reports.source_auth_dir)");
  }
  if (std::filesystem::file_size(path, ec) > kMaxSecretBytes || ec) {
    throw SourceAuthError(what + " cannot be read");
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream content;
  content << in.rdbuf();
  if (!in) throw SourceAuthError(what + " cannot be read");
  const auto text = trimmed(content.str());
  const auto space = text.find_first_of(" \t");
  const auto scheme = text.substr(0, space == std::string::npos ? text.size() : space);
  const auto value = space == std::string::npos ? std::string() : trimmed(text.substr(space));
  const auto malformed = SourceAuthError(
      what + " is neither \"bearer <token>\" nor \"basic <user>:<password>\" on one line");
  if (!header_safe(value)) throw malformed;
  SourceCredential out;
  if (scheme == "bearer") {
    out.kind = SourceCredential::Kind::kBearer;
    out.token = core::Secret(value);
    return out;
  }
  const auto colon = value.find(':');
  if (scheme != "basic" || colon == std::string::npos || colon == 0) throw malformed;
  out.kind = SourceCredential::Kind::kBasic;
  out.user = core::Secret(value.substr(0, colon));
  out.password = core::Secret(value.substr(colon + 1));
  return out;
}

}  // namespace cauce::workers
