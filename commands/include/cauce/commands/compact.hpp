#pragma once

// Small value types for the state a command processor holds in memory: a partition may hold
// millions of aggregates and every command id ever applied to them, so that state is kept in
// fixed-size values rather than strings (measured by `scripts/bench commands`, bench/README.md).
//
//   Uuid      an id as its 16 bytes
//   Digest    a 64-bit fingerprint of a text the state only compares, never shows
//   Atom      a short text the state must give back (an operator's name), stored once per process
//   DenseMap  a map for many small records that are never erased

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cauce::commands {

struct Uuid {
  std::array<std::uint8_t, 16> bytes{};

  // The canonical lower-case text form (8-4-4-4-12), as is_uuid() accepts it.
  static std::optional<Uuid> parse(std::string_view text);
  // Like parse, but throws std::invalid_argument naming `what`.
  static Uuid from(std::string_view text, std::string_view what);
  std::string str() const;
  std::uint64_t hash() const;

  friend bool operator==(const Uuid&, const Uuid&) = default;
};

// 0 stands for "absent"; a present text (even the empty one) never digests to 0.
using Digest = std::uint64_t;
Digest digest(std::string_view text);
inline Digest digest(const std::string& text) { return digest(std::string_view(text)); }
inline Digest digest(const char* text) { return digest(std::string_view(text)); }
Digest digest(const std::optional<std::string>& text);
Digest digest(const std::vector<std::string>& texts);  // order and boundaries count
// Two texts as one, e.g. a request hash and the aggregate it targets.
Digest digest(std::string_view first, std::string_view second);

// An interned text: equal texts are the same Atom (compared by address). Each distinct text is
// kept for the life of the process, so this is for small vocabularies such as operator names.
class Atom {
 public:
  Atom() = default;  // none
  static Atom of(std::string_view text);
  static Atom of(const std::string& text) { return of(std::string_view(text)); }
  static Atom of(const char* text) { return of(std::string_view(text)); }
  static Atom of(const std::optional<std::string>& text) { return text ? of(*text) : Atom{}; }

  bool empty() const { return text_ == nullptr; }
  std::string_view view() const { return text_ == nullptr ? std::string_view{} : *text_; }
  std::optional<std::string> optional() const {
    return text_ == nullptr ? std::nullopt : std::optional<std::string>(*text_);
  }
  friend bool operator==(Atom, Atom) = default;

 private:
  explicit Atom(const std::string* text) : text_(text) {}
  const std::string* text_ = nullptr;
};

// An insert-only map for millions of small records. Entries live in fixed-size blocks, so their
// addresses never change and no more than one block is ever slack; they are found through an
// open-addressing index (linear probing, at most 4/5 full) of 8-byte slots holding the entry's
// number and 32 bits of its hash, so that a probe rarely touches an entry that does not match.
// `Traits` gives `static std::uint64_t hash(const Key&)`.
template <typename Key, typename Value, typename Traits>
class DenseMap {
 public:
  struct Entry {
    Key key{};
    Value value{};
  };

  DenseMap() = default;
  DenseMap(DenseMap&& other) noexcept
      : blocks_(std::move(other.blocks_)),
        index_(std::move(other.index_)),
        size_(std::exchange(other.size_, 0)) {
    other.blocks_.clear();
    other.index_.clear();
  }
  DenseMap& operator=(DenseMap&& other) noexcept {
    blocks_ = std::move(other.blocks_);
    index_ = std::move(other.index_);
    size_ = std::exchange(other.size_, 0);
    other.blocks_.clear();
    other.index_.clear();
    return *this;
  }
  DenseMap(const DenseMap& other) : index_(other.index_), size_(other.size_) {
    for (const auto& block : other.blocks_) {
      blocks_.push_back(std::make_unique<Entry[]>(kBlock));
      std::copy(block.get(), block.get() + kBlock, blocks_.back().get());
    }
  }
  DenseMap& operator=(const DenseMap& other) {
    if (this != &other) *this = DenseMap(other);
    return *this;
  }
  ~DenseMap() = default;

  const Value* find(const Key& key) const {
    if (index_.empty()) return nullptr;
    const auto h = Traits::hash(key);
    for (auto i = h & mask(); index_[i] != 0; i = (i + 1) & mask()) {
      if (tag(index_[i]) == static_cast<std::uint32_t>(h >> 32)) {
        const auto& e = entry(number(index_[i]));
        if (e.key == key) return &e.value;
      }
    }
    return nullptr;
  }
  Value* find(const Key& key) {
    return const_cast<Value*>(static_cast<const DenseMap&>(*this).find(key));
  }

  Value& insert_or_assign(const Key& key, Value value) {
    if (auto* existing = find(key)) {
      *existing = std::move(value);
      return *existing;
    }
    if (size_ >= kMaxEntries) throw std::length_error("DenseMap: more than 2^32 - 2 entries");
    if ((size_ + 1) * 5 > index_.size() * 4) grow();
    if (size_ == blocks_.size() * kBlock) blocks_.push_back(std::make_unique<Entry[]>(kBlock));
    auto& e = entry(size_);
    e.key = key;
    e.value = std::move(value);
    place(Traits::hash(key), size_);
    ++size_;
    return e.value;
  }

  std::size_t size() const { return size_; }

  template <typename F>
  void for_each(F&& f) const {
    for (std::size_t i = 0; i < size_; ++i) f(entry(i).key, entry(i).value);
  }

 private:
  static constexpr std::size_t kBlock = 1024;
  static constexpr std::size_t kMaxEntries = 0xfffffffeu;  // numbers + 1 fit the slot's 32 bits

  std::size_t mask() const { return index_.size() - 1; }
  static std::uint32_t tag(std::uint64_t slot) { return static_cast<std::uint32_t>(slot >> 32); }
  static std::size_t number(std::uint64_t slot) { return (slot & 0xffffffffu) - 1; }
  const Entry& entry(std::size_t n) const { return blocks_[n / kBlock][n % kBlock]; }
  Entry& entry(std::size_t n) { return blocks_[n / kBlock][n % kBlock]; }

  void place(std::uint64_t h, std::size_t n) {
    auto i = h & mask();
    while (index_[i] != 0) i = (i + 1) & mask();
    index_[i] = (h >> 32 << 32) | (n + 1);
  }

  void grow() {
    index_.assign(index_.empty() ? 64 : index_.size() * 2, 0);
    for (std::size_t n = 0; n < size_; ++n) place(Traits::hash(entry(n).key), n);
  }

  std::vector<std::unique_ptr<Entry[]>> blocks_;
  std::vector<std::uint64_t> index_;  // 0: empty; else hash >> 32 << 32 | (entry number + 1)
  std::size_t size_ = 0;
};

}  // namespace cauce::commands
