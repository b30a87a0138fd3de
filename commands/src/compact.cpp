#include <bit>
#include <mutex>
#include <stdexcept>
#include <unordered_set>

#include <cauce/commands/compact.hpp>

namespace cauce::commands {
namespace {

constexpr std::uint64_t kMultiplier = 0x9e3779b97f4a7c15ULL;  // 2^64 / golden ratio

// MurmurHash3's 64-bit finalizer: every input bit affects every output bit.
std::uint64_t finalize(std::uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

std::uint64_t word(const char* p) {
  std::uint64_t w = 0;
  std::memcpy(&w, p, sizeof w);
  return w;
}

// Eight bytes at a time, length included; `seed` chains several texts into one digest.
std::uint64_t hash_bytes(std::string_view text, std::uint64_t seed) {
  auto h = seed ^ (text.size() * kMultiplier);
  std::size_t i = 0;
  for (; i + 8 <= text.size(); i += 8) h = std::rotl((h ^ word(text.data() + i)) * kMultiplier, 29);
  std::uint64_t tail = 0;
  std::memcpy(&tail, text.data() + i, text.size() - i);
  return finalize(std::rotl((h ^ tail) * kMultiplier, 29));
}

Digest present(std::uint64_t h) { return h == 0 ? 1 : h; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

struct TextHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view text) const { return hash_bytes(text, 0); }
};

// The texts every Atom points into: nodes of an unordered_set never move, and an entry is never
// erased, so an Atom stays valid for the life of the process without a lock to read it.
struct Atoms {
  std::mutex mutex;
  std::unordered_set<std::string, TextHash, std::equal_to<>> texts;
};

Atoms& atoms() {
  static Atoms instance;
  return instance;
}

}  // namespace

std::optional<Uuid> Uuid::parse(std::string_view text) {
  if (text.size() != 36) return std::nullopt;
  Uuid id;
  std::size_t out = 0;
  for (std::size_t i = 0; i < text.size();) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return std::nullopt;
      ++i;
      continue;
    }
    const int high = hex_value(text[i]);
    const int low = hex_value(text[i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    id.bytes[out++] = static_cast<std::uint8_t>(high << 4 | low);
    i += 2;
  }
  return id;
}

Uuid Uuid::from(std::string_view text, std::string_view what) {
  if (auto id = parse(text)) return *id;
  throw std::invalid_argument(std::string(what) + " is not a UUID");
}

std::string Uuid::str() const {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(kHex[bytes[i] >> 4]);
    out.push_back(kHex[bytes[i] & 0xf]);
  }
  return out;
}

std::uint64_t Uuid::hash() const {
  std::uint64_t high = 0;
  std::uint64_t low = 0;
  std::memcpy(&high, bytes.data(), 8);
  std::memcpy(&low, bytes.data() + 8, 8);
  return finalize(high * kMultiplier ^ low);
}

Digest digest(std::string_view text) { return present(hash_bytes(text, 0)); }

Digest digest(const std::optional<std::string>& text) { return text ? digest(*text) : 0; }

Digest digest(const std::vector<std::string>& texts) {
  std::uint64_t h = texts.size();
  for (const auto& text : texts) h = hash_bytes(text, h);
  return present(finalize(h ^ kMultiplier));
}

Digest digest(std::string_view first, std::string_view second) {
  return present(hash_bytes(second, hash_bytes(first, 0)));
}

Atom Atom::of(std::string_view text) {
  auto& a = atoms();
  const std::lock_guard lock(a.mutex);
  auto it = a.texts.find(text);
  if (it == a.texts.end()) it = a.texts.emplace(text).first;
  return Atom(&*it);
}

}  // namespace cauce::commands
