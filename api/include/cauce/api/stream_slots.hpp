#pragma once

// Caps on live clients (SSE and WebSocket): so many per API key and so many in all, per process.
// A slot is taken before a stream starts and given back when it ends. Thread-safe.

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace cauce::api {

class StreamSlots : public std::enable_shared_from_this<StreamSlots> {
 public:
  // One client's slot; destroying it gives the slot back.
  class Slot {
   public:
    Slot(std::shared_ptr<StreamSlots> owner, std::string key_id);
    ~Slot();
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;

   private:
    std::shared_ptr<StreamSlots> owner_;
    std::string key_id_;
  };

  enum class Refusal { kNone, kKeyFull, kProcessFull };

  // Held by shared_ptr (std::make_shared): every Slot keeps it alive.
  StreamSlots(std::size_t total, std::size_t per_key) : total_cap_(total), per_key_cap_(per_key) {}

  // A slot for one more client of `key_id`, or the cap that refuses it.
  std::unique_ptr<Slot> take(const std::string& key_id, Refusal& refusal);

  std::size_t total_cap() const { return total_cap_; }
  std::size_t per_key_cap() const { return per_key_cap_; }
  std::size_t in_use() const;

 private:
  void give_back(const std::string& key_id);

  const std::size_t total_cap_;
  const std::size_t per_key_cap_;
  mutable std::mutex mutex_;
  std::size_t total_ = 0;
  std::unordered_map<std::string, std::size_t> per_key_;  // only keys with a client
};

}  // namespace cauce::api
