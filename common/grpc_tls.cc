#include "common/grpc_tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace corral {
namespace {

// A private key protected by a passphrase would make OpenSSL prompt on the terminal; refuse it
// instead (a daemon has nobody to answer).
int NoPassphrase(char*, int, int, void*) { return -1; }

struct BioCloser {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioCloser>;
struct X509Closer {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Closer>;
struct KeyCloser {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyCloser>;

BioPtr MemBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// The first certificate of a PEM text, or null.
X509Ptr FirstCertificate(const std::string& pem) {
  BioPtr bio = MemBio(pem);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr));
  ERR_clear_error();
  return cert;
}

absl::StatusOr<std::string> ReadCertificates(const std::string& flag, const std::string& path) {
  absl::StatusOr<std::string> pem = ReadPemFile(flag, path);
  if (!pem.ok()) return pem.status();
  if (FirstCertificate(*pem) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " ", path, ": no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)"));
  }
  return pem;
}

// Reads a certificate and its key and checks they belong together.
absl::Status ReadPair(const std::string& prefix, const std::string& cert_file,
                      const std::string& key_file, std::string* cert_pem, std::string* key_pem) {
  absl::StatusOr<std::string> cert = ReadCertificates(prefix + "cert", cert_file);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPemFile(prefix + "key", key_file);
  if (!key.ok()) return key.status();
  BioPtr bio = MemBio(*key);
  KeyPtr pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  ERR_clear_error();
  if (pkey == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "key ", key_file,
                     ": no unencrypted PEM private key in it (expected -----BEGIN PRIVATE KEY----- "
                     "or another PEM key block without a passphrase)"));
  }
  X509Ptr leaf = FirstCertificate(*cert);
  if (X509_check_private_key(leaf.get(), pkey.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(prefix, "key ", key_file,
                                                   " is not the private key of the certificate in ",
                                                   prefix, "cert ", cert_file));
  }
  *cert_pem = *std::move(cert);
  *key_pem = *std::move(key);
  return absl::OkStatus();
}

}  // namespace

const char* TransportSecurityName(TransportSecurity security) {
  switch (security) {
    case TransportSecurity::kPlaintext:
      return "plaintext";
    case TransportSecurity::kTls:
      return "TLS";
    case TransportSecurity::kMutualTls:
      return "mTLS";
  }
  return "unknown";
}

absl::StatusOr<std::string> ReadPemFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": cannot read: ", std::strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": read failed"));
  }
  std::string pem = text.str();
  if (pem.find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": not a PEM file (no -----BEGIN line)"));
  }
  return pem;
}

absl::StatusOr<ServerSecurity> MakeServerCredentials(const ServerTlsFiles& files) {
  const std::string& p = files.flag_prefix;
  ServerSecurity out;
  if (files.cert_file.empty() && files.key_file.empty() && files.client_ca_file.empty()) {
    out.credentials = grpc::InsecureServerCredentials();
    return out;
  }
  if (files.cert_file.empty() || files.key_file.empty()) {
    return absl::InvalidArgumentError(
        files.cert_file.empty()
            ? absl::StrCat(p, "key and ", p, "client-ca need ", p,
                           "cert: the server's certificate is missing")
            : absl::StrCat(p, "cert needs ", p, "key: the certificate's private key is missing"));
  }
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  if (absl::Status s =
          ReadPair(p, files.cert_file, files.key_file, &pair.cert_chain, &pair.private_key);
      !s.ok()) {
    return s;
  }
  grpc::SslServerCredentialsOptions options(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  out.security = TransportSecurity::kTls;
  if (!files.client_ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadCertificates(p + "client-ca", files.client_ca_file);
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *std::move(ca);
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    out.security = TransportSecurity::kMutualTls;
  }
  options.pem_key_cert_pairs.push_back(std::move(pair));
  out.credentials = grpc::SslServerCredentials(options);
  return out;
}

absl::StatusOr<ClientSecurity> MakeChannelCredentials(const ClientTlsFiles& files) {
  const std::string& p = files.flag_prefix;
  ClientSecurity out;
  if (files.ca_file.empty() && files.cert_file.empty() && files.key_file.empty()) {
    out.credentials = grpc::InsecureChannelCredentials();
    return out;
  }
  if (files.ca_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        p, "cert and ", p, "key need ", p, "ca: the CA that signed the server's certificate"));
  }
  if (files.cert_file.empty() != files.key_file.empty()) {
    return absl::InvalidArgumentError(
        files.cert_file.empty()
            ? absl::StrCat(p, "key needs ", p, "cert: the client certificate is missing")
            : absl::StrCat(p, "cert needs ", p, "key: the certificate's private key is missing"));
  }
  grpc::SslCredentialsOptions options;
  absl::StatusOr<std::string> ca = ReadCertificates(p + "ca", files.ca_file);
  if (!ca.ok()) return ca.status();
  options.pem_root_certs = *std::move(ca);
  out.security = TransportSecurity::kTls;
  if (!files.cert_file.empty()) {
    if (absl::Status s = ReadPair(p, files.cert_file, files.key_file, &options.pem_cert_chain,
                                  &options.pem_private_key);
        !s.ok()) {
      return s;
    }
    out.security = TransportSecurity::kMutualTls;
  }
  out.credentials = grpc::SslCredentials(options);
  return out;
}

}  // namespace corral
