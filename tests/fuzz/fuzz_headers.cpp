// Fuzz target `headers`: cursors, Cauce-Min-Position, query strings, Last-Event-ID, If-Match, ...
//
// The parsers of request headers and query strings (api/src/query_params.hpp). Byte 0 picks
// the parser; the rest is its input:
//
//   0 page cursor (decode_cursor, for the contacts, calls and events lists), and encode_cursor
//     of the input read back
//   1 Cauce-Min-Position (min_position)
//   2 a query string (query_params with the contacts list's parameters, then page_limit and the
//     cursor as the query routes read them)
//   3 Last-Event-ID (event_id)
//   4 If-Match (expected_version)
//   5 Idempotency-Key (idempotency_key)
//   6 parse_decimal
//
// Headers are set on an api::Request as the server hands it to the routes. An ApiError (the
// 400 naming the header or parameter) is a fine outcome; a crash, a sanitizer report, another
// exception type, or a parsed value outside its documented range is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <cauce/api/http.hpp>
#include <cauce/api/problem.hpp>
#include <cauce/projections/queries.hpp>

#include "query_params.hpp"

namespace {

using namespace cauce::api;

// Beast's parser refuses a header block above 8 KiB; a longer value cannot reach a route.
constexpr std::size_t kMaxValue = 8 * 1024;

[[noreturn]] void finding(const char* what, std::string_view input) {
  std::fprintf(stderr, "FINDING: %s (input: %.*s)\n", what, static_cast<int>(input.size()),
               input.data());
  std::fflush(stderr);
  std::abort();
}

Request with_header(const char* name, std::string_view value) {
  Request request;
  request.message.method(http::verb::get);
  request.message.target("/v1/contacts");
  request.message.set(name, value);
  return request;
}

struct CursorList {
  const char* name;
  bool (*valid)(const std::string&);
};
constexpr CursorList kLists[] = {
    {"contacts", cauce::projections::valid_id_key},
    {"calls", cauce::projections::valid_calls_key},
    {"events", cauce::projections::valid_history_key},
};

void cursor(std::uint8_t selector, std::string_view input) {
  const auto& list = kLists[selector / 7 % 3];
  try {
    const auto key = decode_cursor(input, list.name, list.valid);
    if (!list.valid(key)) finding("decode_cursor returned a key its list refuses", input);
  } catch (const ApiError&) {
  }
  // Every cursor the API hands out reads back as its key.
  const std::string key(input);
  if (list.valid(key)) {
    try {
      if (decode_cursor(encode_cursor(list.name, key), list.name, list.valid) != key) {
        finding("a cursor does not read back as its key", input);
      }
    } catch (const ApiError&) {
      finding("decode_cursor refuses a cursor encode_cursor made", input);
    }
  }
}

void query_string(std::string_view input) {
  const std::string target = "/v1/contacts?" + std::string(input);
  const auto params =
      query_params(target, {"status", "assigned_to", "tag", "q", "limit", "cursor"});
  const int limit = page_limit(params);
  if (limit < 1 || limit > 500) finding("page_limit outside 1..500", input);
  if (const auto it = params.find("cursor"); it != params.end()) {
    static_cast<void>(decode_cursor(it->second, "contacts", cauce::projections::valid_id_key));
  }
}

void parse(std::uint8_t selector, std::string_view input) {
  switch (selector % 7) {
    case 0:
      cursor(selector, input);
      break;
    case 1:
      if (const auto p = min_position(with_header("Cauce-Min-Position", input))) {
        if (p->partition < 0 || p->offset < 0) finding("a negative position", input);
      }
      break;
    case 2:
      query_string(input);
      break;
    case 3: {
      const auto request = with_header("Last-Event-ID", input);
      const auto it = request.message.find("Last-Event-ID");
      if (event_id(it->value(), "Last-Event-ID") < 0) finding("a negative event id", input);
      break;
    }
    case 4:
      if (const auto v = expected_version(with_header("If-Match", input)); v && *v < 0) {
        finding("a negative If-Match version", input);
      }
      break;
    case 5:
      if (const auto key = idempotency_key(with_header("Idempotency-Key", input))) {
        if (key->empty() || key->size() > 200) finding("an Idempotency-Key of bad length", input);
      }
      break;
    default: {
      const std::int64_t max = selector % 2 == 0 ? INT64_MAX / 10 : 1'000'000;
      if (const auto v = parse_decimal(input, max); v && (*v < 0 || *v > max)) {
        finding("parse_decimal outside 0..max", input);
      }
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0 || size > kMaxValue + 1) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  try {
    parse(static_cast<std::uint8_t>(input[0]), input.substr(1));
  } catch (const ApiError&) {
    // a 400 naming the header or parameter
  }
  return 0;
}
