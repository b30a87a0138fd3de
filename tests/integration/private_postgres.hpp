#pragma once

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "fixtures.hpp"

namespace cauce::testing {

// A PostgreSQL cluster of this test's own, run by scripts/lib/common.sh (as `postgres` when
// we are root), so that stopping it disturbs no other test. With `tls_dir` (a directory made by
// common.sh's tls_test_ca) it runs with ssl=on and that directory's server certificate.
class PrivatePostgres {
 public:
  explicit PrivatePostgres(std::string tls_dir = {})
      : dir_(std::filesystem::path(test_env("TEST_WORK_DIR")) / unique_name("pg")),
        port_(free_port()),
        tls_dir_(std::move(tls_dir)) {
    start();
  }
  ~PrivatePostgres() { common_sh("pg_stop \"$1\"", {dir_.string()}); }

  void start() {
    ASSERT_EQ(common_sh("pg_start \"$1\" \"$2\" \"$3\"",
                        {dir_.string(), std::to_string(port_), tls_dir_}),
              0);
  }
  void stop() { ASSERT_EQ(common_sh("pg_stop \"$1\"", {dir_.string()}), 0); }

  core::PostgresConfig config() const {
    core::PostgresConfig pg;
    pg.host = "127.0.0.1";
    pg.port = port_;
    pg.user = "postgres";
    pg.database = "postgres";
    std::ifstream in(dir_ / "superuser.password");
    std::string password;
    std::getline(in, password);
    pg.password = core::Secret(password);
    return pg;
  }

 private:
  std::filesystem::path dir_;
  std::uint16_t port_;
  std::string tls_dir_;
};

}  // namespace cauce::testing
