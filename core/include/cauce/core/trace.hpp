#pragma once

// W3C Trace Context, level 1 (https://www.w3.org/TR/trace-context/): the `traceparent` that says
// which trace a piece of work belongs to and which span (unit of work) asked for it, so that one
// request can be followed through the API, the commands topic, the processor, the event log,
// the projector and the workers. cauce records no spans anywhere; it carries the ids and writes
// them in its log lines (`trace_id`, `span_id`).

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>

namespace cauce::core {

// A traceparent held as its version-00 text, in place (no allocation):
// "00-<trace id, 32 hex>-<span id, 16 hex>-<flags, 2 hex>". Default-constructed it is none
// (empty(): an event or command written before traces were carried).
class TraceParent {
 public:
  static constexpr std::size_t kSize = 55;

  TraceParent() = default;

  // `text` as W3C reads a traceparent header, or nullopt when it is malformed (the caller
  // then starts a new trace; a malformed traceparent is ignored, never refused): two lower-case
  // hex digits of version (not ff); for version 00 exactly 55 characters; for a later version
  // at least 55 whose first 55 read as version 00's fields and, past them, a '-' (the rest is
  // that version's, unknown here and dropped); a trace id and a parent id not all zeros. What
  // is kept is written as version 00 with only the flag level 1 defines (sampled).
  static std::optional<TraceParent> parse(std::string_view text);
  // A new trace: random trace id and span id, not sampled.
  static TraceParent start();

  // The next span of this trace: the same trace id and flags, a new random span id. Of none,
  // a new trace (start()).
  TraceParent child() const;

  bool empty() const { return text_[0] == '\0'; }
  // The header's value, 55 characters; "" when empty.
  std::string_view text() const {
    return empty() ? std::string_view() : std::string_view(text_.data(), kSize);
  }
  // 32 lower-case hex digits; "" when empty.
  std::string_view trace_id() const {
    return empty() ? std::string_view() : std::string_view(text_.data() + 3, 32);
  }
  // 16 lower-case hex digits (the span this traceparent names as the parent); "" when empty.
  std::string_view span_id() const {
    return empty() ? std::string_view() : std::string_view(text_.data() + 36, 16);
  }
  bool sampled() const { return !empty() && text_[54] == '1'; }

  friend bool operator==(const TraceParent&, const TraceParent&) = default;

 private:
  std::array<char, kSize> text_{};  // all '\0' when empty
};

}  // namespace cauce::core
