#pragma once

// Certificates for TLS tests, made with the `openssl` command line into a temporary directory
// that is removed with the object: a test CA, a server certificate it signed for localhost and
// 127.0.0.1, a client certificate it signed, an expired server certificate, and a second CA
// that signed nothing here (a client trusting only it must refuse the server). Keys are EC
// P-256 (fast to make), PEM, unencrypted, readable by their owner alone (0600).

#include <filesystem>
#include <string>

#include "fixtures.hpp"

namespace cauce::testing {

class TestCerts {
 public:
  // Makes everything; throws std::runtime_error with openssl's output when a step fails.
  TestCerts();
  TestCerts(const TestCerts&) = delete;
  TestCerts& operator=(const TestCerts&) = delete;

  const std::filesystem::path& dir() const { return dir_.path(); }

  std::filesystem::path ca_cert;  // the test CA
  std::filesystem::path ca_key;
  std::filesystem::path server_cert;  // signed by the test CA; SAN DNS:localhost, IP:127.0.0.1
  std::filesystem::path server_key;
  std::filesystem::path client_cert;  // signed by the test CA, extendedKeyUsage clientAuth
  std::filesystem::path client_key;
  std::filesystem::path expired_cert;  // signed by the test CA, valid 2020-01-01 to 2020-02-01
  std::filesystem::path expired_key;
  std::filesystem::path other_ca_cert;  // an unrelated CA
  std::filesystem::path other_ca_key;

  // Issues a new server certificate (new key, new serial, subject CN=localhost-<n>) over
  // server_cert and server_key, as a renewal would; returns the new subject's CN.
  std::string reissue_server_cert();

  // Writes a new server certificate and key to `cert` and `key` (not server_cert/server_key);
  // returns its CN. For tests that need a second valid pair side by side.
  std::string issue_server_cert(const std::filesystem::path& cert,
                                const std::filesystem::path& key);

  // The subject CN of a PEM certificate file (e.g. "localhost-2").
  static std::string subject_cn(const std::filesystem::path& cert);
  // The SHA-256 fingerprint of a PEM certificate file, as `openssl x509 -fingerprint` prints it.
  static std::string fingerprint(const std::filesystem::path& cert);

 private:
  void run(const std::string& command) const;
  void make_ca(const std::filesystem::path& cert, const std::filesystem::path& key,
               const std::string& cn) const;
  void make_key_and_csr(const std::filesystem::path& key, const std::filesystem::path& csr,
                        const std::string& cn) const;
  void sign(const std::filesystem::path& csr, const std::filesystem::path& cert,
            const std::string& extensions);

  TempDir dir_;
  std::filesystem::path config_;
  int serial_ = 1000;
  int issued_ = 0;
};

}  // namespace cauce::testing
