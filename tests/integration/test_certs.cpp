#include "test_certs.hpp"

#include <fstream>
#include <stdexcept>

namespace cauce::testing {

namespace fs = std::filesystem;

namespace {

// One file for every openssl step: no dependence on the system's openssl.cnf.
constexpr const char* kOpensslConfig = R"(# written by tests/integration/test_certs.cpp
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder

[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

# `openssl ca` only for the expired certificate: it alone takes explicit start and end dates.
[ca]
default_ca = test_ca
[test_ca]
dir = .
database = $dir/index.txt
new_certs_dir = $dir
serial = $dir/serial
default_md = sha256
policy = any_name
unique_subject = no
[any_name]
commonName = supplied
)";

void owner_only(const fs::path& file) {
  fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::replace);
}

}  // namespace

TestCerts::TestCerts() {
  const fs::path& d = dir_.path();
  config_ = d / "openssl.cnf";
  std::ofstream(config_) << kOpensslConfig;

  ca_cert = d / "ca.crt";
  ca_key = d / "ca.key";
  server_cert = d / "server.crt";
  server_key = d / "server.key";
  client_cert = d / "client.crt";
  client_key = d / "client.key";
  expired_cert = d / "expired.crt";
  expired_key = d / "expired.key";
  other_ca_cert = d / "other-ca.crt";
  other_ca_key = d / "other-ca.key";

  make_ca(ca_cert, ca_key, "cauce test CA");
  make_ca(other_ca_cert, other_ca_key, "cauce unrelated CA");

  issue_server_cert(server_cert, server_key);

  const fs::path client_csr = d / "client.csr";
  make_key_and_csr(client_key, client_csr, "cauce-test-client");
  sign(client_csr, client_cert, "client_ext");

  // Expired: valid for January 2020 only, through `openssl ca` in the directory.
  const fs::path expired_csr = d / "expired.csr";
  make_key_and_csr(expired_key, expired_csr, "localhost-expired");
  std::ofstream(d / "index.txt").close();
  std::ofstream(d / "serial") << "0FFF\n";
  run("cd " + shell_quote(d.string()) + " && openssl ca -batch -notext -config " +
      shell_quote(config_.string()) + " -cert " + shell_quote(ca_cert.string()) + " -keyfile " +
      shell_quote(ca_key.string()) + " -in " + shell_quote(expired_csr.string()) + " -out " +
      shell_quote(expired_cert.string()) +
      " -startdate 20200101000000Z -enddate 20200201000000Z -extfile " +
      shell_quote(config_.string()) + " -extensions server_ext");
}

void TestCerts::run(const std::string& command) const {
  const ToolResult r = run_tool(command);
  if (r.exit_code != 0) {
    throw std::runtime_error("TestCerts: `" + command + "` failed (" + std::to_string(r.exit_code) +
                             "): " + r.output);
  }
}

void TestCerts::make_ca(const fs::path& cert, const fs::path& key, const std::string& cn) const {
  run("openssl req -x509 -config " + shell_quote(config_.string()) +
      " -extensions ca_ext -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 30" +
      " -subj " + shell_quote("/CN=" + cn) + " -keyout " + shell_quote(key.string()) + " -out " +
      shell_quote(cert.string()));
  owner_only(key);
}

void TestCerts::make_key_and_csr(const fs::path& key, const fs::path& csr,
                                 const std::string& cn) const {
  run("openssl req -new -config " + shell_quote(config_.string()) +
      " -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -subj " +
      shell_quote("/CN=" + cn) + " -keyout " + shell_quote(key.string()) + " -out " +
      shell_quote(csr.string()));
  owner_only(key);
}

void TestCerts::sign(const fs::path& csr, const fs::path& cert, const std::string& extensions) {
  run("openssl x509 -req -sha256 -days 30 -in " + shell_quote(csr.string()) + " -CA " +
      shell_quote(ca_cert.string()) + " -CAkey " + shell_quote(ca_key.string()) + " -set_serial " +
      std::to_string(++serial_) + " -extfile " + shell_quote(config_.string()) + " -extensions " +
      extensions + " -out " + shell_quote(cert.string()));
}

std::string TestCerts::issue_server_cert(const fs::path& cert, const fs::path& key) {
  const std::string cn = "localhost-" + std::to_string(++issued_);
  // Made beside the target and renamed over it, so a reader sees the old pair or the new one.
  const fs::path new_key = dir_.path() / ("issuing-" + std::to_string(issued_) + ".key");
  const fs::path new_cert = dir_.path() / ("issuing-" + std::to_string(issued_) + ".crt");
  const fs::path csr = dir_.path() / ("issuing-" + std::to_string(issued_) + ".csr");
  make_key_and_csr(new_key, csr, cn);
  sign(csr, new_cert, "server_ext");
  fs::rename(new_key, key);
  fs::rename(new_cert, cert);
  return cn;
}

std::string TestCerts::reissue_server_cert() { return issue_server_cert(server_cert, server_key); }

std::string TestCerts::subject_cn(const fs::path& cert) {
  const ToolResult r =
      run_tool("openssl x509 -noout -subject -nameopt multiline -in " + shell_quote(cert.string()));
  const auto at = r.output.find("commonName");
  if (r.exit_code != 0 || at == std::string::npos) {
    throw std::runtime_error("TestCerts: no subject in " + cert.string() + ": " + r.output);
  }
  const auto eq = r.output.find("= ", at);
  const auto end = r.output.find('\n', eq);
  return r.output.substr(eq + 2, end - eq - 2);
}

std::string TestCerts::fingerprint(const fs::path& cert) {
  const ToolResult r =
      run_tool("openssl x509 -noout -fingerprint -sha256 -in " + shell_quote(cert.string()));
  const auto eq = r.output.find('=');
  if (r.exit_code != 0 || eq == std::string::npos) {
    throw std::runtime_error("TestCerts: no fingerprint of " + cert.string() + ": " + r.output);
  }
  std::string value = r.output.substr(eq + 1);
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
  return value;
}

}  // namespace cauce::testing
