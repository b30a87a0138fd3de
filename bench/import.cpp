// bench/import: bulk import throughput on a real `cauce serve` (every role, as scripts/run runs
// it): a 100,000-row CSV file POSTed to /v1/imports, timed from the first byte sent to the 201,
// which comes once every row's contact.register was decided and committed. Each run imports a
// file of new contacts (their names carry the run's number), so nothing is a duplicate; one more
// run posts the last file again (every row a duplicate) and is reported apart.
//
// scripts/bench import runs bench/commands first on the same broker and PostgreSQL and prints
// both figures side by side. Settings come from CAUCE_* like the service.

#include <iomanip>
#include <iostream>
#include <map>
#include <thread>

#include <CLI/CLI.hpp>

#include "load.hpp"
#include "served_cauce.hpp"

namespace cauce::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string cauce = "build/release/cauce";
  int rows = 100000;
  int runs = 3;
  int partitions = 0;  // 0: kafka.partitions from the configuration
};

// `rows` contacts, all new for run `run`: a name, a phone, an e-mail, tags and notes, some
// quoted with a comma inside (about 90 bytes a row).
std::string csv_file(int rows, int run) {
  std::string out = "name,phone,email,tags,notes\r\n";
  out.reserve(static_cast<std::size_t>(rows) * 96);
  for (int i = 0; i < rows; ++i) {
    const auto n = std::to_string(i);
    out += "\"Import " + std::to_string(run) + ", contact " + n + "\",+351 9" +
           std::to_string(10000000 + i) + ",c" + n + ".r" + std::to_string(run) +
           "@example.org,bulk;run" + std::to_string(run) + ",imported by bench/import\r\n";
  }
  return out;
}

int run(const Options& options) {
  std::map<std::string, std::string> settings;
  if (options.partitions > 0)
    settings["CAUCE_KAFKA_PARTITIONS"] = std::to_string(options.partitions);
  const ServedCauce cauce(options.cauce, "bench-import", settings);
  const auto port = cauce.port();
  const auto key = cauce.key("operator", "bench-import");

  std::cout << "cauce bench/import: " << options.rows << " rows per file, " << options.runs
            << " runs, " << cauce.kafka().partitions << " partitions, "
            << std::thread::hardware_concurrency() << " cores, a real `cauce serve` ("
            << options.cauce << ")\n\n";
  const auto post = [&](const std::string& file) {
    const auto head =
        "POST /v1/imports HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer " + key +
        "\r\nContent-Type: text/csv\r\nContent-Length: " + std::to_string(file.size()) + "\r\n\r\n";
    const auto started = Clock::now();
    const auto answer = exchange(port, head, file);
    const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    if (answer.status != 201) {
      throw std::runtime_error("import answered " + std::to_string(answer.status) + ": " +
                               answer.text.substr(0, 400));
    }
    return std::pair{seconds, answer.text};
  };
  std::vector<double> rates;
  std::string last;
  for (int run = 1; run <= options.runs; ++run) {
    last = csv_file(options.rows, run);
    const auto [seconds, text] = post(last);
    const double rate = options.rows / seconds;
    rates.push_back(rate);
    std::cout << "run " << run << ": " << std::fixed << std::setprecision(0) << rate << " rows/s ("
              << std::setprecision(2) << seconds << " s, " << last.size() / 1024 / 1024.0
              << " MiB; accepted " << member(text, "accepted") << ", rejected "
              << member(text, "rejected") << ", duplicates " << member(text, "duplicates") << ")\n";
  }
  const auto [again_s, again_text] = post(last);
  std::cout << "the last file again (every row a duplicate): " << std::fixed << std::setprecision(0)
            << options.rows / again_s << " rows/s (duplicates " << member(again_text, "duplicates")
            << ")\n";
  std::cout << "\nmedians over " << options.runs << " runs\n"
            << "  import, " << options.rows << "-row CSV   " << std::setprecision(0)
            << median(rates) << " rows/s\n";
  return 0;
}

}  // namespace
}  // namespace cauce::bench

int main(int argc, char** argv) {
  CLI::App app{"cauce bulk import benchmark"};
  cauce::bench::Options options;
  app.add_option("--cauce", options.cauce, "The cauce binary to serve with");
  app.add_option("--rows", options.rows, "Rows per file")->check(CLI::PositiveNumber);
  app.add_option("--runs", options.runs, "Runs (the median is reported)")
      ->check(CLI::PositiveNumber);
  app.add_option("--partitions", options.partitions, "Partitions of the bench topics")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  return cauce::bench::run_reporting_errors("bench/import",
                                            [&] { return cauce::bench::run(options); });
}
