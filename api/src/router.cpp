#include <cauce/api/http.hpp>

namespace cauce::api {
namespace {

// Splits "/v1/keys/abc" into {"v1", "keys", "abc"}; a trailing slash is not a segment.
std::vector<std::string_view> segments(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (start < path.size()) {
    if (path[start] == '/') {
      ++start;
      continue;
    }
    const auto end = path.find('/', start);
    out.push_back(path.substr(start, end == std::string_view::npos ? path.npos : end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return out;
}

bool is_param(std::string_view segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

}  // namespace

std::string_view Request::path_param(std::string_view name) const {
  for (const auto& [key, value] : path_params) {
    if (key == name) return value;
  }
  return {};
}

void Router::add(http::verb method, std::string pattern, std::optional<Role> role,
                 Handler handler) {
  routes_.push_back({method, std::move(pattern), role, std::move(handler), {}, {}, {}});
}

void Router::add_async(http::verb method, std::string pattern, std::optional<Role> role,
                       AsyncHandler handler) {
  routes_.push_back({method, std::move(pattern), role, {}, std::move(handler), {}, {}});
}

void Router::add_stream(http::verb method, std::string pattern, std::optional<Role> role,
                        StreamHandler handler) {
  routes_.push_back({method, std::move(pattern), role, {}, {}, std::move(handler), {}});
}

void Router::add_upload(http::verb method, std::string pattern, std::optional<Role> role,
                        UploadHandler handler) {
  routes_.push_back({method, std::move(pattern), role, {}, {}, {}, std::move(handler)});
}

Router::Match Router::match(http::verb method, std::string_view path) const {
  const auto query = path.find('?');
  const auto parts = segments(path.substr(0, query));
  Match result;
  for (const auto& route : routes_) {
    const auto pattern = segments(route.pattern);
    if (pattern.size() != parts.size()) continue;
    std::vector<std::pair<std::string, std::string>> params;
    bool matches = true;
    for (std::size_t i = 0; i < parts.size() && matches; ++i) {
      if (is_param(pattern[i])) {
        params.emplace_back(pattern[i].substr(1, pattern[i].size() - 2), parts[i]);
      } else {
        matches = pattern[i] == parts[i];
      }
    }
    if (!matches) continue;
    if (route.method == method) {
      result.route = &route;
      result.params = std::move(params);
      return result;
    }
    result.allowed.push_back(route.method);
  }
  return result;
}

Response json_response(const Request& request, http::status status, std::string body) {
  Response response(status, request.message.version());
  response.set(http::field::content_type, "application/json");
  response.set(http::field::cache_control, "no-store");
  response.body() = std::move(body);
  response.prepare_payload();
  return response;
}

}  // namespace cauce::api
