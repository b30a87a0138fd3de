#include <algorithm>
#include <cstdint>
#include <random>

#include <cauce/core/trace.hpp>

namespace cauce::core {
namespace {

constexpr char kDigits[] = "0123456789abcdef";

// Fields of version 00: "vv-" then the trace id at 3, '-' at 35, the parent id at 36, '-' at 52,
// the flags at 53.
constexpr std::size_t kTraceAt = 3;
constexpr std::size_t kSpanAt = 36;
constexpr std::size_t kFlagsAt = 53;

bool lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

int hex_value(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

bool all_lower_hex(std::string_view text) {
  return std::all_of(text.begin(), text.end(), lower_hex);
}

bool all_zeros(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return c == '0'; });
}

// Trace and span ids need to be unique, not secret (W3C: they carry no security meaning), and
// the API mints them for every request: one generator per thread, seeded once from the system,
// no lock and no system call per id.
std::uint64_t random_word() {
  thread_local std::mt19937_64 generator = [] {
    std::random_device system;
    std::seed_seq seed{system(), system(), system(), system(), system(), system()};
    return std::mt19937_64(seed);
  }();
  return generator();
}

// 16 hex digits of random, not all zeros (an all-zero id is invalid).
void write_random_id(char* out) {
  std::uint64_t word = 0;
  while (word == 0) word = random_word();
  for (int i = 15; i >= 0; --i) {
    out[i] = kDigits[word & 0x0f];
    word >>= 4;
  }
}

}  // namespace

std::optional<TraceParent> TraceParent::parse(std::string_view text) {
  if (text.size() < kSize) return std::nullopt;
  const auto version = text.substr(0, 2);
  if (!all_lower_hex(version) || version == "ff") return std::nullopt;
  // Version 00 is exactly 55 characters; a later one may add fields after a '-'.
  if (version == "00" ? text.size() != kSize : text.size() > kSize && text[kSize] != '-') {
    return std::nullopt;
  }
  if (text[2] != '-' || text[kSpanAt - 1] != '-' || text[kFlagsAt - 1] != '-') return std::nullopt;
  const auto trace_id = text.substr(kTraceAt, 32);
  const auto span_id = text.substr(kSpanAt, 16);
  const auto flags = text.substr(kFlagsAt, 2);
  if (!all_lower_hex(trace_id) || !all_lower_hex(span_id) || !all_lower_hex(flags) ||
      all_zeros(trace_id) || all_zeros(span_id)) {
    return std::nullopt;
  }
  TraceParent parsed;
  std::copy(text.begin(), text.begin() + kSize, parsed.text_.begin());
  parsed.text_[0] = '0';
  parsed.text_[1] = '0';
  // Level 1 defines one flag, sampled (bit 0); the others are set to zero when passed on.
  parsed.text_[kFlagsAt] = '0';
  parsed.text_[kFlagsAt + 1] = (hex_value(flags[1]) & 1) != 0 ? '1' : '0';
  return parsed;
}

TraceParent TraceParent::start() {
  TraceParent started;
  auto& t = started.text_;
  t[0] = '0';
  t[1] = '0';
  t[2] = '-';
  write_random_id(t.data() + kTraceAt);
  write_random_id(t.data() + kTraceAt + 16);
  t[kSpanAt - 1] = '-';
  write_random_id(t.data() + kSpanAt);
  t[kFlagsAt - 1] = '-';
  t[kFlagsAt] = '0';
  t[kFlagsAt + 1] = '0';
  return started;
}

TraceParent TraceParent::child() const {
  if (empty()) return start();
  TraceParent next = *this;
  write_random_id(next.text_.data() + kSpanAt);
  return next;
}

}  // namespace cauce::core
