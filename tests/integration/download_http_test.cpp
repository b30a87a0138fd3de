// Report download against a real HTTP server on loopback, started by the test: statuses,
// limits, content types, timeouts, redirects and the SSRF guard, each with the outcome a job
// needs (retryable or permanent) and never a partial file left behind.
#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>  // before Boost 1.74's asio, which needs std::exchange

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cauce/core/crypto.hpp>
#include <cauce/workers/download.hpp>

#include "source_server.hpp"

namespace cauce::workers {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

const std::string kCsv = "name,city,calls\nAna Lima,Lisboa,3\nJosé Núñez,Málaga,12\n";

// The report sources of these tests.
void answer(const std::string& path, int n, testing::SourceServer::Response& response) {
  if (path == "/report.csv") {
    response.body() = kCsv;
  } else if (path == "/flaky.csv") {
    if (n <= 2) response.result(http::status::internal_server_error);
    response.body() = n <= 2 ? "try later" : kCsv;
  } else if (path == "/missing.csv") {
    response.result(http::status::not_found);
  } else if (path == "/busy.csv") {
    response.result(http::status::too_many_requests);
  } else if (path == "/request-timeout.csv") {
    response.result(http::status::request_timeout);
  } else if (path == "/big.csv" || path == "/big-chunked.csv") {
    response.body() = std::string(2 * 1024 * 1024, 'x');
    if (path == "/big-chunked.csv") response.chunked(true);
  } else if (path == "/page.html") {
    response.set(http::field::content_type, "text/html");
    response.body() = "<p>not a report</p>";
  } else if (path == "/slow.csv") {
    std::this_thread::sleep_for(1500ms);
    response.body() = kCsv;
  } else if (path == "/loop.csv") {
    response.result(http::status::found);
    response.set(http::field::location, "/loop.csv");
  } else if (path == "/to-ftp.csv") {
    response.result(http::status::found);
    response.set(http::field::location, "ftp://127.0.0.1/report.csv");
  } else {
    response.result(http::status::not_found);
  }
}

class DownloadTest : public ::testing::Test {
 protected:
  DownloadTest() {
    limits_.allow_private = true;  // the server is on loopback
    dir_ = std::filesystem::temp_directory_path() / ("cauce-download-" + core::random_hex(6));
    std::filesystem::create_directories(dir_);
  }
  ~DownloadTest() override { std::filesystem::remove_all(dir_); }

  // The error a download of `path` throws (fails the test when it succeeds).
  DownloadError failure(const std::string& path) {
    try {
      download(server_.url(path), target(), limits_);
    } catch (const DownloadError& e) {
      EXPECT_TRUE(std::filesystem::is_empty(dir_)) << path << ": a partial file was left";
      return e;
    }
    ADD_FAILURE() << path << " downloaded";
    return DownloadError("", false);
  }

  std::filesystem::path target() const { return dir_ / "source.data"; }

  testing::SourceServer server_{answer};
  DownloadLimits limits_;
  std::filesystem::path dir_;
};

TEST_F(DownloadTest, ACsvIsStoredWholeWithItsChecksumAndType) {
  const auto got = download(server_.url("/report.csv"), target(), limits_);
  EXPECT_EQ(got.bytes, static_cast<std::int64_t>(kCsv.size()));
  EXPECT_EQ(got.sha256, core::sha256_hex(kCsv));
  EXPECT_EQ(got.content_type, "text/csv");
  std::ifstream in(target(), std::ios::binary);
  std::stringstream stored;
  stored << in.rdbuf();
  EXPECT_EQ(stored.str(), kCsv);
  EXPECT_FALSE(std::filesystem::exists(target().string() + ".part"));
}

TEST_F(DownloadTest, ServerErrorsAreRetryableAndALaterAttemptSucceeds) {
  for (int attempt = 1; attempt <= 2; ++attempt) {
    const auto e = failure("/flaky.csv");
    EXPECT_TRUE(e.retryable()) << e.what();
    EXPECT_THAT(e.what(), HasSubstr("HTTP 500"));
  }
  EXPECT_EQ(download(server_.url("/flaky.csv"), target(), limits_).sha256, core::sha256_hex(kCsv));
}

TEST_F(DownloadTest, ClientErrorsArePermanentExceptTimeoutAndTooManyRequests) {
  const auto missing = failure("/missing.csv");
  EXPECT_FALSE(missing.retryable());
  EXPECT_THAT(missing.what(), HasSubstr("HTTP 404"));
  EXPECT_TRUE(failure("/busy.csv").retryable());
  EXPECT_TRUE(failure("/request-timeout.csv").retryable());
}

TEST_F(DownloadTest, ABodyOverTheLimitIsAbortedWithOrWithoutItsLength) {
  limits_.max_bytes = 1024 * 1024;
  for (const auto* path : {"/big.csv", "/big-chunked.csv"}) {
    const auto e = failure(path);
    EXPECT_FALSE(e.retryable()) << path;
    EXPECT_THAT(e.what(), HasSubstr("size limit")) << path;
  }
}

TEST_F(DownloadTest, AnotherContentTypeIsPermanent) {
  const auto e = failure("/page.html");
  EXPECT_FALSE(e.retryable());
  EXPECT_THAT(e.what(), HasSubstr("text/html"));
}

TEST_F(DownloadTest, ASourceSlowerThanTheTimeoutIsRetryable) {
  limits_.total_timeout = 300ms;
  const auto e = failure("/slow.csv");
  EXPECT_TRUE(e.retryable()) << e.what();
}

TEST_F(DownloadTest, RedirectLoopsAndOtherSchemesArePermanent) {
  const auto loop = failure("/loop.csv");
  EXPECT_FALSE(loop.retryable()) << loop.what();
  const auto ftp = failure("/to-ftp.csv");
  EXPECT_FALSE(ftp.retryable()) << ftp.what();
  try {
    download("ftp://127.0.0.1/report.csv", target(), limits_);
    ADD_FAILURE() << "an ftp URL was downloaded";
  } catch (const DownloadError& e) {
    EXPECT_FALSE(e.retryable());
  }
}

TEST_F(DownloadTest, ALoopbackSourceIsRefusedUnlessPrivateAddressesAreAllowed) {
  limits_.allow_private = false;
  const auto e = failure("/report.csv");
  EXPECT_FALSE(e.retryable());
  EXPECT_THAT(e.what(), HasSubstr("127.0.0.1"));
  EXPECT_THAT(e.what(), HasSubstr("download.allow_private"));
  // "localhost" resolves to loopback too: the address connected to is what is checked.
  try {
    download("http://localhost:1/report.csv", target(), limits_);
    ADD_FAILURE() << "localhost was downloaded";
  } catch (const DownloadError& refused) {
    EXPECT_FALSE(refused.retryable()) << refused.what();
  }
}

}  // namespace
}  // namespace cauce::workers
