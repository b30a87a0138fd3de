#pragma once

// An in-memory ApiKeyStore for unit tests of ApiKeys and the request pipeline. The PostgreSQL
// store is exercised by the integration tests.
#include <map>

#include <cauce/api/auth.hpp>

namespace cauce::api::testing {

class MemoryKeyStore final : public ApiKeyStore {
 public:
  std::string insert(const ApiKeyRecord& record) override {
    auto stored = record;
    stored.created_at = "2026-01-01T00:00:00.000000Z";
    records_[record.id] = stored;
    return stored.created_at;
  }
  bool insert_if_none_active(const ApiKeyRecord& record) override {
    for (const auto& [id, r] : records_) {
      if (!r.revoked_at) return false;
    }
    insert(record);
    return true;
  }
  std::optional<ApiKeyRecord> find(const std::string& id) override {
    ++finds;
    const auto it = records_.find(id);
    if (it == records_.end()) return std::nullopt;
    return it->second;
  }
  std::vector<ApiKeyRecord> list() override {
    std::vector<ApiKeyRecord> out;
    for (const auto& [id, r] : records_) out.push_back(r);
    return out;
  }
  bool revoke(const std::string& id) override {
    const auto it = records_.find(id);
    if (it == records_.end() || it->second.revoked_at) return false;
    it->second.revoked_at = "2026-01-02T00:00:00.000000Z";
    return true;
  }

  int finds = 0;

 private:
  std::map<std::string, ApiKeyRecord> records_;
};

}  // namespace cauce::api::testing
