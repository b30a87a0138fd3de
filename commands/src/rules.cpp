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

bool valid_email(std::string_view email) {
  if (email.size() > 254) return false;
  const auto at = email.find('@');
  if (at == std::string_view::npos || at == 0 || at > 64 || email.find('@', at + 1) != email.npos) {
    return false;
  }
  const auto domain = email.substr(at + 1);
  const auto dot = domain.rfind('.');
  if (domain.empty() || dot == std::string_view::npos || dot == 0 || dot + 2 > domain.size()) {
    return false;
  }
  return std::none_of(email.begin(), email.end(), [](char c) {
    return std::isspace(static_cast<unsigned char>(c)) ||
           std::iscntrl(static_cast<unsigned char>(c));
  });
}

bool valid_http_url(std::string_view url) {
  std::string_view rest;
  if (url.starts_with("https://")) {
    rest = url.substr(8);
  } else if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else {
    return false;
  }
  if (url.size() > 2048) return false;
  const auto host_end = rest.find_first_of("/?#");
  const auto authority = rest.substr(0, host_end);
  if (authority.empty() || authority.find('@') != std::string_view::npos) return false;
  const auto colon = authority.rfind(':');
  const auto host = colon == std::string_view::npos ? authority : authority.substr(0, colon);
  if (host.empty()) return false;
  if (colon != std::string_view::npos) {
    const auto port = authority.substr(colon + 1);
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(),
                     [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }) ||
        std::stoi(std::string(port)) > 65535) {
      return false;
    }
  }
  return std::none_of(url.begin(), url.end(), [](char c) {
    return std::isspace(static_cast<unsigned char>(c)) ||
           std::iscntrl(static_cast<unsigned char>(c));
  });
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
