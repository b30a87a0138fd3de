// Replays inputs through a harness's LLVMFuzzerTestOneInput without libFuzzer (the gcc build):
//   fuzz_<target> PATH...   (each PATH a file, or a directory whose regular files are all run)
// Prints each file before running it, so a crash names its input, and how many ran. Exits 1
// when a path is missing or nothing was run (an empty corpus would otherwise pass silently).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

namespace fs = std::filesystem;

std::vector<fs::path> inputs_of(const fs::path& path) {
  std::vector<fs::path> out;
  if (fs::is_directory(path)) {
    for (const auto& entry : fs::recursive_directory_iterator(path)) {
      if (entry.is_regular_file()) out.push_back(entry.path());
    }
    std::sort(out.begin(), out.end());
  } else if (fs::is_regular_file(path)) {
    out.push_back(path);
  }
  return out;
}

std::string contents(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t runs = 0;
  for (int i = 1; i < argc; ++i) {
    const fs::path path(argv[i]);
    if (!fs::exists(path)) {
      std::cerr << "replay: no such file or directory: " << path << "\n";
      return 1;
    }
    for (const auto& input : inputs_of(path)) {
      const auto bytes = contents(input);
      std::cout << "replay: " << input.string() << " (" << bytes.size() << " bytes)" << std::endl;
      // A copy of exactly `size` bytes, so ASan builds catch a read past the end.
      const std::vector<std::uint8_t> copy(bytes.begin(), bytes.end());
      LLVMFuzzerTestOneInput(copy.data(), copy.size());
      ++runs;
    }
  }
  std::cout << "replay: ran " << runs << " input" << (runs == 1 ? "" : "s") << std::endl;
  if (runs == 0) {
    std::cerr << "replay: no inputs given (usage: " << argv[0] << " FILE_OR_DIR...)\n";
    return 1;
  }
  return 0;
}
