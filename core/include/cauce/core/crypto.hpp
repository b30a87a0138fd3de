#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX

namespace cauce::core {

// Lower-case hex SHA-256 of the bytes.
std::string sha256_hex(std::string_view bytes);

// SHA-256 of bytes that arrive in pieces (a download, a file read in chunks).
class Sha256 {
 public:
  Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::string_view bytes);
  std::string hex();  // lower-case; ends the digest

 private:
  std::unique_ptr<evp_md_ctx_st, void (*)(evp_md_ctx_st*)> context_;
};

// Lower-case hex HMAC-SHA256 (RFC 2104) of `message` under `key` (webhook signatures).
std::string hmac_sha256_hex(std::string_view key, std::string_view message);

// The SHA-256 of a file's content, read in chunks.
std::string sha256_file_hex(const std::string& path);

// `count` bytes from the operating system's CSPRNG, as lower-case hex (2 * count chars).
std::string random_hex(std::size_t count);

// Compares in time that depends only on the lengths, never on where the inputs differ.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace cauce::core
