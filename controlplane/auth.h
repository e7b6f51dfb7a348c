// Bearer-token authentication of the gRPC API.
//
// Two tokens live in the data dir, each created at first start with 32 random bytes (64 hex
// characters) and mode 0600: `admin.token` opens the Admin service (corralctl), `proxy.token`
// opens the Discovery service (corral-proxy). The admin token opens Discovery too, so one token
// is enough on a single machine. Clients send `authorization: Bearer <token>`.
//
// Tokens are kept only as SHA-256 hashes in memory and compared in constant time (CRYPTO_memcmp
// of the hashes), so neither the comparison time nor a core dump gives a token away. Health and
// reflection are not checked here: they stay open so generic gRPC tools work.
//
// Thread safety: an Authenticator is immutable after construction; any thread may call it.
#pragma once

#include <grpcpp/server_context.h>
#include <grpcpp/support/status.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace corral::control {

using TokenHash = std::array<uint8_t, 32>;

TokenHash HashToken(std::string_view token);
std::string Sha256Hex(std::string_view data);

// A new random token: 32 bytes from the OpenSSL RNG as 64 hex characters.
absl::StatusOr<std::string> GenerateToken();

// Reads the token in `path`, or creates the file (mode 0600, 64 hex characters) when it does not
// exist. An existing file readable by others is set to 0600 first, with a WARN. Surrounding
// whitespace is ignored; an empty file is an error (FailedPrecondition).
absl::StatusOr<std::string> LoadOrCreateToken(const std::string& path);

class Authenticator {
 public:
  // `admin_hint` is named in error messages so a person knows where the token is.
  Authenticator(std::string_view admin_token, std::string_view proxy_token, std::string admin_hint);

  // OK, or UNAUTHENTICATED with a message saying what to send.
  grpc::Status CheckAdmin(const grpc::ServerContextBase& context) const;
  grpc::Status CheckProxy(const grpc::ServerContextBase& context) const;

 private:
  grpc::Status Check(const grpc::ServerContextBase& context, bool allow_proxy) const;

  TokenHash admin_;
  TokenHash proxy_;
  std::string admin_hint_;
};

}  // namespace corral::control
