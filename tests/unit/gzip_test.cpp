// Response compression: which Accept-Encoding values accept gzip, and that what gzip() writes
// is one gzip member zlib inflates back to the same bytes.
#include "gzip.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

namespace cauce::api {
namespace {

std::string gunzip(const std::string& data) {
  z_stream z{};
  EXPECT_EQ(inflateInit2(&z, 15 + 16), Z_OK);  // gzip only
  std::string out(data.size() * 20 + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&z, Z_FINISH);
  out.resize(z.total_out);
  inflateEnd(&z);
  EXPECT_EQ(rc, Z_STREAM_END);
  return out;
}

TEST(GzipTest, WhatAcceptsGzip) {
  for (const char* yes :
       {"gzip", "GZIP", "gzip, deflate, br", "br;q=1.0, gzip;q=0.8", "*", "deflate, *;q=0.1",
        "x-gzip", " gzip ; q=1 ", "gzip;q=0.001", "gzip;q=0, gzip"}) {
    EXPECT_TRUE(accepts_gzip(yes)) << yes;
  }
  for (const char* no : {"", "identity", "deflate, br", "gzip;q=0", "gzip; q=0.000", "*, gzip;q=0",
                         "*;q=0", "gzipx", "gzip;q=0.", "deflate;q=0, *;Q=0"}) {
    EXPECT_FALSE(accepts_gzip(no)) << no;
  }
}

TEST(GzipTest, ABodyInflatesBackToTheSameBytes) {
  std::string body = R"({"items":[)";
  for (int i = 0; i < 200; ++i) {
    body += (i ? "," : "") + std::string(R"({"id":")") + std::to_string(i * 7919) +
            R"(","name":"Contact )" + std::to_string(i) + R"(","tags":["a","b"]})";
  }
  body += "]}";
  const auto packed = gzip(body);
  EXPECT_LT(packed.size(), body.size() / 3) << "a JSON list compresses well";
  ASSERT_GE(packed.size(), 18u);
  EXPECT_EQ(static_cast<unsigned char>(packed[0]), 0x1f);  // the gzip magic
  EXPECT_EQ(static_cast<unsigned char>(packed[1]), 0x8b);
  EXPECT_EQ(gunzip(packed), body);
  EXPECT_EQ(gunzip(gzip("")), "");
  const std::string binary("\0\xff\x01 text \0", 10);
  EXPECT_EQ(gunzip(gzip(binary, 9)), binary);
}

}  // namespace
}  // namespace cauce::api
