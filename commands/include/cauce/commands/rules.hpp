#pragma once

// Field rules shared by the aggregates and the API (which checks them early, so bad input is
// a 400 before anything reaches Kafka). Pure functions.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <cauce/commands/domain.hpp>

namespace cauce::commands {

// "+44 20 7946-0958", "0044 (20) 79460958" -> "+442079460958". E.164: '+' then 8..15 digits;
// a number without its country code cannot be normalised and is refused.
std::optional<std::string> normalize_phone(std::string_view raw);

// local@domain.tld: one '@', a local part of 1..64 characters, a domain with an inner dot, at
// most 254 characters, no ASCII whitespace or control character.
bool valid_email(std::string_view email);

// http(s)://host[:port][/path][?query][#fragment]: a host name (none of "/?#@:[]") or an IP
// literal in brackets, a port 0..65535, at most 2048 characters, no ASCII whitespace or control
// character.
//
// The command schemas in schemas/ spell these rules (and normalize_phone's) as `pattern`s, so the
// API's contract says exactly what is accepted; tests/unit/rules_test.cpp keeps the two equal.
bool valid_http_url(std::string_view url);

// nullopt when `value` is 1..max bytes of valid text after trimming; else the rejection.
std::optional<Rejection> check_text(std::string_view field, std::string_view value, std::size_t max,
                                    bool may_be_empty = false);

std::optional<Rejection> check_tags(const std::vector<std::string>& tags);

std::string trim(std::string_view s);

constexpr std::size_t kMaxNameLength = 200;
constexpr std::size_t kMaxNotesLength = 4096;
constexpr std::size_t kMaxTags = 20;
constexpr std::size_t kMaxTagLength = 50;
constexpr std::size_t kMaxOperatorLength = 100;

}  // namespace cauce::commands
