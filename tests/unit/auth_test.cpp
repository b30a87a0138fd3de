#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cauce/api/auth.hpp>

#include "memory_key_store.hpp"

namespace cauce::api {
namespace {

using testing::MemoryKeyStore;

TEST(ApiKeysTest, IssuedKeyAuthenticatesAsItsHolderAndRole) {
  MemoryKeyStore store;
  ApiKeys keys(store);
  const auto issued = keys.create("night shift", Role::kOperator);
  EXPECT_TRUE(issued.token.starts_with("ck_" + issued.record.id + "_"));
  const auto principal = keys.authenticate(issued.token);
  ASSERT_TRUE(principal);
  EXPECT_EQ(principal->name, "night shift");
  EXPECT_EQ(principal->role, Role::kOperator);
  EXPECT_EQ(principal->key_id, issued.record.id);
}

TEST(ApiKeysTest, OnlyASaltedHashIsStored) {
  MemoryKeyStore store;
  ApiKeys keys(store);
  const auto issued = keys.create("a", Role::kReader);
  const auto secret = issued.token.substr(issued.token.rfind('_') + 1);
  const auto stored = store.find(issued.record.id);
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->secret_hash.find(secret), std::string::npos);
  EXPECT_EQ(stored->secret_hash.size(), 64u);
  EXPECT_NE(stored->salt, keys.create("b", Role::kReader).record.salt);
}

TEST(ApiKeysTest, WrongMalformedAndRevokedKeysAreRefused) {
  MemoryKeyStore store;
  ApiKeys keys(store, std::chrono::milliseconds(0));
  const auto issued = keys.create("a", Role::kAdmin);
  auto tampered = issued.token;
  tampered.back() = tampered.back() == '0' ? '1' : '0';
  EXPECT_FALSE(keys.authenticate(tampered));
  EXPECT_FALSE(keys.authenticate(""));
  EXPECT_FALSE(keys.authenticate("ck_"));
  EXPECT_FALSE(keys.authenticate(issued.token + "0"));
  auto upper = issued.token;
  upper[5] = 'G';
  EXPECT_FALSE(keys.authenticate(upper));
  EXPECT_FALSE(keys.authenticate("ck_0000000000000000_" + std::string(64, '0')));
  ASSERT_TRUE(keys.authenticate(issued.token));
  EXPECT_TRUE(keys.revoke(issued.record.id));
  EXPECT_FALSE(keys.authenticate(issued.token));
  EXPECT_FALSE(keys.revoke(issued.record.id));
}

TEST(ApiKeysTest, RecordsAreCachedWithinTheTtl) {
  MemoryKeyStore store;
  ApiKeys keys(store, std::chrono::hours(1));
  const auto issued = keys.create("a", Role::kReader);
  ASSERT_TRUE(keys.authenticate(issued.token));
  ASSERT_TRUE(keys.authenticate(issued.token));
  EXPECT_EQ(store.finds, 1);
}

TEST(ApiKeysTest, ACachedKeyVerifiedOnceStillRefusesAnotherSecretAndItsRevocation) {
  MemoryKeyStore store;
  ApiKeys keys(store, std::chrono::hours(1));
  const auto issued = keys.create("a", Role::kOperator);
  ASSERT_FALSE(keys.cached_principal(issued.token)) << "not cached before a lookup";
  ASSERT_TRUE(keys.authenticate(issued.token));
  for (int i = 0; i < 3; ++i) {  // the first verifies by hash, the next ones by the secret
    const auto known = keys.cached_principal(issued.token);
    ASSERT_TRUE(known && *known);
    EXPECT_EQ((*known)->key_id, issued.record.id);
    EXPECT_EQ((*known)->role, Role::kOperator);
  }
  auto tampered = issued.token;
  tampered.back() = tampered.back() == '0' ? '1' : '0';
  const auto refused = keys.cached_principal(tampered);
  ASSERT_TRUE(refused) << "answered from the cache";
  EXPECT_FALSE(*refused);
  EXPECT_TRUE(*keys.cached_principal(issued.token)) << "a wrong secret forgets nothing";
  ASSERT_TRUE(keys.revoke(issued.record.id));
  const auto after = keys.cached_principal(issued.token);
  EXPECT_TRUE(!after || !*after) << "a revoked key is never answered from what it verified";
  EXPECT_FALSE(keys.authenticate(issued.token));
  EXPECT_EQ(store.finds, 2);
}

TEST(ApiKeysTest, NamesAreBounded) {
  MemoryKeyStore store;
  ApiKeys keys(store);
  EXPECT_THROW(keys.create("", Role::kReader), std::invalid_argument);
  EXPECT_THROW(keys.create(std::string(101, 'x'), Role::kReader), std::invalid_argument);
  // Characters, not bytes (as the route and the schema count): 100 four-byte letters are fine.
  std::string script;
  for (int i = 0; i < 100; ++i) script += "\xf0\x9d\x93\xa3";  // U+1D4E3
  EXPECT_NO_THROW(keys.create(script, Role::kReader));
  EXPECT_THROW(keys.create(script + "x", Role::kReader), std::invalid_argument);
}

TEST(ApiKeysTest, FirstStartWritesOneAdminKeyFileReadableOnlyByOwner) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("cauce-admin-key-test-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  MemoryKeyStore store;
  ApiKeys keys(store);
  const auto path = keys.ensure_admin_key(dir);
  ASSERT_TRUE(path);
  EXPECT_EQ(*path, dir / "admin.key");
  struct stat st {};
  ASSERT_EQ(::stat(path->c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  std::string token;
  std::getline(std::ifstream(*path), token);
  const auto principal = keys.authenticate(token);
  ASSERT_TRUE(principal);
  EXPECT_EQ(principal->role, Role::kAdmin);
  EXPECT_FALSE(keys.ensure_admin_key(dir)) << "a key exists now: nothing more is created";
  std::filesystem::remove_all(dir);
}

TEST(RoleTest, NamesRoundTrip) {
  for (const auto role : {Role::kReader, Role::kOperator, Role::kAdmin}) {
    EXPECT_EQ(parse_role(role_name(role)), role);
  }
  EXPECT_FALSE(parse_role("root"));
}

TEST(ApiKeysTest, AKeyCarriesItsActorAndScopeToItsPrincipal) {
  MemoryKeyStore store;
  ApiKeys keys(store);
  const auto plain = keys.create("night shift", Role::kOperator);
  const auto plain_principal = keys.authenticate(plain.token);
  ASSERT_TRUE(plain_principal);
  EXPECT_EQ(plain_principal->actor, "night shift") << "without an actor, the name is the actor";
  EXPECT_FALSE(plain_principal->scope.topics);
  EXPECT_FALSE(plain_principal->scope.regions);

  const auto scoped =
      keys.create("desk 4", Role::kReader, "alice",
                  KeyScope{std::set<std::string>{"alerts"}, std::set<std::string>{"north", "V"}});
  const auto principal = keys.authenticate(scoped.token);
  ASSERT_TRUE(principal);
  EXPECT_EQ(principal->name, "desk 4");
  EXPECT_EQ(principal->actor, "alice");
  EXPECT_EQ(principal->scope.topics, (std::set<std::string>{"alerts"}));
  EXPECT_EQ(principal->scope.regions, (std::set<std::string>{"V", "north"}));
}

TEST(ApiKeysTest, AScopeNamesRealTopicsAndRegions) {
  MemoryKeyStore store;
  ApiKeys keys(store);
  EXPECT_THROW(keys.create("k", Role::kReader, "", KeyScope{std::set<std::string>{"weather"}, {}}),
               std::invalid_argument);
  EXPECT_THROW(keys.create("k", Role::kReader, "", KeyScope{std::set<std::string>{}, {}}),
               std::invalid_argument);
  EXPECT_THROW(keys.create("k", Role::kReader, "", KeyScope{{}, std::set<std::string>{""}}),
               std::invalid_argument);
  EXPECT_THROW(keys.create("k", Role::kReader, "", KeyScope{{}, std::set<std::string>{"N, E"}}),
               std::invalid_argument);
  EXPECT_THROW(keys.create("k", Role::kReader, "a\x01b"), std::invalid_argument);
  EXPECT_THROW(keys.create("k", Role::kReader, "   "), std::invalid_argument);
  EXPECT_THROW(keys.create("k", Role::kReader, std::string(101, 'a')), std::invalid_argument);
  EXPECT_TRUE(store.list().empty());
}

}  // namespace
}  // namespace cauce::api
