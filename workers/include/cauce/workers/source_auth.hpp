#pragma once

// The secrets report downloads authenticate with (issue 16, part 3: a schedule's `source_auth`).
// Each is a file `<reports.source_auth_dir>/<name>` holding two lines: `bearer <token>` or
// `basic <user>:<password>`, and `origins <origin>,...` (required): the origins the secret may be
// sent to, `https://crm.example` or `https://crm.example:8443` (an `http://` origin only when
// listed so: plain HTTP sends the secret in cleartext). Read when used (so a rotated secret or a
// changed origin list counts at once), never logged, never in an event (which records the name
// only) or a response. Errors name the secret, never its content.

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <cauce/core/config.hpp>

namespace cauce::workers {

struct SourceCredential {
  enum class Kind { kBearer, kBasic } kind = Kind::kBearer;
  core::Secret token;     // bearer
  core::Secret user;      // basic
  core::Secret password;  // basic
  // Where it may be sent: origins as url_origin gives them ("https://crm.example:443").
  std::vector<std::string> origins;
};

// Why a secret cannot be used: not configured, unreadable or malformed (the message says which
// and names the secret, nothing of its content).
class SourceAuthError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Reads secret `name` from `dir` (reports.source_auth_dir; empty: none configured). Throws
// SourceAuthError.
SourceCredential load_source_credential(const std::filesystem::path& dir, std::string_view name);

// The origin of an http(s) URL: scheme, host and port, in lower case and with the port always
// given ("https://crm.example:443"); nullopt for a URL that has none (not http(s), no host).
std::optional<std::string> url_origin(std::string_view url);

// Throws SourceAuthError unless `url`'s origin is among the credential's origins (the message
// names the secret `name` and the URL's origin, never the secret).
void check_source_origin(const SourceCredential& credential, std::string_view name,
                         std::string_view url);

}  // namespace cauce::workers
