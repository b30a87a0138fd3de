#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace cauce::core {

// Lower-case hex SHA-256 of the bytes.
std::string sha256_hex(std::string_view bytes);

// `count` bytes from the operating system's CSPRNG, as lower-case hex (2 * count chars).
std::string random_hex(std::size_t count);

// Compares in time that depends only on the lengths, never on where the inputs differ.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace cauce::core
