#include <cauce/api/import_slots.hpp>

namespace cauce::api {

ImportSlots::Slot::Slot(std::shared_ptr<ImportSlots> owner, std::string key_id)
    : owner_(std::move(owner)), key_id_(std::move(key_id)) {}

ImportSlots::Slot::~Slot() { owner_->give_back(key_id_); }

std::unique_ptr<ImportSlots::Slot> ImportSlots::take(const std::string& key_id) {
  {
    const std::lock_guard lock(mutex_);
    auto& mine = running_[key_id];
    if (mine >= per_key_) {
      if (mine == 0) running_.erase(key_id);
      return nullptr;
    }
    ++mine;
  }
  return std::make_unique<Slot>(shared_from_this(), key_id);
}

std::size_t ImportSlots::running(const std::string& key_id) const {
  const std::lock_guard lock(mutex_);
  const auto it = running_.find(key_id);
  return it == running_.end() ? 0 : it->second;
}

std::size_t ImportSlots::running() const {
  const std::lock_guard lock(mutex_);
  std::size_t total = 0;
  for (const auto& [key, n] : running_) total += n;
  return total;
}

void ImportSlots::give_back(const std::string& key_id) {
  const std::lock_guard lock(mutex_);
  const auto it = running_.find(key_id);
  if (it != running_.end() && --it->second == 0) running_.erase(it);
}

}  // namespace cauce::api
