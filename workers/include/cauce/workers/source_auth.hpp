#pragma once

// The secrets report downloads authenticate with (issue 16, part 3: a schedule's `source_auth`).
// Each is a file `<reports.source_auth_dir>/<name>` holding one line, `bearer <token>` or
// `basic <user>:<password>`; read when used (so a rotated secret is used at once), never logged,
// never in an event (which records the name only) or a response. Errors name the secret, never
// its content.

#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

#include <cauce/core/config.hpp>

namespace cauce::workers {

struct SourceCredential {
  enum class Kind { kBearer, kBasic } kind = Kind::kBearer;
  core::Secret token;     // bearer
  core::Secret user;      // basic
  core::Secret password;  // basic
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

}  // namespace cauce::workers
