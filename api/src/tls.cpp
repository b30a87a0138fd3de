#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <utility>  // before Boost: asio/awaitable.hpp (1.74) uses std::exchange unincluded

#include <boost/asio/buffer.hpp>
#include <boost/asio/ssl/context.hpp>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <cauce/api/tls.hpp>
#include <cauce/core/errors.hpp>
#include <cauce/core/log.hpp>

namespace cauce::api {
namespace {

namespace ssl = boost::asio::ssl;

constexpr const char* kCertificateSetting = "http.tls_certificate_file";
constexpr const char* kKeySetting = "http.tls_key_file";

// TLS 1.2's forward-secret AEAD suites (TLS 1.3 has only such suites, OpenSSL's defaults).
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// An encrypted key must fail, not make OpenSSL prompt for a pass phrase on a terminal.
int no_pass_phrase(char*, int, int, void*) { return 0; }

// A file's bytes; the key's are wiped when this goes.
class FileBytes {
 public:
  FileBytes(const std::string& setting, const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::is_directory(path, ec)) throw core::ConfigError(setting, path + " is a directory");
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      throw core::ConfigError(setting, "cannot read " + path + ": " + std::strerror(errno));
    }
    std::ostringstream out;
    out << in.rdbuf();
    bytes_ = std::move(out).str();
  }
  ~FileBytes() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }
  FileBytes(const FileBytes&) = delete;
  FileBytes& operator=(const FileBytes&) = delete;
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

// "2026-12-05T21:16:54Z" and Unix seconds of an ASN.1 time.
std::pair<std::string, std::int64_t> time_of(const ASN1_TIME* time) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(time, &tm) != 1) return {"?", 0};
  char text[32] = {};
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return {text, static_cast<std::int64_t>(timegm(&tm))};
}

std::string subject_of(X509* certificate) {
  const BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio) return "";
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(certificate), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

std::string sha256_of(X509* certificate) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (X509_digest(certificate, EVP_sha256(), digest, &n) != 1) return "";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 0xf];
  }
  return out;
}

struct Loaded {
  std::shared_ptr<ssl::context> context;
  TlsCertificate::Served served;
};

// OpenSSL's error queue says nothing that our message does not, and must not leak into the
// next unrelated error.
[[noreturn]] void refuse(const std::string& setting, const std::string& message) {
  ERR_clear_error();
  throw core::ConfigError(setting, message);
}

Loaded load(const std::string& certificate_file, const std::string& key_file) {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = context->native_handle();
  if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(native, kTls12Ciphers) != 1) {
    refuse(kCertificateSetting, "OpenSSL refused the TLS settings");
  }
  context->set_options(ssl::context::default_workarounds | ssl::context::no_compression |
                       ssl::context::single_dh_use);
  SSL_CTX_set_options(native, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);

  {
    const FileBytes certificate(kCertificateSetting, certificate_file);
    boost::system::error_code ec;
    context->use_certificate_chain(boost::asio::buffer(certificate.bytes()), ec);
    if (ec) {
      refuse(kCertificateSetting,
             certificate_file + " holds no PEM certificate (chain) cauce can use");
    }
  }
  X509* leaf = SSL_CTX_get0_certificate(native);
  if (leaf == nullptr) refuse(kCertificateSetting, certificate_file + " holds no certificate");
  {
    const FileBytes key(kKeySetting, key_file);
    const BioPtr bio(BIO_new_mem_buf(key.bytes().data(), static_cast<int>(key.bytes().size())));
    const PkeyPtr pkey(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_pass_phrase, nullptr)
                           : nullptr);
    if (!pkey) {
      refuse(kKeySetting, key_file +
                              " holds no PEM private key cauce can use (an encrypted key "
                              "is not taken: cauce asks for no pass phrase)");
    }
    if (X509_check_private_key(leaf, pkey.get()) != 1) {
      refuse(kKeySetting, key_file + " is not the private key of the certificate in " +
                              certificate_file + " (" + kCertificateSetting + ")");
    }
    if (SSL_CTX_use_PrivateKey(native, pkey.get()) != 1 || SSL_CTX_check_private_key(native) != 1) {
      refuse(kKeySetting, "OpenSSL refused the private key in " + key_file);
    }
  }
  const auto [not_before, not_before_s] = time_of(X509_get0_notBefore(leaf));
  const auto [not_after, not_after_s] = time_of(X509_get0_notAfter(leaf));
  if (X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0) {
    refuse(kCertificateSetting,
           "the certificate in " + certificate_file + " expired on " + not_after);
  }
  if (X509_cmp_current_time(X509_get0_notBefore(leaf)) >= 0) {
    refuse(kCertificateSetting,
           "the certificate in " + certificate_file + " is not valid before " + not_before);
  }
  (void)not_before_s;
  return {std::move(context),
          TlsCertificate::Served{subject_of(leaf), not_after_s, sha256_of(leaf)}};
}

}  // namespace

struct TlsCertificate::Impl {
  Impl(std::string c, std::string k, prometheus::Registry* registry)
      : certificate_file(std::move(c)), key_file(std::move(k)) {
    if (registry == nullptr) return;
    expiry = &prometheus::BuildGauge()
                  .Name("cauce_http_tls_certificate_expiry_timestamp_seconds")
                  .Help("When the certificate new HTTPS connections get expires (Unix seconds)")
                  .Register(*registry)
                  .Add({});
    auto& reloads = prometheus::BuildCounter()
                        .Name("cauce_http_tls_reloads_total")
                        .Help("Reloads of the HTTPS certificate and key (SIGHUP), by outcome")
                        .Register(*registry);
    reload_success = &reloads.Add({{"outcome", "success"}});
    reload_failure = &reloads.Add({{"outcome", "failure"}});
  }

  void use(Loaded loaded) {
    if (expiry != nullptr) expiry->Set(static_cast<double>(loaded.served.not_after_s));
    const std::lock_guard lock(mutex);
    current = std::move(loaded);
  }

  const std::string certificate_file;
  const std::string key_file;
  prometheus::Gauge* expiry = nullptr;
  prometheus::Counter* reload_success = nullptr;
  prometheus::Counter* reload_failure = nullptr;
  core::Logger log{"http"};
  mutable std::mutex mutex;
  Loaded current;  // under mutex
};

TlsCertificate::TlsCertificate(std::string certificate_file, std::string key_file,
                               prometheus::Registry* registry)
    : impl_(std::make_unique<Impl>(std::move(certificate_file), std::move(key_file), registry)) {
  impl_->use(load(impl_->certificate_file, impl_->key_file));
}

TlsCertificate::~TlsCertificate() = default;

std::shared_ptr<ssl::context> TlsCertificate::context() const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->current.context;
}

TlsCertificate::Served TlsCertificate::served() const {
  const std::lock_guard lock(impl_->mutex);
  return impl_->current.served;
}

bool TlsCertificate::reload() {
  try {
    auto loaded = load(impl_->certificate_file, impl_->key_file);
    const auto served = loaded.served;
    impl_->use(std::move(loaded));
    if (impl_->reload_success != nullptr) impl_->reload_success->Increment();
    impl_->log.info("TLS certificate reloaded", {{"subject", served.subject},
                                                 {"not_after_s", served.not_after_s},
                                                 {"sha256", served.sha256}});
    return true;
  } catch (const core::ConfigError& e) {
    if (impl_->reload_failure != nullptr) impl_->reload_failure->Increment();
    impl_->log.error("TLS certificate reload failed: still serving the previous certificate",
                     {{"setting", e.key()}, {"error", e.what()}});
    return false;
  }
}

}  // namespace cauce::api
