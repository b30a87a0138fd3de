#include <algorithm>
#include <cctype>
#include <set>

#include <cauce/commands/rules.hpp>
#include <cauce/core/json.hpp>

namespace cauce::commands {

std::string trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return "";
  const auto last = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(first, last - first + 1));
}

std::optional<std::string> normalize_phone(std::string_view raw) {
  std::string digits;
  bool plus = false;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    const char c = raw[i];
    if (std::isdigit(static_cast<unsigned char>(c))) {
      digits += c;
    } else if (c == '+' && digits.empty() && !plus) {
      plus = true;
    } else if (c != ' ' && c != '-' && c != '(' && c != ')' && c != '.') {
      return std::nullopt;
    }
  }
  if (!plus) {
    if (!digits.starts_with("00")) return std::nullopt;  // no country code: cannot normalise
    digits.erase(0, 2);
  }
  if (digits.size() < 8 || digits.size() > 15 || digits[0] == '0') return std::nullopt;
  return "+" + digits;
}

namespace {

// What a URL or an e-mail address may not contain anywhere: ASCII control characters and
// whitespace (schemas/ spells the same set as U+0001..U+0020 and U+007F in its patterns).
bool control_or_space(char c) {
  return std::isspace(static_cast<unsigned char>(c)) || std::iscntrl(static_cast<unsigned char>(c));
}

bool all_digits(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

}  // namespace

bool valid_email(std::string_view email) {
  if (core::utf8_length(email) > 254 || std::any_of(email.begin(), email.end(), control_or_space)) {
    return false;
  }
  const auto at = email.find('@');
  if (at == std::string_view::npos || at == 0 || email.find('@', at + 1) != email.npos ||
      core::utf8_length(email.substr(0, at)) > 64) {
    return false;
  }
  // A domain with a dot that is neither its first nor its last character.
  const auto domain = email.substr(at + 1);
  const auto dot = domain.rfind('.');
  return dot != std::string_view::npos && dot != 0 && dot + 1 < domain.size();
}

// http(s)://host[:port][/path][?query][#fragment]: host is a name without "/?#@:[]" or an IP
// literal in brackets, port 0..65535 in at most five digits.
bool valid_http_url(std::string_view url) {
  std::string_view rest;
  if (url.starts_with("https://")) {
    rest = url.substr(8);
  } else if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else {
    return false;
  }
  if (core::utf8_length(url) > 2048 || std::any_of(url.begin(), url.end(), control_or_space)) {
    return false;
  }
  auto authority = rest.substr(0, rest.find_first_of("/?#"));
  std::string_view host;
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    host = authority.substr(1, close - 1);
    if (!std::all_of(host.begin(), host.end(), [](char c) {
          return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
        })) {
      return false;
    }
    authority.remove_prefix(close + 1);
  } else {
    host = authority.substr(0, authority.find(':'));
    if (host.empty() || host.find_first_of("@[]") != std::string_view::npos) return false;
    authority.remove_prefix(host.size());
  }
  if (authority.empty()) return true;
  if (authority.front() != ':') return false;
  const auto port = authority.substr(1);
  return !port.empty() && port.size() <= 5 && all_digits(port) &&
         std::stoi(std::string(port)) <= 65535;
}

std::optional<Rejection> check_text(std::string_view field, std::string_view value, std::size_t max,
                                    bool may_be_empty) {
  if (!may_be_empty && trim(value).empty()) {
    return Rejection{"invalid", std::string(field), "must not be empty"};
  }
  if (core::utf8_length(value) > max) {
    return Rejection{"invalid", std::string(field),
                     "must be at most " + std::to_string(max) + " characters"};
  }
  return std::nullopt;
}

std::optional<Rejection> check_tags(const std::vector<std::string>& tags) {
  if (tags.size() > kMaxTags) {
    return Rejection{"invalid", "tags", "at most " + std::to_string(kMaxTags) + " tags"};
  }
  std::set<std::string> seen;
  for (const auto& tag : tags) {
    if (auto r = check_text("tags", tag, kMaxTagLength)) {
      r->message = "each tag " + r->message;
      return r;
    }
    if (!seen.insert(tag).second)
      return Rejection{"invalid", "tags", "duplicate tag \"" + tag + "\""};
  }
  return std::nullopt;
}

}  // namespace cauce::commands
