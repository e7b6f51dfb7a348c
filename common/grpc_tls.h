// Transport security for Corral's gRPC: server credentials for corral-control's port and channel
// credentials for the clients of it (corral-proxy's Watch/Report channel, corralctl), built from
// PEM files named on the command line.
//
// The files are read and checked here, once, at start, so a mistake is reported as a sentence
// naming the flag and the file (unreadable, not PEM, a certificate without its key, a key that
// does not belong to the certificate) instead of surfacing later as a port that will not bind or
// a handshake that fails with no reason given. With no files the result is plaintext, which is
// the default for a control plane on loopback.
//
// Thread safety: stateless functions, safe from any thread.
#pragma once

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace corral {

enum class TransportSecurity {
  kPlaintext,
  kTls,        // the server proves who it is; clients are anonymous at this layer
  kMutualTls,  // both sides present a certificate the other verifies
};
// "plaintext", "TLS" or "mTLS", for logs.
const char* TransportSecurityName(TransportSecurity security);

// What a gRPC server presents. All empty = plaintext.
struct ServerTlsFiles {
  std::string cert_file;       // PEM certificate chain, leaf first
  std::string key_file;        // PEM private key (unencrypted) of the leaf certificate
  std::string client_ca_file;  // PEM CA bundle; when set, clients must present a certificate
                               // that chains to it (verified), or the handshake fails
  std::string flag_prefix = "--tls-";  // names the files in messages: --tls-cert, --tls-key, ...
};

struct ServerSecurity {
  std::shared_ptr<grpc::ServerCredentials> credentials;
  TransportSecurity security = TransportSecurity::kPlaintext;
};

// Plaintext when every file is empty; TLS with cert and key; mTLS when client_ca_file is set
// too (GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY). InvalidArgument for a cert
// without a key (or the reverse), a client CA without a cert, an unreadable or non-PEM file, or
// a key that does not match the certificate.
absl::StatusOr<ServerSecurity> MakeServerCredentials(const ServerTlsFiles& files);

// What a gRPC client trusts and presents. All empty = plaintext.
struct ClientTlsFiles {
  std::string ca_file;    // PEM CA bundle the server's certificate must chain to
  std::string cert_file;  // client certificate for mTLS (needs key_file and ca_file)
  std::string key_file;
  std::string flag_prefix = "--tls-";  // --tls-ca, --tls-cert, --tls-key in messages
};

struct ClientSecurity {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  TransportSecurity security = TransportSecurity::kPlaintext;
};

// Insecure credentials when every file is empty; grpc::SslCredentials trusting ca_file
// otherwise, presenting cert_file/key_file when given. InvalidArgument for a cert without a key
// (or the reverse), a cert without a CA, an unreadable or non-PEM file, or a mismatched pair.
absl::StatusOr<ClientSecurity> MakeChannelCredentials(const ClientTlsFiles& files);

// Reads a whole PEM file. `flag` names it in the message ("--tls-cert /etc/corral/tls.crt:
// cannot read: No such file or directory").
absl::StatusOr<std::string> ReadPemFile(const std::string& flag, const std::string& path);

}  // namespace corral
