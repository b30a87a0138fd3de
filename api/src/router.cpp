#include <array>
#include <stdexcept>

#include <cauce/api/http.hpp>

namespace cauce::api {
namespace {

// The segments of "/v1/keys/abc": {"v1", "keys", "abc"}; a trailing slash is not a segment.
// Without allocating: a path of more than Router::kMaxSegments is `too_long`.
struct Segments {
  std::array<std::string_view, Router::kMaxSegments> items;
  std::size_t size = 0;
  bool too_long = false;
};

Segments segments(std::string_view path) {
  Segments out;
  std::size_t start = 0;
  while (start < path.size()) {
    if (path[start] == '/') {
      ++start;
      continue;
    }
    if (out.size == out.items.size()) {
      out.too_long = true;
      break;
    }
    const auto end = path.find('/', start);
    out.items[out.size++] =
        path.substr(start, end == std::string_view::npos ? path.npos : end - start);
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

void Router::insert(Route route) {
  const auto parts = segments(route.pattern);
  if (parts.too_long) throw std::invalid_argument("route pattern too long: " + route.pattern);
  route.segments.assign(parts.items.begin(), parts.items.begin() + parts.size);
  routes_.push_back(std::move(route));
}

void Router::add(http::verb method, std::string pattern, std::optional<Role> role,
                 Handler handler) {
  insert({method, std::move(pattern), role, std::move(handler), {}, {}, {}});
}

void Router::add_async(http::verb method, std::string pattern, std::optional<Role> role,
                       AsyncHandler handler) {
  insert({method, std::move(pattern), role, {}, std::move(handler), {}, {}});
}

void Router::add_stream(http::verb method, std::string pattern, std::optional<Role> role,
                        StreamHandler handler) {
  insert({method, std::move(pattern), role, {}, {}, std::move(handler), {}});
}

void Router::add_upload(http::verb method, std::string pattern, std::optional<Role> role,
                        UploadHandler handler) {
  insert({method, std::move(pattern), role, {}, {}, {}, std::move(handler)});
}

// Every request: the path split once, without allocating; each route's pattern was split when
// it was added; parameters are copied out for the matching route only.
Router::Match Router::match(http::verb method, std::string_view path) const {
  const auto parts = segments(path.substr(0, path.find('?')));
  Match result;
  if (parts.too_long) return result;
  for (const auto& route : routes_) {
    const auto& pattern = route.segments;
    if (pattern.size() != parts.size) continue;
    bool matches = true;
    for (std::size_t i = 0; i < parts.size && matches; ++i) {
      matches = is_param(pattern[i]) || pattern[i] == parts.items[i];
    }
    if (!matches) continue;
    if (route.method == method) {
      result.route = &route;
      for (std::size_t i = 0; i < parts.size; ++i) {
        if (is_param(pattern[i])) {
          result.params.emplace_back(pattern[i].substr(1, pattern[i].size() - 2), parts.items[i]);
        }
      }
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
