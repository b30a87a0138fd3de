#pragma once

// The one JSON parser of cauce for text that comes from outside the process: request bodies,
// WebSocket messages, and commands and events read back from Kafka (a foreign producer can
// write anything there). It accepts only what every downstream can hold:
//
//   - nesting at most `max_depth` levels deep, parsed without recursion (no input reaches the
//     stack, whatever its shape);
//   - strings (values and keys) in UTF-8 without U+0000 and without lone surrogates (an escaped
//     "\udc00" is refused: PostgreSQL, Kafka consumers in other languages and JSON libraries
//     disagree about it), since PostgreSQL's text and jsonb cannot store U+0000;
//   - no object with the same key twice (which value wins differs between libraries);
//   - numbers that fit a double or a 64-bit integer (RapidJSON refuses the rest).
//
// schemas/README.md states the same rule for API users.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <rapidjson/document.h>

namespace cauce::core {

struct JsonLimits {
  std::size_t max_depth = 32;  // an object or array is one level; scalars add none
  // A number without a fraction (86399.0, 1e3) becomes an integer, within +-2^53: what OpenAPI
  // 3.1 (JSON Schema 2020-12) calls an integer, for RapidJSON's draft-04 validator, which does
  // not. The API's bodies only; what cauce reads back from Kafka or a report source stays as
  // it was written.
  bool whole_numbers_are_integers = false;
};

// Why a text was refused: the offending field ("body" for the text as a whole, "tags[2]",
// "address.city") and what is wrong with it, in words a client can act on.
struct JsonError {
  std::string field;
  std::string message;
};

// Parses `text` into `doc` (replacing what it held). nullopt on success; otherwise `doc` is
// unspecified and the error names the problem. Safe to call from any number of threads.
std::optional<JsonError> parse_json(std::string_view text, rapidjson::Document& doc,
                                    const JsonLimits& limits = {});

// Characters (Unicode code points) in UTF-8 `text`: what JSON Schema's maxLength counts, and so
// what every length limit of the API counts (not bytes).
std::size_t utf8_length(std::string_view text);

// The same rule for a string produced elsewhere (a header, a query value): nullopt when it is
// UTF-8 without U+0000 and without surrogate code points, else what is wrong.
std::optional<std::string> storable_text_problem(std::string_view text);

}  // namespace cauce::core
