#pragma once

// How many imports each API key has running in this process: at most `per_key` at once
// (imports.max_running_per_key), the next one is refused (429) until one ends. A slot is taken
// before an import reads its body and given back when it ends. Thread-safe.

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace cauce::api {

class ImportSlots : public std::enable_shared_from_this<ImportSlots> {
 public:
  // One running import; destroying it gives the slot back.
  class Slot {
   public:
    Slot(std::shared_ptr<ImportSlots> owner, std::string key_id);
    ~Slot();
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;

   private:
    std::shared_ptr<ImportSlots> owner_;
    std::string key_id_;
  };

  // Held by shared_ptr (std::make_shared): every Slot keeps it alive.
  explicit ImportSlots(std::size_t per_key) : per_key_(per_key) {}

  // A slot for one more import of `key_id`; nullptr when it has `per_key` running already.
  std::unique_ptr<Slot> take(const std::string& key_id);

  std::size_t per_key() const { return per_key_; }
  std::size_t running(const std::string& key_id) const;
  std::size_t running() const;

 private:
  void give_back(const std::string& key_id);

  const std::size_t per_key_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::size_t> running_;  // only keys with an import running
};

}  // namespace cauce::api
