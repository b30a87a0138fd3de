// A fatal signal (core/fatal_signals.hpp) is logged as one JSON line with a symbolised stack
// trace that names the function that crashed, and the process still dies of that signal: a null
// pointer written through, abort(), two threads faulting at once (one report), and a thread's
// stack overflowing (handled on its alternate stack). The crashing process is fatal_signal_child;
// `cauce serve` itself is checked in service_kafka_pg_test.cpp
// (AFatalSignalLogsAStackTraceAndDiesOfIt).
#include <csignal>
#include <cstdio>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <sys/wait.h>

namespace {

using ::testing::HasSubstr;

struct Crash {
  int wait_status = 0;
  std::string output;
};

// Runs the child (no core file) and collects its stderr.
Crash crash(const std::string& how) {
  const std::string command =
      "ulimit -c 0; exec " + std::string(CAUCE_FATAL_SIGNAL_CHILD) + " " + how + " 2>&1";
  Crash result;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("popen failed");
  char buffer[4096];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) {
    result.output.append(buffer, n);
  }
  result.wait_status = ::pclose(pipe);
  return result;
}

// The report's line, parsed.
rapidjson::Document report_of(const Crash& c) {
  const auto at = c.output.find(R"("msg":"fatal signal")");
  rapidjson::Document doc;
  if (at == std::string::npos) return doc;
  const auto begin = c.output.rfind('\n', at);
  const auto from = begin == std::string::npos ? 0 : begin + 1;
  doc.Parse(c.output.substr(from, c.output.find('\n', at) - from).c_str());
  return doc;
}

std::string frames_of(const rapidjson::Document& report) {
  std::string frames;
  for (const auto& frame : report["stacktrace"].GetArray()) {
    frames += std::string(frame.GetString()) + "\n";
  }
  return frames;
}

class FatalSignalTest : public ::testing::Test {
 protected:
  void SetUp() override {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    GTEST_SKIP() << "under a sanitizer cauce leaves fatal signals to the sanitizer's own report";
#endif
  }

  // Crashes the child `how`; expects death by `sig` after a report whose trace names `function`.
  void expect_reported(const std::string& how, int sig, const char* name, const char* function) {
    const auto c = crash(how);
    ASSERT_TRUE(WIFSIGNALED(c.wait_status)) << "exited normally:\n" << c.output;
    EXPECT_EQ(WTERMSIG(c.wait_status), sig) << c.output;
    const auto report = report_of(c);
    ASSERT_TRUE(report.IsObject()) << "no JSON report line:\n" << c.output;
    EXPECT_STREQ(report["level"].GetString(), "error");
    EXPECT_STREQ(report["component"].GetString(), "crash");
    EXPECT_STREQ(report["signal"].GetString(), name);
    ASSERT_TRUE(report.HasMember("stacktrace") && report["stacktrace"].IsArray()) << c.output;
    const auto frames = frames_of(report);
    EXPECT_THAT(frames, HasSubstr(function));
    EXPECT_THAT(frames, HasSubstr("fatal_signal_child.cpp:")) << "no source file and line";
  }
};

TEST_F(FatalSignalTest, ANullPointerWriteIsReportedThenKillsBySigsegv) {
  expect_reported("segv", SIGSEGV, "SIGSEGV", "write_through_a_null_pointer");
  const auto report = report_of(crash("segv"));
  ASSERT_TRUE(report.IsObject());
  EXPECT_STREQ(report["address"].GetString(), "0x0");
}

TEST_F(FatalSignalTest, AbortIsReportedThenKillsBySigabrt) {
  expect_reported("abort", SIGABRT, "SIGABRT", "abort_on_a_broken_invariant");
}

TEST_F(FatalSignalTest, TwoThreadsFaultingAtOnceMakeOneReport) {
  const auto c = crash("two-threads");
  ASSERT_TRUE(WIFSIGNALED(c.wait_status)) << c.output;
  EXPECT_EQ(WTERMSIG(c.wait_status), SIGSEGV) << c.output;
  std::size_t reports = 0;
  for (auto at = c.output.find(R"("msg":"fatal signal")"); at != std::string::npos;
       at = c.output.find(R"("msg":"fatal signal")", at + 1)) {
    ++reports;
  }
  EXPECT_EQ(reports, 1u) << c.output;
  const auto report = report_of(c);
  ASSERT_TRUE(report.IsObject()) << c.output;
  EXPECT_THAT(frames_of(report), HasSubstr("write_through_a_null_pointer"));
}

TEST_F(FatalSignalTest, AStackOverflowIsReportedOnTheAlternateStack) {
  expect_reported("stack-overflow", SIGSEGV, "SIGSEGV", "recurse_without_end");
}

}  // namespace
