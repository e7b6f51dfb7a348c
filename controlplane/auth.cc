#include "controlplane/auth.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/private_files.h"
#include "common/token_hash.h"

namespace corral::control {
namespace {

std::string Hex(const uint8_t* data, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[data[i] >> 4]);
    out.push_back(kDigits[data[i] & 0xf]);
  }
  return out;
}

}  // namespace

TokenHash HashToken(std::string_view token) {
  TokenHash out;
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), out.data());
  return out;
}

std::string Sha256Hex(std::string_view data) { return TokenSha256Hex(data); }

absl::StatusOr<std::string> GenerateToken() {
  uint8_t random[32];
  if (RAND_bytes(random, sizeof(random)) != 1) {
    return absl::InternalError("cannot draw random bytes for a new token");
  }
  return Hex(random, sizeof(random));
}

absl::StatusOr<std::string> LoadOrCreateToken(const std::string& path) {
  // A token another user could read is no secret: tighten it (with a WARN) before using it.
  if (absl::Status s = EnsurePrivateFile(path, "token file"); !s.ok()) return s;
  std::ifstream in(path);
  if (in) {
    std::stringstream buffer;
    buffer << in.rdbuf();
    std::string token(absl::StripAsciiWhitespace(buffer.str()));
    if (token.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("token file ", path, " is empty; delete it to have a new token created"));
    }
    return token;
  }
  absl::StatusOr<std::string> generated = GenerateToken();
  if (!generated.ok()) return generated.status();
  const std::string& token = *generated;
  // O_EXCL: if another process created the file meanwhile, read theirs instead.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return LoadOrCreateToken(path);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create token file ", path, ": ", std::strerror(errno)));
  }
  const std::string line = token + "\n";
  const bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!written || !synced) {
    ::unlink(path.c_str());
    return absl::InternalError(absl::StrCat("cannot write token file ", path));
  }
  return token;
}

Authenticator::Authenticator(std::string_view admin_token, std::string_view proxy_token,
                             std::string admin_hint)
    : admin_(HashToken(admin_token)),
      proxy_(HashToken(proxy_token)),
      admin_hint_(std::move(admin_hint)) {}

grpc::Status Authenticator::CheckAdmin(const grpc::ServerContextBase& context) const {
  return Check(context, /*allow_proxy=*/false);
}

grpc::Status Authenticator::CheckProxy(const grpc::ServerContextBase& context) const {
  return Check(context, /*allow_proxy=*/true);
}

grpc::Status Authenticator::Check(const grpc::ServerContextBase& context, bool allow_proxy) const {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return grpc::Status(
        grpc::StatusCode::UNAUTHENTICATED,
        absl::StrCat("missing `authorization: Bearer <token>` metadata; the ",
                     allow_proxy ? "proxy or admin" : "admin", " token is in ", admin_hint_));
  }
  absl::string_view value(it->second.data(), it->second.size());
  constexpr absl::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "authorization metadata must be `Bearer <token>`");
  }
  const TokenHash presented =
      HashToken(std::string(absl::StripAsciiWhitespace(value.substr(kScheme.size()))));
  // Both comparisons always run, so timing does not tell which token was close.
  const bool admin = CRYPTO_memcmp(presented.data(), admin_.data(), presented.size()) == 0;
  const bool proxy = CRYPTO_memcmp(presented.data(), proxy_.data(), presented.size()) == 0;
  if (admin || (allow_proxy && proxy)) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      absl::StrCat("invalid token for the ", allow_proxy ? "Discovery" : "Admin",
                                   " service; the admin token is in ", admin_hint_));
}

}  // namespace corral::control
