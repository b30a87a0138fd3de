#pragma once

// gzip for response bodies (Content-Encoding: gzip), with zlib.

#include <string>
#include <string_view>

namespace cauce::api {

// Whether an Accept-Encoding value accepts gzip: "gzip" or "*" listed without q=0 (RFC 9110
// 12.5.3). An explicit gzip;q=0 refuses it even when * is accepted.
bool accepts_gzip(std::string_view accept_encoding);

// `body` as one gzip member (RFC 1952), compressed at `level` (1 fastest .. 9 smallest).
std::string gzip(std::string_view body, int level = 1);

}  // namespace cauce::api
