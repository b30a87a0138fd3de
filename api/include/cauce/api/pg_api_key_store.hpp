#pragma once

#include <cauce/api/auth.hpp>

namespace cauce::core {
class PgPool;
}

namespace cauce::api {

// ApiKeyStore on the api_keys table (infra/sql/0001_api_keys.sql).
class PgApiKeyStore final : public ApiKeyStore {
 public:
  explicit PgApiKeyStore(core::PgPool& pool) : pool_(pool) {}

  std::string insert(const ApiKeyRecord& record) override;
  bool insert_if_none_active(const ApiKeyRecord& record) override;
  std::optional<ApiKeyRecord> find(const std::string& id) override;
  std::vector<ApiKeyRecord> list() override;
  bool revoke(const std::string& id) override;

 private:
  core::PgPool& pool_;
};

}  // namespace cauce::api
