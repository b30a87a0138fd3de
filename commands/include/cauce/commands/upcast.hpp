#pragma once

// Events in the log are never rewritten (DESIGN §3). Readers — the processor folding a
// partition back into state, the projector, tests — bring an event written with an older
// schema_version up to the current one here first, so domain code only knows the current shape.
//
// Changes so far:
//   contact.call_logged v1 -> v2: `called_at_us` (integer, µs since the epoch) became
//   `called_at` (RFC 3339 UTC with µs, like the envelope's occurred_at).

#include <string_view>

#include <cauce/commands/envelope.hpp>

namespace cauce::commands {

// The schema version this build writes for an event type (1 for types that never changed).
int current_schema_version(std::string_view event_type);

// Rewrites `event.data` and `event.schema_version` to the current version. Throws
// std::invalid_argument for a version newer than this build knows, or data an upcaster cannot
// read (naming the field).
void upcast(EventEnvelope& event);

}  // namespace cauce::commands
