#pragma once

// An in-memory ApiKeyStore for unit tests of ApiKeys and the request pipeline (thread-safe, like
// the PostgreSQL store, which the integration tests exercise).
#include <atomic>
#include <functional>
#include <map>
#include <mutex>

#include <cauce/api/auth.hpp>

namespace cauce::api::testing {

class MemoryKeyStore final : public ApiKeyStore {
 public:
  std::string insert(const ApiKeyRecord& record) override {
    const std::lock_guard lock(mutex_);
    return insert_locked(record);
  }
  std::string insert_locked(const ApiKeyRecord& record) {
    auto stored = record;
    stored.created_at = "2026-01-01T00:00:00.000000Z";
    records_[record.id] = stored;
    return stored.created_at;
  }
  bool insert_if_none_active(const ApiKeyRecord& record) override {
    const std::lock_guard lock(mutex_);
    for (const auto& [id, r] : records_) {
      if (!r.revoked_at) return false;
    }
    insert_locked(record);
    return true;
  }
  std::optional<ApiKeyRecord> find(const std::string& id) override {
    ++finds;
    std::optional<ApiKeyRecord> found;
    {
      const std::lock_guard lock(mutex_);
      const auto it = records_.find(id);
      if (it != records_.end()) found = it->second;
    }
    if (after_find) after_find();  // a slow store: the answer may be stale when it arrives
    return found;
  }
  std::vector<ApiKeyRecord> list() override {
    const std::lock_guard lock(mutex_);
    std::vector<ApiKeyRecord> out;
    for (const auto& [id, r] : records_) out.push_back(r);
    return out;
  }
  bool revoke(const std::string& id) override {
    const std::lock_guard lock(mutex_);
    const auto it = records_.find(id);
    if (it == records_.end() || it->second.revoked_at) return false;
    it->second.revoked_at = "2026-01-02T00:00:00.000000Z";
    return true;
  }

  std::atomic<int> finds{0};
  std::function<void()> after_find;  // set before threads start

 private:
  std::mutex mutex_;
  std::map<std::string, ApiKeyRecord> records_;
};

}  // namespace cauce::api::testing
