#include <cauce/api/stream_slots.hpp>

namespace cauce::api {

StreamSlots::Slot::Slot(std::shared_ptr<StreamSlots> owner, std::string key_id)
    : owner_(std::move(owner)), key_id_(std::move(key_id)) {}

StreamSlots::Slot::~Slot() { owner_->give_back(key_id_); }

std::unique_ptr<StreamSlots::Slot> StreamSlots::take(const std::string& key_id, Refusal& refusal) {
  {
    const std::lock_guard lock(mutex_);
    if (total_ >= total_cap_) {
      refusal = Refusal::kProcessFull;
      return nullptr;
    }
    auto& mine = per_key_[key_id];
    if (mine >= per_key_cap_) {
      refusal = Refusal::kKeyFull;
      return nullptr;
    }
    ++mine;
    ++total_;
  }
  refusal = Refusal::kNone;
  return std::make_unique<Slot>(shared_from_this(), key_id);
}

std::size_t StreamSlots::in_use() const {
  const std::lock_guard lock(mutex_);
  return total_;
}

void StreamSlots::give_back(const std::string& key_id) {
  const std::lock_guard lock(mutex_);
  --total_;
  const auto it = per_key_.find(key_id);
  if (it != per_key_.end() && --it->second == 0) per_key_.erase(it);
}

}  // namespace cauce::api
