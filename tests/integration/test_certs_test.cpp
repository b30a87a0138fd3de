// The TLS test certificates (test_certs.hpp) checked with `openssl verify`, so a TLS test that
// fails does so because of the server, not because of its certificates.

#include "test_certs.hpp"

#include <gtest/gtest.h>

namespace cauce::testing {
namespace {

namespace fs = std::filesystem;

ToolResult verify(const fs::path& ca, const fs::path& cert, const std::string& extra = "") {
  return run_tool("openssl verify " + extra + " -CAfile " + shell_quote(ca.string()) + " " +
                  shell_quote(cert.string()));
}

// The public key of a certificate and of a private key, to see that they belong together.
std::string public_key_of_cert(const fs::path& cert) {
  return run_tool("openssl x509 -noout -pubkey -in " + shell_quote(cert.string())).output;
}
std::string public_key_of_key(const fs::path& key) {
  return run_tool("openssl pkey -pubout -in " + shell_quote(key.string())).output;
}

TEST(TestCertsTest, MakesAValidChainAnExpiredCertificateAndAnUnrelatedCa) {
  fs::path dir;
  {
    const TestCerts certs;
    dir = certs.dir();
    EXPECT_EQ(verify(certs.ca_cert, certs.server_cert, "-purpose sslserver").exit_code, 0);
    EXPECT_EQ(verify(certs.ca_cert, certs.client_cert, "-purpose sslclient").exit_code, 0);
    EXPECT_NE(verify(certs.other_ca_cert, certs.server_cert).exit_code, 0);
    const ToolResult expired = verify(certs.ca_cert, certs.expired_cert);
    EXPECT_NE(expired.exit_code, 0);
    EXPECT_NE(expired.output.find("expired"), std::string::npos) << expired.output;

    const ToolResult san = run_tool("openssl x509 -noout -ext subjectAltName -in " +
                                    shell_quote(certs.server_cert.string()));
    EXPECT_NE(san.output.find("DNS:localhost"), std::string::npos) << san.output;
    EXPECT_NE(san.output.find("IP Address:127.0.0.1"), std::string::npos) << san.output;

    for (const auto& [cert, key] : {std::pair{certs.server_cert, certs.server_key},
                                    std::pair{certs.client_cert, certs.client_key},
                                    std::pair{certs.expired_cert, certs.expired_key},
                                    std::pair{certs.ca_cert, certs.ca_key}}) {
      EXPECT_EQ(public_key_of_cert(cert), public_key_of_key(key)) << cert;
      EXPECT_EQ(fs::status(key).permissions() & fs::perms::all,
                fs::perms::owner_read | fs::perms::owner_write)
          << key;
    }
  }
  EXPECT_FALSE(fs::exists(dir));
}

TEST(TestCertsTest, ReissuingGivesANewValidServerCertificateAndKey) {
  TestCerts certs;
  const std::string before_cn = TestCerts::subject_cn(certs.server_cert);
  const std::string before_fp = TestCerts::fingerprint(certs.server_cert);
  const std::string before_key = public_key_of_key(certs.server_key);
  const std::string cn = certs.reissue_server_cert();
  EXPECT_NE(cn, before_cn);
  EXPECT_EQ(TestCerts::subject_cn(certs.server_cert), cn);
  EXPECT_NE(TestCerts::fingerprint(certs.server_cert), before_fp);
  EXPECT_NE(public_key_of_key(certs.server_key), before_key);
  EXPECT_EQ(public_key_of_cert(certs.server_cert), public_key_of_key(certs.server_key));
  EXPECT_EQ(verify(certs.ca_cert, certs.server_cert, "-purpose sslserver").exit_code, 0);
}

}  // namespace
}  // namespace cauce::testing
