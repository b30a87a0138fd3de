#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace cauce::api {

// shared/API.md §Auth: reader < operator < admin; a higher role may do all a lower one may.
enum class Role { kReader = 1, kOperator = 2, kAdmin = 3 };

std::string_view role_name(Role role);
std::optional<Role> parse_role(std::string_view name);

// What a key may see of the live streams, set when it is created (issue 16 part 6): nullopt is
// everything; a set, the stream topics / alert regions it may read.
struct KeyScope {
  std::optional<std::set<std::string>> topics;
  std::optional<std::set<std::string>> regions;
};

// An actor or a region name of a key: 1 to 100 characters, not blank, no control characters
// (they reach events, logs and query strings); a region also no comma (?region= lists them).
bool valid_actor(std::string_view text);
bool valid_region(std::string_view text);

// Who is asking: the key's id, its label, the identity its commands record as `actor` (an
// operator's name; the label when none was given) and what it may stream.
struct Principal {
  std::string key_id;
  std::string name;
  std::string actor;
  Role role = Role::kReader;
  KeyScope scope;
};

// A stored key: never the key itself, only a salted hash of its secret.
struct ApiKeyRecord {
  std::string id;
  std::string name;
  std::string actor;
  Role role = Role::kReader;
  KeyScope scope;
  std::string salt;
  std::string secret_hash;
  std::string created_at;  // RFC 3339, filled in by the store
  std::optional<std::string> revoked_at;
};

// Port: where key records live (PostgreSQL in production: PgApiKeyStore).
class ApiKeyStore {
 public:
  virtual ~ApiKeyStore() = default;
  // Stores the record; returns its created_at as the store recorded it.
  virtual std::string insert(const ApiKeyRecord& record) = 0;
  // Inserts only when no unrevoked key exists, atomically with that check. True if inserted.
  virtual bool insert_if_none_active(const ApiKeyRecord& record) = 0;
  virtual std::optional<ApiKeyRecord> find(const std::string& id) = 0;
  virtual std::vector<ApiKeyRecord> list() = 0;
  // True when an unrevoked key with this id was revoked now.
  virtual bool revoke(const std::string& id) = 0;
};

// The key as handed to its holder, once: ck_<16 hex id>_<64 hex secret>.
struct IssuedKey {
  ApiKeyRecord record;
  std::string token;
};

// Issues and verifies API keys. Verification parses the token, finds the record by id and
// compares sha256(salt || secret) in constant time. Records are cached for `cache_ttl`, so a
// revocation takes effect everywhere within that time (at once on the instance that revokes).
// While the store is unreachable, a key fetched within the last 5 minutes keeps working
// (stale-if-error). Ids that name no key are cached apart, bounded, and never evict real keys.
// Thread-safe.
class ApiKeys {
 public:
  explicit ApiKeys(ApiKeyStore& store,
                   std::chrono::milliseconds cache_ttl = std::chrono::seconds(5));

  // Throws std::invalid_argument for an empty or over-long name, an actor that is not
  // valid_actor() (an empty one is the name), a topic that is not one, a region that is not
  // valid_region(), or a scope that names nothing.
  IssuedKey create(const std::string& name, Role role, const std::string& actor = {},
                   KeyScope scope = {});

  // The principal of a valid, unrevoked key; nullopt for anything else. May throw
  // core::DependencyError when the store is unreachable.
  std::optional<Principal> authenticate(std::string_view token);
  // What authenticate() would answer from the cache alone, never asking the store: nullopt
  // when it would have to (not cached, or expired). A malformed token needs no lookup.
  std::optional<std::optional<Principal>> cached_principal(std::string_view token);
  // Whether key `key_id` is active as far as the cache knows (nullopt: not cached, or expired),
  // and a lookup that refreshes the cache and says whether it is (blocking: not on an I/O
  // thread). Long-lived streams
  // use them to notice a revocation.
  std::optional<bool> cached_active(const std::string& key_id);
  bool refresh(const std::string& key_id) {
    const auto record = lookup(key_id);
    return record && !record->revoked_at;
  }

  std::vector<ApiKeyRecord> list() { return store_.list(); }
  bool revoke(const std::string& id);

  // On a system with no active key, creates an admin key and writes it to
  // <data_dir>/admin.key (mode 0600). Returns the file's path when it did.
  std::optional<std::filesystem::path> ensure_admin_key(const std::filesystem::path& data_dir);

 private:
  using Time = std::chrono::steady_clock::time_point;
  struct KnownKey {
    ApiKeyRecord record;
    Time fetched;
    // The secret that matched record.secret_hash, once one did (memory only, for as long as
    // the record is cached): cached_principal() compares it instead of hashing again.
    std::string verified_secret = {};
  };

  ApiKeyRecord make_record(const std::string& name, Role role, const std::string& actor,
                           KeyScope scope, std::string& token) const;
  std::optional<ApiKeyRecord> lookup(const std::string& id);
  // With mutex_ held: the cache's fresh answer for `id` (a record, or {nullopt} for an id no
  // key has), nullopt when it has none; remembering an answer; forgetting an id.
  std::optional<std::optional<ApiKeyRecord>> cached(const std::string& id, Time now) const;
  void remember(const std::string& id, const std::optional<ApiKeyRecord>& record, Time now);
  void forget(const std::string& id);

  ApiKeyStore& store_;
  std::chrono::milliseconds cache_ttl_;
  std::mutex mutex_;
  std::map<std::string, KnownKey> known_;  // keys that exist (revoked ones included)
  std::map<std::string, Time> unknown_;    // ids no key has: bounded apart, never evicting keys
  std::uint64_t revocations_ = 0;          // bumped around each revoke(): see lookup()
};

}  // namespace cauce::api
