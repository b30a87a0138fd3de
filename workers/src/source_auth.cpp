#include <algorithm>
#include <fstream>
#include <memory>
#include <new>
#include <sstream>

#include <curl/curl.h>

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

struct UrlDeleter {
  void operator()(CURLU* url) const { curl_url_cleanup(url); }
};
struct CurlTextDeleter {
  void operator()(char* text) const { curl_free(text); }
};

// A URL as libcurl parses it (the download's own parser, so both see the same host and port).
class ParsedUrl {
 public:
  explicit ParsedUrl(std::string_view url) : url_(curl_url()) {
    if (!url_) throw std::bad_alloc();
    const std::string text(url);
    ok_ = curl_url_set(url_.get(), CURLUPART_URL, text.c_str(), 0) == CURLUE_OK;
  }
  bool ok() const { return ok_; }
  std::optional<std::string> part(CURLUPart which, unsigned int flags = 0) const {
    char* raw = nullptr;
    if (!ok_ || curl_url_get(url_.get(), which, &raw, flags) != CURLUE_OK || raw == nullptr) {
      return std::nullopt;
    }
    const std::unique_ptr<char, CurlTextDeleter> owned(raw);
    return std::string(raw);
  }

 private:
  std::unique_ptr<CURLU, UrlDeleter> url_;
  bool ok_ = false;
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  return s;
}

// An `origins` line's entries: origins only (scheme://host[:port], a "/" at most), separated by
// commas or blanks.
std::vector<std::string> parse_origins(std::string_view list, const std::string& what) {
  std::vector<std::string> out;
  std::string token;
  const auto flush = [&] {
    if (token.empty()) return;
    const ParsedUrl url(token);
    const auto origin = url_origin(token);
    if (!origin || url.part(CURLUPART_PATH).value_or("/") != "/" || url.part(CURLUPART_QUERY) ||
        url.part(CURLUPART_FRAGMENT) || url.part(CURLUPART_USER)) {
      throw SourceAuthError(what +
                            ": its origins line lists something that is not an http(s) origin "
                            "(scheme://host or scheme://host:port)");
    }
    out.push_back(*origin);
    token.clear();
  };
  for (const char c : list) {
    if (c == ',' || c == ' ' || c == '\t') {
      flush();
    } else {
      token.push_back(c);
    }
  }
  flush();
  return out;
}

}  // namespace

std::optional<std::string> url_origin(std::string_view url) {
  const ParsedUrl parsed(url);
  if (!parsed.ok()) return std::nullopt;
  const auto scheme = parsed.part(CURLUPART_SCHEME);
  const auto host = parsed.part(CURLUPART_HOST);
  const auto port = parsed.part(CURLUPART_PORT, CURLU_DEFAULT_PORT);
  if (!scheme || !host || host->empty() || !port) return std::nullopt;
  const auto s = lower(*scheme);
  if (s != "http" && s != "https") return std::nullopt;
  return s + "://" + lower(*host) + ":" + *port;
}

void check_source_origin(const SourceCredential& credential, std::string_view name,
                         std::string_view url) {
  const std::string what = "source_auth \"" + std::string(name) + "\"";
  const auto origin = url_origin(url);
  if (!origin) throw SourceAuthError(what + " is sent to http(s) URLs only");
  if (std::find(credential.origins.begin(), credential.origins.end(), *origin) ==
      credential.origins.end()) {
    throw SourceAuthError(what + " may not be sent to " + *origin +
                          ": not among the origins its secret file lists (an http:// origin "
                          "only when listed as http://)");
  }
}

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
  // One credential line and one origins line, in either order; blank lines are ignored.
  std::optional<std::string> credential_line;
  std::optional<std::string> origins_line;
  std::istringstream lines(content.str());
  for (std::string line; std::getline(lines, line);) {
    const auto t = trimmed(line);
    if (t.empty()) continue;
    auto& slot = t.starts_with("origins ") || t.starts_with("origins\t") || t == "origins"
                     ? origins_line
                     : credential_line;
    if (slot) {
      throw SourceAuthError(what + " has more than one credential line or origins line");
    }
    slot = t;
  }
  if (!origins_line) {
    throw SourceAuthError(what +
                          " has no origins line (\"origins https://host[:port],...\": where it "
                          "may be sent)");
  }
  const auto origins = parse_origins(std::string_view(*origins_line).substr(7), what);
  if (origins.empty()) throw SourceAuthError(what + "'s origins line lists no origin");
  const auto text = credential_line.value_or("");
  const auto space = text.find_first_of(" \t");
  const auto scheme = text.substr(0, space == std::string::npos ? text.size() : space);
  const auto value = space == std::string::npos ? std::string() : trimmed(text.substr(space));
  const auto malformed = SourceAuthError(
      what + " is neither \"bearer <token>\" nor \"basic <user>:<password>\" on a line");
  if (!header_safe(value)) throw malformed;
  SourceCredential out;
  out.origins = origins;
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
