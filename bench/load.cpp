#include "load.hpp"

#include <algorithm>
#include <fstream>
#include <utility>  // before asio/awaitable.hpp (Boost 1.74 misses it)

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>

namespace cauce::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using Clock = std::chrono::steady_clock;

// `interval`: zero for a closed loop, else the time between this connection's requests.
asio::awaitable<void> connection(std::uint16_t port, Clock::time_point deadline,
                                 const std::function<LoadRequest(std::mt19937_64&)>& next,
                                 std::uint64_t seed, Clock::duration interval, LoadResult& result) {
  std::mt19937_64 rng(seed);
  auto executor = co_await asio::this_coro::executor;
  beast::tcp_stream stream(executor);
  beast::flat_buffer buffer;
  asio::steady_timer timer(executor);
  bool connected = false;
  // Spread the connections' first requests over one interval.
  auto due = Clock::now() + interval * static_cast<Clock::rep>(seed % 1000) / 1000;
  while (Clock::now() < deadline) {
    try {
      if (interval.count() > 0) {
        timer.expires_at(due);
        co_await timer.async_wait(asio::use_awaitable);
      }
      if (!connected) {
        co_await stream.async_connect(
            asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
            asio::use_awaitable);
        stream.socket().set_option(asio::ip::tcp::no_delay(true));
        connected = true;
      }
      const auto spec = next(rng);
      http::request<http::string_body> req(spec.method, spec.target, 11);
      req.set(http::field::host, "127.0.0.1");
      for (const auto& [name, value] : spec.headers) req.set(name, value);
      if (!spec.body.empty()) {
        req.set(http::field::content_type, "application/json");
        req.body() = spec.body;
      }
      req.keep_alive(true);
      req.prepare_payload();
      const auto started = interval.count() > 0 ? due : Clock::now();
      due += interval;
      co_await http::async_write(stream, req, asio::use_awaitable);
      http::response<http::string_body> res;
      co_await http::async_read(stream, buffer, res, asio::use_awaitable);
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
      if (res.result_int() / 100 == 2 || res.result() == http::status::not_modified) {
        ++result.ok;
        result.latencies_ms.push_back(ms);
      } else {
        ++result.failed;
        if (res.result() == http::status::service_unavailable) ++result.busy;
      }
      if (!res.keep_alive()) {
        stream.close();
        connected = false;
      }
    } catch (const std::exception&) {
      ++result.failed;
      stream.close();
      connected = false;
    }
  }
}

// The machine's CPU time so far as {idle, total} (jiffies of every CPU), from /proc/stat.
std::pair<double, double> cpu_times() {
  std::ifstream stat("/proc/stat");
  std::string cpu;
  stat >> cpu;
  double idle = 0;
  double total = 0;
  for (int field = 0; field < 8; ++field) {  // user nice system idle iowait irq softirq steal
    double v = 0;
    if (!(stat >> v)) return {-1, -1};
    total += v;
    if (field == 3 || field == 4) idle += v;
  }
  return {idle, total};
}

}  // namespace

double LoadResult::percentile(double p) const {
  if (latencies_ms.empty()) return 0;
  auto sorted = latencies_ms;
  std::sort(sorted.begin(), sorted.end());
  const auto rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(sorted.size() - 1));
  return sorted[rank];
}

LoadResult run_load(std::uint16_t port, int connections, std::chrono::milliseconds duration,
                    const std::function<LoadRequest(std::mt19937_64&)>& next,
                    double rate_per_second) {
  const auto interval =
      rate_per_second > 0
          ? std::chrono::duration_cast<Clock::duration>(
                std::chrono::duration<double>(static_cast<double>(connections) / rate_per_second))
          : Clock::duration::zero();
  asio::io_context ioc(1);
  LoadResult result;
  const auto cpu_before = cpu_times();
  const auto started = Clock::now();
  const auto deadline = started + duration;
  for (int c = 0; c < connections; ++c) {
    asio::co_spawn(
        ioc,
        connection(port, deadline, next, 0x5eed + static_cast<std::uint64_t>(c), interval, result),
        asio::detached);
  }
  ioc.run();
  result.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  const auto cpu_after = cpu_times();
  if (cpu_before.first >= 0 && cpu_after.second > cpu_before.second) {
    result.machine_idle =
        (cpu_after.first - cpu_before.first) / (cpu_after.second - cpu_before.second);
  }
  return result;
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace cauce::bench
