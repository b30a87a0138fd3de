// The secrets a report download may send (workers/source_auth.hpp): the file's two lines, the
// origins each secret is bound to, and the check of a URL against them.
#include <fstream>

#include <gtest/gtest.h>

#include <cauce/core/crypto.hpp>
#include <cauce/workers/source_auth.hpp>

namespace cauce::workers {
namespace {

class SourceAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("cauce-source-auth-" + core::random_hex(8));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void write(const std::string& name, const std::string& content) const {
    std::ofstream(dir_ / name) << content;
  }
  std::string refusal(const std::string& name) const {
    try {
      load_source_credential(dir_, name);
    } catch (const SourceAuthError& e) {
      return e.what();
    }
    return "";
  }

  std::filesystem::path dir_;
};

TEST_F(SourceAuthTest, AnOriginIsSchemeHostAndPortInLowerCase) {
  EXPECT_EQ(url_origin("https://CRM.Example/x.csv?a=1"), "https://crm.example:443");
  EXPECT_EQ(url_origin("HTTP://crm.example/"), "http://crm.example:80");
  EXPECT_EQ(url_origin("https://crm.example:8443"), "https://crm.example:8443");
  EXPECT_EQ(url_origin("http://127.0.0.1:9000/a"), "http://127.0.0.1:9000");
  EXPECT_EQ(url_origin("http://[::1]:9000/a"), "http://[::1]:9000");
  EXPECT_EQ(url_origin("ftp://crm.example/x"), std::nullopt);
  EXPECT_EQ(url_origin("crm.example/x"), std::nullopt);
  EXPECT_EQ(url_origin("not a url"), std::nullopt);
}

TEST_F(SourceAuthTest, ASecretIsSentOnlyToTheOriginsItsFileLists) {
  write("crm", "bearer t0ken\norigins https://crm.example, http://127.0.0.1:9000\n");
  write("warehouse", "  origins https://wh.example:8443\n\nbasic reporter:pa55\n");
  const auto crm = load_source_credential(dir_, "crm");
  EXPECT_EQ(crm.kind, SourceCredential::Kind::kBearer);
  EXPECT_EQ(crm.origins,
            (std::vector<std::string>{"https://crm.example:443", "http://127.0.0.1:9000"}));
  EXPECT_NO_THROW(check_source_origin(crm, "crm", "https://crm.example/calls.csv"));
  EXPECT_NO_THROW(check_source_origin(crm, "crm", "https://CRM.example:443/calls.csv"));
  EXPECT_NO_THROW(check_source_origin(crm, "crm", "http://127.0.0.1:9000/calls.csv"));
  const auto refused = [&](const SourceCredential& c, const std::string& url) {
    try {
      check_source_origin(c, "crm", url);
    } catch (const SourceAuthError& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.find("t0ken"), std::string::npos) << what;
      return what;
    }
    return std::string();
  };
  EXPECT_EQ(refused(crm, "https://attacker.example/x"),
            "source_auth \"crm\" may not be sent to https://attacker.example:443: not among the "
            "origins its secret file lists (an http:// origin only when listed as http://)");
  EXPECT_NE(refused(crm, "http://crm.example/calls.csv"), "") << "cleartext unless listed";
  EXPECT_NE(refused(crm, "https://crm.example:8443/calls.csv"), "") << "another port";
  EXPECT_NE(refused(crm, "https://crm.example.attacker.example/"), "");
  EXPECT_NE(refused(crm, "ftp://crm.example/"), "");
  const auto warehouse = load_source_credential(dir_, "warehouse");
  EXPECT_EQ(warehouse.kind, SourceCredential::Kind::kBasic);
  EXPECT_NO_THROW(check_source_origin(warehouse, "warehouse", "https://wh.example:8443/a.csv"));
  EXPECT_NE(refused(warehouse, "https://wh.example/a.csv"), "");
}

TEST_F(SourceAuthTest, AFileWithoutAValidOriginsLineIsRefusedNamingTheSecretOnly) {
  write("none", "bearer t0ken\n");
  EXPECT_EQ(refusal("none"),
            "source_auth \"none\" has no origins line (\"origins https://host[:port],...\": "
            "where it may be sent)");
  write("empty", "bearer t0ken\norigins\n");
  EXPECT_EQ(refusal("empty"), "source_auth \"empty\"'s origins line lists no origin");
  for (const auto* bad : {"https://crm.example/path", "crm.example", "https://u@crm.example",
                          "https://crm.example/?q", "ftp://crm.example"}) {
    write("bad", std::string("bearer t0ken\norigins ") + bad + "\n");
    const auto why = refusal("bad");
    EXPECT_NE(why.find("is not an http(s) origin"), std::string::npos) << bad << ": " << why;
    EXPECT_EQ(why.find("t0ken"), std::string::npos);
  }
  write("twice", "bearer t0ken\nbearer other\norigins https://crm.example\n");
  EXPECT_NE(refusal("twice").find("more than one"), std::string::npos);
  write("no-credential", "origins https://crm.example\n");
  EXPECT_NE(refusal("no-credential").find("is neither"), std::string::npos);
  EXPECT_NE(refusal("missing").find("is not configured"), std::string::npos);
}

}  // namespace
}  // namespace cauce::workers
