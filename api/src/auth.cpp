#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <system_error>

#include <fcntl.h>
#include <unistd.h>

#include <cauce/api/auth.hpp>
#include <cauce/core/crypto.hpp>
#include <cauce/core/errors.hpp>
#include <cauce/core/json.hpp>
#include <cauce/projections/notification_hub.hpp>

namespace cauce::api {
namespace {

constexpr std::string_view kPrefix = "ck_";
constexpr std::size_t kIdHexLength = 16;       // 8 random bytes
constexpr std::size_t kSecretHexLength = 64;   // 32 random bytes
constexpr std::size_t kMaxCachedKeys = 10000;  // real keys: far fewer in practice
constexpr std::size_t kMaxUnknownIds = 10000;  // ids no key has (random tokens): bounded apart
constexpr auto kStaleIfError = std::chrono::minutes(5);  // see lookup()

bool is_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f');
  });
}

std::string hash_secret(const std::string& salt, std::string_view secret) {
  return core::sha256_hex(salt + std::string(secret));
}

// Writes `content` to `path` with mode 0600 via a temporary file and rename, so the key is
// never readable by others, not even for a moment.
void write_private_file(const std::filesystem::path& path, const std::string& content) {
  std::filesystem::create_directories(path.parent_path());
  const auto tmp = path.string() + ".tmp";
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "cannot create " + tmp);
  const auto written = ::write(fd, content.data(), content.size());
  const bool ok = written == static_cast<ssize_t>(content.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    throw std::system_error(errno, std::generic_category(), "cannot write " + path.string());
  }
}

}  // namespace

std::string_view role_name(Role role) {
  switch (role) {
    case Role::kReader:
      return "reader";
    case Role::kOperator:
      return "operator";
    case Role::kAdmin:
      return "admin";
  }
  return "reader";
}

std::optional<Role> parse_role(std::string_view name) {
  if (name == "reader") return Role::kReader;
  if (name == "operator") return Role::kOperator;
  if (name == "admin") return Role::kAdmin;
  return std::nullopt;
}

namespace {

bool valid_label(std::string_view text, bool comma_allowed) {
  if (text.empty() || core::utf8_length(text) > 100) return false;
  bool printable = false;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || (c == ',' && !comma_allowed)) return false;
    if (u != ' ') printable = true;
  }
  return printable;
}

}  // namespace

bool valid_actor(std::string_view text) { return valid_label(text, true); }
bool valid_region(std::string_view text) { return valid_label(text, false); }

ApiKeys::ApiKeys(ApiKeyStore& store, std::chrono::milliseconds cache_ttl)
    : store_(store), cache_ttl_(cache_ttl) {}

ApiKeyRecord ApiKeys::make_record(const std::string& name, Role role, const std::string& actor,
                                  KeyScope scope, std::string& token) const {
  if (name.empty() || core::utf8_length(name) > 100) {  // characters, as the route counts them
    throw std::invalid_argument("a key's name must be 1 to 100 characters");
  }
  if (!actor.empty() && !valid_actor(actor)) {
    throw std::invalid_argument(
        "a key's actor must be 1 to 100 characters, not blank, without control characters");
  }
  if (scope.topics) {
    for (const auto& t : *scope.topics) {
      if (!projections::subscribable_topics().contains(t)) {
        throw std::invalid_argument("\"" + t + "\" is not a topic");
      }
    }
  }
  if (scope.regions) {
    for (const auto& r : *scope.regions) {
      if (!valid_region(r)) {
        throw std::invalid_argument(
            "a region's name must be 1 to 100 characters, not blank, without commas or control "
            "characters");
      }
    }
  }
  if ((scope.topics && scope.topics->empty()) || (scope.regions && scope.regions->empty())) {
    throw std::invalid_argument("a key limited to topics or regions must name at least one");
  }
  ApiKeyRecord record;
  record.id = core::random_hex(kIdHexLength / 2);
  record.name = name;
  record.actor = actor.empty() ? name : actor;
  record.role = role;
  record.scope = std::move(scope);
  record.salt = core::random_hex(16);
  const std::string secret = core::random_hex(kSecretHexLength / 2);
  record.secret_hash = hash_secret(record.salt, secret);
  token = std::string(kPrefix) + record.id + "_" + secret;
  return record;
}

IssuedKey ApiKeys::create(const std::string& name, Role role, const std::string& actor,
                          KeyScope scope) {
  IssuedKey issued;
  issued.record = make_record(name, role, actor, std::move(scope), issued.token);
  issued.record.created_at = store_.insert(issued.record);
  return issued;
}

std::optional<std::optional<ApiKeyRecord>> ApiKeys::cached(const std::string& id, Time now) const {
  if (const auto it = known_.find(id);
      it != known_.end() && now - it->second.fetched < cache_ttl_) {
    return std::optional(it->second.record);
  }
  if (const auto it = unknown_.find(id); it != unknown_.end() && now - it->second < cache_ttl_) {
    return std::optional<ApiKeyRecord>{};
  }
  return std::nullopt;
}

void ApiKeys::remember(const std::string& id, const std::optional<ApiKeyRecord>& record, Time now) {
  forget(id);
  if (record) {
    if (known_.size() >= kMaxCachedKeys) known_.clear();
    known_.emplace(id, KnownKey{*record, now});
  } else {
    if (unknown_.size() >= kMaxUnknownIds) unknown_.clear();
    unknown_.emplace(id, now);
  }
}

void ApiKeys::forget(const std::string& id) {
  known_.erase(id);
  unknown_.erase(id);
}

std::optional<ApiKeyRecord> ApiKeys::lookup(const std::string& id) {
  const auto now = std::chrono::steady_clock::now();
  std::uint64_t revocations = 0;
  {
    const std::lock_guard lock(mutex_);
    if (auto answer = cached(id, now)) return std::move(*answer);
    revocations = revocations_;
  }
  for (int attempt = 0;; ++attempt) {
    std::optional<ApiKeyRecord> record;
    try {
      record = store_.find(id);  // outside the lock: a slow store must not serialise requests
    } catch (const core::DependencyError&) {
      // The store is down (PostgreSQL stopped): keys seen within the last few minutes keep
      // working, so commands, which do not need PostgreSQL, are still accepted. A key revoked
      // by another instance meanwhile cannot be known until the store answers: that is why the
      // window is short (README: Auth).
      const std::lock_guard lock(mutex_);
      const auto it = known_.find(id);
      if (it != known_.end() && now - it->second.fetched < kStaleIfError) return it->second.record;
      throw;
    }
    const std::lock_guard lock(mutex_);
    if (revocations != revocations_) {
      // A revoke() ran while the store answered: what it said may predate it. Ask again rather
      // than cache a key that was just revoked.
      revocations = revocations_;
      if (attempt < 2) continue;
      return record && !record->revoked_at ? std::nullopt : record;
    }
    remember(id, record, now);
    return record;
  }
}

namespace {

struct TokenParts {
  std::string_view id;
  std::string_view secret;
};

// ck_<16 hex id>_<64 hex secret>, or nullopt.
std::optional<TokenParts> split_token(std::string_view token) {
  if (token.size() != kPrefix.size() + kIdHexLength + 1 + kSecretHexLength ||
      !token.starts_with(kPrefix) || token[kPrefix.size() + kIdHexLength] != '_') {
    return std::nullopt;
  }
  TokenParts parts{token.substr(kPrefix.size(), kIdHexLength),
                   token.substr(kPrefix.size() + kIdHexLength + 1)};
  if (!is_hex(parts.id) || !is_hex(parts.secret)) return std::nullopt;
  return parts;
}

std::optional<Principal> principal_of(const std::optional<ApiKeyRecord>& record,
                                      std::string_view secret) {
  if (!record || record->revoked_at) return std::nullopt;
  if (!core::constant_time_equal(hash_secret(record->salt, secret), record->secret_hash)) {
    return std::nullopt;
  }
  return Principal{record->id, record->name, record->actor, record->role, record->scope};
}

}  // namespace

std::optional<Principal> ApiKeys::authenticate(std::string_view token) {
  const auto parts = split_token(token);
  if (!parts) return std::nullopt;
  return principal_of(lookup(std::string(parts->id)), parts->secret);
}

std::optional<std::optional<Principal>> ApiKeys::cached_principal(std::string_view token) {
  const auto parts = split_token(token);
  if (!parts) return std::optional<Principal>{};  // malformed: no lookup needed to refuse it
  const std::string id(parts->id);
  std::optional<std::optional<ApiKeyRecord>> answer;
  {
    const std::lock_guard lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    // The secret this cached record has verified already is compared as it is, not hashed
    // again: the salted hash is for what is stored, and costs a SHA-256 per request.
    if (const auto it = known_.find(id);
        it != known_.end() && now - it->second.fetched < cache_ttl_ &&
        !it->second.record.revoked_at && !it->second.verified_secret.empty() &&
        core::constant_time_equal(it->second.verified_secret, parts->secret)) {
      const auto& r = it->second.record;
      return std::optional(Principal{r.id, r.name, r.actor, r.role, r.scope});
    }
    answer = cached(id, now);
  }
  if (!answer) return std::nullopt;
  auto principal = principal_of(*answer, parts->secret);
  if (principal) {
    const std::lock_guard lock(mutex_);
    if (const auto it = known_.find(id);
        it != known_.end() && it->second.record.secret_hash == (*answer)->secret_hash) {
      it->second.verified_secret = std::string(parts->secret);
    }
  }
  return principal;
}

std::optional<bool> ApiKeys::cached_active(const std::string& key_id) {
  const std::lock_guard lock(mutex_);
  const auto answer = cached(key_id, std::chrono::steady_clock::now());
  if (!answer) return std::nullopt;
  return *answer && !(*answer)->revoked_at;
}

bool ApiKeys::revoke(const std::string& id) {
  {
    const std::lock_guard lock(mutex_);
    ++revocations_;  // lookups in flight re-check (see lookup)
  }
  const bool revoked = store_.revoke(id);
  const std::lock_guard lock(mutex_);
  ++revocations_;
  forget(id);
  return revoked;
}

std::optional<std::filesystem::path> ApiKeys::ensure_admin_key(
    const std::filesystem::path& data_dir) {
  std::string token;
  const auto record = make_record("admin", Role::kAdmin, {}, {}, token);
  if (!store_.insert_if_none_active(record)) return std::nullopt;
  const auto path = data_dir / "admin.key";
  write_private_file(path, token + "\n");
  return path;
}

}  // namespace cauce::api
